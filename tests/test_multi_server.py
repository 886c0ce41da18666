"""Two ``serve`` processes of one node on one database.

A deployment that outgrows one machine runs several servers on one
PostgreSQL database.  Publishers post through both servers while pollers page
through one, the other, or both in turn (a ``next`` token issued by one server
continued at the other): every poller must see every object exactly once
(TAXII 2.1 section 3.4.2), which holds only if ``date_added`` grows in commit
order across processes, not only across the threads of one.  SQLite (one file
in WAL mode, two servers) is checked the same way, and so is the audit chain
(one line, verifiable, whichever server appended each record).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle

import pytest
import requests

from node.store import Store, audit
from node.store.audit import Action
from tests.nodes import RunningNode, free_port, new_node
from tests.test_taxii_api import DATE_LAST, indicator, ok, post_objects, session

PUBLISHERS_PER_SERVER = 2
ENVELOPES_PER_PUBLISHER = 15
ENVELOPE = 20
PAGE = 45


@pytest.fixture(scope="module")
def servers(module_store_url, tmp_path_factory) -> Iterator[tuple[RunningNode, RunningNode]]:
    directory = tmp_path_factory.mktemp("multi-server")
    first = new_node(directory, "shared-node", module_store_url, workers=2)
    second = RunningNode(
        directory=directory / "second", name="shared-node", store_url=first.store_url,
        port=free_port(), workers=2,
    )  # fmt: skip
    first.start()
    try:
        second.start()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@dataclass
class Poller:
    """Pages from ``added_after`` to the end, each request to the next of ``urls``."""

    urls: list[str]
    seen: Counter[str] = field(default_factory=Counter)
    client: requests.Session = field(default_factory=session)

    def run(self, publishers_done: threading.Event) -> None:
        targets = cycle(self.urls)
        cursor: str | None = None
        for _ in range(10_000):
            finished = publishers_done.is_set()
            found, cursor = self.one_pass(targets, cursor)
            if finished and found == 0:
                return
        raise AssertionError("the poller did not finish")

    def one_pass(self, targets: Iterator[str], cursor: str | None) -> tuple[int, str | None]:
        params = {"limit": str(PAGE)} | ({"added_after": cursor} if cursor else {})
        token, found = None, 0
        for _ in range(10_000):
            response = self.client.get(
                next(targets) + "objects/",
                params=params | ({"next": token} if token else {}),
                timeout=60,
            )
            body = ok(response)
            ids = [obj["id"] for obj in body.get("objects", [])]
            self.seen.update(ids)
            found += len(ids)
            if not body["more"]:
                return found, response.headers[DATE_LAST]
            token = body["next"]
        raise AssertionError("paging did not end")


def publish(url: str) -> set[str]:
    client = session()
    posted: set[str] = set()
    for _ in range(ENVELOPES_PER_PUBLISHER):
        objects = [indicator() for _ in range(ENVELOPE)]
        assert post_objects(client, url, objects)["success_count"] == ENVELOPE
        posted.update(obj["id"] for obj in objects)
    return posted


def test_every_poller_sees_every_object_once_through_either_server(servers):
    urls = [server.collection_url("alpha") for server in servers]
    pollers = [Poller([urls[0]]), Poller([urls[1]]), Poller(urls)]
    publishers_done = threading.Event()
    errors: list[BaseException] = []

    def guarded(poller: Poller) -> None:
        try:
            poller.run(publishers_done)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(poller,)) for poller in pollers]
    for thread in threads:
        thread.start()
    try:
        with ThreadPoolExecutor(2 * PUBLISHERS_PER_SERVER) as pool:
            posted = set().union(*pool.map(publish, urls * PUBLISHERS_PER_SERVER))
    finally:
        publishers_done.set()
        for thread in threads:
            thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    assert len(posted) == 2 * PUBLISHERS_PER_SERVER * ENVELOPES_PER_PUBLISHER * ENVELOPE
    for poller in pollers:
        assert poller.seen == Counter(dict.fromkeys(posted, 1))


def test_a_next_token_from_one_server_continues_at_the_other(servers):
    first, second = (server.collection_url("beta") for server in servers)
    posted = publish(first)
    client = session()
    body = ok(client.get(first + "objects/", params={"limit": "7"}, timeout=30))
    assert body["more"]
    rest = ok(
        client.get(second + "objects/", params={"limit": "7", "next": body["next"]}, timeout=30)
    )
    served = [obj["id"] for obj in body["objects"] + rest["objects"]]
    assert len(served) == len(set(served)) == 14
    assert set(served) <= posted


def test_the_audit_chain_stays_one_line_under_posts_through_both_servers(servers):
    """Every POST appends its record under the chain head's lock: with publishers on
    both servers at once, into two collections (whose writer locks do not order them),
    the chain stays linear and verifies, one record per POST."""
    store = Store(servers[0].store_url)
    try:
        before = _published_records(store)
        urls = [server.collection_url(alias) for server in servers for alias in ("beta", "gamma")]
        with ThreadPoolExecutor(len(urls)) as pool:
            list(pool.map(publish, urls))
        with store.read() as connection:
            verification = audit.verify(connection)
        assert verification.ok, verification.reason
        posts = len(urls) * ENVELOPES_PER_PUBLISHER
        assert _published_records(store) - before == posts
    finally:
        store.close()


def _published_records(store: Store) -> int:
    with store.read() as connection:
        rows = audit.entries(connection, limit=None)
    return sum(row["action"] == Action.PUBLISHED for row in rows)
