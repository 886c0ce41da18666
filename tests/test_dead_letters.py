"""Dead letters retried and skipped (node/operations/sync.py) between two real nodes.

Push retries are exercised in the browser test (tests/test_console_browser.py);
here a pull dead letter: node-a refuses what node-b serves, node-a's operator
fixes the cause, and a retry fetches that one version again without moving
the pull cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.errors import NotFound
from node.operations.sync import retry_dead_letter, skip_dead_letter
from node.store import audit, objects, syncstate
from node.store.objects import ObjectQuery
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.nodes import COLLECTIONS
from tests.pair import Pair, make_pair

ALPHA = COLLECTIONS["alpha"]
T = "2026-05-01T00:00:00.000Z"
TOOL = "tool--b2b2b2b2-0000-4000-8000-000000000001"


def _tool(name: str) -> dict:
    return {"type": "tool", "spec_version": "2.1", "id": TOOL, "created": T, "modified": T,
            "name": name, "object_marking_refs": [TLP2_MARKING_IDS[TLP.GREEN]]}  # fmt: skip


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = make_pair(tmp_path, a={"alpha": {"direction": "pull"}},
                     b={"alpha": {"direction": "push"}})  # fmt: skip
    try:
        yield pair
    finally:
        pair.stop()


def _replace_on_b(pair: Pair, name: str) -> None:
    """node-b's publisher changes the tool without a new ``modified`` (a STIX error)."""
    with pair.store(pair.b).write() as connection:
        objects.delete(connection, ObjectQuery(ALPHA, limit=10, ids=(TOOL,), versions=("all",)))
        assert not objects.add_objects(connection, ALPHA, [_tool(name)]).failures


def test_a_pull_dead_letter_is_fetched_again_once_its_cause_is_fixed(pair: Pair) -> None:
    store_a = pair.store(pair.a)
    with pair.store(pair.b).write() as connection:
        objects.add_objects(connection, ALPHA, [_tool("first")])
    pair.run_once(pair.a)
    _replace_on_b(pair, "second")
    (result,) = pair.run_once(pair.a)
    assert result.dead_lettered == 1  # a different object under a version node-a holds
    cursor = pair.states(pair.a)[("alpha<->alpha", "pull")].remote_cursor
    (letter,) = pair.dead_letters(pair.a)

    # The retry while node-a still holds the old version: refused again, recorded anew.
    again = retry_dead_letter(pair.config(pair.a), store_a, letter["pk"], "operator")
    assert not again.delivered and "refused again" in again.message
    (letter,) = pair.dead_letters(pair.a)

    with store_a.write() as connection:  # node-a's operator drops its stale copy
        objects.delete(connection, ObjectQuery(ALPHA, limit=10, ids=(TOOL,), versions=("all",)))
    outcome = retry_dead_letter(pair.config(pair.a), store_a, letter["pk"], "operator")
    assert outcome.delivered and outcome.message == "received from node-b"
    assert pair.dead_letters(pair.a) == []
    with store_a.read() as connection:
        assert objects.latest(connection, ALPHA, TOOL)["name"] == "second"
        records = audit.entries(connection, limit=None)
    assert pair.states(pair.a)[("alpha<->alpha", "pull")].remote_cursor == cursor
    retried = [r for r in records if r["action"] == "dead-letter-retried"]
    assert [r["actor"] for r in retried] == ["operator", "operator"]
    after_first_retry = records[records.index(retried[0]) + 1 :]
    assert ("received", TOOL) in [(r["action"], r["object_id"]) for r in after_first_retry]


def test_skipping_and_missing_dead_letters(pair: Pair) -> None:
    store_a = pair.store(pair.a)
    with store_a.write() as connection:
        syncstate.add_dead_letters(connection, "node-b", "alpha<->alpha", "pull",
                                   [{"id": TOOL, "version": T, "message": "refused"}])  # fmt: skip
    (letter,) = pair.dead_letters(pair.a)
    skip_dead_letter(store_a, letter["pk"], "operator")
    assert pair.dead_letters(pair.a) == []
    with pytest.raises(NotFound, match="no dead letter"):
        skip_dead_letter(store_a, letter["pk"], "operator")
    with pytest.raises(NotFound, match="no dead letter"):
        retry_dead_letter(pair.config(pair.a), store_a, letter["pk"], "operator")
