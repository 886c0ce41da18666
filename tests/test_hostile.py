"""Malicious and malformed requests against a node, and random envelopes.

The catalogue below sends each hostile request to a node (one per store kind,
for the whole module) and checks three things: the answer is the
right status with a TAXII error body (3.6.1) -- except where gunicorn answers
before the application, which the case says --; the server still serves; and
the store is unchanged: a digest of the objects and collections tables (read
with SQLAlchemy from the test process) and the number of status resources are
the same before and after.  Every case is bounded in time.  Requests that
``requests`` can send go to the node's app in process (tests.inprocess); bytes
sent as they are over a socket (``raw_request``, ``post_streamed``, stalls) go
to a real gunicorn server, since gunicorn parses them first.

Policies the catalogue pins down:

- JSON nested deeper than orjson parses (1024 levels) is a 400; an object
  nested deeper than can be served again (254 levels) is a failure.
- A body over ``max_content_length`` is a 413, with or without Content-Length;
  a 1 MB description under the limit is stored and served back unchanged.
- An object that repeats a property name (at any depth) is a failure: which of
  the values counts is ambiguous.  An envelope that repeats a name is a 400.
- A body that stops arriving is answered 408 after ``[server] timeout`` of
  silence, and frees its thread.
- Nothing in a URL or a filter is a pattern: ``%``, ``_``, ``*``, quotes and
  backslashes are refused (filters, 400) or match nothing (paths, 404).

The property-based tests at the end post random mixtures of valid and broken
objects and check that exactly the valid ones (per node.validation) are stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from node.store.engine import create_store_engine
from node.store.schema import collections as collections_table
from node.store.schema import objects_table, statuses_table
from node.validation import object_problem
from tests.conftest import StoreUrls
from tests.inprocess import InProcessNode, new_inprocess_node
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, RunningNode, new_node, random_id

TAXII_21 = "application/taxii+json;version=2.1"
MAX_CONTENT_LENGTH = 4 * 1024 * 1024
MAX_PAGE_SIZE = 50
SERVER_TIMEOUT = 5  # [server] timeout: how long a stalled body may keep a thread
MEBIBYTE = 1024 * 1024
T1 = "2024-01-01T00:00:00.000Z"
BASIC = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()


# --------------------------------------------------------------------------- the node


class StoreProbe:
    """Reads the node's store directly, from the test process."""

    def __init__(self, url: str) -> None:
        self.engine = create_store_engine(url)

    def state(self) -> tuple[str, int]:
        """(sha256 of the objects and collections tables, number of status resources)."""
        digest = hashlib.sha256()
        with self.engine.connect() as connection:
            for table, order in (
                (objects_table, objects_table.c.pk),
                (collections_table, collections_table.c.id),
            ):
                for row in connection.execute(select(table).order_by(order)):
                    digest.update(repr(tuple(row)).encode())
            count = connection.execute(select(func.count()).select_from(statuses_table))
            return digest.hexdigest(), count.scalar_one()

    def bodies_after(self, pk: int) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(objects_table.c.body)
                .where(objects_table.c.pk > pk)
                .order_by(objects_table.c.pk)
            )
            return [json.loads(body) for (body,) in rows]

    def last_pk(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(objects_table.c.pk))).scalar() or 0


@dataclass
class Ctx:
    node: RunningNode | InProcessNode
    store: StoreProbe
    session: requests.Session
    seeded: list[dict] = field(default_factory=list)  # in alpha
    beta_seeded: dict = field(default_factory=dict)
    token: str = ""  # a next token of alpha's objects/ with TOKEN_FILTERS

    @property
    def port(self) -> int:
        return self.node.port

    def url(self, alias: str = "alpha", rest: str = "") -> str:
        return self.node.collection_url(alias) + rest

    def path(self, alias: str = "alpha", rest: str = "") -> str:
        return f"/api/collections/{COLLECTIONS[alias]}/{rest}"


TOKEN_FILTERS = {"match[type]": "indicator", "limit": "1"}


def indicator(object_id: str | None = None, **extra) -> dict:
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id or random_id("indicator"),
        "created": T1,
        "modified": T1,
        "name": "hostile test",
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": T1,
    }
    obj.update(extra)
    return obj


NODE_OPTIONS = {
    "taxii_toml": f"max_content_length = {MAX_CONTENT_LENGTH}\nmax_page_size = {MAX_PAGE_SIZE}",
    "server_toml": f"timeout = {SERVER_TIMEOUT}",
}


@pytest.fixture(scope="module")
def ctx(module_store_urls: StoreUrls, tmp_path_factory) -> Iterator[Ctx]:
    """The node answering in process, for requests that ``requests`` can send."""
    directory = tmp_path_factory.mktemp("hostile")
    node = new_inprocess_node(directory, "hostile-node", module_store_urls.new(), **NODE_OPTIONS)
    yield from _context(node)


@pytest.fixture(scope="module")
def server_ctx(module_store_urls: StoreUrls, tmp_path_factory) -> Iterator[Ctx]:
    """The node behind a real gunicorn server, for bytes sent over a socket."""
    directory = tmp_path_factory.mktemp("hostile-server")
    node = new_node(directory, "hostile-server", module_store_urls.new(), workers=2,
                    **NODE_OPTIONS)  # fmt: skip
    yield from _context(node)


def _context(node: RunningNode | InProcessNode) -> Iterator[Ctx]:
    node.start()
    session = requests.Session()
    session.auth = ("admin", ADMIN_PASSWORD)
    session.headers["Accept"] = TAXII_21
    context = Ctx(node, StoreProbe(node.store_url), session)
    try:
        context.seeded = [indicator(), indicator()]
        context.beta_seeded = indicator()
        for alias, objs in (("alpha", context.seeded), ("beta", [context.beta_seeded])):
            response = post_json(context, {"objects": objs}, alias=alias)
            assert response.status_code == 202 and response.json()["success_count"] == len(objs)
        page = context.session.get(context.url(rest="objects/"), params=TOKEN_FILTERS, timeout=30)
        context.token = page.json()["next"]
        yield context
    finally:
        node.stop()
        context.store.engine.dispose()


