"""The web console in-process (Flask test client): sign-in, pages, security, hostile input.

One node per module, built in this process (store migrated, collections and
accounts added through the store's own functions), with a configured peer
whose server is not running, so that retries fail in a known way.  The browser
tests (tests/test_console_browser.py) drive a real server.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import time
import uuid
from pathlib import Path

import pytest
from flask.sessions import SecureCookieSessionInterface

from node.app import create_app
from node.config import load_config
from node.console.session import COOKIE_NAME
from node.store import Store, accounts, audit, catalog, objects, search, syncstate
from node.store.catalog import Collection
from node.store.objects import ObjectQuery
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.nodes import COLLECTIONS, NodeFiles, free_port

PASSWORD = "console-password-1"
ALPHA, BETA, GAMMA = COLLECTIONS["alpha"], COLLECTIONS["beta"], COLLECTIONS["gamma"]
GREEN, AMBER = TLP2_MARKING_IDS[TLP.GREEN], TLP2_MARKING_IDS[TLP.AMBER]
AUTHOR = "identity--11111111-1111-4111-8111-111111111111"
INDICATOR = "indicator--22222222-2222-4222-8222-222222222222"
MALWARE = "malware--33333333-3333-4333-8333-333333333333"
RELATIONSHIP = "relationship--44444444-4444-4444-8444-444444444444"
REPORT = "report--55555555-5555-4555-8555-555555555555"
SIGHTING = "sighting--66666666-6666-4666-8666-666666666666"
HOSTILE = "attack-pattern--77777777-7777-4777-8777-777777777777"
SECRET = "indicator--88888888-8888-4888-8888-888888888888"
T = "2026-03-01T10:00:00.000Z"


def _sdo(kind: str, object_id: str, **extra) -> dict:
    return {"type": kind, "spec_version": "2.1", "id": object_id, "created": T, "modified": T,
            **extra}  # fmt: skip


def corpus() -> list[dict]:
    return [
        _sdo("identity", AUTHOR, name="Unit A", identity_class="organization",
             object_marking_refs=[GREEN]),
        _sdo("indicator", INDICATOR, name="C2 server", pattern="[ipv4-addr:value = '203.0.113.7']",
             pattern_type="stix", valid_from=T, created_by_ref=AUTHOR, labels=["c2"],
             object_marking_refs=[GREEN]),
        _sdo("malware", MALWARE, name="Amber Implant", is_family=True,
             object_marking_refs=[AMBER]),
        _sdo("relationship", RELATIONSHIP, relationship_type="indicates", source_ref=INDICATOR,
             target_ref=MALWARE, object_marking_refs=[GREEN]),
        _sdo("report", REPORT, name="Weekly report", published=T, object_refs=[INDICATOR],
             object_marking_refs=[GREEN]),
        _sdo("sighting", SIGHTING, sighting_of_ref=INDICATOR, count=3,
             object_marking_refs=[GREEN]),
        _sdo("attack-pattern", HOSTILE, name="<script>alert('name')</script>",
             description='<img src=x onerror="alert(1)"> and </pre><script>x()</script>',
             labels=["<b>label</b>"], object_marking_refs=[GREEN],
             external_references=[
                 {"source_name": "evil", "url": "javascript:alert(document.cookie)"},
                 {"source_name": "also evil", "url": " JaVaScRiPt:alert(2)"},
                 {"source_name": "fine", "url": "https://example.org/report?a=1&b=<2>"},
             ]),
    ]  # fmt: skip


def _peer_toml(directory: Path) -> str:
    secret = directory / "node-b.secret"
    secret.write_text("peer-password-1\n")
    return (
        '[[peers]]\nname = "node-b"\n'
        f'api_root = "http://127.0.0.1:{free_port()}/api/"\nuser = "node-a"\n'
        f'password_file = "{secret}"\ntimeout = 2\naccount = "node-b"\n\n'
        '[[peers.mappings]]\nlocal = "alpha"\nremote = "alpha"\ndirection = "both"\n'
        '[peers.mappings.egress]\nmax_tlp = "green"\n'
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory, module_store_url) -> NodeFiles:
    directory = tmp_path_factory.mktemp("console")
    url = module_store_url or f"sqlite:///{directory / 'node-a.db'}"
    files = NodeFiles(directory=directory / "node-a", name="node-a", store_url=url,
                      port=free_port(),
                      extra_toml=_peer_toml(directory))  # fmt: skip
    store = Store(files.store_url)
    store.migrate()
    with store.write() as connection:
        for alias, collection_id in COLLECTIONS.items():
            catalog.upsert(connection, Collection(collection_id, f"Collection {alias}", alias))
        accounts.add_user(connection, "admin", PASSWORD, is_admin=True)
        accounts.add_user(connection, "analyst", PASSWORD)
        accounts.grant(connection, "analyst", ALPHA, read=True, write=True)
        accounts.add_user(connection, "reader", PASSWORD)
        accounts.grant(connection, "reader", GAMMA, read=True, write=False)
        accounts.add_user(connection, "node-b", PASSWORD, peer="node-b")
        accounts.grant(connection, "node-b", ALPHA, read=True, write=True)
        accounts.add_user(connection, "throttled", PASSWORD)
        accounts.add_user(connection, "mover", PASSWORD)
        accounts.add_user(connection, "bound", PASSWORD)
        accounts.bind_certificate(connection, "bound", fingerprint="ab" * 32, subject=None)
        objects.add_objects(connection, ALPHA, corpus())
        objects.add_objects(connection, BETA, [_sdo("indicator", SECRET, name="Beta only",
                            pattern="[domain-name:value = 'beta.example']", pattern_type="stix",
                            valid_from=T)])  # fmt: skip
    store.close()
    return files


@pytest.fixture(scope="module")
def app(node: NodeFiles):
    application = create_app(load_config(node.config_path))
    yield application
    application.extensions["taxii_node"].store.close()


@pytest.fixture
def store(app) -> Store:
    return app.extensions["taxii_node"].store


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client, user: str = "admin", password: str = PASSWORD):
    form = client.get("/ui/sign-in").get_data(as_text=True)
    return client.post("/ui/sign-in", data={"user": user, "password": password,
                                            "csrf_token": _csrf(form)})  # fmt: skip


@pytest.fixture
def admin(app):
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


@pytest.fixture
def analyst(app):
    client = app.test_client()
    assert sign_in(client, "analyst").status_code == 302
    return client


def _text(response) -> str:
    return response.get_data(as_text=True)


# -- sign-in, sessions, CSRF --------------------------------------------------------


def test_root_redirects_to_the_console_and_pages_need_a_session(app) -> None:
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/ui/")
    page = client.get("/ui/collections")
    assert page.status_code == 302
    assert "/ui/sign-in?next=/ui/collections" in page.headers["Location"]


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(app) -> None:
    client = app.test_client()
    response = sign_in(client, "analyst")
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    assert client.get("/ui/collections").status_code == 200
    page = _text(client.get("/ui/collections"))
    # A copy of the cookie taken while signed in (a shared computer, a stolen cookie).
    copy = app.test_client()
    copy.set_cookie(COOKIE_NAME, client.get_cookie(COOKIE_NAME).value)
    assert copy.get("/ui/collections").status_code == 200
    signed_out = client.post("/ui/sign-out", data={"csrf_token": _csrf(page)})
    assert signed_out.status_code == 302
    assert client.get("/ui/collections").status_code == 302
    assert copy.get("/ui/collections").status_code == 302  # ended on the server too


def test_the_cookie_is_secure_over_tls(node: NodeFiles) -> None:
    config = load_config(node.config_path)
    server = dataclasses.replace(config.server, tls_cert=node.directory / "unused.pem",
                                 insecure_http=False)  # fmt: skip
    tls_app = create_app(dataclasses.replace(config, server=server))
    client = tls_app.test_client()
    response = sign_in(client, "analyst")
    assert "Secure" in response.headers["Set-Cookie"]
    tls_app.extensions["taxii_node"].store.close()


def test_a_wrong_password_is_refused_and_audited(app, store) -> None:
    client = app.test_client()
    response = sign_in(client, "analyst", "wrong")
    assert response.status_code == 401
    assert "Wrong user name or password" in _text(response)
    with store.read() as connection:
        last = audit.entries(connection, limit=None)[-1]
    assert (last["action"], last["actor"], last["rule"]) == ("login-failed", "analyst", "console")


def test_failed_sign_ins_are_throttled_like_api_logins(app) -> None:
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, "throttled", "wrong").status_code == 401
    blocked = sign_in(client, "throttled", PASSWORD)  # right password, too late
    assert blocked.status_code == 401
    assert "Too many failed sign-ins" in _text(blocked)
    # The API counts the console's failures too: the same account is throttled there.
    basic = base64.b64encode(f"throttled:{PASSWORD}".encode()).decode()
    api = client.get("/taxii2/", headers={"Authorization": f"Basic {basic}"})
    assert api.status_code == 429


def test_partner_sync_accounts_and_tokens_cannot_sign_in(app, store) -> None:
    client = app.test_client()
    refused = sign_in(client, "node-b")
    assert refused.status_code == 401
    assert "partner" in _text(refused)
    assert client.get("/ui/collections").status_code == 302
    with store.write() as connection:
        _, token = accounts.create_token(connection, "analyst", expires=None)
    assert sign_in(client, "analyst", token).status_code == 401


def test_an_account_bound_to_a_certificate_needs_it_to_sign_in(app) -> None:
    client = app.test_client()
    refused = sign_in(client, "bound")  # the right password, no client certificate
    assert refused.status_code == 401
    assert "Wrong user name or password" in _text(refused)
    assert client.get("/ui/collections").status_code == 302


def test_forms_without_the_csrf_token_are_refused(admin, store) -> None:
    assert admin.post("/ui/sign-out").status_code == 403
    assert admin.post("/ui/sign-out", data={"csrf_token": "forged"}).status_code == 403
    with store.write() as connection:
        syncstate.add_dead_letters(
            connection,
            "node-b",
            "alpha<->alpha",
            "push",
            [{"id": INDICATOR, "version": T, "message": "csrf test"}],
        )
        pk = syncstate.list_dead_letters(connection)[-1]["pk"]
    assert admin.post(f"/ui/sharing/dead-letters/{pk}/skip").status_code == 403
    with store.read() as connection:
        assert syncstate.dead_letter(connection, pk) is not None  # nothing happened
    assert admin.get("/ui/collections").status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_csrf_token_too(app) -> None:
    client = app.test_client()
    response = client.post("/ui/sign-in", data={"user": "admin", "password": PASSWORD})
    assert response.status_code == 403


def test_sessions_expire_when_idle(app, monkeypatch) -> None:
    client = app.test_client()
    sign_in(client, "analyst")
    assert client.get("/ui/collections").status_code == 200
    later = time.time() + 31 * 60
    monkeypatch.setattr("node.console.session.time.time", lambda: later)
    assert client.get("/ui/collections").status_code == 302


def test_a_password_change_ends_existing_sessions(app, store) -> None:
    client = app.test_client()
    sign_in(client, "mover")
    assert client.get("/ui/collections").status_code == 200
    with store.write() as connection:
        accounts.set_password(connection, "mover", "another-password-2")
    assert client.get("/ui/collections").status_code == 302


def test_sign_in_never_redirects_off_the_console(app) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/ui/\\evil"):
        client = app.test_client()
        form = _text(client.get("/ui/sign-in"))
        response = client.post(
            "/ui/sign-in",
            data={
                "user": "analyst",
                "password": PASSWORD,
                "csrf_token": _csrf(form),
                "next": target,
            },
        )
        assert response.headers["Location"] == "/ui/", target


# -- pages ----------------------------------------------------------------------------


def test_collections_count_by_type_and_tlp_for_what_the_account_reads(analyst, admin) -> None:
    page = _text(analyst.get("/ui/collections"))
    assert "Collection alpha" in page and "Collection beta" not in page
    assert re.search(r">indicator</a></td><td class=\"num\">1<", page)
    assert re.search(r"TLP:GREEN</span></a></td><td class=\"num\">6<", page)
    assert re.search(r"TLP:AMBER</span></a></td><td class=\"num\">1<", page)
    assert "Collection beta" in _text(admin.get("/ui/collections"))


@pytest.mark.parametrize(
    ("query", "expected", "absent"),
    [
        ({"q": "203.0.113.7"}, INDICATOR, MALWARE),
        ({"q": "amber implant"}, MALWARE, INDICATOR),
        ({"type": "report"}, REPORT, INDICATOR),
        ({"tlp": "AMBER"}, MALWARE, INDICATOR),
        ({"label": "c2"}, INDICATOR, MALWARE),
        ({"author": AUTHOR}, INDICATOR, REPORT),
        ({"from": "2000-01-01", "to": "2999-12-31", "type": "malware"}, MALWARE, INDICATOR),
    ],
)
def test_object_search_filters(analyst, query, expected, absent) -> None:
    page = _text(analyst.get("/ui/objects", query_string=query))
    assert expected in page
    assert absent not in page


def test_search_finds_nothing_outside_the_readable_collections(analyst) -> None:
    page = _text(analyst.get("/ui/objects", query_string={"q": "beta.example"}))
    assert SECRET not in page and "No object matches" in page
    assert analyst.get("/ui/objects", query_string={"collection": BETA}).status_code == 404
    assert analyst.get(f"/ui/objects/{BETA}/{SECRET}").status_code == 404


def test_search_pages_through_results(analyst, monkeypatch) -> None:
    monkeypatch.setattr("node.console.objects.PAGE_SIZE", 3)
    seen: list[str] = []
    url, args = "/ui/objects", {"collection": ALPHA}
    for _ in range(5):
        page = _text(analyst.get(url, query_string=args))
        seen += re.findall(r'href="/ui/objects/[^/]+/([a-z-]+--[0-9a-f-]+)"', page)
        following = re.search(r'rel="next" href="([^"]+)"', page)
        if not following:
            break
        url, args = following.group(1).replace("&amp;", "&"), None
    assert len(seen) == len(corpus()) == len(set(seen))


def test_bad_search_values_get_a_clear_400(analyst) -> None:
    response = analyst.get("/ui/objects", query_string={"from": "yesterday"})
    assert response.status_code == 400
    assert "is not a date" in _text(response)
    assert analyst.get("/ui/objects", query_string={"tlp": "purple"}).status_code == 400


def test_the_object_page_links_relationships_reports_sightings_and_sharing(analyst) -> None:
    page = _text(analyst.get(f"/ui/objects/{ALPHA}/{INDICATOR}"))
    assert "TLP:GREEN" in page
    assert f'href="/ui/objects/{ALPHA}/{MALWARE}"' in page  # the relationship's target
    assert f'href="/ui/objects/{ALPHA}/{RELATIONSHIP}"' in page
    assert f'href="/ui/objects/{ALPHA}/{REPORT}"' in page and "Contained in" in page
    assert f'href="/ui/objects/{ALPHA}/{SIGHTING}"' in page
    assert f'href="/ui/objects/{ALPHA}/{AUTHOR}"' in page  # created_by_ref
    assert "origin: local" in page
    assert "node-b" in page and "shared" in page
    assert "&#34;pattern&#34;" in page or "&quot;pattern&quot;" in page  # raw JSON, escaped


def test_the_object_page_says_why_it_is_withheld_from_the_peer(analyst) -> None:
    page = _text(analyst.get(f"/ui/objects/{ALPHA}/{MALWARE}"))
    assert "withheld" in page and "tlp.max" in page
    related = _text(analyst.get(f"/ui/objects/{ALPHA}/{RELATIONSHIP}"))
    assert "ref.withheld-target" in related


def test_export_is_a_stix_bundle(analyst) -> None:
    response = analyst.get(f"/ui/objects/{ALPHA}/{INDICATOR}/bundle")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    bundle = json.loads(response.data)
    assert bundle["type"] == "bundle" and bundle["id"].startswith("bundle--")
    assert [o["id"] for o in bundle["objects"]] == [INDICATOR]


def test_the_layout_shows_the_signed_in_account_and_its_sections(app, admin, analyst) -> None:
    """base.html reads the account the session signed in (the context processor's
    ``account``): who is signed in, and the operator sections for admins only."""
    operator = _text(admin.get("/ui/collections"))
    assert '<span class="who">admin (' in operator
    assert 'href="/ui/audit"' in operator and 'href="/ui/sharing"' in operator
    page = _text(analyst.get("/ui/collections"))
    assert '<span class="who">analyst (' in page
    assert 'href="/ui/audit"' not in page and 'href="/ui/sharing"' not in page
    assert analyst.get("/ui/sign-in").headers["Location"].endswith("/ui/")  # signed in already
    signed_out = _text(app.test_client().get("/ui/sign-in"))
    assert 'class="who"' not in signed_out and "Sign out" not in signed_out
    refused = analyst.get("/ui/objects", query_string={"q": "\x00"})  # before the session
    assert refused.status_code == 400 and 'class="who"' not in _text(refused)


def test_analysts_cannot_open_the_operator_pages(analyst) -> None:
    for url in ("/ui/sharing", "/ui/audit", "/ui/sharing/preview?peer=node-b&collection=" + ALPHA):
        assert analyst.get(url).status_code == 403, url


# -- hostile input ---------------------------------------------------------------------


def test_hostile_strings_are_shown_as_text(analyst) -> None:
    for url in (f"/ui/objects/{ALPHA}/{HOSTILE}", "/ui/objects?q=script"):
        page = _text(analyst.get(url))
        assert "<script>alert" not in page and "<script>x()" not in page
        assert "<img src=x" not in page and "<b>label</b>" not in page
        assert "&lt;script&gt;" in page
    page = _text(analyst.get(f"/ui/objects/{ALPHA}/{HOSTILE}"))
    assert not re.search(r'href="\s*javascript:', page, re.IGNORECASE)
    assert 'href="https://example.org/report?a=1&amp;b=&lt;2&gt;"' in page


def test_every_console_response_carries_a_strict_content_security_policy(app, analyst) -> None:
    pages = ("/ui/collections", "/ui/objects/nowhere/x", "/ui/no/such/page")
    responses = [analyst.get(url) for url in pages] + [app.test_client().get("/ui/sign-in")]
    for response in responses:
        policy = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "script-src" not in policy
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_console_pages_are_html_404s(analyst) -> None:
    response = analyst.get("/ui/no/such/page")
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")
    assert "no such page" in _text(response)


def test_no_template_marks_anything_safe() -> None:
    templates = Path(__file__).parent.parent / "node" / "console" / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, template
        assert "<script" not in text, template


# -- sharing, dead letters, preview, audit ------------------------------------------------


def _dead_letter(store: Store, message: str) -> int:
    with store.write() as connection:
        syncstate.add_dead_letters(
            connection,
            "node-b",
            "alpha<->alpha",
            "push",
            [{"id": INDICATOR, "version": T, "message": message}],
        )
        return syncstate.list_dead_letters(connection)[-1]["pk"]


def test_the_sharing_page_shows_mappings_and_dead_letters(admin, store) -> None:
    pk = _dead_letter(store, "<script>refused</script> by the peer")
    page = _text(admin.get("/ui/sharing"))
    assert "node-b" in page and "alpha&lt;-&gt;alpha" in page
    assert "never synced" in page
    assert f"/ui/sharing/dead-letters/{pk}/retry" in page
    assert "&lt;script&gt;refused" in page and "<script>refused" not in page


def test_skipping_a_dead_letter_removes_it_and_is_audited(admin, store) -> None:
    pk = _dead_letter(store, "skip me")
    page = _text(admin.get("/ui/sharing"))
    response = admin.post(f"/ui/sharing/dead-letters/{pk}/skip", data={"csrf_token": _csrf(page)})
    assert response.status_code == 302
    with store.read() as connection:
        assert syncstate.dead_letter(connection, pk) is None
        last = audit.entries(connection, limit=None)[-1]
    assert (last["action"], last["actor"], last["object_id"]) == (
        "dead-letter-skipped", "admin", INDICATOR)  # fmt: skip
    assert "skipped" in _text(admin.get("/ui/sharing"))


def test_a_retry_that_cannot_reach_the_peer_keeps_the_dead_letter(admin, store) -> None:
    pk = _dead_letter(store, "retry me")
    page = _text(admin.get("/ui/sharing"))
    response = admin.post(f"/ui/sharing/dead-letters/{pk}/retry", data={"csrf_token": _csrf(page)},
                          follow_redirects=True)  # fmt: skip
    assert "could not be reached" in _text(response)
    with store.read() as connection:
        assert syncstate.dead_letter(connection, pk) is not None
        last = audit.entries(connection, limit=None)[-1]
    assert (last["action"], last["actor"]) == ("dead-letter-retried", "admin")


def test_an_unknown_dead_letter_is_reported(admin) -> None:
    page = _text(admin.get("/ui/sharing"))
    response = admin.post("/ui/sharing/dead-letters/999999/skip",
                          data={"csrf_token": _csrf(page)}, follow_redirects=True)  # fmt: skip
    assert "no dead letter 999999" in _text(response)


def test_the_policy_preview_names_objects_and_rules(admin) -> None:
    page = _text(
        admin.get("/ui/sharing/preview", query_string={"peer": "node-b", "collection": ALPHA})
    )
    assert "Amber Implant" in page and "tlp.max" in page
    assert "C2 server" in page and "send" in page
    assert admin.get("/ui/sharing/preview?peer=nobody&collection=x").status_code == 404


def test_the_audit_page_filters_newest_first_and_verifies_the_chain(admin, store) -> None:
    sign_in(admin.application.test_client(), "analyst", "wrong-again")
    page = _text(admin.get("/ui/audit", query_string={"action": "login-failed"}))
    assert "Chain intact" in page
    with store.read() as connection:
        head = audit.head(connection)
    assert head in page
    actions = re.findall(r'class="action-([a-z-]+)"', page)
    assert actions and set(actions) == {"login-failed"}
    numbers = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", page)]
    assert numbers == sorted(numbers, reverse=True)


def test_the_audit_page_shows_a_broken_chain(node: NodeFiles) -> None:
    application = create_app(load_config(node.config_path))
    store = application.extensions["taxii_node"].store
    client = application.test_client()
    sign_in(client)
    with store.write() as connection:
        connection.exec_driver_sql("UPDATE audit SET detail = 'edited' WHERE pk = 1")
    try:
        assert "Chain BROKEN at record 1" in _text(client.get("/ui/audit"))
    finally:
        with store.write() as connection:  # later tests need an intact chain
            connection.exec_driver_sql("DELETE FROM audit")
            connection.exec_driver_sql("DELETE FROM settings WHERE key = 'audit_head'")
        store.close()


# -- publish -----------------------------------------------------------------------------


def _upload(client, bundle, **fields):
    page = _text(client.get("/ui/publish"))
    data = {"csrf_token": _csrf(page), "collection": ALPHA, **fields,
            "bundle": (io.BytesIO(json.dumps(bundle).encode()), "bundle.json")}  # fmt: skip
    return client.post("/ui/publish", data=data, content_type="multipart/form-data")


def test_publish_validates_each_object_and_marks_the_unmarked(analyst, store) -> None:
    new_id = "indicator--99999999-9999-4999-8999-999999999999"
    good = _sdo("indicator", new_id, name="New", pattern="[domain-name:value = 'x.example']",
                pattern_type="stix", valid_from=T)  # fmt: skip
    bad = {"type": "indicator", "id": "indicator--not-a-uuid"}
    response = _upload(analyst, {"type": "bundle", "id": "bundle--1", "objects": [good, bad]},
                       tlp="amber", created_by_ref=AUTHOR)  # fmt: skip
    page = _text(response)
    assert response.status_code == 200
    assert "1 succeeded, 1 failed" in page and "indicator--not-a-uuid" in page
    with store.read() as connection:
        stored = objects.latest(connection, ALPHA, new_id)
    assert stored["object_marking_refs"] == [AMBER]
    assert stored["created_by_ref"] == AUTHOR


def test_publish_refuses_bad_uploads_clearly(analyst, store) -> None:
    with store.read() as connection:
        before = objects.count(connection, ALPHA)
    page = _text(analyst.get("/ui/publish"))
    broken = analyst.post("/ui/publish", content_type="multipart/form-data",
                          data={"csrf_token": _csrf(page), "collection": ALPHA,
                                "bundle": (io.BytesIO(b"{not json"), "x.json")})  # fmt: skip
    assert broken.status_code == 400 and "not valid JSON" in _text(broken)
    wrong_author = _upload(analyst, [], created_by_ref="javascript:alert(1)")
    assert wrong_author.status_code == 400 and "not an identity id" in _text(wrong_author)
    elsewhere = analyst.post("/ui/publish", content_type="multipart/form-data",
                             data={"csrf_token": _csrf(page), "collection": BETA,
                                   "bundle": (io.BytesIO(b"[]"), "x.json")})  # fmt: skip
    assert elsewhere.status_code == 403
    assert analyst.post("/ui/publish", data={"collection": ALPHA}).status_code == 403  # no CSRF
    with store.read() as connection:
        assert objects.count(connection, ALPHA) == before


def test_an_upload_over_max_content_length_names_the_limit_in_the_console_layout(
    analyst, store, app
) -> None:
    limit = app.extensions["taxii_node"].config.taxii.max_content_length
    with store.read() as connection:
        before = objects.count(connection, ALPHA)
    page = _text(analyst.get("/ui/publish"))
    body = (io.BytesIO(b" " * (limit + 1)), "x.json")
    oversized = analyst.post("/ui/publish", content_type="multipart/form-data",
                             data={"csrf_token": _csrf(page), "collection": ALPHA,
                                   "bundle": body})  # fmt: skip
    text = _text(oversized)
    assert oversized.status_code == 413
    assert f"The request exceeds max_content_length ({limit} bytes)." in text
    assert "capacity limit" not in text
    assert 'href="/ui/objects"' in text  # the signed-in layout, navigation included
    with store.read() as connection:
        assert objects.count(connection, ALPHA) == before


def test_a_store_busy_with_another_processs_write_gets_a_503_page(
    node: NodeFiles, monkeypatch
) -> None:
    """Sign-in writes its audit record at once; while another connection holds SQLite's
    write lock past the busy timeout, the console says the store is busy (503 and
    Retry-After) instead of failing with a 500."""
    import sqlite3

    from sqlalchemy.engine import make_url

    from node.store import engine

    if not node.store_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock (PostgreSQL locks rows)")
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 50)
    application = create_app(load_config(node.config_path))
    holder = sqlite3.connect(make_url(node.store_url).database, isolation_level=None)
    try:
        client = application.test_client()
        form = client.get("/ui/sign-in").get_data(as_text=True)
        holder.execute("BEGIN IMMEDIATE")  # another process's write, as SQLite sees it
        busy = client.post("/ui/sign-in", data={"user": "admin", "password": PASSWORD,
                                                "csrf_token": _csrf(form)})  # fmt: skip
        holder.execute("ROLLBACK")
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "5"
        assert "The store is busy" in _text(busy) and "nothing was changed" in _text(busy)
        again = client.post("/ui/sign-in", data={"user": "admin", "password": PASSWORD,
                                                 "csrf_token": _csrf(form)})  # fmt: skip
        assert again.status_code == 302  # the lock released, the same form signs in
    finally:
        holder.close()
        application.extensions["taxii_node"].store.close()


def test_tlp_badges_read_marking_ids_in_any_letter_case() -> None:
    from node.console.objects import tlp_badges

    red = TLP2_MARKING_IDS[TLP.RED]
    kind, _, uuid_text = red.partition("--")
    assert tlp_badges({"object_marking_refs": [f"{kind}--{uuid_text.upper()}"]}) == ["RED"]


def test_deleting_from_the_object_page_needs_write_rights_and_a_confirmation(
    app, store, analyst
) -> None:
    """The object page offers "Delete and recall" to accounts that may write the
    collection (the operation the API's DELETE runs: versions gone, peers sent a
    recall, audited as the console's account); a read-only account gets neither the
    form nor the action, and an unticked confirmation deletes nothing."""
    doomed = _sdo("indicator", f"indicator--{uuid.uuid4()}", name="Doomed",
                  pattern="[domain-name:value = 'doomed.example']", pattern_type="stix",
                  valid_from=T)  # fmt: skip
    kept = _sdo("indicator", f"indicator--{uuid.uuid4()}", name="Read only",
                pattern="[domain-name:value = 'kept.example']", pattern_type="stix",
                valid_from=T)  # fmt: skip
    with store.write() as connection:
        objects.add_objects(connection, ALPHA, [doomed])
        objects.add_objects(connection, GAMMA, [kept])
    page = f"/ui/objects/{ALPHA}/{doomed['id']}"
    shown = analyst.get(page)
    assert "Delete and recall" in _text(shown)
    token = _csrf(_text(shown))
    unconfirmed = analyst.post(f"{page}/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 302 and analyst.get(page).status_code == 200
    deleted = analyst.post(f"{page}/delete", data={"csrf_token": token, "confirm": "yes"})
    assert deleted.status_code == 302 and analyst.get(page).status_code == 404
    with store.read() as connection:
        records = [r for r in audit.entries(connection, limit=None)
                   if r["object_id"] == doomed["id"] and r["action"] == "deleted"]  # fmt: skip
    assert [r["actor"] for r in records] == ["console:analyst"]

    reader = app.test_client()
    assert sign_in(reader, "reader").status_code == 302
    read_only = f"/ui/objects/{GAMMA}/{kept['id']}"
    try:
        shown = reader.get(read_only)
        assert shown.status_code == 200 and "Delete and recall" not in _text(shown)
        form = {"csrf_token": _csrf(_text(shown)), "confirm": "yes"}
        refused = reader.post(f"{read_only}/delete", data=form)
        assert refused.status_code == 403 and reader.get(read_only).status_code == 200
    finally:  # (gamma stays empty for the other tests of this module)
        with store.write() as connection:
            objects.delete(connection, ObjectQuery(GAMMA, limit=0, ids=(kept["id"],),
                                                   versions=("all",)))  # fmt: skip


def test_a_taxii_post_while_the_store_is_busy_gets_a_503_with_retry_after(
    node: NodeFiles, monkeypatch
) -> None:
    """A POST while another connection holds SQLite's write lock past the busy timeout
    is told to try again (503, Retry-After, a TAXII error body), and nothing is stored."""
    import sqlite3

    from sqlalchemy.engine import make_url

    from node.store import engine

    if not node.store_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock (PostgreSQL locks rows)")
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 50)
    application = create_app(load_config(node.config_path))
    holder = sqlite3.connect(make_url(node.store_url).database, isolation_level=None)
    url = f"/api/collections/{COLLECTIONS['alpha']}/objects/"
    taxii = "application/taxii+json;version=2.1"
    headers = {**_basic("admin"), "Accept": taxii, "Content-Type": taxii}
    posted = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
              "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
              "pattern": "[ipv4-addr:value = '198.51.100.77']", "pattern_type": "stix",
              "valid_from": "2026-01-01T00:00:00Z"}  # fmt: skip
    body = json.dumps({"objects": [posted]})
    try:
        client = application.test_client()
        holder.execute("BEGIN IMMEDIATE")  # another process's write, as SQLite sees it
        busy = client.post(url, data=body, headers=headers)
        holder.execute("ROLLBACK")
        assert busy.status_code == 503, busy.get_data(as_text=True)
        assert busy.headers["Retry-After"] == "5"
        assert busy.content_type == taxii and "try again" in busy.json["description"]
        assert client.get(f"{url}{posted['id']}/", headers=headers).status_code == 404
        assert client.post(url, data=body, headers=headers).status_code == 202
        assert client.get(f"{url}{posted['id']}/", headers=headers).status_code == 200
    finally:
        holder.close()
        application.extensions["taxii_node"].store.close()


# -- metrics and health --------------------------------------------------------------------


def _basic(user: str, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_health_endpoints_answer_anyone_and_reveal_nothing(app, monkeypatch) -> None:
    client = app.test_client()
    health = client.get("/healthz")
    assert (health.status_code, health.get_data(as_text=True)) == (200, "ok\n")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_data(as_text=True)) == (200, "ready\n")

    def unreachable():
        raise OSError("connection refused to db.internal:5432")

    monkeypatch.setattr(app.extensions["taxii_node"].store, "is_current", unreachable)
    down = client.get("/readyz")
    assert (down.status_code, down.get_data(as_text=True)) == (503, "not ready\n")


def test_metrics_need_an_admin_or_the_scrape_token(app) -> None:
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=_basic("analyst")).status_code == 403
    assert client.get("/metrics", headers=_basic("admin", "wrong")).status_code == 401
    assert client.get("/metrics", headers=_basic("admin")).status_code == 200


def test_metrics_report_requests_objects_sync_and_audit(app, store) -> None:
    client = app.test_client()
    client.get("/taxii2/", headers=_basic("admin"))
    client.get("/taxii2/")  # 401
    client.get("/taxii2/", headers=_basic("admin", "wrong"))  # a failed login
    _dead_letter(store, "for metrics")
    text = client.get("/metrics", headers=_basic("admin")).get_data(as_text=True)
    assert re.search(r'taxii_node_http_requests_total\{endpoint="taxii.discovery",'
                     r'method="GET",status="401"\} [1-9]', text)  # fmt: skip
    assert 'taxii_node_http_request_duration_seconds_bucket{endpoint="taxii.discovery"' in text
    alpha = re.search(r'taxii_node_objects\{collection="alpha"\} ([0-9.]+)', text)
    assert alpha and float(alpha.group(1)) >= len(corpus())
    assert 'taxii_node_objects{collection="gamma"} 0.0' in text
    assert re.search(r'taxii_node_sync_dead_letters\{mapping="alpha<->alpha",peer="node-b"\} '
                     r"[1-9]", text)  # fmt: skip
    assert re.search(r"taxii_node_audit_records [1-9]", text)
    assert re.search(r"taxii_node_failed_logins_total [1-9]", text)


def test_a_configured_scrape_token_opens_metrics(node: NodeFiles, tmp_path: Path) -> None:
    token_file = tmp_path / "scrape-token"
    token_file.write_text("s3cret-scrape-token-0123456789\n")
    config = load_config(node.config_path)
    server = dataclasses.replace(config.server, metrics_token_file=token_file)
    application = create_app(dataclasses.replace(config, server=server))
    client = application.test_client()
    token = {"Authorization": "Bearer s3cret-scrape-token-0123456789"}
    assert client.get("/metrics", headers=token).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    application.extensions["taxii_node"].store.close()


def test_the_object_page_shows_every_version_and_a_peer_origin(analyst, store) -> None:
    object_id = "campaign--12121212-1212-4121-8121-121212121212"
    first = _sdo("campaign", object_id, name="Old name", object_marking_refs=[GREEN])
    second = {**first, "modified": "2026-03-02T10:00:00.000Z", "name": "New name"}
    with store.write() as connection:
        objects.add_objects(connection, ALPHA, [first], origin="node-b")
        objects.add_objects(connection, ALPHA, [second], origin="node-b")
    page = _text(analyst.get(f"/ui/objects/{ALPHA}/{object_id}"))
    assert "<h1>New name</h1>" in page
    assert "origin: node-b" in page
    assert "came from this peer: never sent back" in page  # no echo, whatever the policy
    timeline = page[page.index('class="timeline"') :]
    assert timeline.index("2026-03-02T10:00:00.000Z") < timeline.index(T)  # newest first
    every = json.loads(analyst.get(f"/ui/objects/{ALPHA}/{object_id}/bundle?versions=all").data)
    assert [o["name"] for o in every["objects"]] == ["Old name", "New name"]


def test_the_audit_page_filters_by_object_peer_and_time(admin, store) -> None:
    with store.write() as connection:
        audit.record(connection, [audit.AuditRecord(action="withheld", direction="push",
                                  object_id=MALWARE, peer="node-b", collection_id=ALPHA,
                                  rule="tlp.max", detail="filter test")])  # fmt: skip
    by_object = _text(admin.get("/ui/audit", query_string={"object": MALWARE, "peer": "node-b"}))
    assert "filter test" in by_object
    assert "login-failed" not in by_object
    future = _text(admin.get("/ui/audit", query_string={"since": "2999-01-01"}))
    assert "No record matches" in future
    past = _text(admin.get("/ui/audit", query_string={"until": "2000-01-01"}))
    assert "No record matches" in past
    assert admin.get("/ui/audit", query_string={"since": "soon"}).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/ui/objects?q=%00",
        f"/ui/objects/{ALPHA}/indicator--%00",
        "/ui/audit?object=x%00",
        "/ui/objects?label=a%00b",
    ],
)
def test_nul_characters_get_a_400_on_both_stores(admin, url) -> None:
    response = admin.get(url)
    assert response.status_code == 400
    assert "NUL" in _text(response)


def test_out_of_range_positions_are_ignored_not_errors(admin) -> None:
    huge = "9" * 40
    assert admin.get("/ui/objects", query_string={"before": huge}).status_code == 200
    assert admin.get("/ui/audit", query_string={"before": huge}).status_code == 200
    page = _text(admin.get("/ui/sharing"))
    response = admin.post(f"/ui/sharing/dead-letters/{huge}/skip", data={"csrf_token": _csrf(page)})
    assert response.status_code == 404
    assert admin.get("/ui/objects", query_string={"before": "\uff11\uff12"}).status_code == 200


def _metric(text: str, pattern: str) -> float:
    match = re.search(pattern + r" ([0-9.e+]+)", text)
    return float(match.group(1)) if match else 0.0


def test_audit_metrics_follow_the_trail_between_scrapes(app, store) -> None:
    client = app.test_client()
    withheld = (r'taxii_node_sync_withheld_by_rule_total\{collection="' + ALPHA +
                r'",direction="push",peer="node-b",rule="labels.deny"\}')  # fmt: skip
    before = client.get("/metrics", headers=_basic("admin")).get_data(as_text=True)
    app.extensions["taxii_node"].read_audit.flush()  # the scrape's login, queued
    before = client.get("/metrics", headers=_basic("admin")).get_data(as_text=True)
    record = audit.AuditRecord(
        action="withheld",
        direction="push",
        object_id=MALWARE,
        peer="node-b",
        collection_id=ALPHA,
        rule="labels.deny",
    )
    with store.write() as connection:
        audit.record(connection, [record, record, record])
    after = client.get("/metrics", headers=_basic("admin")).get_data(as_text=True)
    assert _metric(after, withheld) == _metric(before, withheld) + 3
    with store.read() as connection:
        total, failed = search.audit_totals(connection)
        full = search.withheld_by_rule(connection)[("node-b", ALPHA, "push", "labels.deny")]
    assert _metric(after, withheld) == full
    assert _metric(after, r"taxii_node_audit_records") == total
    assert _metric(after, r"taxii_node_failed_logins_total") == failed


def test_next_page_links_carry_only_the_filters(analyst, admin, monkeypatch) -> None:
    """url_for reads _external, _scheme and _anchor as its own: a crafted query must
    not turn the next page's link into another scheme or site."""
    monkeypatch.setattr("node.console.objects.PAGE_SIZE", 1)
    monkeypatch.setattr("node.console.audit.PAGE_SIZE", 1)
    hostile = {"_external": "1", "_scheme": "javascript", "_anchor": "x", "type": "indicator"}
    for client, url in ((analyst, "/ui/objects"), (admin, "/ui/audit")):
        page = _text(client.get(url, query_string=hostile))
        link = re.search(r'rel="next" href="([^"]+)"', page)
        assert link, url
        assert link.group(1).startswith(url + "?") and "_scheme" not in link.group(1), link


def test_api_requests_open_no_console_session(admin, monkeypatch) -> None:
    """The API never reads or sets the console's cookie, even from a browser
    that is signed in: its session is Flask's null session."""
    opened: list[str] = []
    real_open = SecureCookieSessionInterface.open_session

    def counting(self, app, request):
        opened.append(request.path)
        return real_open(self, app, request)

    monkeypatch.setattr(SecureCookieSessionInterface, "open_session", counting)
    answer = admin.get(
        "/taxii2/", headers={"Accept": "application/taxii+json;version=2.1", **_basic("admin")}
    )
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers and opened == []
    page = admin.get("/ui/audit")  # the console still knows the session
    assert page.status_code == 200, page.headers.get("Location")
    assert opened == ["/ui/audit"]


def test_a_sign_in_is_in_the_audit_at_once(app, store) -> None:
    """API logins are recorded by the background writer; a person's sign-in is
    written before the answer, so the audit page opened next shows it."""
    with store.read() as connection:
        before = audit.head(connection)
    assert sign_in(app.test_client(), "analyst").status_code == 302
    with store.read() as connection:
        rows = connection.exec_driver_sql(
            "SELECT action, actor, rule FROM audit ORDER BY pk DESC LIMIT 1"
        ).all()
        assert audit.head(connection) != before
    assert [tuple(row) for row in rows] == [("login", "analyst", "console")]
    # A sign-in that succeeds never counts towards the failed-login throttle.
    assert [sign_in(app.test_client()).status_code for _ in range(6)] == [302] * 6
