"""The console's Releases and Quarantine pages, in process (Flask test client).

The signed-in account is the releaser, so four eyes applies to it; every
form needs the session's CSRF token; only releasers see the queue, and only
accounts that may write to the collection review its quarantine.  The object
page's sharing verdicts name the gates: "awaiting release", "quarantined".
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.app import create_app
from node.config import load_config
from node.errors import NotFound
from node.operations import accounts as account_operations
from node.operations import quarantine as quarantine_operations
from node.operations import releases as release_operations
from node.operations.releases import Selection
from node.store import Store, accounts, catalog, objects, releases
from node.store.catalog import Collection
from node.store.releases import Queued, ReleaseState
from node.validation import version_key
from tests.exchange_fixtures import indicator
from tests.nodes import COLLECTIONS, NodeFiles, free_port
from tests.pair import peer_toml

PASSWORD = "console-password-1"
ALPHA = COLLECTIONS["alpha"]


def _peers(directory: Path) -> str:
    """node-b's mapping of alpha needs release approval; node-c's quarantines what it sends."""
    secret = directory / "secret"
    secret.write_text("peer-password-1\n")
    secret.chmod(0o600)
    return "\n".join(
        peer_toml(
            name=name,
            api_root="http://127.0.0.1:9/api/",
            user="node-a",
            password_file=secret,
            account=name,
            mappings={"alpha": spec},
        )
        for name, spec in (
            ("node-b", {"egress": {"max_tlp": "amber", "release": "approval"}}),
            ("node-c", {"egress": {"max_tlp": "amber"}, "ingress": {"quarantine": True}}),
        )
    )


@pytest.fixture
def app(tmp_path: Path, store_url: str | None) -> Iterator:
    yield from _app(tmp_path, store_url, "")


@pytest.fixture
def peered_app(tmp_path: Path, store_url: str | None) -> Iterator:
    tmp_path.mkdir(parents=True, exist_ok=True)
    yield from _app(tmp_path, store_url, _peers(tmp_path))


def _app(tmp_path: Path, store_url: str | None, extra: str) -> Iterator:
    url = store_url or f"sqlite:///{tmp_path / 'node-a.db'}"
    files = NodeFiles(directory=tmp_path / "node-a", name="node-a", store_url=url,
                      port=free_port(), extra_toml=extra)  # fmt: skip
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
    with _store(app).write() as connection:
        objects.add_objects(connection, ALPHA, [obj], publisher=publisher)
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


def test_a_releaser_sees_and_decides_only_collections_it_may_read(app) -> None:
    """A releaser who cannot read a collection cannot inspect what waits there: its
    queue does not list it and its decisions do not reach it, by the console or by
    the operations the CLI calls."""
    beta = COLLECTIONS["beta"]
    with _store(app).write() as connection:
        accounts.add_user(connection, "ruth", PASSWORD)
        accounts.grant(connection, "ruth", beta, read=True, write=False)
        account_operations.set_role(connection, "ruth", "releaser", granted=True, actor="t")
    hidden = indicator(name="alpha-only name")
    pk = _queue(app, hidden, "alice")
    ruth = _client(app, "ruth")
    page = ruth.get("/ui/releases").get_data(as_text=True)
    assert hidden["id"] not in page and "alpha-only name" not in page
    for form in ({"entry": str(pk)}, {"all": "1"}):
        ruth.post("/ui/releases/decide", data={**form, "decision": "approve",
                                               "csrf_token": _csrf(page)})  # fmt: skip
        assert _state(app, pk) is ReleaseState.PENDING
    with _store(app).write() as connection:
        assert release_operations.list_queue(connection, Selection(), "ruth") == []
        with pytest.raises(NotFound):
            release_operations.approve(connection, Selection(pks=(pk,)), "ruth", actor="t")
        [listed] = release_operations.list_queue(connection, Selection(), "carol")
        assert listed.entry.pk == pk  # carol reads alpha


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


# --------------------------------------------------------------------------- verdicts


def _verdicts(page: str) -> dict[tuple[str, str], str]:
    """The object page's sharing table: (peer, version) -> what its verdict column says
    (version "" when the table has no version column)."""
    table = page[page.index("<caption>The egress policy now</caption>") :]
    table = table[: table.index("</table>")]
    headers = re.findall(r'<th scope="col">([^<]+)</th>', table)
    found = {}
    for row in re.findall(r"<tr>(<td>.*?)</tr>", table, re.S):
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)
        ]
        column = dict(zip(headers, cells, strict=True))
        found[(column["peer"], column.get("version", ""))] = column["verdict"]
    return found


def _publish(app, obj: dict, origin: str | None = None) -> None:
    with _store(app).write() as connection:
        objects.add_objects(connection, ALPHA, [obj], origin, None if origin else "alice")


def _hold(app, obj: dict) -> None:
    with _store(app).write() as connection:
        quarantine_operations.hold(connection, "node-c", ALPHA, [obj], "pull")


def test_the_object_page_says_awaiting_release(peered_app) -> None:
    app = peered_app
    waiting = indicator(name="waiting")
    _publish(app, waiting)
    page = _client(app, "reader").get(f"/ui/objects/{ALPHA}/{waiting['id']}")
    verdicts = {(peer, said) for (peer, _), said in _verdicts(page.get_data(as_text=True)).items()}
    # node-b's mapping needs a releaser first; node-c's releases automatically.
    assert verdicts == {("node-b", "awaiting release"), ("node-c", "shared")}
    with _store(app).write() as connection:  # released: the same code says shared
        queued = Queued(waiting["id"], "indicator", version_key(waiting), waiting["modified"])
        releases.enqueue(connection, "node-b", ALPHA, [queued])
        entries = releases.entries(connection, object_ids=[waiting["id"]])
        releases.decide(connection, entries, ReleaseState.APPROVED, actor="carol", reason=None)
    page = _client(app, "reader").get(f"/ui/objects/{ALPHA}/{waiting['id']}")
    assert _verdicts(page.get_data(as_text=True))[("node-b", waiting["modified"])] == "shared"


def test_the_object_page_says_quarantined_to_reviewers(peered_app) -> None:
    app = peered_app
    first = indicator(name="from node-c")
    _publish(app, first, origin="node-c")
    newer = {**first, "modified": "2026-06-01T00:00:00.000Z", "name": "newer, held"}
    _hold(app, newer)
    url = f"/ui/objects/{ALPHA}/{first['id']}"
    verdicts = _verdicts(_client(app, "alice").get(url).get_data(as_text=True))
    assert verdicts[("node-b", newer["modified"])] == "quarantined"
    assert verdicts[("node-c", newer["modified"])] == "quarantined"
    assert verdicts[("node-c", first["modified"])] == "withheld"  # never sent back
    # A reader who does not review the collection sees what is stored, nothing held.
    reader = _verdicts(_client(app, "reader").get(url).get_data(as_text=True))
    assert newer["modified"] not in {version for _, version in reader}
    only_held = indicator(name="only held")
    _hold(app, only_held)
    url = f"/ui/objects/{ALPHA}/{only_held['id']}"
    assert _client(app, "reader").get(url).status_code == 404
    page = _client(app, "alice").get(url).get_data(as_text=True)
    assert set(_verdicts(page).values()) == {"quarantined"} and "only held" in page


# --------------------------------------------------------------------------- malformed forms

TOO_LARGE = "99999999999999999999999999"  # beyond any 64-bit entry number


def _decide(client, path: str, **form: str):
    page = client.get(path.rpartition("/")[0]).get_data(as_text=True)
    return client.post(path, data={**form, "csrf_token": _csrf(page)})


def _flashed_error(response) -> str:
    """The console page's error line (a page of the layout, with its navigation)."""
    page = response.get_data(as_text=True)
    assert 'href="/ui/objects"' in page, page  # the console layout, not a bare error
    [message] = re.findall(r'<p class="flash flash-error" role="status">([^<]*)</p>', page)
    return html.unescape(message)