def post_json(context: Ctx, envelope: object, alias: str = "alpha") -> requests.Response:
    return context.session.post(
        context.url(alias, "objects/"),
        data=json.dumps(envelope),
        headers={"Content-Type": TAXII_21},
        timeout=30,
    )


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self):
        return json.loads(self.body)


def replied(response: requests.Response) -> Reply:
    return Reply(
        response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
    )


def raw(
    context: Ctx,
    data: bytes,
    then: Callable[[socket.socket], None] | None = None,
    timeout: float = 30,
) -> Reply:
    """Send bytes as they are (no client-side normalisation) and parse the answer."""
    with socket.create_connection(("127.0.0.1", context.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may answer and close before reading everything
        if then is not None:
            then(sock)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def streamed(context: Ctx, head: bytes, pieces: Iterable[bytes], timeout: float = 30) -> Reply:
    """Send a large body from a thread while reading the answer.

    A server refuses an oversized body as soon as it knows, then closes the
    connection; a client that only reads once it has sent everything would
    find the connection reset and never see the 413.
    """
    with socket.create_connection(("127.0.0.1", context.port), timeout=timeout) as sock:
        sock.sendall(head)

        def feed() -> None:
            with contextlib.suppress(OSError):
                for piece in pieces:
                    sock.sendall(piece)

        sender = threading.Thread(target=feed, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    sender.join(timeout)
    return reply


def over_socket(send: Callable[[Ctx], Reply]) -> Callable[[Ctx], Reply]:
    """Mark a sender that writes bytes to the server's socket (a real server's case)."""
    send.over_socket = True  # type: ignore[attr-defined]
    return send


def post_streamed(body: Callable[[Ctx], bytes], chunked: bool) -> Callable[[Ctx], Reply]:
    @over_socket
    def send(context: Ctx) -> Reply:
        data = body(context)
        if chunked:
            headers = post_raw_headers(chunked=True)
            pieces = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in chunks(data)]
            pieces.append(b"0\r\n\r\n")
        else:
            headers = post_raw_headers(content_length=len(data))
            pieces = list(chunks(data))
        head = request_bytes("POST", context.path(rest="objects/"), headers)
        return streamed(context, head, pieces)

    return send


def request_bytes(
    method: str,
    target: str,
    headers: Iterable[str] = (),
    body: bytes = b"",
    authorization: str | None = BASIC,
) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Accept: {TAXII_21}",
        "Connection: close",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post_raw_headers(content_length: int | None = None, chunked: bool = False) -> list[str]:
    headers = [f"Content-Type: {TAXII_21}"]
    if content_length is not None:
        headers.append(f"Content-Length: {content_length}")
    if chunked:
        headers.append("Transfer-Encoding: chunked")
    return headers


# --------------------------------------------------------------------------- senders


def post(
    body: bytes | str | Callable[[Ctx], bytes | str | Iterable[bytes]],
    content_type: str = TAXII_21,
    alias: str = "alpha",
    **headers: str,
) -> Callable[[Ctx], Reply]:
    def send(context: Ctx) -> Reply:
        data = body(context) if callable(body) else body
        return replied(
            context.session.post(
                context.url(alias, "objects/"),
                data=data,
                headers={"Content-Type": content_type, **headers},
                timeout=60,
            )
        )

    return send


def envelope_text(*objects_text: str) -> str:
    return '{"objects":[' + ",".join(objects_text) + "]}"


def object_text(**replacements: str) -> Callable[[Ctx], str]:
    """A fresh indicator's JSON text, with ``"NAME"`` placeholders replaced verbatim."""

    def build(context: Ctx) -> str:
        text = json.dumps(indicator(**{k: k.upper() for k in replacements}))
        for key, raw_value in replacements.items():
            text = text.replace(json.dumps(key.upper()), raw_value)
        return envelope_text(text)

    return build


def get(
    rest: str | Callable[[Ctx], str],
    params: dict | Callable[[Ctx], dict] | None = None,
    alias: str = "alpha",
    method: str = "GET",
    **headers: str,
) -> Callable[[Ctx], Reply]:
    def send(context: Ctx) -> Reply:
        path = rest(context) if callable(rest) else rest
        query = params(context) if callable(params) else params
        url = context.url(alias, path) if not path.startswith("/") else context.node.base_url + path
        return replied(
            context.session.request(method, url, params=query, headers=headers, timeout=30)
        )

    return send


def unauthenticated(authorization: str | None, **headers: str) -> Callable[[Ctx], Reply]:
    def send(context: Ctx) -> Reply:
        sent = {"Accept": TAXII_21, **headers}
        if authorization is not None:
            sent["Authorization"] = authorization
        return replied(requests.get(context.url(), headers=sent, timeout=30))

    return send


def raw_request(
    method: str,
    target: Callable[[Ctx], str] | str,
    headers: Iterable[str] = (),
    body: bytes = b"",
    authorization: str | None = BASIC,
    then: Callable[[socket.socket], None] | None = None,
    timeout: float = 30,
) -> Callable[[Ctx], Reply]:
    @over_socket
    def send(context: Ctx) -> Reply:
        path = target(context) if callable(target) else target
        data = request_bytes(method, path, headers, body, authorization)
        return raw(context, data, then, timeout)

    return send


def half_close(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------- checks


def every_object_failed(count: int, *phrases: str) -> Callable[[Ctx, Reply], None]:
    """A 202 whose status lists ``count`` failures and no success."""

    def check(context: Ctx, reply: Reply) -> None:
        status = reply.json()
        assert (status["success_count"], status["failure_count"]) == (0, count), status
        assert "successes" not in status
        failures = status["failures"]
        assert len(failures) == count
        for failure in failures[:1000]:
            assert isinstance(failure["message"], str) and failure["message"]
        for phrase in phrases:
            assert phrase in failures[0]["message"], failures[0]

    return check


def allows(*methods: str) -> Callable[[Ctx, Reply], None]:
    def check(context: Ctx, reply: Reply) -> None:
        allowed = {m.strip() for m in reply.headers["allow"].split(",")}
        assert set(methods) <= allowed, allowed

    return check


def page_within_max(context: Ctx, reply: Reply) -> None:
    body = reply.json()
    assert len(body.get("objects", [])) <= MAX_PAGE_SIZE


def seeded_unchanged(context: Ctx, reply: Reply) -> None:
    seeded = context.seeded[0]
    response = context.session.get(
        context.url(rest=f"objects/{seeded['id']}/"), params={"match[version]": "all"}, timeout=30
    )
    assert response.status_code == 200 and response.json()["objects"] == [seeded]


def describes(*phrases: str) -> Callable[[Ctx, Reply], None]:
    def check(context: Ctx, reply: Reply) -> None:
        description = reply.json()["description"]
        for phrase in phrases:
            assert phrase in description, description

    return check


def assert_taxii_error(reply: Reply, status: int) -> None:
    assert reply.headers.get("content-type", "").replace(" ", "") == TAXII_21, reply.headers
    body = reply.json()
    assert isinstance(body.get("title"), str) and body["title"]
    assert body.get("http_status") == str(status)
    assert isinstance(body.get("description"), str) and body["description"]


def assert_serving(context: Ctx) -> None:
    response = context.session.get(context.url(rest="objects/"), params={"limit": "1"}, timeout=10)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[Ctx], Reply]
    status: int
    # Every answer is a TAXII error body, also those gunicorn gives before the
    # application runs (node.server.TaxiiThreadWorker); kept for cases to come.
    taxii: bool = True
    seconds: float = 15
    # A 202 whose objects all failed records a status resource (and stores nothing).
    records_status: bool = False
    check: Callable[[Ctx, Reply], None] | None = None

    @property
    def over_socket(self) -> bool:
        return getattr(self.send, "over_socket", False)


def failed(name: str, send: Callable[[Ctx], Reply], count: int = 1, *phrases: str) -> Case:
    """A case answered 202 with every object a failure."""
    return Case(name, send, 202, records_status=True, check=every_object_failed(count, *phrases))


def claim_seeded_id(context: Ctx) -> str:
    seeded = context.seeded[0]
    claimant = {
        "type": "malware",
        "spec_version": "2.1",
        "id": seeded["id"],
        "created": seeded["created"],
        "modified": seeded["modified"],
        "name": "impostor",
        "is_family": False,
    }
    return json.dumps({"objects": [claimant]})


def claim_seeded_version(context: Ctx) -> str:
    return json.dumps({"objects": [{**context.seeded[0], "name": "rewritten"}]})


def repeated_id(context: Ctx) -> str:
    first, second = random_id("indicator"), random_id("indicator")
    text = json.dumps(indicator(first))
    return envelope_text(text[:-1] + f', "id": "{second}"}}')


def nested(depth: int) -> Callable[[Ctx], str]:
    return object_text(x_deep="[" * depth + "]" * depth)


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def five_megabyte_object(context: Ctx) -> bytes:
    return json.dumps({"objects": [indicator(description="x" * (5 * MEBIBYTE))]}).encode()


def million_empty_objects(context: Ctx) -> bytes:
    return b'{"objects":[' + b",".join([b"{}"] * 1_000_000) + b"]}"


def sql_id_path(context: Ctx) -> str:
    return "objects/indicator--'; DROP TABLE objects;--/"


def forged_token(context: Ctx) -> str:
    """A token with a plausible payload and a signature from another key."""
    payload = json.dumps({"p": 0, "f": "0" * 32}).encode()
    signature = hashlib.sha256(b"not the node's key" + payload).digest()[:16]

    def encode(raw_bytes: bytes) -> str:
        return base64.urlsafe_b64encode(raw_bytes).rstrip(b"=").decode()

    return encode(payload) + "." + encode(signature)


def with_token(extra: dict | None = None, token: Callable[[Ctx], str] | None = None):
    def params(context: Ctx) -> dict:
        return {
            **TOKEN_FILTERS,
            **(extra or {}),
            "next": token(context) if token else context.token,
        }

    return params


def stalled(context: Ctx, chunked: bool, waited: bool = True) -> Reply:
    """Headers and the start of a body, then silence: the server must give up
    (after [server] timeout when ``waited``; at once when it is already waiting
    for as many slow clients as it allows)."""
    if chunked:
        head = post_raw_headers(chunked=True)
        start = b'c\r\n{"objects":[\r\n'
    else:
        head = post_raw_headers(content_length=1000)
        start = b'{"objects":['
    data = request_bytes("POST", context.path(rest="objects/"), head, start)
    started = time.monotonic()
    reply = raw(context, data, timeout=SERVER_TIMEOUT + 10)
    if waited:
        assert time.monotonic() - started >= SERVER_TIMEOUT - 1  # it was the timeout
    return reply


UNDERSCORE_ID = "indicator--________-____-____-____-____________"

_HUNDRED_IDS = ",".join(f"indicator--{uuid.uuid4()}" for _ in range(100))

CATALOGUE: list[Case] = [
    # -- nesting
    Case("json.nested-arrays-100000", post(b"[" * 100_000), 400),
    Case("json.nested-objects-100000", post(b'{"a":' * 100_000), 400),
    Case("json.nested-in-envelope-100000", post(b'{"objects":[' + b"[" * 100_000), 400),
    failed("json.nested-1020-in-an-object", post(nested(1020)), 1, "nested deeper than 254"),
    failed("json.nested-300-in-an-object", post(nested(300)), 1, "nested deeper than 254"),
    # -- sizes
    Case(
        "size.5MB-string-with-content-length",
        post_streamed(five_megabyte_object, chunked=False),
        413,
    ),
    Case("size.5MB-string-chunked", post_streamed(five_megabyte_object, chunked=True), 413),
    Case(
        "size.declared-length-over-the-limit-no-body",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(content_length=MAX_CONTENT_LENGTH + 1),
        ),
        413,
        seconds=5,
    ),
    Case(
        "size.declared-length-of-10**20",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(content_length=10**20),
            b"{}",
        ),
        413,
        seconds=5,
    ),
    # More objects than [taxii] max_objects_per_envelope (10,000): refused whole.
    Case("size.a-million-empty-objects", post(million_empty_objects), 413, seconds=60),
    # -- repeated names
    failed(
        "names.repeated-property",
        post(object_text(name='"first", "name": "second"')),
        1,
        "'name' is repeated",
    ),
    failed(
        "names.repeated-in-a-nested-object",
        post(object_text(external_references='[{"source_name": "a", "url": "u", "url": "v"}]')),
        1,
        "'url' is repeated",
    ),
    failed("names.repeated-id-claims-two-objects", post(repeated_id), 1, "'id' is repeated"),
    Case(
        "names.repeated-in-the-envelope",
        post('{"objects": [], "objects": []}'),
        400,
        check=describes("'objects'"),
    ),
    # -- encodings
    Case("utf8.invalid-byte", post(lambda c: object_text(name='"\xff"')(c).encode("latin-1")), 400),
    Case(
        "utf8.overlong-slash",
        post(lambda c: object_text(name='"NAME"')(c).encode().replace(b"NAME", b"\xc0\xaf")),
        400,
    ),
    Case(
        "utf8.encoded-surrogate",
        post(lambda c: object_text(name='"N"')(c).encode().replace(b'"N"', b'"\xed\xa0\x80"')),
        400,
    ),
    Case(
        "utf8.truncated-sequence",
        post(lambda c: object_text(name='"N"')(c).encode().replace(b'"N"', b'"\xe2\x82"')),
        400,
    ),
    Case("utf8.byte-order-mark", post(lambda c: b"\xef\xbb\xbf" + object_text()(c).encode()), 400),
    Case(
        "utf8.utf-16-body-declared-as-such",
        post(lambda c: object_text()(c).encode("utf-16"), TAXII_21 + ";charset=utf-16"),
        400,
    ),
    Case("surrogate.lone-high-escape", post(object_text(name='"\\ud800"')), 400),
    Case("surrogate.lone-low-escape", post(object_text(name='"a\\udc00b"')), 400),
    Case("surrogate.in-a-property-name", post(object_text(x_note='{"\\ud83d": 1}')), 400),
    Case(
        "nul.raw-byte-in-a-string",
        post(lambda c: object_text(name='"N"')(c).encode().replace(b'"N"', b'"a\x00b"')),
        400,
    ),
    failed(
        "nul.escaped-in-the-id",
        post(
            lambda c: json.dumps({"objects": [indicator("indicator--\u0000" + str(uuid.uuid4()))]})
        ),
        1,
        "'id'",
    ),
    failed(
        "nul.escaped-in-a-property-name",
        post(object_text(x_fine='1, "x_\\u0000": 2')),
        1,
        "property name",
    ),
    # -- not JSON
    Case("json.trailing-garbage", post(lambda c: object_text()(c) + " DROP TABLE objects"), 400),
    Case("json.nan", post(object_text(confidence="NaN")), 400),
    Case("json.number-overflowing-double", post(object_text(confidence="1e400")), 400),
    Case("json.single-quotes", post("{'objects': []}"), 400),
    # -- ids and types
    failed(
        "id.sql-fragment",
        post(lambda c: json.dumps({"objects": [indicator("indicator--'; DROP TABLE objects;--")]})),
        1,
        "'id'",
    ),
    failed(
        "id.claims-another-objects-id-with-another-type",
        post(claim_seeded_id),
        1,
        "does not match type",
    ),
    failed("id.rewrites-a-stored-version", post(claim_seeded_version), 1, "already stored"),
    failed(
        "type.sql-fragment",
        post(lambda c: json.dumps({"objects": [{**indicator(), "type": "x' OR '1'='1"}]})),
        1,
        "'type'",
    ),
    failed(
        "version.more-fractional-digits-than-stored",
        post(
            lambda c: json.dumps(
                {"objects": [indicator(modified="2024-01-01T00:00:00." + "1" * 30 + "Z")]}
            )
        ),
        1,
        "fractional digits",
    ),
    # -- URLs
    Case("url.sql-fragment-in-object-id", get(sql_id_path), 404),
    Case("url.sql-fragment-delete", get(sql_id_path, method="DELETE"), 404),
    Case("url.or-1-equals-1-in-object-id", get("objects/indicator--' OR '1'='1/versions/"), 404),
    Case("url.quote-and-backslash-in-object-id", get("objects/indicator--\\'\"\\\\/"), 404),
    Case("url.percent-and-underscore-in-object-id", get(f"objects/{UNDERSCORE_ID}%25/"), 404),
    Case("url.sql-fragment-in-collection-id", get("/api/collections/' OR 1=1;--/objects/"), 404),
    Case("url.sql-fragment-in-status-id", get("/api/status/' OR '1'='1/"), 404),
    Case(
        "url.path-traversal",
        raw_request("GET", lambda c: c.path(rest="objects/../../../../etc/passwd/")),
        404,
    ),
    Case(
        "url.path-traversal-encoded",
        raw_request("GET", lambda c: c.path(rest="objects/%2e%2e%2f%2e%2e%2fetc%2fpasswd/")),
        404,
    ),
    Case(
        "url.encoded-slash-in-object-id",
        raw_request("GET", lambda c: c.path(rest="objects/indicator--x%2F..%2F..%2F/")),
        404,
    ),
    Case(
        "url.nul-in-object-id-delete",
        raw_request("DELETE", lambda c: c.path(rest="objects/indicator--%00/")),
        404,
    ),
    Case("url.object-id-of-3000-characters", get("objects/indicator--" + "a" * 3000 + "/"), 404),
    Case("url.bidi-and-emoji-in-object-id", get("objects/indicator--\u202e\U0001f600/"), 404),
    # -- filters: nothing is a pattern
    Case("filter.match-id-percent", get("objects/", {"match[id]": "%"}), 400),
    Case("filter.match-id-asterisk", get("objects/", {"match[id]": "indicator--*"}), 400),
    Case("filter.match-id-underscores", get("objects/", {"match[id]": UNDERSCORE_ID}), 400),
    Case(
        "filter.match-id-stored-id-with-percent",
        get("objects/", lambda c: {"match[id]": c.seeded[0]["id"][:-4] + "%"}),
        400,
    ),
    Case("filter.match-id-quote", get("objects/", {"match[id]": "indicator--' OR '1'='1"}), 400),
    Case("filter.match-id-backslash", get("objects/", {"match[id]": "indicator--\\%"}), 400),
    Case("filter.match-type-percent", get("objects/", {"match[type]": "indic%"}), 400),
    Case("filter.match-type-underscore", get("manifest/", {"match[type]": "_ndicator"}), 400),
    Case("filter.match-type-quote", get("objects/", {"match[type]": "indicator'--"}), 400),
    Case(
        "filter.match-spec-version-wildcard", get("objects/", {"match[spec_version]": "2.%"}), 400
    ),
    Case("filter.match-version-wildcard", get("objects/", {"match[version]": "%"}), 400),
    Case("filter.added-after-wildcard", get("objects/", {"added_after": "2024%"}), 400),
    Case("filter.limit-negative", get("objects/", {"limit": "-5"}), 400),
    Case("filter.limit-zero", get("manifest/", {"limit": "0"}), 400),
    Case("filter.limit-exponent", get("objects/", {"limit": "1e3"}), 400),
    Case(
        "filter.limit-10**30-is-lowered",
        get("objects/", {"limit": str(10**30)}),
        200,
        check=page_within_max,
    ),
    # -- next tokens
    Case("next.junk", get("objects/", with_token(token=lambda c: "not-a-token")), 400),
    Case("next.forged-signature", get("objects/", with_token(token=forged_token)), 400),
    Case("next.3000-characters", get("objects/", with_token(token=lambda c: "A" * 3000)), 400),
    Case(
        "next.replayed-with-other-filters",
        get("objects/", with_token({"match[type]": "malware"})),
        400,
    ),
    Case("next.replayed-on-another-collection", get("objects/", with_token(), alias="beta"), 400),
    Case("next.replayed-on-the-manifest", get("manifest/", with_token()), 400),
    Case(
        "next.replayed-on-one-object",
        get(lambda c: f"objects/{c.seeded[0]['id']}/versions/", with_token()),
        400,
    ),
    # -- media types
    Case("accept.plain-json", get("objects/", Accept="application/json"), 406),
    Case("accept.taxii-2.0", get("objects/", Accept="application/taxii+json;version=2.0"), 406),
    Case("accept.q-zero", get("objects/", Accept=TAXII_21 + ";q=0"), 406),
    Case("accept.q-not-a-number", get("objects/", Accept=TAXII_21 + ";q=abc"), 406),
    Case("accept.8000-characters", get("objects/", Accept="text/html," * 800), 406),
    Case("content-type.taxii-2.0", post(object_text(), "application/taxii+json;version=2.0"), 415),
    Case("content-type.stix", post(object_text(), "application/stix+json;version=2.1"), 415),
    Case("content-type.two-media-types", post(object_text(), TAXII_21 + ", application/json"), 415),
    Case("content-type.form", post("objects=%5B%5D", "application/x-www-form-urlencoded"), 415),
    Case(
        "content-type.multipart",
        post(b"--x\r\n\r\n{}\r\n--x--", "multipart/form-data; boundary=x"),
        415,
    ),
    Case(
        "content-type.json-with-charset",
        post(object_text(), "application/json; charset=utf-8"),
        415,
    ),
    Case(
        "content-type.latin-1-charset-is-not-honoured",
        post(
            lambda c: object_text(name='"\u00e9t\u00e9"')(c).encode("latin-1"),
            TAXII_21 + ";charset=iso-8859-1",
        ),
        400,
    ),
    # -- methods
    Case("method.put-objects", get("objects/", method="PUT"), 405, check=allows("GET", "POST")),
    Case(
        "method.patch-an-object",
        get(lambda c: f"objects/{c.seeded[0]['id']}/", method="PATCH"),
        405,
        check=allows("GET", "DELETE"),
    ),
    Case(
        "method.post-to-an-object",
        get(lambda c: f"objects/{c.seeded[0]['id']}/", method="POST"),
        405,
    ),
    Case("method.delete-the-collection", get("", method="DELETE"), 405, check=allows("GET")),
    Case("method.delete-all-objects", get("objects/", method="DELETE"), 405),
    Case("method.trace", get("objects/", method="TRACE"), 405),
    Case("method.invented", raw_request("BREW", lambda c: c.path(rest="objects/")), 405),
    Case(
        "method.override-header-is-ignored",
        get(lambda c: f"objects/{c.seeded[0]['id']}/", **{"X-HTTP-Method-Override": "DELETE"}),
        200,
        check=seeded_unchanged,
    ),
    # -- credentials
    Case("auth.basic-garbage-base64", unauthenticated("Basic %%%%~~~~"), 401),
    Case(
        "auth.basic-binary",
        unauthenticated("Basic " + base64.b64encode(bytes(range(256))).decode()),
        401,
    ),
    Case("auth.basic-6000-characters", unauthenticated("Basic " + "QUFB" * 1500), 401),
    Case(
        "auth.overlong-user-name",
        unauthenticated("Basic " + base64.b64encode(b"u" * 5000 + b":pw").decode()),
        401,
    ),
    Case(
        "auth.user-name-of-129-characters",
        unauthenticated("Basic " + base64.b64encode(b"u" * 129 + b":pw").decode()),
        401,
    ),
    Case("auth.bearer-without-token", unauthenticated("Bearer"), 401),
    Case("auth.bearer-junk", unauthenticated("Bearer \u00ff\u00fe junk junk"), 401),
    Case("auth.bearer-8000-characters", unauthenticated("Bearer " + "t" * 8000), 401),
    Case("auth.digest-scheme", unauthenticated('Digest username="admin", response="x"'), 401),
    Case(
        "auth.latin-1-bytes",
        raw_request("GET", lambda c: c.path(), authorization="Basic \u00e9\u00e9"),
        401,
    ),
    Case(
        "auth.two-authorization-headers",
        raw_request("GET", lambda c: c.path(), ["Authorization: Basic Zm9vOmJhcg=="]),
        401,
    ),
    # -- HTTP framing
    Case(
        "http.invalid-chunk-size",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(chunked=True),
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
        400,
    ),
    Case(
        "http.chunk-without-terminator",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(chunked=True),
            b"2\r\n{}XX0\r\n\r\n",
        ),
        400,
    ),
    Case(
        "http.chunked-body-cut-off",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(chunked=True),
            b'c\r\n{"objects":[\r\n',
            then=half_close,
        ),
        400,
    ),
    Case(
        "http.body-shorter-than-content-length",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(100),
            b'{"objects":[',
            then=half_close,
        ),
        400,
    ),
    Case(
        "http.body-longer-than-content-length",
        raw_request(
            "POST", lambda c: c.path(rest="objects/"), post_raw_headers(5), b'{"objects":[]}'
        ),
        400,
    ),
    Case(
        "http.chunked-body-that-never-ends",
        over_socket(lambda c: stalled(c, chunked=True)),
        408,
        seconds=SERVER_TIMEOUT + 10,
    ),
    Case(
        "http.body-that-never-reaches-its-length",
        over_socket(lambda c: stalled(c, chunked=False)),
        408,
        seconds=SERVER_TIMEOUT + 10,
    ),
    # gunicorn refuses these before the application sees them, with an HTML page.
    Case(
        "http.content-length-and-chunked",
        raw_request(
            "POST",
            lambda c: c.path(rest="objects/"),
            post_raw_headers(4, chunked=True),
            b"0\r\n\r\n",
        ),
        400,
    ),
    Case(
        "http.negative-content-length",
        raw_request("POST", lambda c: c.path(rest="objects/"), post_raw_headers(-1), b"{}"),
        400,
    ),
    Case(
        "http.header-of-100-kB",
        raw_request("GET", lambda c: c.path(), ["X-Junk: " + "a" * 100_000]),
        431,
    ),
    Case(
        "http.150-headers",
        raw_request("GET", lambda c: c.path(), [f"X-Junk-{i}: a" for i in range(150)]),
        431,
    ),
    Case(  # the most match[id] values a filter takes (100) fit in a request line
        "http.request-line-of-100-ids",
        raw_request("GET", lambda c: c.path(rest=f"objects/?match[id]={_HUNDRED_IDS}")),
        200,
    ),
    Case(
        "http.request-line-of-9-kB",
        raw_request("GET", lambda c: c.path(rest="objects/?match[id]=" + "a" * 9000)),
        414,
    ),
]


