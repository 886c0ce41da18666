"""Quarantine on arrival (mapping ingress ``quarantine = true``), in process on both stores.

Held versions are in the store but not in the collection: no read of the
collection returns them until an analyst or admin accepts them; rejecting
drops them with a reason; both are audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from node.errors import Conflict, InvalidValue, NotFound
from node.operations import quarantine as operations
from node.operations.quarantine import Selection
from node.store import Store, audit, objects
from node.store.objects import ObjectQuery
from tests.exchange_fixtures import COLLECTION, add_account, indicator, open_store
from tests.nodes import ADMIN_PASSWORD
from tests.pair import Pair, make_pair, run_cli
from tests.triangle import TAXII

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


# --------------------------------------------------------------------------- across HTTP


@pytest.fixture
def pair(tmp_path: Path, store_url: str | None) -> Iterator[Pair]:
    started = make_pair(
        tmp_path,
        (None, store_url),
        a={"alpha": {"egress": {"max_tlp": "green"}, "direction": "both"}},
        b={"alpha": {"ingress": {"quarantine": True}, "direction": "both"}},
    )
    yield started
    started.stop()


def _reads(pair: Pair, object_id: str) -> dict[str, int]:
    """How many results each TAXII endpoint of B's collection gives an analyst (admin)."""
    base = f"{pair.b.collection_url('alpha')}"
    auth = ("admin", ADMIN_PASSWORD)
    found = {}
    for name, path in (("objects", "objects/"), ("object", f"objects/{object_id}/"),
                       ("versions", f"objects/{object_id}/versions/"),
                       ("manifest", "manifest/")):  # fmt: skip
        response = requests.get(base + path, auth=auth, headers={"Accept": TAXII}, timeout=30)
        if response.status_code == 404:
            found[name] = 0
            continue
        assert response.status_code == 200, response.text
        body = response.json()
        items = body.get("objects") or body.get("versions") or []
        found[name] = len([i for i in items if not isinstance(i, dict) or i.get("id", object_id)
                           == object_id])  # fmt: skip
    return found


def test_quarantined_arrivals_are_served_only_once_accepted(pair: Pair) -> None:
    held, dropped = indicator(name="held"), indicator(name="dropped")
    response = requests.post(
        f"{pair.a.collection_url('alpha')}objects/", json={"objects": [held, dropped]},
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII, "Content-Type": TAXII},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 202
    pair.run_once(pair.a)  # A pushes to B
    pair.run_once(pair.b)  # B pulls from A: the same versions again, still held once
    assert _reads(pair, held["id"]) == {"objects": 0, "object": 0, "versions": 0, "manifest": 0}
    listed = json.loads(run_cli(pair.b, "quarantine", "list", "--json"))
    assert sorted(row["id"] for row in listed) == sorted([held["id"], dropped["id"]])
    # The partner's status is unaffected: its push succeeded, nothing dead-lettered.
    [push] = [s for s in pair.states(pair.a).values() if s.direction == "push"]
    assert push.sent >= 2 and push.dead_lettered == 0 and push.last_error is None
    entry = {row["id"]: row["entry"] for row in listed}
    run_cli(pair.b, "quarantine", "accept", str(entry[held["id"]]))
    run_cli(pair.b, "quarantine", "reject", str(entry[dropped["id"]]), "--reason", "not ours")
    assert _reads(pair, held["id"]) == {"objects": 1, "object": 1, "versions": 1, "manifest": 1}
    assert _reads(pair, dropped["id"])["object"] == 0
    assert json.loads(run_cli(pair.b, "quarantine", "list", "--json")) == []
    with pair.store(pair.b).read() as connection:
        actions = {(r["action"], r["object_id"]) for r in audit.entries(connection, limit=None)}
    assert ("quarantine-accepted", held["id"]) in actions
    assert ("quarantine-rejected", dropped["id"]) in actions
