"""Four-eyes release (mapping egress ``release = "approval"``), in process on both stores.

The queue, the gate egress applies, approval and rejection by a releaser who
is not the publisher, selections by entry, report and filter, the audit
trail, and approval moving the version to the end of the collection so that
push and pull cursors reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.errors import Conflict, InvalidValue, NotFound
from node.operations import accounts as account_operations
from node.operations import releases as operations
from node.operations.releases import AWAITING_RULE, REJECTED_RULE, Selection
from node.store import Store, audit, objects, releases
from node.store.objects import ObjectQuery
from node.store.releases import Queued, ReleaseState
from node.tlp import TLP
from node.validation import version_key
from tests.exchange_fixtures import (
    COLLECTION,
    add_account,
    indicator,
    open_store,
    publish,
    report,
)

PEER = "node-b"
T0 = "2026-01-01T00:00:00.000Z"
ACTOR = "test:operator"


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path)
    add_account(opened, "alice")  # publishes
    add_account(opened, "carol")  # releases
    with opened.write() as connection:
        account_operations.set_role(connection, "carol", "releaser", granted=True, actor=ACTOR)
        account_operations.set_role(connection, "alice", "releaser", granted=True, actor=ACTOR)
    yield opened
    opened.close()


def _queued(obj: dict) -> Queued:
    return Queued(obj["id"], obj["type"], version_key(obj), obj["modified"])


def _offer(store: Store, items: list[dict]) -> tuple[set, dict]:
    """What the egress gate does with versions policy allows: queue the new ones."""
    with store.write() as connection:
        released, withheld, new = operations.gate(
            connection, PEER, COLLECTION, [_queued(obj) for obj in items]
        )
        releases.enqueue(connection, PEER, COLLECTION, new)
    return released, withheld


def _date_added(store: Store, obj: dict) -> int:
    query = ObjectQuery(collection_id=COLLECTION, limit=10, ids=(obj["id"],), versions=("all",))
    with store.read() as connection:
        rows, _ = objects.page(connection, query)
    [row] = [r for r in rows if r.version_text == obj["modified"]]
    return row.date_added


def test_nothing_passes_the_gate_until_a_releaser_approves(store: Store) -> None:
    first = indicator()
    publish(store, [first], "alice")
    released, withheld = _offer(store, [first])
    assert released == set() and withheld == {_queued(first).key: AWAITING_RULE}
    released, withheld = _offer(store, [first])  # queued once, still waiting
    with store.read() as connection:
        [item] = operations.list_queue(connection, Selection())
    assert item.entry.object_id == first["id"] and item.publisher == "alice"
    assert item.tlp == "GREEN" and item.name == "bad host"
    before = _date_added(store, first)
    with store.write() as connection:
        operations.approve(connection, Selection(pks=(item.entry.pk,)), "carol", actor=ACTOR)
    released, withheld = _offer(store, [first])
    assert released == {_queued(first).key} and withheld == {}
    assert _date_added(store, first) > before  # re-dated: cursors past it reach it again
    with store.read() as connection:
        assert operations.list_queue(connection, Selection()) == []
        records = [r for r in audit.entries(connection, limit=None)
                   if r["action"] == "release-approved"]  # fmt: skip
    assert [(r["object_id"], r["actor"], r["peer"]) for r in records] == [
        (first["id"], "carol", PEER)
    ]


def test_the_publisher_cannot_release_its_own_version(store: Store) -> None:
    own = indicator()
    publish(store, [own], "alice")
    _offer(store, [own])
    with store.write() as connection, pytest.raises(Conflict, match="four eyes"):
        operations.approve(connection, Selection(everything=True), "alice", actor=ACTOR)
    with store.read() as connection:
        [item] = operations.list_queue(connection, Selection())
    assert item.entry.state is ReleaseState.PENDING


def test_only_a_releaser_decides(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    add_account(store, "mallory")
    with store.write() as connection, pytest.raises(Conflict, match="releaser"):
        operations.approve(connection, Selection(everything=True), "mallory", actor=ACTOR)
    with store.write() as connection, pytest.raises(NotFound):
        operations.approve(connection, Selection(everything=True), "nobody", actor=ACTOR)
    with store.read() as connection:
        with pytest.raises(Conflict, match="wrong password"):
            operations.authenticate_releaser(connection, "carol", "not-her-password")
        operations.authenticate_releaser(connection, "carol", "password-123")


def test_reject_needs_a_reason_and_keeps_the_version_back(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    with store.write() as connection, pytest.raises(InvalidValue, match="reason"):
        operations.reject(connection, Selection(everything=True), "carol", "  ", actor=ACTOR)
    with store.write() as connection:
        [done] = operations.reject(
            connection, Selection(everything=True), "carol", "source unverified", actor=ACTOR
        )
    assert done.entry.object_id == obj["id"]
    released, withheld = _offer(store, [obj])
    assert released == set() and withheld == {_queued(obj).key: REJECTED_RULE}
    with store.read() as connection:
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"] == "release-rejected"]  # fmt: skip
    assert record["actor"] == "carol" and "source unverified" in record["detail"]


def test_approval_is_per_version(store: Store) -> None:
    first = indicator()
    publish(store, [first], "alice")
    _offer(store, [first])
    with store.write() as connection:
        operations.approve(connection, Selection(everything=True), "carol", actor=ACTOR)
    second = {**first, "modified": "2026-02-01T00:00:00.000Z", "name": "worse host"}
    publish(store, [second], "alice")
    released, withheld = _offer(store, [first, second])
    assert released == {_queued(first).key}
    assert withheld == {_queued(second).key: AWAITING_RULE}


def test_a_report_is_released_with_everything_it_references(store: Store) -> None:
    inside, outside = indicator(name="inside"), indicator(name="outside")
    container = report([inside["id"]])
    publish(store, [inside, outside, container], "alice")
    _offer(store, [inside, outside, container])
    with store.write() as connection:
        chosen = operations.approve(
            connection, Selection(report=container["id"]), "carol", actor=ACTOR
        )
    assert {item.entry.object_id for item in chosen} == {inside["id"], container["id"]}
    with store.read() as connection:
        [left] = operations.list_queue(connection, Selection())
    assert left.entry.object_id == outside["id"]


def test_filters_by_type_label_and_tlp(store: Store) -> None:
    green = indicator(labels=("phishing",))
    amber = indicator(tlp=TLP.AMBER, labels=("phishing",))
    other = indicator(labels=("malware",))
    container = report([green["id"]])
    publish(store, [green, amber, other, container], "alice")
    _offer(store, [green, amber, other, container])
    with store.read() as connection:

        def ids(selection: Selection) -> set[str]:
            return {i.entry.object_id for i in operations.list_queue(connection, selection)}

        assert ids(Selection(types=("report",))) == {container["id"]}
        assert ids(Selection(labels=("phishing",))) == {green["id"], amber["id"]}
        assert ids(Selection(tlp="amber")) == {amber["id"]}
        assert ids(Selection(labels=("phishing",), tlp="green")) == {green["id"]}
    with store.write() as connection:
        operations.approve(connection, Selection(labels=("phishing",), tlp="green"), "carol",
                           actor=ACTOR)  # fmt: skip
    with store.read() as connection:
        assert ids(Selection()) == {amber["id"], other["id"], container["id"]}


def test_an_action_must_say_what_it_covers(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    with store.write() as connection, pytest.raises(InvalidValue, match="--all"):
        operations.approve(connection, Selection(), "carol", actor=ACTOR)
    with store.write() as connection, pytest.raises(NotFound):
        operations.approve(connection, Selection(types=("malware",)), "carol", actor=ACTOR)


def test_a_four_eyes_refusal_leaves_the_whole_selection_pending(store: Store) -> None:
    by_bob, by_alice = indicator(), indicator()
    add_account(store, "bob")
    publish(store, [by_bob], "bob")
    publish(store, [by_alice], "alice")
    _offer(store, [by_bob, by_alice])
    with store.write() as connection, pytest.raises(Conflict):
        operations.approve(connection, Selection(everything=True), "alice", actor=ACTOR)
    with store.read() as connection:
        pending = operations.list_queue(connection, Selection())
    assert {item.entry.state for item in pending} == {ReleaseState.PENDING}
    assert len(pending) == 2
