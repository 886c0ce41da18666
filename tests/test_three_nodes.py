"""A third partner: three nodes in a triangle (A, B and C, each with its own store
and server), every pair peered both ways on one collection.

What A shares reaches B and C once each; nothing loops back or arrives twice;
what came from A is not passed on by B unless B's mapping to C says
``onward = "allow"``, and then C records B as the origin and B's audit names A.
On the PostgreSQL run node B's store is PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store import audit, objects
from node.store.objects import ObjectQuery
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.triangle import ALPHA, Triangle, make_triangle

GREEN = TLP2_MARKING_IDS[TLP.GREEN]
T = "2026-05-01T08:00:00.000Z"


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


def spec(egress: dict | None = None) -> dict:
    return {"alpha": {"egress": {"max_tlp": "green", **(egress or {})}, "ingress": {}}}


def specs(b_to_c: dict | None = None) -> dict:
    """A shares with B everything green, with C only what is not labelled "b-only"."""
    return {
        "node-a": {"node-b": spec(), "node-c": spec({"labels_deny": ["b-only"]})},
        "node-b": {"node-a": spec(), "node-c": spec(b_to_c)},
        "node-c": {"node-a": spec(), "node-b": spec()},
    }


@pytest.fixture
def make(tmp_path: Path, store_url: str | None) -> Iterator:
    started: list[Triangle] = []

    def build(b_to_c: dict | None = None) -> Triangle:
        triangle = make_triangle(tmp_path, {"node-b": store_url}, specs(b_to_c))
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