def test_the_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 50
    assert len({case.name for case in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize(
    "case", [c for c in CATALOGUE if not c.over_socket], ids=lambda case: case.name
)
def test_hostile_request(ctx: Ctx, case: Case) -> None:
    check_case(ctx, case)


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.over_socket], ids=lambda c: c.name)
def test_hostile_request_over_a_socket(server_ctx: Ctx, case: Case) -> None:
    check_case(server_ctx, case)


def check_case(ctx: Ctx, case: Case) -> None:
    before = ctx.store.state()
    started = time.monotonic()
    reply = case.send(ctx)
    elapsed = time.monotonic() - started
    assert reply.status == case.status, (reply.status, reply.body[:500])
    assert elapsed < case.seconds, elapsed
    if case.taxii:
        assert reply.headers.get("content-type", "").replace(" ", "") == TAXII_21, reply.headers
        if case.status >= 400:
            assert_taxii_error(reply, case.status)
    if case.check is not None:
        case.check(ctx, reply)
    assert_serving(ctx)
    digest, statuses = ctx.store.state()
    assert digest == before[0], "the store changed"
    assert statuses == before[1] + (1 if case.records_status else 0)


# --------------------------------------------------------------------------- beyond the catalogue


def fetch_all_versions(context: Ctx, object_id: str) -> requests.Response:
    return context.session.get(
        context.url(rest=f"objects/{object_id}/"), params={"match[version]": "all"}, timeout=30
    )