def test_malformed_release_forms_get_the_queue_page_with_a_400(app) -> None:
    waiting = indicator(name="waiting")
    pk = _queue(app, waiting, "alice")
    carol = _client(app, "carol")
    purple = _decide(carol, "/ui/releases/decide", decision="approve", tlp="purple")
    assert purple.status_code == 400
    assert "'purple' is not a TLP level" in _flashed_error(purple)
    huge = _decide(carol, "/ui/releases/decide", decision="approve", entry=TOO_LARGE)
    assert huge.status_code == 400
    assert f"no entry {TOO_LARGE}" in _flashed_error(huge)
    assert _state(app, pk) is ReleaseState.PENDING


def test_a_malformed_quarantine_form_gets_the_quarantine_page_with_a_400(app) -> None:
    held = indicator(name="held")
    with _store(app).write() as connection:
        quarantine_operations.hold(connection, "node-b", ALPHA, [held], "pull")
    alice = _client(app, "alice")
    huge = _decide(alice, "/ui/quarantine/decide", decision="accept", entry=TOO_LARGE)
    assert huge.status_code == 400
    assert f"no entry {TOO_LARGE}" in _flashed_error(huge)
    with _store(app).read() as connection:
        [still] = quarantine_operations.list_held(connection, quarantine_operations.Selection())
    assert still.object_id == held["id"]


def test_console_refusals_name_the_form_fields_not_the_cli_flags(app) -> None:
    pk = _queue(app, indicator(name="waiting"), "alice")
    carol = _client(app, "carol")
    nothing = _decide(carol, "/ui/releases/decide", decision="approve")
    message = _flashed_error(nothing)
    assert "tick entries" in message and "--" not in message
    no_reason = _decide(carol, "/ui/releases/decide", decision="reject", entry=str(pk))
    message = _flashed_error(no_reason)
    assert "a rejection needs a reason (fill in Reason)" in message and "--" not in message
    assert _state(app, pk) is ReleaseState.PENDING
