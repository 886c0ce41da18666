"""Polling by a client that keeps X-TAXII-Date-Added-Last only to the millisecond.

OpenCTI's TAXII 2.1 feed ingestion stores the header truncated to
milliseconds and sends it back as ``added_after`` (TAXII 2.1 section 3.4.2).
The node hands out ``date_added`` in microseconds; unless the last object of
each commit sits on a whole millisecond, every idle poll of such a client
re-reads the objects of that last millisecond, forever.  This replays that
client's request sequence over HTTP (poll, follow ``next``, keep the last
header to the millisecond, poll again), next to a full-precision poller that
must still see every object exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from node.timestamps import to_micros
from tests.nodes import RunningNode, new_node, serving
from tests.test_taxii_api import DATE_LAST, indicator, ok, post_objects, session

PAGE = 100


@pytest.fixture(scope="module")
def node(module_store_url, tmp_path_factory) -> Iterator[RunningNode]:
    yield from serving(new_node(tmp_path_factory.mktemp("ms-polling"), "ms-node", module_store_url))


def to_millisecond(header: str) -> str:
    """``2026-12-01T10:00:00.123456Z`` as OpenCTI keeps it: ``2026-12-01T10:00:00.123Z``."""
    seconds, _, fraction = header.rstrip("Z").partition(".")
    return f"{seconds}.{(fraction + '000')[:3]}Z"


def publish(url: str, count: int, envelope: int = 1000) -> set[str]:
    client = session()
    posted = set()
    for start in range(0, count, envelope):
        objects = [indicator() for _ in range(min(envelope, count - start))]
        assert post_objects(client, url, objects, timeout=120)["failure_count"] == 0
        posted.update(obj["id"] for obj in objects)
    return posted


def poll(client: requests.Session, url: str, added_after: str | None) -> tuple[list[str], str]:
    """One poll: follow ``next`` to the end; (ids served, the last page's -Last header)."""
    params = {"limit": str(PAGE)}
    if added_after is not None:
        params["added_after"] = added_after
    ids: list[str] = []
    token = None
    for _ in range(1_000):
        response = client.get(
            url + "objects/", params={**params, **({"next": token} if token else {})}, timeout=60
        )
        body = ok(response)
        ids += [obj["id"] for obj in body.get("objects", [])]
        if not body["more"]:
            return ids, response.headers[DATE_LAST]
        token = body["next"]
    raise AssertionError("paging did not end")


def test_a_millisecond_client_converges_to_empty_polls(node):
    url = node.collection_url("alpha")
    client = session()
    cursor: str | None = None
    seen: Counter[str] = Counter()
    posted: set[str] = set()
    for count in (1_000, 1, 37, 250):
        posted |= publish(url, count)
        ids, last = poll(client, url, cursor)
        seen.update(ids)
        cursor = to_millisecond(last)
        # Caught up: the next polls with the truncated header find nothing.
        for _ in range(3):
            idle, idle_last = poll(client, url, cursor)
            assert idle == []
            assert to_micros(idle_last) == to_micros(cursor)
    assert set(seen) == posted
    assert {object_id: n for object_id, n in seen.items() if n != 1} == {}


def test_a_full_precision_client_still_sees_each_object_once(node):
    url = node.collection_url("beta")
    client = session()
    cursor: str | None = None
    seen: Counter[str] = Counter()
    posted: set[str] = set()
    for count in (300, 1, 1_200):
        posted |= publish(url, count, envelope=150)
        ids, cursor = poll(client, url, cursor)
        seen.update(ids)
        assert poll(client, url, cursor)[0] == []
    assert seen == Counter(dict.fromkeys(posted, 1))
