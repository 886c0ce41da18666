"""Quarantine on arrival (mapping ingress ``quarantine = true``), in process on both stores.

Held versions are in the store but not in the collection: no read of the
collection returns them until an analyst or admin accepts them; rejecting
drops them with a reason; both are audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.errors import Conflict, InvalidValue, NotFound
from node.operations import quarantine as operations
from node.operations.quarantine import Selection
from node.store import Store, audit, objects
from node.store.objects import ObjectQuery
from tests.exchange_fixtures import COLLECTION, add_account, indicator, open_store

PEER = "node-a"
ACTOR = "test:analyst"


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path)
    yield opened
    opened.close()


def _served(store: Store) -> list[str]:
    """Every version any read of the collection can return (all versions, any filter)."""
    query = ObjectQuery(collection_id=COLLECTION, limit=1000, versions=("all",))
    with store.read() as connection:
        rows, _ = objects.page(connection, query)
    return [row.object_id for row in rows]


def _hold(store: Store, items: list[dict]) -> None:
    with store.write() as connection:
        operations.hold(connection, PEER, COLLECTION, items, "pull")


def test_held_versions_are_not_in_the_collection_until_accepted(store: Store) -> None:
    first, second = indicator(), indicator()
    _hold(store, [first, second])
    _hold(store, [first])  # a resend is held once
    assert _served(store) == []
    with store.read() as connection:
        held = operations.list_held(connection, Selection())
    assert [h.object_id for h in held] == [first["id"], second["id"]]
    with store.write() as connection:
        operations.accept(connection, Selection(pks=(held[0].pk,)), actor=ACTOR)
    assert _served(store) == [first["id"]]
    query = ObjectQuery(collection_id=COLLECTION, limit=10, ids=(first["id"],))
    with store.read() as connection:
        [row], _ = objects.page(connection, query)
        assert row.origin == PEER  # stored as received from the peer
        [left] = operations.list_held(connection, Selection())
    assert left.object_id == second["id"]


def test_reject_drops_with_a_reason_and_is_audited(store: Store) -> None:
    obj = indicator()
    _hold(store, [obj])
    with store.write() as connection, pytest.raises(InvalidValue, match="reason"):
        operations.reject(connection, Selection(everything=True), "", actor=ACTOR)
    with store.write() as connection:
        operations.reject(
            connection, Selection(object_ids=(obj["id"],)), "out of scope", actor=ACTOR
        )
    assert _served(store) == []
    with store.read() as connection:
        assert operations.list_held(connection, Selection()) == []
        actions = [(r["action"], r["object_id"], r["detail"])
                   for r in audit.entries(connection, limit=None)]  # fmt: skip
    assert ("quarantine-rejected", obj["id"], "out of scope") in actions
    assert actions[0][0] == "quarantined"


def test_who_may_review(store: Store) -> None:
    obj = indicator()
    _hold(store, [obj])
    add_account(store, "sync", peer=PEER)
    add_account(store, "reader")
    with store.write() as connection, pytest.raises(Conflict, match="sync account"):
        operations.accept(connection, Selection(everything=True), actor=ACTOR, account="sync")
    with store.write() as connection, pytest.raises(Conflict, match="may not write"):
        operations.accept(connection, Selection(everything=True), actor=ACTOR, account="reader")
    with store.write() as connection, pytest.raises(NotFound):
        operations.accept(connection, Selection(object_ids=("indicator--x",)), actor=ACTOR)
    assert _served(store) == []
