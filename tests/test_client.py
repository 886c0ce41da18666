"""node.client: the one envelope splitter and the one page iterator, without a server;
and the answers of a hostile server on loopback (trickled, too large).

The splitter's size rule is the size of the body ``post_serialized`` sends, so
an envelope is never refused with 413 for being a byte too large, and never
needlessly small.  The page iterator follows ``next`` and repeats the first
request's filters on every page.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.client import (
    DEFAULT_MAX_CONTENT_LENGTH,
    ENVELOPE_OVERHEAD,
    ObjectPage,
    TaxiiClient,
    Throttled,
    envelope_body,
    split_envelopes,
)
from node.errors import RemoteError
from node.timestamps import to_micros

_objects = st.lists(
    st.builds(
        lambda n, text: {"id": f"indicator--{n}", "x_text": text},
        st.integers(0, 10**6),
        st.text(max_size=300),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(objects=_objects, max_bytes=st.integers(ENVELOPE_OVERHEAD + 1, 2_000),
       max_objects=st.integers(1, 20))  # fmt: skip
def test_envelopes_fit_keep_order_and_report_what_cannot_fit(objects, max_bytes, max_objects):
    oversized: list[tuple[dict, int]] = []
    envelopes = list(
        split_envelopes(
            objects,
            max_bytes,
            max_objects=max_objects,
            on_oversized=lambda obj, size: oversized.append((obj, size)),
        )
    )
    for envelope in envelopes:
        assert 0 < len(envelope) <= max_objects
        body = envelope_body(text for _, text in envelope)
        assert len(body) <= max_bytes
        assert [obj for obj, _ in envelope] == json.loads(body)["objects"]
    sent = [obj for envelope in envelopes for obj, _ in envelope]
    too_big = [obj for obj, _ in oversized]
    assert sorted(map(json.dumps, sent + too_big)) == sorted(map(json.dumps, objects))
    assert sent == [obj for obj in objects if obj not in too_big]
    for obj, size in oversized:
        assert ENVELOPE_OVERHEAD + size + 1 > max_bytes
        assert size == len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def test_an_envelope_is_filled_up_to_the_byte() -> None:
    objects = [{"id": f"x--{n}"} for n in range(10)]
    exact = len(envelope_body(json.dumps(o, separators=(",", ":")) for o in objects[:4]))
    envelopes = list(split_envelopes(objects, exact + 1, on_oversized=lambda *_: None))
    assert [len(e) for e in envelopes] == [4, 4, 2]


class _ScriptedClient(TaxiiClient):
    """Pages from a script instead of a server, recording the parameters asked for."""

    def __init__(self, pages: list[ObjectPage]) -> None:
        super().__init__("http://127.0.0.1:1/api/", "u", "p")
        self.script = list(pages)
        self.asked: list[dict] = []

    def page(self, collection_id: str, params: dict, endpoint: str = "objects") -> ObjectPage:
        self.asked.append(dict(params))
        return self.script.pop(0)


def test_pages_follow_next_with_the_same_filters() -> None:
    script = [
        ObjectPage([{"id": "a"}], True, "token-1", None),
        ObjectPage([{"id": "b"}], True, "token-2", None),
        ObjectPage([{"id": "c"}], False, None, None),
    ]
    client = _ScriptedClient(script)
    params = {"limit": "2", "match[type]": "indicator"}
    pages = list(client.pages("c1", params))
    assert [obj["id"] for page in pages for obj in page.objects] == ["a", "b", "c"]
    assert client.asked == [
        params,
        {**params, "next": "token-1"},
        {**params, "next": "token-2"},
    ]
    assert params == {"limit": "2", "match[type]": "indicator"}  # not changed in place


# ---------------------------------------------------------------- a hostile server's answers


class _LoopbackServer:
    """A real HTTP server on a free loopback port, serving ``handler`` on a thread of
    its own until :meth:`stop`; ``api_root`` is its URL."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_root = f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _AnsweringServer(_LoopbackServer):
    """A real HTTP server on loopback whose every answer is ``body`` (JSON), sent in
    ``pieces`` parts ``pause`` seconds apart (a server trickling bytes)."""

    def __init__(
        self,
        body: bytes,
        pieces: int = 1,
        pause: float = 0.0,
        headers: dict | None = None,
        status: int = 200,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/taxii+json;version=2.1")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                step = -(-len(body) // pieces)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    threading.Event().wait(pause)

        self._serve(Handler)


@pytest.fixture
def answering() -> Iterator[Callable[..., _AnsweringServer]]:
    started: list[_AnsweringServer] = []

    def start(body: bytes, **kwargs) -> _AnsweringServer:
        started.append(_AnsweringServer(body, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_an_answer_trickled_past_the_deadline_is_a_transient_error(answering) -> None:
    """Each read gets a byte well within ``timeout``, so only a deadline on the whole
    answer stops a server that trickles (the worker waited as long as it sent)."""
    body = json.dumps({"title": "x" * 30}).encode()
    server = answering(body, pieces=len(body), pause=0.1)  # about 4 s in all
    client = TaxiiClient(server.api_root, timeout=5.0, answer_deadline=0.5)
    with pytest.raises(RemoteError, match=r"took longer than 0\.5 s") as raised:
        client.api_root_information()
    assert raised.value.transient


def test_an_answer_larger_than_the_limit_is_refused(answering) -> None:
    server = answering(json.dumps({"title": "x" * 5000}).encode())
    client = TaxiiClient(server.api_root, max_answer_bytes=4096)
    with pytest.raises(RemoteError, match="larger than 4096 bytes"):
        client.api_root_information()
    assert TaxiiClient(server.api_root).api_root_information()["title"] == "x" * 5000


# A status resource (TAXII 2.1 section 4.3.1) as a hostile or broken peer may answer.
_STATUS = {"id": "s1", "status": "complete", "total_count": 1, "success_count": 1,
           "successes": [{"id": "indicator--1", "version": "2026-01-01T00:00:00.000Z"}],
           "failure_count": 0, "failures": [], "pending_count": 0}  # fmt: skip
_BROKEN_STATUSES = {
    "pending-count-text": {**_STATUS, "status": "pending", "pending_count": "3"},
    "pending-count-missing-while-pending": {**_STATUS, "status": "pending", "pending_count": None},
    "failures-not-a-list": {**_STATUS, "failures": {"id": "indicator--1"}},
    "successes-not-a-list": {**_STATUS, "successes": "all"},
    "failure-id-a-list": {**_STATUS, "failures": [{"id": ["indicator--1"]}]},
    "failure-version-an-object": {**_STATUS, "failures": [{"id": "x", "version": {}}]},
    "failure-a-string": {**_STATUS, "failures": ["indicator--1"]},
    "status-neither-complete-nor-pending": {**_STATUS, "status": "done"},
    "status-missing": {k: v for k, v in _STATUS.items() if k != "status"},
}


@pytest.mark.parametrize("status", _BROKEN_STATUSES.values(), ids=_BROKEN_STATUSES.keys())
def test_a_status_of_the_wrong_shape_is_the_peers_error(answering, status) -> None:
    """What the peer stored cannot be told from such an answer: a RemoteError (the
    round fails, its cursor stays), never an exception of ours."""
    server = answering(json.dumps(status).encode())
    client = TaxiiClient(server.api_root)
    with pytest.raises(RemoteError, match="a status whose"):
        client.post_serialized("c", ['{"id": "indicator--1"}'], poll_seconds=1)


def test_a_status_of_the_right_shape_is_read(answering) -> None:
    nulls = [{"id": "indicator--2", "version": None, "message": None}]
    server = answering(json.dumps({**_STATUS, "pending_count": None, "failures": nulls}).encode())
    status = TaxiiClient(server.api_root).post_serialized("c", ['{"id": "indicator--1"}'])
    assert status["successes"] == _STATUS["successes"] and status["pending_count"] == 0
    assert status["failures"] == nulls


@pytest.mark.parametrize("value", ["Tue, 01 Dec 2026 00:00:00 GMT", "", "yesterday"])
def test_date_headers_that_are_not_timestamps_are_not_kept(answering, value) -> None:
    """A cursor the worker would send back as added_after is a timestamp or nothing."""
    envelope = json.dumps({"more": False, "objects": []}).encode()
    good = "2026-12-01T00:00:00.000Z"
    headers = {"X-TAXII-Date-Added-First": good, "X-TAXII-Date-Added-Last": value}
    page = TaxiiClient(answering(envelope, headers=headers).api_root).page("c", {})
    assert (page.date_added_first, page.date_added_last) == (good, None)


def test_collection_entries_that_are_not_collections_are_passed_over(answering) -> None:
    listing = {
        "collections": ["alpha", {"alias": "alpha"}, {"id": ["x"]}, {"id": "c1", "alias": "alpha"}]
    }
    client = TaxiiClient(answering(json.dumps(listing).encode()).api_root)
    assert client.collection_id("alpha") == "c1"
    with pytest.raises(RemoteError, match="no collection 'beta'"):
        client.collection_id("beta")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_version_nested_too_deeply_to_read_is_named_and_the_rest_of_the_page_read(
    answering,
) -> None:
    """Parsers stop at about 1,000 levels: one such version must not make its whole
    page unreadable (down to a page of that version alone, no limit could pass it)."""
    deep_id = "indicator--0e0c0d7e-3c8e-4ab0-9c55-7a4a4c5b1e42"
    fine = [{"id": f"indicator--{n}", "type": "indicator"} for n in (1, 2)]
    body = (
        '{"more": false, "objects": [' + json.dumps(fine[0])
        + f', {{"type": "indicator", "id": "{deep_id}", "x": {_nested(5000)}}}, '
        + json.dumps(fine[1]) + "]}"
    ).encode()  # fmt: skip
    page = TaxiiClient(answering(body).api_root).page("c", {})
    assert page.objects == fine
    assert page.unreadable == [deep_id]


def test_an_envelope_nested_too_deeply_outside_its_objects_is_too_much(answering) -> None:
    body = ('{"more": false, "x": ' + _nested(5000) + ', "objects": []}').encode()
    with pytest.raises(RemoteError, match="nests too deeply") as raised:
        TaxiiClient(answering(body).api_root).page("c", {})
    assert raised.value.too_much


class _RedirectingServer:
    """A real HTTP server on loopback answering every request with ``status`` and a
    Location on another loopback address, where a second server counts arrivals."""

    def __init__(self, status: int) -> None:
        self.arrivals = 0
        outer = self

        class Elsewhere(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer.arrivals += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_GET

        self.elsewhere = ThreadingHTTPServer(("127.0.0.2", 0), Elsewhere)
        target = f"http://127.0.0.2:{self.elsewhere.server_address[1]}/internal/admin?x=1"

        class Redirecting(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
        for server in (self.server, self.elsewhere):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.api_root = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.target = target

    def stop(self) -> None:
        for server in (self.server, self.elsewhere):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_peers_redirect_is_never_followed(status: int) -> None:
    server = _RedirectingServer(status)
    client = TaxiiClient(server.api_root, "node-a", "secret", timeout=5)
    try:
        calls = (lambda: client.objects_page("c", added_after=None, next_token=None, limit=10),
                 lambda: client.post_serialized("c", ['{"id": "x"}']))  # fmt: skip
        for call in calls:
            with pytest.raises(RemoteError) as raised:
                call()
            assert not raised.value.transient and raised.value.status == status
            assert f"redirected to {server.target}, not followed" in str(raised.value)
        assert server.arrivals == 0
    finally:
        client.close()
        server.stop()


# ---------------------------------------------------------------- a whole exchange's deadline


class _TricklingServer:
    """A real server on loopback that sends its status line, then one header byte every
    ``pause`` seconds, without end (until stopped)."""

    def __init__(self, pause: float = 0.2) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.done = threading.Event()
        self.api_root = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api/"
        self.pause = pause
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self.done.wait(self.pause):
                    connection.sendall(b"a")
            except OSError:
                return

    def stop(self) -> None:
        self.done.set()
        self.listener.close()


def _ends_within(client: TaxiiClient, server, pattern: str, seconds: float) -> RemoteError:
    """The error ``client`` gets from ``server`` within ``seconds`` (both closed after)."""
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError, match=pattern) as raised:
            client.api_root_information()
        assert time.monotonic() - started < seconds
        return raised.value
    finally:
        client.close()
        server.stop()


def test_headers_trickled_past_the_deadline_end_the_exchange() -> None:
    """The deadline covers the headers too: each byte arrives well within ``timeout``."""
    server = _TricklingServer()
    client = TaxiiClient(server.api_root, timeout=5.0, answer_deadline=1.0)
    error = _ends_within(client, server, r"took longer than 1 s", 5)
    assert error.transient and not error.retry_now


def test_stop_ends_an_exchange_under_way() -> None:
    """A worker told to stop (SIGTERM) does not wait for a peer's answer."""
    server = _TricklingServer()
    stop = threading.Event()
    client = TaxiiClient(server.api_root, timeout=5.0, stop=stop)
    threading.Timer(0.5, stop.set).start()
    _ends_within(client, server, "stopped", 3)


def test_objects_holding_nan_or_infinity_are_set_apart_and_the_page_read(answering) -> None:
    """requests would parse with simplejson (installed with stix2), which refuses NaN: the
    whole page was unreadable, every round.  Stored, a NaN would become null (the object
    changed): each object holding one is set apart, by id, and the rest read."""
    body = (b'{"more": false, "objects": [{"id": "x--1", "confidence": NaN}, {"id": "x--2"},'
            b' {"id": "x--3", "x_deep": {"a": [1, -Infinity]}}]}')  # fmt: skip
    page = TaxiiClient(answering(body).api_root).page("c", {})
    assert [obj["id"] for obj in page.objects] == ["x--2"]
    assert page.unreadable == ["x--1", "x--3"]


@pytest.mark.parametrize("envelope", [{"objects": {"a": 1}}, {"objects": [], "more": "true"},
                                      {"objects": "x"}, {"more": 1}])  # fmt: skip
def test_an_envelope_of_the_wrong_shape_is_the_peers_error(answering, envelope) -> None:
    client = TaxiiClient(answering(json.dumps(envelope).encode()).api_root)
    with pytest.raises(RemoteError, match="not a TAXII envelope") as raised:
        client.page("c", {})
    assert not raised.value.transient


def test_a_pending_status_without_pending_count_is_the_peers_error(answering) -> None:
    """Read as none pending, the objects it lists as pending were audited as sent."""
    pending = {"id": "s1", "status": "pending", "total_count": 1, "success_count": 0,
               "failure_count": 0, "pendings": [{"id": "indicator--1"}]}  # fmt: skip
    client = TaxiiClient(answering(json.dumps(pending).encode()).api_root)
    with pytest.raises(RemoteError, match="pending_count is None"):
        client.post_serialized("c", ['{"id": "indicator--1"}'])


class _SilentServer:
    """Accepts TCP connections and never answers (a TLS handshake that does not come)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def stop(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def test_a_tls_handshake_that_does_not_come_ends_by_the_deadline() -> None:
    server = _SilentServer()
    client = TaxiiClient(f"https://127.0.0.1:{server.port}/api/", timeout=30.0,
                         answer_deadline=1.0)  # fmt: skip
    _ends_within(client, server, r"took longer than 1 s", 5)


def test_an_exchange_through_a_proxy_is_watched_too(monkeypatch) -> None:
    trickling = _TricklingServer()
    monkeypatch.setenv("HTTP_PROXY", trickling.api_root.removesuffix("api/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = TaxiiClient("http://127.0.0.3:9/api/", timeout=30.0, answer_deadline=1.0)
    _ends_within(client, trickling, r"took longer than 1 s", 5)


def test_nan_beside_a_deeply_nested_version_is_set_apart_too(answering) -> None:
    """The walk for NaN goes as deep as the parser does (it recursed, and failed from
    about 450 levels: the worker's round with it)."""
    deep = '{"id": "x--2", "x": ' + "[" * 600 + "]" * 600 + "}"
    body = ('{"more": false, "objects": [{"id": "x--1", "c": NaN}, ' + deep +
            ', {"id": "x--3"}]}').encode()  # fmt: skip
    page = TaxiiClient(answering(body).api_root).page("c", {})
    assert [obj["id"] for obj in page.objects] == ["x--2", "x--3"]
    assert page.unreadable == ["x--1"]


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("120", 120, 120),
        (600.0, 590, 600),  # (a number: an HTTP-date that many seconds from now)
        (-600.0, 0, 0),  # a moment past: now
        ("86400", 3600, 3600),  # a day: an hour at most
        (10 * 86400.0, 3600, 3600),
    ],
    ids=["seconds", "http-date", "http-date-past", "seconds-capped", "http-date-capped"],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(answering, status, header, low, high):
    """RFC 9110 section 10.2.3: delay-seconds or an HTTP-date; in the error's text too."""
    body = json.dumps({"title": "Too Many Requests", "http_status": str(status)}).encode()
    value = header if isinstance(header, str) else _http_date(header)
    server = answering(body, status=status, headers={"Retry-After": value})
    with pytest.raises(Throttled) as raised:
        TaxiiClient(server.api_root).api_root_information()
    assert low <= raised.value.retry_after <= high
    assert raised.value.transient and not raised.value.retry_now
    assert f"HTTP {status}" in str(raised.value) and "Retry-After" in str(raised.value)


@pytest.mark.parametrize("value", ["soon", "\u00b2", "1.5"])  # ("²" is a digit to str.isdigit)
def test_a_retry_after_that_says_nothing_is_an_ordinary_transient_error(answering, value) -> None:
    body = json.dumps({"title": "Too Many Requests"}).encode()
    server = answering(body, status=429, headers={"Retry-After": value})
    with pytest.raises(RemoteError) as raised:
        TaxiiClient(server.api_root).api_root_information()
    assert not isinstance(raised.value, Throttled) and raised.value.transient


class _DatePagingServer(_LoopbackServer):
    """A real HTTP server on loopback paging by ``added_after`` alone (TAXII 2.1 3.4.3:
    ``more`` without ``next``), with date headers unless ``dates`` is False: objects
    ``(id, date_added)`` in date_added order, ``limit`` at a time (at most
    ``page_size``, as a server may cap it)."""

    def __init__(
        self, entries: list[tuple[str, str]], dates: bool = True, page_size: int = 100
    ) -> None:
        self.asked: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if not path.endswith("/objects/"):  # the API root, its collections
                    listing = {"collections": [{"id": "c", "can_read": True}]}
                    return self.answer(listing if path.endswith("/collections/") else {})
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                server.asked.append(query)
                after = to_micros(query["added_after"]) if "added_after" in query else -1
                rest = [(i, d) for i, d in entries if to_micros(d) > after]
                page = rest[: min(page_size, int(query.get("limit", page_size)))]
                objs = [{"id": i, "type": "indicator", "modified": "2026-01-01T00:00:00Z"}
                        for i, _ in page]  # fmt: skip
                body = json.dumps({"more": len(rest) > len(page), "objects": objs}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/taxii+json;version=2.1")
                if dates and page:
                    self.send_header("X-TAXII-Date-Added-First", page[0][1])
                    self.send_header("X-TAXII-Date-Added-Last", page[-1][1])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def answer(self, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/taxii+json;version=2.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._serve(Handler)


@pytest.fixture
def date_paging(stopper) -> Callable[..., _DatePagingServer]:
    def start(entries: list[tuple[str, str]], **kwargs) -> _DatePagingServer:
        server = _DatePagingServer(entries, **kwargs)
        stopper.append(server)
        return server

    return start


def _at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def test_pages_go_on_by_added_after_where_a_server_gives_no_next(date_paging) -> None:
    """Every version once, those added at the instant a page ends at included (an
    instant of three versions here, split by the page's end)."""
    entries = [(f"indicator--{n}", _at(n)) for n in range(1, 5)]
    entries += [(f"indicator--{n}", _at(5)) for n in range(5, 8)]  # one instant
    entries += [(f"indicator--{n}", _at(n)) for n in range(8, 11)]
    server = date_paging(entries)
    pages = list(TaxiiClient(server.api_root).pages("c", {"limit": 3}))
    assert [obj["id"] for page in pages for obj in page.objects] == [i for i, _ in entries]
    assert server.asked[1] == {"limit": "3", "added_after": "2026-01-01T00:00:02.999999Z"}


def test_pages_without_next_or_date_say_they_cannot_go_on(date_paging) -> None:
    server = date_paging([(f"indicator--{n}", _at(n)) for n in range(1, 5)], dates=False)
    pages = TaxiiClient(server.api_root).pages("c", {"limit": 3})
    assert len(next(pages).objects) == 3
    with pytest.raises(RemoteError, match="cannot be paged further, and what was read is not"):
        next(pages)


def test_pages_of_one_instant_beyond_the_limit_are_asked_with_a_larger_one(
    date_paging,
) -> None:
    server = date_paging([(f"indicator--{n}", _at(1)) for n in range(1, 6)])
    pages = list(TaxiiClient(server.api_root).pages("c", {"limit": 2}))
    assert [obj["id"] for page in pages for obj in page.objects] == [
        f"indicator--{n}" for n in range(1, 6)
    ]
    # (the first request is from the start, the second from just before that instant)
    assert [query["limit"] for query in server.asked] == ["2", "2", "4", "8"]


def test_taxii_node_get_writes_every_version_of_a_server_paging_without_next(
    date_paging, tmp_path
) -> None:
    """``taxii-node get`` of a server paging by ``added_after`` alone writes every
    version, through the real command line."""
    entries = [(f"indicator--{n}", _at(n)) for n in range(1, 11)]
    server = date_paging(entries, page_size=4)
    out = tmp_path / "bundle.json"
    env = {**os.environ, "TAXII_NODE_USER": "u", "TAXII_NODE_PASSWORD": "p"}
    done = subprocess.run(
        [sys.executable, "-m", "node", "get", "--url", server.api_root, "--collection", "c",
         "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [obj["id"] for obj in json.loads(out.read_text())["objects"]] == [i for i, _ in entries]


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("2026-12-01T00:00:00.000+00:00", "2026-12-01T00:00:00.000000Z"),
        ("2026-12-01T02:00:00.5+02:00", "2026-12-01T00:00:00.500000Z"),
        ("2026-11-30T19:00:00-05:00", "2026-12-01T00:00:00.000000Z"),
    ],
)
def test_date_headers_with_an_rfc_3339_offset_are_read_as_the_instant_in_utc(
    answering, value, read
) -> None:
    envelope = json.dumps({"more": False, "objects": []}).encode()
    headers = {"X-TAXII-Date-Added-First": value, "X-TAXII-Date-Added-Last": value}
    page = TaxiiClient(answering(envelope, headers=headers).api_root).page("c", {})
    assert (page.date_added_first, page.date_added_last) == (read, read)


def test_paging_on_a_date_header_that_is_no_timestamp_says_what_it_was(answering) -> None:
    envelope = json.dumps({"more": True, "objects": [{"id": "indicator--1"}]}).encode()
    headers = {"X-TAXII-Date-Added-Last": "Tue, 01 Dec 2026 00:00:00 GMT"}
    pages = TaxiiClient(answering(envelope, headers=headers).api_root).pages("c", {})
    assert next(pages).unreadable_date_added_last == "Tue, 01 Dec 2026 00:00:00 GMT"
    with pytest.raises(RemoteError, match=r"it sent 'Tue, 01 Dec 2026 00:00:00 GMT', not an"):
        next(pages)


@pytest.mark.parametrize("value", [True, False, "10000000", 0, -1, 1.5])
def test_a_max_content_length_that_is_no_positive_integer_is_the_default(
    answering, caplog, value
) -> None:
    """true is not a size (a bool is no integer, though Python says it is: read as 1)."""
    server = answering(json.dumps({"title": "x", "max_content_length": value}).encode())
    with caplog.at_level(logging.WARNING, logger="node.client"):
        assert TaxiiClient(server.api_root).max_content_length() == DEFAULT_MAX_CONTENT_LENGTH
    assert "is not a positive integer" in caplog.text and repr(value) in caplog.text
