"""Release and quarantine commands: the queues of what waits before it leaves, and of
what waits after it arrived.  They parse and print; the work is in
``node.operations.releases`` and ``node.operations.quarantine``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from .common import NodeContext, cli_actor

pass_node = click.make_pass_decorator(NodeContext)
PASSWORD_ENV = "TAXII_NODE_PASSWORD"


def _releaser_password(name: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    return click.prompt(f"Password of {name}", hide_input=True)


def _selection_options(command):
    for option in reversed(
        [
            click.argument("entries", nargs=-1, type=int),
            click.option("--peer", metavar="PEER", help="Only this peer's queue."),
            click.option("--collection", metavar="C", help="Only this collection (id or alias)."),
            click.option("--id", "object_ids", multiple=True, metavar="ID", help="Object id."),
            click.option("--report", metavar="ID",
                         help="A report (or other container) and everything it references."),
            click.option("--type", "types", multiple=True, metavar="TYPE", help="STIX type."),
            click.option("--label", "labels", multiple=True, metavar="LABEL", help="A label."),
            click.option("--tlp", metavar="LEVEL", help="TLP level (clear, green, amber...)."),
            click.option("--all", "everything", is_flag=True, help="Every pending version."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


def _selection(entries, peer, collection, object_ids, report, types, labels, tlp, everything):
    from node.operations.releases import Selection

    return Selection(peer=peer, collection=collection, pks=tuple(entries),
                     object_ids=tuple(object_ids), report=report, types=tuple(types),
                     labels=tuple(labels), tlp=tlp, everything=everything)  # fmt: skip


@contextmanager
def _queue_transaction(node: NodeContext) -> Iterator:
    """A write transaction on the store with the release queue brought up to date: what
    the egress pipeline holds back as awaiting release is queued."""
    from node.operations import releases
    from node.sharing import Agreements

    store = node.ready_store()
    try:
        agreements = Agreements(node.config(), store)
        with store.write() as connection:
            releases.refresh(connection, agreements)
            yield connection
    finally:
        store.close()


def _print_items(items, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([item.as_dict() for item in items], indent=2))
        return
    for item in items:
        row = item.as_dict()
        click.echo(
            f"{row['entry']}\t{row['peer']}\t{row['id']}\t{row['version'] or '-'}\t"
            f"{row['tlp'] or '-'}\t{row['name'] or '-'}\tpublished by {row['published_by'] or '-'}"
        )


@click.group()
def release() -> None:
    """The release queue (egress release = "approval"): list, approve, reject.

    Nothing waiting here reaches the peer, pushed or pulled, until an account
    with the role releaser approves it; the releaser cannot be the account
    that published the version.  The releaser's password is read from
    TAXII_NODE_PASSWORD, or asked for.

    \b
    Example:
      taxii-node --config config/node-a.toml release list
      taxii-node --config config/node-a.toml release approve --as carol --report report--...
      taxii-node --config config/node-a.toml release reject 12 --as carol --reason "source"
    """


@release.command("list")
@_selection_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_node
def release_list(node, as_json, **criteria) -> None:
    """The versions waiting for release (entry, peer, id, version, TLP, name, publisher).

    \b
    Example:
      taxii-node --config config/node-a.toml release list --peer node-b --type report
    """
    from node.operations import releases

    with _queue_transaction(node) as connection:
        items = releases.list_queue(connection, _selection(**criteria))
    _print_items(items, as_json)


@release.command("approve")
@_selection_options
@click.option("--as", "releaser", required=True, metavar="ACCOUNT", help="The releaser.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of what was approved.")
@pass_node
def release_approve(node, releaser, as_json, **criteria) -> None:
    """Approve the selected versions for their peer, in one audited action.

    \b
    Example:
      TAXII_NODE_PASSWORD=... taxii-node --config config/node-a.toml \\
          release approve --as carol --type indicator --tlp green
    """
    from node.operations import releases

    password = _releaser_password(releaser)
    with _queue_transaction(node) as connection:
        releases.authenticate_releaser(connection, releaser, password)
        items = releases.approve(connection, _selection(**criteria), releaser, actor=cli_actor())
    if as_json:
        _print_items(items, True)
    else:
        click.echo(f"{len(items)} version(s) approved by {releaser}")


@release.command("reject")
@_selection_options
@click.option("--as", "releaser", required=True, metavar="ACCOUNT", help="The releaser.")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of what was rejected.")
@pass_node
def release_reject(node, releaser, reason, as_json, **criteria) -> None:
    """Reject the selected versions: they never leave for that peer.

    \b
    Example:
      taxii-node --config config/node-a.toml release reject 7 8 --as carol --reason "unverified"
    """
    from node.operations import releases

    password = _releaser_password(releaser)
    with _queue_transaction(node) as connection:
        releases.authenticate_releaser(connection, releaser, password)
        items = releases.reject(
            connection, _selection(**criteria), releaser, reason, actor=cli_actor()
        )
    if as_json:
        _print_items(items, True)
    else:
        click.echo(f"{len(items)} version(s) rejected by {releaser}")


def _quarantine_options(command):
    for option in reversed(
        [
            click.argument("entries", nargs=-1, type=int),
            click.option("--peer", metavar="PEER", help="Only what this peer sent."),
            click.option("--collection", metavar="C", help="Only this collection (id or alias)."),
            click.option("--id", "object_ids", multiple=True, metavar="ID", help="Object id."),
            click.option("--all", "everything", is_flag=True, help="Everything held."),
        ]
    ):
        command = option(command)
    return command


def _quarantine_selection(entries, peer, collection, object_ids, everything):
    from node.operations.quarantine import Selection

    return Selection(peer=peer, collection=collection, pks=tuple(entries),
                     object_ids=tuple(object_ids), everything=everything)  # fmt: skip


def _print_held(held, as_json: bool) -> None:
    rows = [
        {"entry": h.pk, "peer": h.peer, "collection": h.collection_id, "id": h.object_id,
         "type": h.type, "version": h.version_text, "name": h.obj.get("name")}
        for h in held
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['entry']}\t{row['peer']}\t{row['id']}\t{row['version'] or '-'}\t"
                   f"{row['name'] or '-'}")  # fmt: skip


@click.group()
def quarantine() -> None:
    """What peers sent for review (ingress quarantine = true): list, accept, reject.

    Held versions are stored but not served by any TAXII endpoint, nor pushed
    on, until accepted.

    \b
    Example:
      taxii-node --config config/node-b.toml quarantine list
      taxii-node --config config/node-b.toml quarantine accept --all --peer node-a
      taxii-node --config config/node-b.toml quarantine reject 3 --reason "out of scope"
    """


@quarantine.command("list")
@_quarantine_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_node
def quarantine_list(node, as_json, **criteria) -> None:
    """The held versions (entry, peer, id, version, name).

    \b
    Example:
      taxii-node --config config/node-b.toml quarantine list --peer node-a --json
    """
    from node.operations import quarantine as operations

    with node.reading() as connection:
        held = operations.list_held(connection, _quarantine_selection(**criteria))
    _print_held(held, as_json)


@quarantine.command("accept")
@_quarantine_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list of what was accepted.")
@pass_node
def quarantine_accept(node, as_json, **criteria) -> None:
    """Store the selected versions in their collection, as received from their peer.

    \b
    Example:
      taxii-node --config config/node-b.toml quarantine accept 3 4
    """
    from node.operations import quarantine as operations

    with node.writing() as connection:
        held = operations.accept(connection, _quarantine_selection(**criteria), actor=cli_actor())
    if as_json:
        _print_held(held, True)
    else:
        click.echo(f"{len(held)} version(s) accepted")


@quarantine.command("reject")
@_quarantine_options
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of what was rejected.")
@pass_node
def quarantine_reject(node, reason, as_json, **criteria) -> None:
    """Drop the selected versions, with a reason; the peer's status is not touched.

    \b
    Example:
      taxii-node --config config/node-b.toml quarantine reject --all --reason "out of scope"
    """
    from node.operations import quarantine as operations

    with node.writing() as connection:
        held = operations.reject(
            connection, _quarantine_selection(**criteria), reason, actor=cli_actor()
        )
    if as_json:
        _print_held(held, True)
    else:
        click.echo(f"{len(held)} version(s) rejected")
