"""The ``taxii-node`` command line.

Every command takes ``--config FILE`` (or ``TAXII_NODE_CONFIG``).  Expected
problems (a bad config, a wrong password, a peer that is down) are reported in
one line without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

import click

from node import __version__

from .admin import check, init, serve, user
from .client import collections_command, get, publish, watch
from .common import NodeContext, run_guarded
from .sync import audit_command, policy, sync
from .tokens import token


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="TAXII_NODE_CONFIG",
    type=click.Path(dir_okay=False),
    help="Node config file (TOML). Env: TAXII_NODE_CONFIG.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="taxii-node")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """A bilateral STIX 2.1 / TAXII 2.1 sharing node.

    \b
    Example:
      taxii-node --config config/node-a.toml init
      taxii-node --config config/node-a.toml serve
    """
    ctx.obj = NodeContext(config_path=config_path, debug=debug)


for command in (
    init,
    serve,
    user,
    token,
    check,
    sync,
    policy,
    audit_command,
    publish,
    collections_command,
    get,
    watch,
):
    cli.add_command(command)


def main() -> None:
    sys.exit(run_guarded(cli))
