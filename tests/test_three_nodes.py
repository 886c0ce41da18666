"""A third partner: three nodes in a triangle (A, B and C, each with its own store
and server), every pair peered both ways on one collection.

What A shares reaches B and C once each; nothing loops back or arrives twice;
what came from A is not passed on by B unless B's mapping to C says
``onward = "allow"``, and then C records B as the origin and B's audit names A.
When A recalls an object (raised to RED here), B honours the recall and
relays it to C only if B passed the object on to C; C honours the relayed
recall because it recorded B as the object's origin (onward recalls).

On the PostgreSQL run node B's store is PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.recall import EXTENSION_ID
from node.store import audit, objects, recalls
from node.store.objects import ObjectQuery
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.triangle import ALPHA, Triangle, make_triangle

GREEN = TLP2_MARKING_IDS[TLP.GREEN]
RED = TLP2_MARKING_IDS[TLP.RED]
T = "2026-05-01T08:00:00.000Z"
LATER = "2026-05-02T08:00:00.000Z"


def indicator(value: str, labels: tuple[str, ...] = ()) -> dict:
    obj = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
        "created": T, "modified": T, "name": f"host {value}",
        "pattern": f"[ipv4-addr:value = '{value}']", "pattern_type": "stix", "valid_from": T,
        "object_marking_refs": [GREEN],
    }  # fmt: skip
    if labels:
        obj["labels"] = list(labels)
    return obj


def spec(egress: dict | None = None, ingress: dict | None = None) -> dict:
    return {"alpha": {"egress": {"max_tlp": "green", **(egress or {})}, "ingress": ingress or {}}}


def specs(b_to_c: dict | None = None, b_from_a: dict | None = None) -> dict:
    """A shares with B everything green, with C only what is not labelled "b-only"."""
    return {
        "node-a": {"node-b": spec(), "node-c": spec({"labels_deny": ["b-only"]})},
        "node-b": {"node-a": spec(ingress=b_from_a), "node-c": spec(b_to_c)},
        "node-c": {"node-a": spec(), "node-b": spec()},
    }


@pytest.fixture
def make(tmp_path: Path, store_url: str | None) -> Iterator:
    started: list[Triangle] = []

    def build(b_to_c: dict | None = None, b_from_a: dict | None = None) -> Triangle:
        triangle = make_triangle(tmp_path, {"node-b": store_url}, specs(b_to_c, b_from_a))
        started.append(triangle)
        return triangle

    yield build
    for triangle in started:
        triangle.stop()


def _versions(triangle: Triangle, name: str, object_id: str) -> list[tuple[str, str | None]]:
    query = ObjectQuery(collection_id=ALPHA, limit=100, ids=(object_id,), versions=("all",))
    with triangle.store(name).read() as connection:
        rows, _ = objects.page(connection, query)
    return [(row.version_text, row.origin) for row in rows]


def _stored_count(triangle: Triangle, name: str) -> int:
    with triangle.store(name).read() as connection:
        return objects.count(connection, ALPHA)


def test_no_loops_no_duplicates_and_nothing_onward_by_default(make) -> None:
    triangle = make()
    everyone, b_only = indicator("198.51.100.20"), indicator("198.51.100.21", ("b-only",))
    triangle.post("node-a", [everyone, b_only])
    triangle.rounds(3)
    assert _versions(triangle, "node-b", everyone["id"]) == [(T, "node-a")]
    assert _versions(triangle, "node-c", everyone["id"]) == [(T, "node-a")]
    assert _versions(triangle, "node-a", everyone["id"]) == [(T, None)]
    assert _versions(triangle, "node-b", b_only["id"]) == [(T, "node-a")]
    assert _versions(triangle, "node-c", b_only["id"]) == []  # not through B
    counts = {name: _stored_count(triangle, name) for name in ("node-a", "node-b", "node-c")}
    triangle.rounds(2)  # nothing circulates
    assert {name: _stored_count(triangle, name) for name in counts} == counts
    with triangle.store("node-b").read() as connection:
        withheld = [r for r in audit.entries(connection, peer="node-c", limit=None)
                    if r["object_id"] == b_only["id"]]  # fmt: skip
    assert withheld and {r["rule"] for r in withheld} == {"onward.never"}
    assert not [r for r in withheld if r["action"] in ("sent", "served")]


def test_onward_allowed_passes_it_on_with_its_origin(make) -> None:
    triangle = make(b_to_c={"onward": "allow"})
    b_only = indicator("198.51.100.22", ("b-only",))
    triangle.post("node-a", [b_only])
    triangle.rounds(3)
    assert _versions(triangle, "node-c", b_only["id"]) == [(T, "node-b")]
    assert _versions(triangle, "node-a", b_only["id"]) == [(T, None)]  # no echo, no copy
    with triangle.store("node-b").read() as connection:
        records = audit.entries(connection, peer="node-c", limit=None)
    passed = [r for r in records
              if r["object_id"] == b_only["id"] and r["action"] in ("sent", "served")]  # fmt: skip
    assert passed and all("origin node-a" in (r["detail"] or "") for r in passed)
    counts = {name: _stored_count(triangle, name) for name in ("node-a", "node-b", "node-c")}
    triangle.rounds(2)
    assert {name: _stored_count(triangle, name) for name in counts} == counts


def _recall_records(triangle: Triangle, name: str, object_id: str) -> list[tuple[str, str]]:
    """(action, peer) of ``name``'s audit records about recalls of the object."""
    with triangle.store(name).read() as connection:
        records = audit.entries(connection, limit=None)
    return [(r["action"], r["peer"]) for r in records
            if r["object_id"] == object_id and r["action"].startswith("recall")]  # fmt: skip


