"""Recalls (in process, both stores): the recall version, queueing it for the peers
that received the object, and honouring it only from the object's origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node import recall as recall_module
from node.operations import recalls as operations
from node.recall import EXTENSION_ID, RecallMode, recall_version
from node.store import Store, audit, objects, recalls
from node.store.audit import AuditRecord
from node.store.objects import ObjectQuery
from node.validation import object_problem
from tests.exchange_fixtures import COLLECTION, indicator, open_store, publish, report


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path)
    yield opened
    opened.close()


def _versions(store: Store, object_id: str) -> list[str]:
    query = ObjectQuery(collection_id=COLLECTION, limit=100, ids=(object_id,), versions=("all",))
    with store.read() as connection:
        rows, _ = objects.page(connection, query)
    return [row.version_text for row in rows]


def _sent(store: Store, peer: str, obj: dict) -> None:
    with store.write() as connection:
        audit.record(connection, [AuditRecord(action="sent", direction="push",
                     object_id=obj["id"], version=obj["modified"], peer=peer,
                     collection_id=COLLECTION, rule="allowed")])  # fmt: skip


def test_the_shipped_extension_and_a_recall_are_valid_stix() -> None:
    identity, definition = recall_module.extension_objects()
    assert definition["id"] == EXTENSION_ID and definition["created_by_ref"] == identity["id"]
    assert object_problem(identity) is None and object_problem(definition) is None
    last = indicator()
    recall = recall_version(last, "raised to RED")
    assert object_problem(recall) is None
    assert recall["revoked"] is True and recall["modified"] > last["modified"]
    assert recall["extensions"][EXTENSION_ID]["reason"] == "raised to RED"
    assert recall_module.is_recall(recall) and not recall_module.is_recall(last)


def test_withdraw_queues_a_recall_for_each_peer_that_received_it(store: Store) -> None:
    shared, private = indicator(), indicator()
    publish(store, [shared, private], "alice")
    _sent(store, "node-b", shared)
    _sent(store, "node-c", shared)
    with store.write() as connection:
        peers = {"node-b": frozenset(), "node-c": frozenset()}
        queued = operations.withdraw(connection, COLLECTION, [shared["id"], private["id"]],
                                     "deleted on node-a", peers)  # fmt: skip
        again = operations.withdraw(connection, COLLECTION, [shared["id"]], "x", peers)
    assert queued == 2
    with store.read() as connection:
        pending = recalls.listed(connection)
    assert {(p.peer, p.object_id) for p in pending} == {
        ("node-b", shared["id"]),
        ("node-c", shared["id"]),
    }
    assert again == 0  # one recall per object waits for each peer


def test_a_recall_from_the_origin_purges(store: Store) -> None:
    received = indicator()
    publish(store, [received], "-", origin="node-a")
    recall = recall_version(received, "raised to RED")
    with store.write() as connection:
        done = operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.PURGE,
                                 "pull")  # fmt: skip
    assert done.done and done.action == "purged"
    assert _versions(store, received["id"]) == []
    with store.read() as connection:
        assert recalls.recalled_ids(connection, COLLECTION, [received["id"]]) == {received["id"]}
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"].startswith("recall")]  # fmt: skip
    assert record["action"] == "recall-purged" and "raised to RED" in record["detail"]


def test_revoke_mode_keeps_the_revoked_version(store: Store) -> None:
    received = indicator()
    publish(store, [received], "-", origin="node-a")
    recall = recall_version(received, "withdrawn")
    with store.write() as connection:
        operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.REVOKE, "pull")
    assert _versions(store, received["id"]) == [received["modified"], recall["modified"]]


@pytest.mark.parametrize("origin", ["node-a", None])
def test_a_recall_from_anyone_but_the_origin_changes_nothing(store: Store, origin) -> None:
    held = indicator()
    publish(store, [held], "alice", origin=origin)
    forged = recall_version(held, "forged")
    with store.write() as connection:
        done = operations.honour(connection, "node-c", COLLECTION, forged, RecallMode.PURGE,
                                 "receive")  # fmt: skip
    assert not done.done and done.action == "refused"
    assert _versions(store, held["id"]) == [held["modified"]]
    with store.read() as connection:
        assert recalls.recalled_ids(connection, COLLECTION, [held["id"]]) == set()
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"].startswith("recall")]  # fmt: skip
    assert record["action"] == "recall-refused" and record["peer"] == "node-c"


def test_a_recall_repeats_only_what_the_peer_received(store: Store) -> None:
    sent_ref, unsent_ref = indicator(), indicator()
    container = report([sent_ref["id"], unsent_ref["id"]])
    container["x_internal"] = "case 4711"
    publish(store, [sent_ref, unsent_ref, container], "alice")
    _sent(store, "node-b", sent_ref)
    _sent(store, "node-b", container)
    with store.read() as connection:
        recall = recalls.recall_for(connection, "node-b", COLLECTION, container["id"], "gone",
                                    frozenset({"x_internal"}))  # fmt: skip
        never = recalls.recall_for(connection, "node-b", COLLECTION, unsent_ref["id"], "gone",
                                   frozenset())  # fmt: skip
    assert recall is not None and never is None
    assert recall["object_refs"] == [sent_ref["id"]] and "x_internal" not in recall
    assert recall["revoked"] is True and object_problem(recall) is None
