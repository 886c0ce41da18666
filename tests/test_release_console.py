"""The console's Releases and Quarantine pages, in process (Flask test client).

The signed-in account is the releaser, so four eyes applies to it; every
form needs the session's CSRF token; only releasers see the queue, and only
accounts that may write to the collection review its quarantine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.app import create_app
from node.config import load_config
from node.operations import accounts as account_operations
from node.operations import quarantine as quarantine_operations
from node.store import Store, accounts, catalog, releases
from node.store.catalog import Collection
from node.store.releases import Queued, ReleaseState
from node.validation import version_key
from tests.exchange_fixtures import indicator
from tests.nodes import COLLECTIONS, NodeFiles, free_port

PASSWORD = "console-password-1"
ALPHA = COLLECTIONS["alpha"]


@pytest.fixture
def app(tmp_path: Path, store_url: str | None) -> Iterator:
    url = store_url or f"sqlite:///{tmp_path / 'node-a.db'}"
    files = NodeFiles(directory=tmp_path / "node-a", name="node-a", store_url=url,
                      port=free_port())  # fmt: skip
    store = Store(url)
    store.migrate()
    with store.write() as connection:
        for alias, collection_id in COLLECTIONS.items():
            catalog.upsert(connection, Collection(collection_id, f"Collection {alias}", alias))
        for name in ("alice", "carol", "reader"):
            accounts.add_user(connection, name, PASSWORD)
        accounts.grant(connection, "alice", ALPHA, read=True, write=True)
        accounts.grant(connection, "carol", ALPHA, read=True, write=True)
        accounts.grant(connection, "reader", ALPHA, read=True, write=False)
        account_operations.set_role(connection, "carol", "releaser", granted=True, actor="t")
    store.close()
    application = create_app(load_config(files.config_path))
    yield application
    application.extensions["taxii_node"].store.close()


def _store(app) -> Store:
    store: Store = app.extensions["taxii_node"].store
    return store


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _client(app, user: str):
    client = app.test_client()
    form = client.get("/ui/sign-in").get_data(as_text=True)
    response = client.post("/ui/sign-in", data={"user": user, "password": PASSWORD,
                                                "csrf_token": _csrf(form)})  # fmt: skip
    assert response.status_code == 302
    return client


def _queue(app, obj: dict, publisher: str) -> int:
    from node.store import objects, publishers

    with _store(app).write() as connection:
        outcome = objects.add_objects(connection, ALPHA, [obj])
        publishers.record(connection, ALPHA, outcome.stored, publisher)
        releases.enqueue(connection, "node-b", ALPHA, [
            Queued(obj["id"], obj["type"], version_key(obj), obj["modified"])])  # fmt: skip
        [entry] = releases.entries(connection, object_ids=[obj["id"]])
    return entry.pk


def _state(app, pk: int) -> ReleaseState:
    with _store(app).read() as connection:
        [entry] = releases.entries(connection, pks=[pk], state=None)
    return entry.state


def test_a_releaser_approves_and_rejects_from_the_queue_page(app) -> None:
    first, second = indicator(name="first <b>bold</b>"), indicator(name="second")
    pk1, pk2 = _queue(app, first, "alice"), _queue(app, second, "alice")
    carol = _client(app, "carol")
    page = carol.get("/ui/releases").get_data(as_text=True)
    assert first["id"] in page and "first &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'href="/ui/releases"' in page  # the navigation offers the queue to releasers
    token = _csrf(page)
    assert carol.post("/ui/releases/decide", data={"entry": str(pk1),
                      "decision": "approve"}).status_code == 403  # no CSRF token  # fmt: skip
    assert _state(app, pk1) is ReleaseState.PENDING
    carol.post("/ui/releases/decide", data={"entry": str(pk1), "decision": "approve",
                                            "csrf_token": token})  # fmt: skip
    assert _state(app, pk1) is ReleaseState.APPROVED
    reject = {"entry": str(pk2), "decision": "reject", "csrf_token": token}
    refused = carol.post("/ui/releases/decide", follow_redirects=True, data=reject)
    assert "reason" in refused.get_data(as_text=True) and _state(app, pk2) is ReleaseState.PENDING
    carol.post("/ui/releases/decide", data={**reject, "reason": "unverified"})
    assert _state(app, pk2) is ReleaseState.REJECTED


def test_four_eyes_and_roles_on_the_console(app) -> None:
    own = indicator(name="carol's own")
    pk = _queue(app, own, "carol")
    carol = _client(app, "carol")
    page = carol.get("/ui/releases").get_data(as_text=True)
    response = carol.post("/ui/releases/decide", follow_redirects=True,
                          data={"entry": str(pk), "decision": "approve",
                                "csrf_token": _csrf(page)})  # fmt: skip
    assert "four eyes" in response.get_data(as_text=True)
    assert _state(app, pk) is ReleaseState.PENDING
    alice = _client(app, "alice")
    assert alice.get("/ui/releases").status_code == 403  # not a releaser
    assert 'href="/ui/releases"' not in alice.get("/ui/objects").get_data(as_text=True)


def test_the_quarantine_page_accepts_for_writers_only(app) -> None:
    held = indicator(name="held")
    with _store(app).write() as connection:
        quarantine_operations.hold(connection, "node-b", ALPHA, [held], "pull")
    reader = _client(app, "reader")
    assert held["id"] not in reader.get("/ui/quarantine").get_data(as_text=True)
    alice = _client(app, "alice")
    page = alice.get("/ui/quarantine").get_data(as_text=True)
    assert held["id"] in page
    with _store(app).read() as connection:
        [entry] = quarantine_operations.list_held(connection, quarantine_operations.Selection())
    forged = reader.post("/ui/quarantine/decide", follow_redirects=True, data={
        "entry": str(entry.pk), "decision": "accept",
        "csrf_token": _csrf(reader.get("/ui/quarantine").get_data(as_text=True))})  # fmt: skip
    assert "may not write" in forged.get_data(as_text=True)
    alice.post("/ui/quarantine/decide", data={"entry": str(entry.pk), "decision": "accept",
                                              "csrf_token": _csrf(page)})  # fmt: skip
    with _store(app).read() as connection:
        assert quarantine_operations.list_held(connection, quarantine_operations.Selection()) == []
    objects_page = alice.get("/ui/objects").get_data(as_text=True)
    assert "held" in objects_page
