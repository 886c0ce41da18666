"""Concurrent writers and a poller on one collection, against a real server.

TAXII 2.1 (3.4.2) lets a client resume from ``X-TAXII-Date-Added-Last``; that
only works if an object can never become visible with a ``date_added`` below
what a poller has already passed.  Writers here race through the server's
workers while a poller pages with ``added_after`` and ``next``; every object
must be seen exactly once, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from node.timestamps import to_micros
from tests.nodes import RunningNode, new_node, serving
from tests.test_taxii_api import (
    DATE_FIRST,
    DATE_LAST,
    indicator,
    ok,
    post_objects,
    session,
)

WRITERS = 4
OBJECTS_PER_WRITER = 200
BATCH = 20
PAGE = 37


@pytest.fixture(scope="module")
def node(module_store_url, tmp_path_factory) -> Iterator[RunningNode]:
    directory = tmp_path_factory.mktemp("concurrency")
    yield from serving(new_node(directory, "busy-node", module_store_url, workers=2))


class Poller:
    """Pages through a collection the way a sync client does, until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url + "objects/"
        self.client = session()
        self.seen: Counter[str] = Counter()
        self.passes = 0
        self.passes_while_writing = 0
        self.pages: list[tuple[int, int, int]] = []  # (first, last, object count)

    def run(self, writers_done: threading.Event) -> None:
        cursor: str | None = None
        while True:
            # Decided before the pass: a pass that starts after the last commit
            # and finds nothing proves that nothing is left.
            finished = writers_done.is_set()
            found, cursor = self.one_pass(cursor)
            self.passes += 1
            self.passes_while_writing += not finished
            if finished and found == 0:
                return
            assert self.passes < 10_000

    def one_pass(self, cursor: str | None) -> tuple[int, str]:
        params = {"limit": str(PAGE)}
        if cursor is not None:
            params["added_after"] = cursor
        found = 0
        next_token = None
        while True:
            extra = {"next": next_token} if next_token else {}
            response = self.client.get(self.url, params={**params, **extra}, timeout=60)
            body = ok(response)
            objects = body.get("objects", [])
            self.seen.update(obj["id"] for obj in objects)
            found += len(objects)
            first, last = (
                to_micros(response.headers[DATE_FIRST]),
                to_micros(response.headers[DATE_LAST]),
            )
            self.pages.append((first, last, len(objects)))
            if not body["more"]:
                return found, response.headers[DATE_LAST]
            next_token = body["next"]


def test_writers_and_a_poller_see_every_object_exactly_once(node):
    url = node.collection_url("alpha")
    batches = [
        [indicator() for _ in range(BATCH)] for _ in range(WRITERS * OBJECTS_PER_WRITER // BATCH)
    ]
    expected = {obj["id"] for batch in batches for obj in batch}
    poller = Poller(url)
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def poll_guarded() -> None:
        try:
            poller.run(writers_done)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    poll_thread = threading.Thread(target=poll_guarded)
    poll_thread.start()
    try:
        clients = [session() for _ in range(WRITERS)]
        with ThreadPoolExecutor(WRITERS) as pool:
            statuses = list(
                pool.map(
                    lambda item: post_objects(clients[item[0] % WRITERS], url, item[1]),
                    enumerate(batches),
                )
            )
    finally:
        writers_done.set()
        poll_thread.join(timeout=120)
    assert not poll_thread.is_alive()
    if errors:
        raise errors[0]

    assert sum(s["success_count"] for s in statuses) == len(expected)
    assert all(s["failure_count"] == 0 for s in statuses)
    assert set(poller.seen) == expected
    duplicates = {object_id: n for object_id, n in poller.seen.items() if n != 1}
    assert duplicates == {}
    assert poller.passes_while_writing >= 1  # the poller really ran alongside the writers

    # Pages never go back in time: each starts after the previous one ended.
    previous_last = 0
    for first, last, count in poller.pages:
        if count:
            assert first > previous_last and last >= first
            previous_last = last
        else:
            assert first == last == previous_last

    # A fresh listing agrees with what the poller collected.
    fresh = Poller(url)
    fresh.one_pass(None)
    assert fresh.seen == Counter(dict.fromkeys(expected, 1))


def test_the_same_objects_posted_concurrently_are_stored_once(node):
    url = node.collection_url("beta")
    objects = [indicator() for _ in range(50)]
    clients = [session() for _ in range(WRITERS)]
    barrier = threading.Barrier(WRITERS)

    def post_all(client: requests.Session) -> dict:
        barrier.wait(timeout=30)
        return post_objects(client, url, objects)

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = list(pool.map(post_all, clients))

    messages = Counter(d["message"] for s in statuses for d in s.get("successes", []))
    assert messages == {"added": len(objects), "already present": (WRITERS - 1) * len(objects)}
    assert all(s["failure_count"] == 0 for s in statuses)
    admin = session()
    for obj in objects[:5]:
        versions = ok(admin.get(url + f"objects/{obj['id']}/versions/", timeout=30))
        assert versions["versions"] == [obj["modified"]]
    manifest = ok(admin.get(url + "manifest/", timeout=30))
    assert sorted(r["id"] for r in manifest["objects"]) == sorted(o["id"] for o in objects)


def test_conflicting_versions_posted_concurrently_keep_one(node):
    url = node.collection_url("gamma")
    original = indicator()
    rivals = [dict(original, name=f"rival {i}") for i in range(WRITERS)]
    clients = [session() for _ in range(WRITERS)]
    barrier = threading.Barrier(WRITERS)

    def post_one(index: int) -> dict:
        barrier.wait(timeout=30)
        return post_objects(clients[index], url, [rivals[index]])

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = list(pool.map(post_one, range(WRITERS)))

    assert sorted(s["success_count"] for s in statuses) == [0] * (WRITERS - 1) + [1]
    (winner,) = [rivals[i] for i, s in enumerate(statuses) if s["success_count"]]
    body = ok(
        session().get(
            url + f"objects/{original['id']}/", params={"match[version]": "all"}, timeout=30
        )
    )
    assert body["objects"] == [winner]
