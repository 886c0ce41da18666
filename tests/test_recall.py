"""Recalls (in process, both stores): the recall version, queueing it for the peers
that received the object, and honouring it only from the object's origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from node import recall as recall_module
from node.operations import recalls as operations
from node.recall import EXTENSION_ID, RecallMode, recall_version
from node.store import Store, audit, objects, recalls
from node.store.audit import AuditRecord
from node.store.objects import ObjectQuery
from node.tlp import TLP, TLP2_MARKING_IDS
from node.validation import object_problem
from tests.exchange_fixtures import COLLECTION, indicator, open_store, publish, report
from tests.nodes import ADMIN_PASSWORD
from tests.pair import sync_password
from tests.triangle import ALPHA, TAXII, Triangle, make_triangle


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
                                 "pull", {})  # fmt: skip
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
        operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.REVOKE, "pull", {})
    assert _versions(store, received["id"]) == [received["modified"], recall["modified"]]


@pytest.mark.parametrize("origin", ["node-a", None])
def test_a_recall_from_anyone_but_the_origin_changes_nothing(store: Store, origin) -> None:
    held = indicator()
    publish(store, [held], "alice", origin=origin)
    forged = recall_version(held, "forged")
    with store.write() as connection:
        done = operations.honour(connection, "node-c", COLLECTION, forged, RecallMode.PURGE,
                                 "receive", {})  # fmt: skip
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


# --------------------------------------------------------------------------- across HTTP

RED = TLP2_MARKING_IDS[TLP.RED]


def _pair_specs(ingress: dict | None = None) -> dict:
    both = {"alpha": {"egress": {"max_tlp": "green"}, "ingress": ingress or {}}}
    return {
        "node-a": {"node-b": both, "node-c": both},
        "node-b": {"node-a": both, "node-c": both},
        "node-c": {"node-a": both, "node-b": both},
    }


@pytest.fixture
def triangle(tmp_path: Path, store_url: str | None) -> Iterator[Triangle]:
    started = make_triangle(tmp_path, {"node-b": store_url}, _pair_specs())
    yield started
    started.stop()


def _read(triangle: Triangle, name: str, object_id: str) -> list[dict]:
    """What an analyst reading B's collection gets for the object (every version)."""
    response = triangle.get(name, path=f"objects/{object_id}/", match={"version": "all"})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    found: list[dict] = response.json().get("objects", [])
    return found


def test_raised_to_red_on_a_is_recalled_and_purged_on_b(triangle: Triangle) -> None:
    shared = indicator(name="shared then raised")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    assert [o["name"] for o in _read(triangle, "node-b", shared["id"])] == ["shared then raised"]
    red = {**shared, "modified": "2026-03-01T00:00:00.000Z", "object_marking_refs": [RED]}
    triangle.post("node-a", [red])
    triangle.rounds(2)
    assert _read(triangle, "node-b", shared["id"]) == []  # purged: analysts see nothing
    with triangle.store("node-b").read() as connection:
        assert recalls.recalled_ids(connection, ALPHA, [shared["id"]]) == {shared["id"]}
        actions = [r["action"] for r in audit.entries(connection, peer="node-a", limit=None)
                   if r["object_id"] == shared["id"]]  # fmt: skip
    assert "recall-purged" in actions
    with triangle.store("node-a").read() as connection:
        sent = [r for r in audit.entries(connection, peer="node-b", limit=None)
                if r["object_id"] == shared["id"] and r["rule"] == "recall"]  # fmt: skip
    assert sent, "A's audit records the recall it sent"
    # B does not pass on what was recalled, and nothing of the RED version left A.
    assert all(
        o.get("object_marking_refs") != [RED] for o in _read(triangle, "node-c", shared["id"])
    )


def test_deleted_on_a_is_recalled_and_purged_on_b(triangle: Triangle) -> None:
    shared = indicator(name="shared then deleted")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    assert _read(triangle, "node-b", shared["id"])
    response = requests.delete(
        f"{triangle['node-a'].collection_url('alpha')}objects/{shared['id']}/",
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    triangle.rounds(2)
    assert _read(triangle, "node-b", shared["id"]) == []
    assert _read(triangle, "node-a", shared["id"]) == []


def test_a_recall_forged_by_a_peer_that_is_not_the_origin_changes_nothing(
    triangle: Triangle,
) -> None:
    shared = indicator(name="from A")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    forged = recall_version(shared, "forged by C")
    status = triangle.post("node-b", [forged], user="node-c",
                           password=sync_password("node-c", "node-b"))  # fmt: skip
    assert status["success_count"] == 0 and status["failure_count"] == 1
    assert [o["name"] for o in _read(triangle, "node-b", shared["id"])] == ["from A"]
    with triangle.store("node-b").read() as connection:
        refused = [r for r in audit.entries(connection, peer="node-c", limit=None)
                   if r["action"] == "recall-refused"]  # fmt: skip
        assert recalls.recalled_ids(connection, ALPHA, [shared["id"]]) == set()
    assert [r["object_id"] for r in refused] == [shared["id"]]
