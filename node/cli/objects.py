"""Deleting an object here, with its recall from the peers that received it."""

from __future__ import annotations

import click

from .common import CommandError, NodeContext, cli_actor

pass_node = click.make_pass_decorator(NodeContext)

_KEYWORDS = ("all", "first", "last")


def _versions(values: tuple[str, ...]) -> tuple[str | int, ...]:
    """``--version`` values as the store's version filter (TAXII 2.1 match[version])."""
    from node.timestamps import to_micros

    chosen: list[str | int] = []
    for value in values or ("all",):
        if value in _KEYWORDS:
            chosen.append(value)
            continue
        try:
            chosen.append(to_micros(value))
        except ValueError as exc:
            raise CommandError(f"--version: {value!r} is not all, first, last or a version "
                               f"timestamp ({exc})") from None  # fmt: skip
    return tuple(chosen)


@click.command("delete")
@click.option("--collection", "-c", "collection", required=True, metavar="C",
              help="The collection (id or alias).")  # fmt: skip
@click.option("--version", "versions", multiple=True, metavar="V",
              help="all (default), first, last or a version's timestamp; repeatable.")  # fmt: skip
@click.option("--yes", is_flag=True, help="Delete without asking (scripts).")
@click.argument("object_id")
@pass_node
def delete(node: NodeContext, collection: str, versions: tuple[str, ...], yes: bool,
           object_id: str) -> None:  # fmt: skip
    """Delete an object (or some of its versions) here, and recall it from every peer
    that received one of them: TAXII 2.1 has no tombstones, so each such peer is sent
    a recall (a revoked version) by the next sync round or its next read.

    Example: taxii-node --config node-a.toml delete -c shared indicator--<uuid> --yes
    """
    from node.operations.deletions import delete_versions
    from node.operations.holds import collection_id
    from node.sharing import Agreements
    from node.store.objects import ObjectQuery

    chosen = _versions(versions)
    if not yes and not click.confirm(
        f"delete {', '.join(map(str, versions or ('all',)))} version(s) of {object_id} and "
        "recall them from the peers that received them?"
    ):
        raise CommandError("nothing deleted")
    with node.opened() as store, store.write() as connection:
        found = collection_id(connection, collection) or collection  # (NotFound if none)
        query = ObjectQuery(found, limit=0, ids=(object_id,), versions=chosen)
        agreements = Agreements(node.config(), store)
        deletion = delete_versions(connection, agreements, query, object_id, actor=cli_actor())
    if not deletion.deleted:
        raise CommandError(f"no version of {object_id} matching --version in {collection!r}")
    click.echo(f"deleted {deletion.deleted} version(s) of {object_id}; "
               f"{deletion.recalls} recall(s) queued for peers")  # fmt: skip