def test_a_one_megabyte_description_under_the_limit_is_stored_unchanged(ctx: Ctx) -> None:
    obj = indicator(description="\u00e9t\u00e9 " * (MEBIBYTE // 4))
    pk = ctx.store.last_pk()
    response = post_json(ctx, {"objects": [obj]})
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == 1
    assert ctx.store.bodies_after(pk) == [obj]
    assert fetch_all_versions(ctx, obj["id"]).json()["objects"] == [obj]


def test_a_repeated_name_fails_its_object_only(ctx: Ctx) -> None:
    good, bad = indicator(), indicator()
    bad_text = json.dumps(bad)[:-1] + ', "pattern": "[file:name = \'evil.exe\']"}'
    text = envelope_text(json.dumps(good), bad_text)
    pk = ctx.store.last_pk()
    response = ctx.session.post(
        ctx.url(rest="objects/"), data=text, headers={"Content-Type": TAXII_21}, timeout=30
    )
    assert response.status_code == 202, response.text
    status = response.json()
    assert [s["id"] for s in status["successes"]] == [good["id"]]
    assert [f["id"] for f in status["failures"]] == [bad["id"]]
    assert "'pattern' is repeated" in status["failures"][0]["message"]
    # What is reported stored is what is stored: the good object, unchanged.
    assert ctx.store.bodies_after(pk) == [good]
    assert fetch_all_versions(ctx, bad["id"]).status_code == 404


def test_a_colon_escape_does_not_hide_a_repeated_name(ctx: Ctx) -> None:
    # "\u003a" is ':' inside a string: the cheap count cannot be used, json decides.
    good, bad = indicator(name="a\\u003ab"), indicator(name="x")
    text = envelope_text(
        json.dumps(good).replace("a\\\\u003ab", "a\\u003ab"),
        json.dumps(bad)[:-1] + ', "name": "y\\u003a"}',
    )
    pk = ctx.store.last_pk()
    response = ctx.session.post(
        ctx.url(rest="objects/"), data=text, headers={"Content-Type": TAXII_21}, timeout=30
    )
    status = response.json()
    assert (status["success_count"], status["failure_count"]) == (1, 1), status
    assert ctx.store.bodies_after(pk) == [{**good, "name": "a:b"}]


def test_integers_beyond_64_bits_are_stored_and_served_exactly(ctx: Ctx) -> None:
    # orjson would read them as doubles; node.jsoncodec hands such bodies to
    # the standard library, which keeps them exact (a STIX custom property may
    # hold any JSON number, RFC 8259 6 sets no range).
    big = 2**70 + 1
    obj = indicator(x_big=7, x_small=-(2**63))
    text = json.dumps({"objects": [obj]}).replace('"x_big": 7', f'"x_big": {big}')
    pk = ctx.store.last_pk()
    response = ctx.session.post(
        ctx.url(rest="objects/"), data=text, headers={"Content-Type": TAXII_21}, timeout=30
    )
    assert response.json()["success_count"] == 1
    (stored,) = ctx.store.bodies_after(pk)
    assert stored["x_big"] == big and isinstance(stored["x_big"], int)
    served = ctx.session.get(ctx.url(rest=f"objects/{obj['id']}/"), timeout=30)
    assert f'"x_big":{big}' in served.text.replace(" ", "")
    assert stored["x_small"] == -(2**63) and isinstance(stored["x_small"], int)


def test_an_integer_too_long_to_convert_fails_its_object_only(ctx: Ctx) -> None:
    """Beyond 4,300 digits Python will not convert an integer (a bound against
    quadratic parsing): the object holding one fails with the reason, its
    siblings are stored, and nothing is stored changed."""
    good, long_one, repeating = indicator(), indicator(x_long=7), indicator(name="x")
    text = json.dumps({"objects": [good, long_one, repeating]})
    text = text.replace('"x_long": 7', f'"x_long": {"9" * 5000}')
    text = text.replace('"name": "x"', '"name": "x", "name": "y"')
    pk = ctx.store.last_pk()
    response = ctx.session.post(
        ctx.url(rest="objects/"), data=text, headers={"Content-Type": TAXII_21}, timeout=30
    )
    assert response.status_code == 202, response.text
    status = response.json()
    assert status["success_count"] == 1
    messages = {failure["id"]: failure["message"] for failure in status["failures"]}
    assert "an integer of 5000 digits" in messages[long_one["id"]]
    assert "'name' is repeated" in messages[repeating["id"]]
    assert ctx.store.bodies_after(pk) == [good]


def test_stalled_bodies_on_every_thread_are_timed_out_and_the_server_recovers(
    server_ctx: Ctx,
) -> None:
    ctx = server_ctx
    # 2 workers x 4 threads: at most half of them wait for stalled bodies, for
    # SERVER_TIMEOUT at most; the other stalled bodies are refused at once.
    before = ctx.store.state()
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: stalled(ctx, chunked=True, waited=False), range(10)))
    assert [reply.status for reply in replies] == [408] * 10
    for reply in replies:
        assert_taxii_error(reply, 408)
    assert time.monotonic() - started < 3 * SERVER_TIMEOUT + 10
    assert_serving(ctx)
    assert ctx.store.state() == before


