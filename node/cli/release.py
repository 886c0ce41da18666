"""Release and quarantine commands: the queues of what waits before it leaves, and of
what waits after it arrived.  They parse and print; the work is in
``node.operations.releases`` and ``node.operations.quarantine``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from .common import ENTRY_NUMBER, NodeContext, cli_actor

if TYPE_CHECKING:
    from node.operations.holds import Selection

pass_node = click.make_pass_decorator(NodeContext)
PASSWORD_ENV = "TAXII_NODE_PASSWORD"
_Selection = TypeVar("_Selection", bound="Selection")
# What a line of ``list`` shows, and the label before a column's value.
_QUEUE_COLUMNS = ("entry", "peer", "id", "version", "tlp", "name", "published_by")
_HELD_COLUMNS = ("entry", "peer", "id", "version", "name")
_LABELS = {"published_by": "published by "}


def _releaser_password(name: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    return click.prompt(f"Password of {name}", hide_input=True)


def _with_options(options: Sequence[Callable]) -> Callable:
    """A decorator adding ``options`` to a command, in the order ``--help`` lists them."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def _held_options(peer_help: str, all_help: str, *content: Callable) -> Callable:
    """The options that narrow a queue of held versions (``node.operations.holds``)."""
    return _with_options(
        [
            click.argument("entries", nargs=-1, type=ENTRY_NUMBER),
            click.option("--peer", metavar="PEER", help=peer_help),
            click.option("--collection", metavar="C", help="Only this collection (id or alias)."),
            click.option("--id", "object_ids", multiple=True, metavar="ID", help="Object id."),
            *content,
            click.option("--all", "everything", is_flag=True, help=all_help),
        ]
    )


_selection_options = _held_options(
    "Only this peer's queue.",
    "Every pending version.",
    click.option("--report", metavar="ID",
                 help="A report (or other container) and everything it references."),
    click.option("--type", "types", multiple=True, metavar="TYPE", help="STIX type."),
    click.option("--label", "labels", multiple=True, metavar="LABEL", help="A label."),
    click.option("--tlp", metavar="LEVEL", help="TLP level (clear, green, amber...)."),
)  # fmt: skip
_quarantine_options = _held_options("Only what this peer sent.", "Everything held.")


def _selection(kind: type[_Selection], entries: tuple[int, ...], **criteria) -> _Selection:
    """The selection the options name (their names are the selection's fields)."""
    return kind(pks=tuple(entries), **criteria)


def _check_listed_peer(node: NodeContext, peer: str | None, rows: Sequence[object]) -> None:
    """An empty listing for ``--peer`` names a peer the config knows: a mistyped name
    is an error, not "nothing waiting".  (Entries of a peer since removed from the
    config still list.)"""
    if peer and not rows:
        node.config().peer(peer)  # ConfigError: no peer named ... (peers: ...)


def _echo_rows(rows: Sequence[dict], as_json: bool, columns: Sequence[str] = ()) -> None:
    """``rows`` as a JSON list, or a line each of their ``columns``, tab-separated."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo("\t".join(f"{_LABELS.get(name, '')}{row[name] or '-'}" for name in columns))


def _echo_done(rows: Sequence[dict], as_json: bool, summary: str) -> None:
    """What an action decided: the rows as JSON, or a one-line summary."""
    if as_json:
        _echo_rows(rows, True)
    else:
        click.echo(summary)


@contextmanager
def _queue_transaction(node: NodeContext) -> Iterator:
    """A write transaction on the store with the release queue brought up to date: what
    the egress pipeline holds back as awaiting release is queued."""
    from node.operations import releases
    from node.sharing import Agreements

    with node.opened() as store:
        agreements = Agreements(node.config(), store)
        with store.write() as connection:
            releases.refresh(connection, agreements)
            yield connection


@contextmanager
def _releaser_transaction(node: NodeContext, releaser: str) -> Iterator:
    """``_queue_transaction``, once the person at the keyboard proved to be ``releaser``."""
    from node.operations import releases

    password = _releaser_password(releaser)
    with _queue_transaction(node) as connection:
        releases.authenticate_releaser(connection, releaser, password)
        yield connection


def _queue_rows(items) -> list[dict]:
    return [item.as_dict() for item in items]


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
        items = releases.list_queue(connection, _selection(releases.Selection, **criteria))
    _check_listed_peer(node, criteria["peer"], items)
    _echo_rows(_queue_rows(items), as_json, _QUEUE_COLUMNS)


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

    selection = _selection(releases.Selection, **criteria)
    with _releaser_transaction(node, releaser) as connection:
        items = releases.approve(connection, selection, releaser, actor=cli_actor())
    _echo_done(_queue_rows(items), as_json, f"{len(items)} version(s) approved by {releaser}")


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

    selection = _selection(releases.Selection, **criteria)
    with _releaser_transaction(node, releaser) as connection:
        items = releases.reject(connection, selection, releaser, reason, actor=cli_actor())
    _echo_done(_queue_rows(items), as_json, f"{len(items)} version(s) rejected by {releaser}")


def _held_rows(held) -> list[dict]:
    return [
        {"entry": h.pk, "peer": h.peer, "collection": h.collection_id, "id": h.object_id,
         "type": h.type, "version": h.version_text, "name": h.obj.get("name")}
        for h in held
    ]  # fmt: skip


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
        held = operations.list_held(connection, _selection(operations.Selection, **criteria))
    _check_listed_peer(node, criteria["peer"], held)
    _echo_rows(_held_rows(held), as_json, _HELD_COLUMNS)


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

    selection = _selection(operations.Selection, **criteria)
    with node.writing() as connection:
        held = operations.accept(connection, selection, actor=cli_actor())
    _echo_done(_held_rows(held), as_json, f"{len(held)} version(s) accepted")


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

    selection = _selection(operations.Selection, **criteria)
    with node.writing() as connection:
        held = operations.reject(connection, selection, reason, actor=cli_actor())
    _echo_done(_held_rows(held), as_json, f"{len(held)} version(s) rejected")
