"""In-process test tier: a node's Flask app answering ``requests`` without a server.

``InProcessNode`` has the interface of ``tests.nodes.RunningNode`` that HTTP
tests use (``base_url``, ``api_root``, ``collection_url``, ``add_user``,
``start``/``stop``), so a test module moves between tiers by swapping its
fixture.  While it is started, every ``requests`` call to its ``base_url``
(a loopback port no other node of the run uses: free_port) is answered by
``create_app(config, store).test_client()`` through a transport adapter:
the same app, views and store as a gunicorn worker runs, minus the socket.

What needs the real server stays on ``RunningNode``: TLS and client
certificates, read timeouts, gunicorn's own errors (oversized headers,
malformed request lines), raw sockets, SIGKILL, two nodes syncing, other
clients and servers.

A SQLite node served in process shares its file with CLI subprocesses and
``sqlite3`` connections safely since the store stopped opening and closing a
descriptor of an existing database file (which dropped this process's POSIX
locks and let another process delete the WAL: tests/test_sqlite_store.py).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from werkzeug.http import HTTP_STATUS_CODES

from node.app import create_app
from node.config import load_config
from node.store import Store
from tests.nodes import ADMIN_PASSWORD, NodeFiles, free_port


class WsgiAdapter(BaseAdapter):
    """A ``requests`` transport that hands each request to a WSGI app's test client."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self._app = app

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        body = _body_bytes(request.body)
        chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
        answer = self._app.test_client().open(
            path=url.path,
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=request.method or "GET",
            headers=dict(request.headers),
            # A chunked body has no length: the app reads it to its end, as
            # gunicorn (which decodes the chunks) lets it.
            input_stream=io.BytesIO(body) if chunked else None,
            data=None if chunked else body,
            environ_overrides={"wsgi.input_terminated": True} if chunked else None,
        )
        return _as_requests_response(request, answer.status_code, answer.headers, answer.data)

    def close(self) -> None:
        pass


def _body_bytes(body: object) -> bytes:
    """A request body as bytes; a generator (a "chunked" upload) is read whole."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        return body.read()  # type: ignore[no-any-return]
    assert isinstance(body, Iterable), f"unsupported request body {type(body)!r}"
    return b"".join(piece.encode() if isinstance(piece, str) else piece for piece in body)


def _as_requests_response(
    request: requests.PreparedRequest, status: int, headers: Iterable[tuple[str, str]], data: bytes
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = HTTP_STATUS_CODES.get(status, "")
    response.headers = CaseInsensitiveDict()
    for name, value in headers:  # repeated headers joined, as urllib3 does
        previous = response.headers.get(name)
        response.headers[name] = value if previous is None else f"{previous}, {value}"
    response.encoding = get_encoding_from_headers(response.headers)
    response._content = data
    response._content_consumed = True
    response.raw = _Body(data)
    response.url = request.url or ""
    response.request = request
    return response


class _Body(io.BytesIO):
    """The body as ``response.raw``: what urllib3's response offers the node's client
    (``node.client`` reads a streamed answer with ``read1`` and releases the
    connection), over bytes already in memory."""

    def read1(self, size: int = -1, decode_content: bool = True) -> bytes:
        return super().read1(size)

    def release_conn(self) -> None:
        pass


class _Routes:
    """Which base URLs are answered in process, for the ``requests`` sessions of a test."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, WsgiAdapter] = {}
        self._lock = threading.Lock()
        self._original = requests.Session.get_adapter

    def add(self, prefix: str, adapter: WsgiAdapter) -> None:
        with self._lock:
            assert prefix not in self._by_prefix, f"two in-process nodes at {prefix}"
            if not self._by_prefix:
                self._install()
            self._by_prefix[prefix] = adapter

    def remove(self, prefix: str) -> None:
        with self._lock:
            self._by_prefix.pop(prefix, None)
            if not self._by_prefix:
                requests.Session.get_adapter = self._original  # type: ignore[method-assign]

    def _install(self) -> None:
        routes, original = self, self._original

        def get_adapter(session: requests.Session, url: str) -> BaseAdapter:
            for prefix, adapter in routes._by_prefix.items():
                if url.startswith(prefix):
                    return adapter
            return original(session, url)

        requests.Session.get_adapter = get_adapter  # type: ignore[method-assign]


_ROUTES = _Routes()


@dataclass
class InProcessNode(NodeFiles):
    """A node whose API answers in this process (see the module docstring)."""

    app: Flask | None = field(default=None, init=False)
    store: Store | None = field(default=None, init=False)

    def start(self, timeout: float = 30.0) -> InProcessNode:
        config = load_config(self.config_path)
        self.store = Store(config.store_url)
        self.app = create_app(config, self.store)
        _ROUTES.add(self.base_url + "/", WsgiAdapter(self.app))
        return self

    def stop(self) -> None:
        _ROUTES.remove(self.base_url + "/")
        if self.store is not None:
            self.store.close()
        self.store = self.app = None


def new_inprocess_node(
    directory: Path, name: str, store_url: str | None, **kwargs: Any
) -> InProcessNode:
    """An initialised in-process node with an ``admin`` account (not yet started)."""
    url = store_url or f"sqlite:///{directory / name / 'node.db'}"
    node = InProcessNode(directory=directory / name, name=name, store_url=url, port=free_port(),
                         **kwargs)  # fmt: skip
    node.init()
    node.add_user("admin", ADMIN_PASSWORD, admin=True)
    return node
