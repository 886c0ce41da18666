"""The ``taxii-node`` command line.

Every command takes ``--config FILE`` (or ``TAXII_NODE_CONFIG``).  Expected
problems (a bad config, a wrong password, a peer that is down) are reported in
one line without a traceback; ``--debug`` shows the traceback.

Commands are imported when they run, not when the program starts: the client
commands and ``--help`` must not wait for SQLAlchemy, Flask or the policy
engine, which only the operator commands need.
"""

from __future__ import annotations

import importlib
import sys

import click

from node import __version__

from .common import NodeContext, run_guarded

# name -> (module, attribute, the line ``taxii-node --help`` shows for it, which
# must not import the command to show it).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("node.cli.admin", "init", "create or migrate the store; load the collections"),
    "serve": ("node.cli.admin", "serve", "serve TAXII 2.1 until stopped"),
    "user": (
        "node.cli.admin",
        "user",
        "accounts: add, list, grant, role, cert, passwd, unlock, remove",
    ),
    "token": ("node.cli.tokens", "token", "API tokens: create, list, revoke"),
    "check": ("node.cli.admin", "check", "validate the config, TLS and collection files, policies"),
    "sync": ("node.cli.sync", "sync", "run the sync worker; sync status"),
    "policy": ("node.cli.sync", "policy", "policy preview: what would be sent to a peer, and why"),
    "audit": ("node.cli.audit", "audit_command", "the audit trail; audit verify"),
    "release": ("node.cli.release", "release", "the release queue: list, approve, reject"),
    "quarantine": ("node.cli.release", "quarantine", "held arrivals: list, accept, reject"),
    "delete": ("node.cli.objects", "delete", "delete an object here and recall it from peers"),
    "publish": ("node.cli.client", "publish", "validate and publish STIX bundles to a collection"),
    "collections": ("node.cli.client", "collections_command", "collections, rights, counts"),
    "get": ("node.cli.client", "get", "fetch objects of a collection as one STIX bundle"),
    "watch": ("node.cli.client", "watch", "print each new object of a collection as JSON"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="TAXII_NODE_CONFIG",
    type=click.Path(),
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


def main() -> None:
    sys.exit(run_guarded(cli))
