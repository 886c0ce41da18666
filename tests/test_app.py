"""The application factory in-process: two nodes in one process, and the last-resort handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from flask import after_this_request

from node.app import StoreNotReady, create_app
from node.config import load_config
from node.store import Store
from node.store.schema import MIGRATIONS
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, NodeFiles, new_node

TAXII = "application/taxii+json;version=2.1"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}


def _app(node: NodeFiles):
    return create_app(load_config(node.config_path))


def _indicator(number: int) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '192.0.2.{number}']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }


def test_two_nodes_live_in_one_process_with_separate_stores(tmp_path: Path) -> None:
    first = _app(new_node(tmp_path, "node-a", None)).test_client()
    second = _app(new_node(tmp_path, "node-b", None)).test_client()
    url = f"/api/collections/{COLLECTIONS['alpha']}/objects/"
    headers = {**AUTH, "Content-Type": TAXII}

    posted = first.post(url, data=json.dumps({"objects": [_indicator(1)]}), headers=headers)
    assert posted.status_code == 202
    assert posted.json["success_count"] == 1

    on_first = first.get(url, headers=AUTH).json
    on_second = second.get(url, headers=AUTH).json
    assert [o["id"] for o in on_first["objects"]] == [_indicator(1)["id"]]
    assert "objects" not in on_second


def test_unexpected_error_is_a_taxii_500(tmp_path: Path, monkeypatch) -> None:
    """medallion 3.0.0's 500 handler crashes under Flask 3 (a bare 500); ours answers TAXII."""
    client = _app(new_node(tmp_path, "node-a", None)).test_client()

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("node.store.objects.page_bodies", broken)  # the read of a page
    response = client.get(f"/api/collections/{COLLECTIONS['alpha']}/objects/", headers=AUTH)
    assert response.status_code == 500
    assert response.content_type == TAXII
    assert response.json["http_status"] == "500"
    assert "disk on fire" not in response.get_data(as_text=True)  # no internals leak


def test_unknown_route_and_method_are_taxii_errors(tmp_path: Path) -> None:
    client = _app(new_node(tmp_path, "node-a", None)).test_client()
    missing = client.get("/nowhere/", headers=AUTH)
    assert missing.status_code == 404
    assert missing.content_type == TAXII
    wrong_method = client.put("/taxii2/", headers=AUTH)
    assert wrong_method.status_code == 405
    assert wrong_method.json["http_status"] == "405"
    assert "GET" in wrong_method.headers["Allow"]


def test_an_uninitialised_store_is_refused_with_advice(tmp_path: Path) -> None:
    node = NodeFiles(tmp_path / "fresh", "fresh", f"sqlite:///{tmp_path / 'fresh.db'}", 6999)
    with pytest.raises(StoreNotReady, match=r"taxii-node --config .* init"):
        _app(node)


def test_migrations_are_idempotent_and_versioned(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    first = store.migrate()
    assert [step.split(":")[0] for step in first] == [str(v) for v, _, _ in MIGRATIONS]
    assert store.migrate() == []
    assert store.is_current()


def test_functions_of_one_request_run_for_that_request_only(tmp_path: Path) -> None:
    """``NodeFlask`` keeps the async check of each function: a function registered for
    one request (``after_this_request``) still runs once, for its own request, and
    the kept table stays bounded however many such functions there were."""
    app = _app(new_node(tmp_path, "node-a", None))

    @app.route("/stamped/<number>")
    def stamped(number: str):
        @after_this_request
        def stamp(response):
            response.headers["X-Stamp"] = number
            return response

        return "ok"

    client = app.test_client()
    for number in range(app._MAX_KEPT + 20):
        assert client.get(f"/stamped/{number}").headers.getlist("X-Stamp") == [str(number)]
    assert len(app._synchronous) <= app._MAX_KEPT


def test_async_functions_are_still_wrapped(tmp_path: Path, monkeypatch) -> None:
    """The kept answer for an ``async def`` is Flask's own wrapper, asked for once."""
    app = _app(new_node(tmp_path, "node-a", None))
    wrapped: list[object] = []
    monkeypatch.setattr(app, "async_to_sync", lambda func: wrapped.append(func) or "wrapper")

    async def view() -> str:
        return "ok"

    def plain() -> str:
        return "ok"

    assert app.ensure_sync(view) == app.ensure_sync(view) == "wrapper"
    assert wrapped == [view]
    assert app.ensure_sync(plain) is plain