def test_stalled_headers_do_not_stop_the_server(server_ctx: Ctx) -> None:
    ctx = server_ctx
    sockets = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            sock.sendall(b"GET /taxii2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        time.sleep(0.5)
        # While the stalled connections stay open, each holds a thread only until
        # [server] timeout: a request is served within a few timeouts, not never.
        response = ctx.session.get(
            ctx.url(rest="objects/"), params={"limit": "1"}, timeout=4 * SERVER_TIMEOUT
        )
        assert response.status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server serves again once they are gone
            with contextlib.suppress(requests.RequestException):
                assert_serving(ctx)
                break
            time.sleep(0.2)


# --------------------------------------------------------------------------- random envelopes

MOMENTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1))
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
# Integers within 64 bits: beyond, orjson reads doubles (see the test above).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
PROPERTY_NAMES = st.from_regex(r"[a-z][a-z0-9_]{2,10}", fullmatch=True)
BAD_PROPERTY_NAMES = st.sampled_from(["X-Bad", "ab", "has space", "\u00fcber", "", "9lives"])
BAD_TIMESTAMPS = st.sampled_from(
    [
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-01-01T00:00:00+01:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00Z\n",
        "2024-01-01T24:00:00Z",
        "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",
        "",
    ]
)
WRONG_VALUES = st.sampled_from([None, 7, -1, 1.5, True, [], {}, [1], {"a": 1}, "", "x"])
KINDS = ("indicator", "malware", "identity", "ipv4-addr", "relationship", "note", "x-hostile-thing")
REQUIRED = {
    "indicator": ("pattern", "pattern_type", "valid_from", "created", "modified", "spec_version"),
    "malware": ("is_family", "created", "modified", "spec_version"),
    "identity": ("name", "created", "modified", "spec_version"),
    "ipv4-addr": ("value",),
    "relationship": ("relationship_type", "source_ref", "target_ref", "created"),
    "note": ("content", "object_refs", "modified"),
    "x-hostile-thing": ("x_payload",),
}