def _raise_to_red(triangle: Triangle, obj: dict) -> None:
    triangle.post("node-a", [{**obj, "modified": LATER, "object_marking_refs": [RED]}])


@pytest.mark.parametrize("b_recalls", ["purge", "revoke"])
def test_a_recall_from_a_is_relayed_by_b_to_c_when_b_passed_it_on(make, b_recalls) -> None:
    triangle = make(b_to_c={"onward": "allow"}, b_from_a={"recalls": b_recalls})
    b_only = indicator("198.51.100.23", ("b-only",))
    triangle.post("node-a", [b_only])
    triangle.rounds(2)
    assert _versions(triangle, "node-c", b_only["id"]) == [(T, "node-b")]
    _raise_to_red(triangle, b_only)
    triangle.rounds(2)
    # C held it only through B; B's relayed recall purges it there (C's default).
    assert _versions(triangle, "node-c", b_only["id"]) == []
    assert triangle.get("node-c", path=f"objects/{b_only['id']}/").status_code == 404
    with triangle.store("node-c").read() as connection:
        assert recalls.recalled_ids(connection, ALPHA, [b_only["id"]]) == {b_only["id"]}
    # (pushed by B and pulled by C: the second copy finds nothing left to recall)
    on_c = _recall_records(triangle, "node-c", b_only["id"])
    assert ("recall-purged", "node-b") in on_c
    assert set(on_c) <= {("recall-purged", "node-b"), ("recall-ignored", "node-b")}
    b_records = _recall_records(triangle, "node-b", b_only["id"])
    assert ("recall-" + ("purged" if b_recalls == "purge" else "revoked"), "node-a") in b_records
    assert ("recall-queued", "node-c") in b_records
    with triangle.store("node-b").read() as connection:
        [relayed] = recalls.listed(connection, "node-c")
        sent = [r for r in audit.entries(connection, peer="node-c", limit=None)
                if r["object_id"] == b_only["id"] and r["rule"] == "recall"
                and r["action"] in ("sent", "served")]  # fmt: skip
    # One recall reached C: a new version of what C held, with the origin's modified.
    assert relayed.version_text == LATER and {r["version"] for r in sent} == {LATER}
    extension = json.loads(relayed.body)["extensions"][EXTENSION_ID]
    assert "recalled by its origin (node-a)" in extension["reason"]
    counts = {name: _stored_count(triangle, name) for name in ("node-a", "node-b", "node-c")}
    triangle.rounds(2)  # the recall does not circulate
    assert {name: _stored_count(triangle, name) for name in counts} == counts


def test_nothing_is_relayed_to_c_when_b_never_passed_it_on(make) -> None:
    triangle = make()  # onward = "never" from B to C
    b_only, everyone = indicator("198.51.100.24", ("b-only",)), indicator("198.51.100.25")
    triangle.post("node-a", [b_only, everyone])
    triangle.rounds(2)
    _raise_to_red(triangle, b_only)
    _raise_to_red(triangle, everyone)
    triangle.rounds(2)
    assert _versions(triangle, "node-b", b_only["id"]) == []
    with triangle.store("node-b").read() as connection:
        assert recalls.listed(connection, "node-c") == []
    assert ("recall-queued", "node-c") not in _recall_records(triangle, "node-b", b_only["id"])
    assert _recall_records(triangle, "node-c", b_only["id"]) == []
    # What C received from A directly, A recalls directly.
    assert _versions(triangle, "node-c", everyone["id"]) == []
    assert ("recall-purged", "node-a") in _recall_records(triangle, "node-c", everyone["id"])
