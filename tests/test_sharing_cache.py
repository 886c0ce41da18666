"""Egress's remembered decisions (``DecisionCache``, a partner's reads) answer exactly as
deciding afresh does, also after the store changed under them.

A re-read finds most rows by their date_added and flags alone and takes the rest of
what it serves from the cache; these tests page through the collection with and
without a cache, before and after new versions (a withheld one, an older one, the
partner's own) and a recall, and compare every decision, every body served and the
``more``/resume positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection

from node.sharing.agreements import Agreement
from node.sharing.egress import DecisionCache, EgressPage, Position, egress
from node.sharing.gates import RECALL_RULE
from node.sync.worker import MappingSync
from tests.sharing_node import PEER, SharingNode
from tests.sharing_objects import GREEN, RED, at, identity, indicator, relationship, version
from tests.test_sharing_paths import RecordingPeer

POSITIONS = (
    Position(limit=2),
    Position(limit=1, versions=("all",)),
    Position(versions=("last",)),
    Position(versions=("first", "last"), limit=2),
)


@pytest.fixture
def node(tmp_path: Path, store_url: str | None) -> Iterator[SharingNode]:
    made = SharingNode(tmp_path / "a", store_url)
    yield made
    made.close()


def _answer(page: EgressPage) -> tuple:
    decisions = [(d.object_id, d.version, d.allowed, str(d.rule), d.detail) for d in page.decisions]
    return decisions, [item.body for item in page.items], page.more, page.resume_after


def _pages(
    connection: Connection, agreement: Agreement, position: Position, cache: DecisionCache | None
) -> list[tuple]:
    answers = []
    for _ in range(50):
        page = egress(connection, agreement, position, cache=cache)
        answers.append(_answer(page))
        if not page.more:
            return answers
        position = replace(position, after=page.resume_after)
    raise AssertionError(f"{position}: paging did not end")


def _assert_as_decided_afresh(node: SharingNode, cache: DecisionCache) -> None:
    with node.store.read() as connection:
        for position in POSITIONS:
            afresh = _pages(connection, node.agreement, position, None)
            filling = _pages(connection, node.agreement, position, cache)
            assert filling == afresh, position
            assert _pages(connection, node.agreement, position, cache) == afresh, position


def test_remembered_decisions_follow_new_versions(node: SharingNode) -> None:
    shared, older_later, withheld = (
        indicator(GREEN, 1),
        indicator(GREEN, 2, modified=at(30)),
        indicator(RED, 3),
    )
    node.add([shared, older_later, withheld])
    cache = DecisionCache()
    _assert_as_decided_afresh(node, cache)

    node.add([version(shared, at(10), object_marking_refs=[RED])])  # now withheld
    node.add([version(older_later, at(5))])  # older than the remembered current version
    node.add([version(older_later, at(40), name="theirs")], origin=PEER)  # never theirs to see
    node.add([version(withheld, at(10), object_marking_refs=[GREEN])])  # now shared
    _assert_as_decided_afresh(node, cache)

    with node.store.read() as connection:
        served = egress(connection, node.agreement, Position(versions=("all",)), cache=cache)
    assert {(item.object_id, item.decision.version) for item in served.rows} == {
        (older_later["id"], at(5)),
        (older_later["id"], at(30)),
        (withheld["id"], at(10)),
    }


def test_a_recall_is_served_in_place_of_a_remembered_withheld_version(node: SharingNode) -> None:
    sent = indicator(GREEN, 1)
    node.add([sent])
    assert MappingSync(node.store, node.agreement, RecordingPeer()).push().ok  # type: ignore[arg-type]
    node.add([version(sent, at(10), object_marking_refs=[RED])])
    cache = DecisionCache()
    _assert_as_decided_afresh(node, cache)

    with node.store.read() as connection:
        page = egress(connection, node.agreement, Position(), cache=cache)
    [recall] = page.rows
    assert recall.decision.rule == RECALL_RULE
    body = json.loads(recall.body)
    assert (body["id"], body["revoked"], body["name"]) == (sent["id"], True, sent["name"])


def test_one_egress_call_walks_each_decoded_object_once(
    node: SharingNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's batch finds what each version names to resolve it, decides it with
    the current versions it reaches and names what travels with it: each decoded
    object's properties are walked for links once in the call."""
    from node import policy

    walked: list[int] = []
    walk = policy._link_refs
    monkeypatch.setattr(policy, "_link_refs", lambda obj: walked.append(id(obj)) or walk(obj))
    author = identity(GREEN)
    first, second = indicator(GREEN, 1, author=author), indicator(GREEN, 2, author=author)
    node.add([author, first, second, relationship(GREEN, first, second)])
    node.add([version(first, at(10))])
    with node.store.read() as connection:
        page = egress(connection, node.agreement, Position(scan_limit=1000), set())
    assert len(page.rows) == 5 and all(d.allowed for d in page.decisions)
    assert walked and len(walked) == len(set(walked))