def stamp(moment: datetime, digits: int) -> str:
    fraction = f"{moment.microsecond:06d}000"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"


@st.composite
def valid_objects(draw, identifier: str, other: str) -> dict:
    """A valid STIX 2.1 object of a few types; ``identifier`` and ``other`` are UUIDs."""
    kind = draw(st.sampled_from(KINDS))
    created = draw(MOMENTS)
    modified = created + draw(st.timedeltas(timedelta(0), timedelta(days=3000)))
    digits = draw(st.integers(0, 9))
    obj: dict = {"type": kind, "spec_version": "2.1", "id": f"{kind}--{identifier}"}
    if kind != "ipv4-addr":
        obj["created"], obj["modified"] = stamp(created, digits), stamp(modified, digits)
    if kind == "indicator":
        obj |= {
            "pattern": "[url:value = 'http://example.test/']",
            "pattern_type": "stix",
            "valid_from": obj["created"],
            "name": draw(TEXT),
        }
    elif kind == "malware":
        obj |= {"name": draw(TEXT), "is_family": draw(st.booleans())}
    elif kind == "identity":
        obj |= {"name": draw(TEXT), "identity_class": "organization"}
    elif kind == "ipv4-addr":
        obj["value"] = f"198.51.100.{draw(st.integers(0, 255))}"
    elif kind == "relationship":
        obj |= {
            "relationship_type": "indicates",
            "source_ref": f"indicator--{other}",
            "target_ref": f"malware--{other}",
        }
    elif kind == "note":
        obj |= {"content": draw(TEXT), "object_refs": [f"indicator--{other}"]}
    else:
        obj["x_payload"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        obj["labels"] = draw(st.lists(TEXT, min_size=1, max_size=3))
    if kind != "ipv4-addr" and draw(st.booleans()):
        obj["confidence"] = draw(st.integers(0, 100))
    for _ in range(draw(st.integers(0, 2))):
        obj[f"x_{draw(PROPERTY_NAMES)}"] = draw(JSON_VALUES)
    return obj


@st.composite
def mutated(draw, obj: dict) -> object:
    """``obj`` broken in one of several ways (the oracle decides whether it still passes)."""
    obj = dict(obj)
    how = draw(st.integers(0, 9))
    if how == 0:
        del obj[draw(st.sampled_from(("type", "id", *REQUIRED[obj["type"]])))]
    elif how == 1:
        obj[draw(st.sampled_from(sorted(obj)))] = draw(WRONG_VALUES)
    elif how == 2:
        obj[draw(st.sampled_from(("created", "modified", "valid_from")))] = draw(BAD_TIMESTAMPS)
    elif how == 3 and "created" in obj:
        obj["created"], obj["modified"] = "2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"
    elif how == 4:
        obj[draw(BAD_PROPERTY_NAMES)] = draw(JSON_VALUES)
    elif how == 5:
        other_type = "malware" if obj["type"] != "malware" else "indicator"
        obj["id"] = other_type + obj["id"][obj["id"].index("--") :]
    elif how == 6:
        obj["spec_version"] = draw(st.sampled_from(["2.0", 2.1, "", "2.1 "]))
    elif how == 7:
        obj["confidence"] = draw(st.sampled_from([101, -1, 50.5, True, "50"]))
    elif how == 8:
        obj["labels"] = draw(st.sampled_from([[], [1], "label", [None]]))
    else:
        return draw(WRONG_VALUES | st.lists(JSON_VALUES, max_size=2))
    for _ in range(draw(st.integers(0, 2))):  # random extra properties, any name
        obj[draw(PROPERTY_NAMES | BAD_PROPERTY_NAMES)] = draw(JSON_VALUES)
    return obj


@st.composite
def envelopes(draw) -> list:
    size = draw(st.integers(0, 8))
    ids = draw(st.lists(st.uuids(version=4), min_size=2 * size, max_size=2 * size, unique=True))
    items: list = []
    for position in range(size):
        obj = draw(valid_objects(str(ids[2 * position]), str(ids[2 * position + 1])))
        items.append(draw(mutated(obj)) if draw(st.booleans()) else obj)
    return items


@dataclass(frozen=True)
class Corruption:
    """Damage to the envelope's text that no server may store anything from."""

    name: str
    apply: Callable[[bytes], bytes]


CORRUPTIONS = [
    Corruption("truncated", lambda text: text[: len(text) // 2]),
    Corruption("invalid UTF-8", lambda text: text.replace(b'"', b'"\xff', 1)),
    Corruption("lone surrogate", lambda text: text.replace(b"{", b'{"x_s": "\\udfff", ', 1)),
    Corruption("no objects member", lambda text: text.replace(b'"objects"', b'"object"', 1)),
    Corruption("repeated envelope name", lambda text: b'{"objects": [], ' + text[1:]),
]


def fresh_ids(text: bytes, items: list) -> bytes:
    """The text with every UUID drawn replaced by a new one: no id repeats across examples."""
    for found in {value for obj in items if isinstance(obj, dict) for value in _uuids(obj)}:
        text = text.replace(found.encode(), str(uuid.uuid4()).encode())
    return text


def _uuids(obj: dict) -> Iterator[str]:
    for key in ("id", "source_ref", "target_ref"):
        value = obj.get(key)
        if isinstance(value, str) and "--" in value:
            yield value.rsplit("--", 1)[1]
    for ref in obj.get("object_refs", ()) if isinstance(obj.get("object_refs"), list) else ():
        if isinstance(ref, str) and "--" in ref:
            yield ref.rsplit("--", 1)[1]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=envelopes(),
    corruption=st.none() | st.sampled_from(CORRUPTIONS),
    as_bundle=st.booleans(),
)
def test_random_envelopes_store_exactly_the_valid_objects(ctx, items, corruption, as_bundle):
    envelope: dict = {"objects": items}
    if as_bundle:
        envelope = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": items}
    text = fresh_ids(json.dumps(envelope).encode(), items)
    if corruption is not None:
        text = corruption.apply(text)
    sent = json.loads(text)["objects"] if corruption is None else []
    pk, (_, statuses) = ctx.store.last_pk(), ctx.store.state()

    response = ctx.session.post(
        ctx.url(rest="objects/"), data=text, headers={"Content-Type": TAXII_21}, timeout=30
    )

    assert response.status_code < 500, response.text
    event(f"answered {response.status_code}")
    if corruption is not None:
        assert response.status_code == 400, (corruption.name, response.text)
    if response.status_code != 202:
        assert_taxii_error(replied(response), response.status_code)
        assert ctx.store.bodies_after(pk) == []
        assert ctx.store.state()[1] == statuses
        return
    valid = [obj for obj in sent if object_problem(obj) is None]
    invalid = [obj for obj in sent if object_problem(obj) is not None]
    event(f"valid and invalid objects: {bool(valid)}, {bool(invalid)}")
    status = response.json()
    assert (status["success_count"], status["failure_count"]) == (len(valid), len(invalid))
    assert [s["id"] for s in status.get("successes", [])] == [obj["id"] for obj in valid]
    failed_ids = [f["id"] for f in status.get("failures", [])]
    assert failed_ids == [
        obj["id"] if isinstance(obj, dict) and isinstance(obj.get("id"), str) else ""
        for obj in invalid
    ]
    # The store holds exactly the valid objects, as they were sent ...
    assert ctx.store.bodies_after(pk) == valid
    # ... and serves them, and nothing under the ids of the invalid ones.
    for obj in valid:
        assert fetch_all_versions(ctx, obj["id"]).json()["objects"] == [obj]
    for object_id in failed_ids:
        if object_id and "\x00" not in object_id and "/" not in object_id:
            response = fetch_all_versions(ctx, object_id)
            assert response.status_code == 404 or object_id in {o["id"] for o in valid}
