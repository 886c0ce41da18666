"""Keep serving: hostile and unusual requests of issue 9, and collection aliases in paths.

The HTTP-layer cases run in process (``tests.inprocess``: the app's test client) on a
store of their own; what depends on gunicorn (trickling clients, requests
without Host, redirects of non-canonical paths) runs against a real server on
a loopback port (see the later sections).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import trustme
from flask.testing import FlaskClient

from tests.inprocess import new_inprocess_node
from tests.nodes import (
    ADMIN_PASSWORD,
    COLLECTIONS,
    RunningNode,
    free_port,
    new_node,
    random_id,
)

TAXII_21 = "application/taxii+json;version=2.1"
CREATED = "2024-05-01T12:00:00.000Z"
# gamma: never written to by the in-process tests' neighbours on the real server.
COLLECTION_PATH = f"/api/collections/{COLLECTIONS['gamma']}/"


# --------------------------------------------------------------------------- in-process node


@dataclass
class AdminClient:
    """The admin's requests to an in-process node, through its app's test client."""

    client: FlaskClient
    api_root: str = "/api/"

    def collection(self, alias: str, name: str | None = None) -> str:
        """The collection's URL path, by its id or (``name=alias``) by its alias."""
        return f"{self.api_root}collections/{name or COLLECTIONS[alias]}/"

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers=admin_headers(), **kwargs)

    def post(self, path: str, body: bytes | str | dict):
        data = json.dumps(body) if isinstance(body, dict) else body
        headers = {**admin_headers(), "Content-Type": TAXII_21}
        return self.client.post(path, data=data, headers=headers)

    def delete(self, path: str, **kwargs):
        return self.client.delete(path, headers=admin_headers(), **kwargs)


def admin_headers() -> dict[str, str]:
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII_21}


@pytest.fixture(scope="module")
def node(tmp_path_factory, module_store_url) -> Iterator[AdminClient]:
    """An in-process node on a store of its own: a SQLite file, or a PostgreSQL schema."""
    served = new_inprocess_node(tmp_path_factory.mktemp("serving"), "serving-node",
                                module_store_url).start()  # fmt: skip
    assert served.app is not None
    yield AdminClient(served.app.test_client())
    served.stop()


def indicator(**extra) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": random_id("indicator"),
        "created": CREATED,
        "modified": CREATED,
        "name": "serving test",
        "pattern": "[ipv4-addr:value = '198.51.100.9']",
        "pattern_type": "stix",
        "valid_from": CREATED,
        **extra,
    }


def objects_of(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json().get("objects", [])


def assert_taxii_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"].replace(" ", "") == TAXII_21
    body = response.get_json()
    assert body["http_status"] == str(status) and body["description"]
    return body


# --------------------------------------------------------------------------- aliases


def test_a_collection_alias_works_like_its_id_on_every_endpoint(node):
    by_alias = node.collection("alpha", name="alpha")
    by_id = node.collection("alpha")
    obj = indicator()

    status = node.post(by_alias + "objects/", {"objects": [obj]})
    assert status.status_code == 202, status.get_data(as_text=True)
    assert status.get_json()["success_count"] == 1

    assert node.get(by_alias).get_json() == node.get(by_id).get_json()
    assert node.get(by_alias).get_json()["id"] == COLLECTIONS["alpha"]
    assert objects_of(node.get(by_alias + "objects/", query_string={"match[id]": obj["id"]})) == [
        obj
    ]
    assert objects_of(node.get(f"{by_alias}objects/{obj['id']}/")) == [obj]
    versions = node.get(f"{by_alias}objects/{obj['id']}/versions/")
    assert versions.get_json()["versions"] == [CREATED]
    manifest = objects_of(node.get(by_alias + "manifest/", query_string={"match[id]": obj["id"]}))
    assert [record["id"] for record in manifest] == [obj["id"]]
    # The object went into the collection with that id, and nowhere else.
    assert objects_of(node.get(f"{by_id}objects/{obj['id']}/")) == [obj]
    assert_taxii_error(node.get(f"{node.collection('beta', name='beta')}objects/{obj['id']}/"), 404)

    assert node.delete(f"{by_alias}objects/{obj['id']}/").status_code == 200
    assert_taxii_error(node.get(f"{by_id}objects/{obj['id']}/"), 404)


def test_an_unknown_alias_or_api_root_is_404(node):
    assert_taxii_error(node.get(node.collection("alpha", name="no-such-alias")), 404)
    assert_taxii_error(node.get(node.collection("alpha", name="no-such-alias") + "objects/"), 404)
    assert_taxii_error(node.get("/other-root/collections/alpha/objects/"), 404)
    assert_taxii_error(node.get("/other-root/"), 404)


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("match[spec_version]", "\uff12.\uff11"),  # fullwidth digits
        ("match[spec_version]", "\u0662.\u0661"),  # Arabic-Indic digits
        ("limit", "\uff11\uff10"),
        ("limit", "\u0663"),
        ("added_after", "\uff12\uff10\uff12\uff14-01-01T00:00:00Z"),
        ("match[version]", "2024-01-01T00:00:00.\uff11Z"),
    ],
)
def test_filters_take_ascii_digits_only(node, name, value):
    body = assert_taxii_error(
        node.get(node.collection("alpha") + "objects/", query_string={name: value}), 400
    )
    assert name in body["description"]


def test_ascii_spec_version_filter_still_matches(node):
    obj = indicator()
    node.post(node.collection("alpha") + "objects/", {"objects": [obj]})
    found = node.get(
        node.collection("alpha") + "objects/",
        query_string={"match[id]": obj["id"], "match[spec_version]": "2.1"},
    )
    assert objects_of(found) == [obj]


# --------------------------------------------------------------------------- deep nesting


def nested_list(levels: int) -> object:
    """``levels`` levels of nested JSON arrays ([] is one level)."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


def deep_object(levels: int) -> dict:
    """An indicator nested ``levels`` deep, counting the object itself as level 1."""
    return indicator(x_deep=nested_list(levels - 1))


def text_of(levels: int) -> str:
    """JSON of ``deep_object`` written without recursion (json.dumps stops near 1000)."""
    obj = indicator()
    head = json.dumps(obj)[:-1]
    return head + ', "x_deep": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


@pytest.mark.parametrize("levels", [255, 600, 1000, 1023, 1100, 5000])
def test_an_object_nested_too_deeply_fails_alone_and_its_siblings_are_stored(node, levels):
    before, after = indicator(), indicator()
    deep_text = text_of(levels)
    deep_id = json.loads(deep_text[: deep_text.index(', "x_deep"')] + "}")["id"]
    body = '{"objects": [' + ", ".join([json.dumps(before), deep_text, json.dumps(after)]) + "]}"

    response = node.post(node.collection("alpha") + "objects/", body)

    assert response.status_code == 202, response.get_data(as_text=True)[:500]
    status = response.get_json()
    assert [s["id"] for s in status["successes"]] == [before["id"], after["id"]]
    (failure,) = status["failures"]
    assert failure["id"] == deep_id
    assert "nested deeper than 254 levels" in failure["message"]
    for obj in (before, after):
        assert objects_of(node.get(f"{node.collection('alpha')}objects/{obj['id']}/")) == [obj]
    assert_taxii_error(node.get(f"{node.collection('alpha')}objects/{deep_id}/"), 404)


def test_an_object_nested_254_levels_is_stored_and_served_again(node):
    obj = deep_object(254)
    response = node.post(node.collection("alpha") + "objects/", {"objects": [obj]})
    assert response.status_code == 202
    assert response.get_json()["success_count"] == 1
    assert objects_of(node.get(f"{node.collection('alpha')}objects/{obj['id']}/")) == [obj]


def test_an_envelope_deeper_than_json_allows_outside_its_objects_is_refused(node):
    body = '{"objects": [], "x": ' + "[" * 2000 + "]" * 2000 + "}"
    assert_taxii_error(node.post(node.collection("alpha") + "objects/", body), 400)
    unterminated = '{"objects": [' + json.dumps(indicator()) + ", " + "[" * 5000
    assert_taxii_error(node.post(node.collection("alpha") + "objects/", unterminated), 400)


def test_a_deep_object_repeating_names_elsewhere_in_the_envelope(node):
    repeating = json.dumps(indicator())[:-1] + ', "name": "again"}'
    kept = indicator()
    body = "{" + '"objects": [' + ", ".join([text_of(1000), repeating, json.dumps(kept)]) + "]}"
    status = node.post(node.collection("alpha") + "objects/", body).get_json()
    assert [s["id"] for s in status["successes"]] == [kept["id"]]
    deep, repeated = status["failures"]  # in the order of the envelope
    assert "nested deeper than 254" in deep["message"]
    assert "'name' is repeated" in repeated["message"]
    assert repeated["id"] == json.loads(repeating)["id"]


# --------------------------------------------------------------------------- integers


BIG = [2**64 + 1, -(2**63) - 1, 2**64, 10**40, -(10**80), 2**64 - 1, -(2**63)]


def test_integers_beyond_64_bits_are_stored_and_served_exactly(node):
    obj = indicator(x_big=BIG, x_one=18446744073709551617, x_float=1.5, x_small=7)
    text = json.dumps({"objects": [obj]})
    assert "18446744073709551617" in text

    status = node.post(node.collection("alpha") + "objects/", text)
    assert status.status_code == 202 and status.get_json()["success_count"] == 1

    served = node.get(f"{node.collection('alpha')}objects/{obj['id']}/").get_data(as_text=True)
    assert "18446744073709551617" in served and "e+19" not in served
    (back,) = json.loads(served)["objects"]  # the standard library keeps integers exact
    assert back == obj
    assert back["x_big"] == BIG and all(type(value) is int for value in back["x_big"])
    # Re-posting the same version is "already present", not a different object.
    again = node.post(node.collection("alpha") + "objects/", text).get_json()
    assert again["successes"][0]["message"] == "already present"


def test_a_long_integer_elsewhere_does_not_let_invalid_json_through(node):
    for bad in (
        '{"objects": [], "n": 18446744073709551617, "x": NaN}',
        '{"objects": [], "n": 18446744073709551617, "x": 1e400}',
        '{"objects": [], "n": 18446744073709551617, "x": "\\udfff"}',
        b'{"objects": [], "n": 18446744073709551617, "x": "\xff"}',
    ):
        assert_taxii_error(node.post(node.collection("alpha") + "objects/", bad), 400)


def test_integer_with_too_many_digits_fails_its_object_with_a_reason(node):
    text = json.dumps({"objects": [indicator()]})[:-3] + ', "x_n": ' + "9" * 5000 + "}]}"
    response = node.post(node.collection("alpha") + "objects/", text)
    assert response.status_code == 202
    (failure,) = response.json["failures"]
    assert "an integer of 5000 digits" in failure["message"]


def test_integer_with_too_many_digits_in_the_envelope_itself_is_a_400(node):
    text = '{"objects": [], "x_n": ' + "9" * 5000 + "}"
    body = assert_taxii_error(node.post(node.collection("alpha") + "objects/", text), 400)
    assert "integer of 5000 digits" in body["description"]


# --------------------------------------------------------------------------- a real server

READ_TIMEOUT = 5  # [server] timeout: each wait for more bytes
REQUEST_TIMEOUT = 8  # [server] request_timeout: a whole request, head and body
TRICKLERS = 48
TRICKLE_EVERY = 2.0  # seconds between the bytes of a trickling client, under READ_TIMEOUT


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningNode]:
    running = new_node(
        tmp_path_factory.mktemp("served"),
        "served-node",
        None,
        workers=2,
        server_toml=f"timeout = {READ_TIMEOUT}\nrequest_timeout = {REQUEST_TIMEOUT}",
    )
    running.start()
    yield running
    running.stop()


def admin_session() -> requests.Session:
    session = requests.Session()
    session.auth = ("admin", ADMIN_PASSWORD)
    session.headers["Accept"] = TAXII_21
    return session


class Tricklers:
    """``count`` connections that each send one byte of a request every
    ``every`` seconds, from one thread, until stopped or answered."""

    def __init__(self, port: int, request: bytes, count: int, every: float) -> None:
        self.port, self.request, self.every = port, request, every
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        self.sent = [0] * count
        self.answers: list[bytes | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tricklers:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for index, sock in enumerate(self.sockets):
                if self.answers[index] is None:
                    self._step(index, sock)
            self._stop.wait(self.every)

    def _step(self, index: int, sock: socket.socket) -> None:
        """Collect an answer if the server sent one, else send the next byte."""
        sock.setblocking(False)
        try:
            self.answers[index] = sock.recv(65536)  # b"" when the server closed
            return
        except BlockingIOError:
            pass
        except OSError:
            self.answers[index] = b""
            return
        finally:
            sock.setblocking(True)
        position = self.sent[index]
        if position < len(self.request):
            try:
                sock.send(self.request[position : position + 1])
            except OSError:
                self.answers[index] = b""
                return
            self.sent[index] = position + 1

    def answered(self) -> int:
        return sum(answer is not None for answer in self.answers)


def head_of(path: str, port: int, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {TAXII_21}\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\n"
        f"{extra}X-Padding: {'p' * 200}\r\n\r\n"
    ).encode()


def test_trickling_heads_do_not_hold_the_threads(server):
    """48 clients each send one byte of their head every 2 s (each wait under the
    5 s read timeout): real requests are still served, and each trickler is
    answered 408 (or closed) once its request deadline has passed."""
    with Tricklers(server.port, head_of("/taxii2/", server.port), TRICKLERS, TRICKLE_EVERY) as slow:
        time.sleep(TRICKLE_EVERY * 2)  # every trickler has sent bytes and is waiting
        assert slow.answered() == 0
        with admin_session() as session:
            for _ in range(10):  # more than the 2 x 4 threads
                response = session.get(server.base_url + "/taxii2/", timeout=REQUEST_TIMEOUT)
                assert response.status_code == 200
        deadline = time.monotonic() + REQUEST_TIMEOUT + READ_TIMEOUT + 3 * TRICKLE_EVERY
        while slow.answered() < TRICKLERS and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slow.answered() == TRICKLERS
        assert max(slow.sent) < len(head_of("/taxii2/", server.port))  # none finished its head
        replies = [answer for answer in slow.answers if answer]
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in replies), replies[:1]
        assert all(b'"http_status": "408"' in answer for answer in replies)


def test_trickling_bodies_take_at_most_half_the_threads(server):
    """48 clients send a whole head, then one body byte every 2 s: real requests are
    still served; the tricklers beyond half the threads are refused at once."""
    envelope = json.dumps({"objects": [indicator()]}).encode()
    head = (
        f"POST {COLLECTION_PATH}objects/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Accept: {TAXII_21}\r\nContent-Type: {TAXII_21}\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\n"
        f"Content-Length: {len(envelope)}\r\n\r\n"
    ).encode()
    with Tricklers(server.port, b"", TRICKLERS, TRICKLE_EVERY) as slow:
        for sock in slow.sockets:
            sock.sendall(head)
        slow.request = head + envelope
        slow.sent = [len(head)] * TRICKLERS
        time.sleep(TRICKLE_EVERY * 2)
        with admin_session() as session:
            for _ in range(10):
                response = session.get(server.base_url + "/taxii2/", timeout=REQUEST_TIMEOUT)
                assert response.status_code == 200
        deadline = time.monotonic() + REQUEST_TIMEOUT + READ_TIMEOUT + 3 * TRICKLE_EVERY
        while slow.answered() < TRICKLERS and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slow.answered() == TRICKLERS
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in slow.answers if answer)
    # Nothing of the trickled envelopes was stored.
    with admin_session() as session:
        listed = session.get(server.base_url + COLLECTION_PATH + "objects/", timeout=30)
        assert listed.status_code == 200 and listed.json().get("objects", []) == []


def post_in_two_pieces(
    port: int, envelope: bytes, pause: float, start: threading.Barrier
) -> tuple[int, bytes]:
    """POST ``envelope`` with its head and first half at once, the rest after
    ``pause`` seconds (as a client on a busy machine may); the status and body.
    Connected clients start together when ``start`` lets them."""
    head = (
        f"POST /api/collections/{COLLECTIONS['alpha']}/objects/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAccept: {TAXII_21}\r\nContent-Type: {TAXII_21}\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\nConnection: close\r\n"
        f"Content-Length: {len(envelope)}\r\n\r\n"
    ).encode()
    half = len(envelope) // 2
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        start.wait(timeout=30)
        sock.sendall(head + envelope[:half])
        time.sleep(pause)
        sock.sendall(envelope[half:])
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_bodies_that_pause_briefly_are_not_slow_clients(server):
    """Eight writers at once (2 workers x 4 threads, so twice the slow-client
    slots), each body arriving in two pieces 0.03 s apart: every one is stored.
    A pause that short is how bodies arrive on a loaded machine, not a slow client."""
    envelopes = [json.dumps({"objects": [indicator()]}).encode() for _ in range(8)]
    start = threading.Barrier(len(envelopes))
    with ThreadPoolExecutor(len(envelopes)) as pool:
        answers = list(
            pool.map(lambda e: post_in_two_pieces(server.port, e, 0.03, start), envelopes)
        )
    assert [status for status, _ in answers] == [202] * len(envelopes), answers[:1]
    assert all(json.loads(body)["success_count"] == 1 for _, body in answers)


def test_a_stalled_body_is_told_how_long_the_server_waited(server):
    head = (
        f"POST /api/collections/{COLLECTIONS['alpha']}/objects/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nAccept: {TAXII_21}\r\nContent-Type: {TAXII_21}\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    status, _headers_seen, body = raw_exchange(server.port, head + b'{"objects": [')
    assert status == 408
    assert json.loads(body)["description"] == (
        f"the body stopped arriving (nothing for {READ_TIMEOUT} s)"
    )


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def discovery_request(host_lines: str, protocol: str = "HTTP/1.1") -> bytes:
    return (
        f"GET /taxii2/ {protocol}\r\n{host_lines}Accept: {TAXII_21}\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\nConnection: close\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    "host_lines",
    [
        "",  # no Host at all
        "Host: \r\n",
        "Host: a b\r\n",
        "Host: http://127.0.0.1/\r\n",
        "Host: 127.0.0.1/api\r\n",
        "Host: 127.0.0.1:port\r\n",
        "Host: 127.0.0.1\r\nHost: 127.0.0.2\r\n",
    ],
)
def test_an_http_1_1_request_without_one_valid_host_is_400(server, host_lines):
    status, headers, body = raw_exchange(server.port, discovery_request(host_lines))
    assert status == 400, body
    assert headers["content-type"].replace(" ", "") == TAXII_21
    error = json.loads(body)
    assert error["http_status"] == "400" and "host" in error["description"].lower()


@pytest.mark.parametrize(
    ("host_lines", "protocol", "advertised"),
    [
        ("Host: 127.0.0.1:{port}\r\n", "HTTP/1.1", "http://127.0.0.1:{port}/api/"),
        ("Host: localhost:{port}\r\n", "HTTP/1.1", "http://localhost:{port}/api/"),
        ("Host: [::1]:{port}\r\n", "HTTP/1.1", "http://[::1]:{port}/api/"),
        ("", "HTTP/1.0", "http://127.0.0.1:{port}/api/"),  # HTTP/1.0 may leave it out
    ],
)
def test_discovery_advertises_the_host_asked_for(server, host_lines, protocol, advertised):
    request = discovery_request(host_lines.format(port=server.port), protocol)
    status, _, body = raw_exchange(server.port, request)
    assert status == 200, body
    discovery = json.loads(body)
    assert discovery["default"] == advertised.format(port=server.port)
    assert discovery["api_roots"] == [discovery["default"]]
    assert not discovery["default"].startswith("http:///")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api//collections/{id}/objects/"),
        ("POST", "/api/collections/{id}/objects"),
        ("DELETE", "/api//collections/{id}/objects/indicator--{uuid}/"),
    ],
)
def test_a_write_to_a_non_canonical_path_is_answered_404_not_redirected(server, method, path):
    envelope = {"objects": [indicator()]}
    url = server.base_url + path.format(id=COLLECTIONS["gamma"], uuid=envelope["objects"][0]["id"])
    with admin_session() as session:
        response = session.request(
            method,
            url.replace("indicator--indicator--", "indicator--"),
            data=json.dumps(envelope).encode(),
            headers={"Content-Type": TAXII_21},
            timeout=30,
            allow_redirects=False,
        )
        assert response.status_code == 404, response.text
        assert response.headers["Content-Type"].replace(" ", "") == TAXII_21
        assert "canonical path" in response.json()["description"]
        assert "Location" not in response.headers
        # The connection stays usable, and nothing was stored.
        listed = session.get(server.base_url + COLLECTION_PATH + "objects/", timeout=30)
        assert listed.status_code == 200 and listed.json().get("objects", []) == []


def test_a_read_of_a_non_canonical_path_is_redirected_with_a_location(server):
    with admin_session() as session:
        response = session.get(
            server.base_url + "/api//collections/", timeout=30, allow_redirects=False
        )
        assert response.status_code == 308
        assert response.headers["Location"].endswith("/api/collections/")
        followed = session.get(server.base_url + "/api//collections/", timeout=30)
        assert followed.status_code == 200 and followed.json()["collections"]


def test_sigterm_answers_the_request_in_flight_then_the_server_exits_cleanly(tmp_path):
    """SIGTERM is the graceful stop (``RunningNode.stop`` too): a POST whose body is
    still arriving when it comes is answered and stored, then the server exits 0.
    Ctrl-C's quick stop would reset the connection."""
    running = new_node(tmp_path, "stopping-node", None)
    running.start()
    assert running.process is not None
    try:
        envelope = json.dumps({"objects": [indicator()]}).encode()
        half = len(envelope) // 2
        post = (
            f"POST /api/collections/{COLLECTIONS['alpha']}/objects/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{running.port}\r\nAccept: {TAXII_21}\r\n"
            f"Content-Type: {TAXII_21}\r\nAuthorization: {admin_headers()['Authorization']}\r\n"
            f"Connection: close\r\nContent-Length: {len(envelope)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
            # A first request answered on this connection: the worker has accepted it.
            get = (
                f"GET /taxii2/ HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n"
                f"Accept: {TAXII_21}\r\nAuthorization: {admin_headers()['Authorization']}\r\n\r\n"
            )
            sock.sendall(get.encode())
            first = http.client.HTTPResponse(sock)
            first.begin()
            first.read()
            assert first.status == 200
            sock.sendall(post + envelope[:half])
            os.killpg(running.process.pid, signal.SIGTERM)
            sock.sendall(envelope[half:])
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 202
            assert json.loads(response.read())["success_count"] == 1
        assert running.process.wait(timeout=30) == 0
    finally:
        running.stop()


# --------------------------------------------------------------------------- TLS set-up


@pytest.fixture(scope="module")
def https_server(tmp_path_factory) -> Iterator[RunningNode]:
    directory = tmp_path_factory.mktemp("served-tls")
    ca = trustme.CA(organization_name="Serving test CA")
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, bundle = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(bundle))
    running = RunningNode(
        directory=directory / "tls-node",
        name="tls-node",
        store_url=f"sqlite:///{directory / 'tls-node' / 'node.db'}",
        port=free_port(),
        tls_cert=cert,
        tls_key=key,
        ca_bundle=bundle,
        workers=2,
        server_toml=f"timeout = {READ_TIMEOUT}\nrequest_timeout = {REQUEST_TIMEOUT}",
    )
    running.init()
    running.add_user("admin", ADMIN_PASSWORD, admin=True)
    running.start()
    yield running
    running.stop()


def test_stalled_tls_handshakes_do_not_hold_the_threads(https_server):
    """Clients that stop in the middle of their ClientHello (more of them than
    threads): the server cuts each handshake after [server] timeout and serves."""
    # A TLS record header announcing 512 bytes of handshake, and only a few of them.
    partial_hello = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + b"\x00" * 10
    stalled = [socket.create_connection(("127.0.0.1", https_server.port)) for _ in range(12)]
    try:
        for sock in stalled:
            sock.sendall(partial_hello)
        time.sleep(1)
        with admin_session() as session:
            response = session.get(
                https_server.base_url + "/taxii2/",
                verify=https_server.verify,
                timeout=4 * READ_TIMEOUT,
            )
            assert response.status_code == 200
        for sock in stalled:  # each was cut: the server closed its side
            sock.settimeout(3 * READ_TIMEOUT)
            assert sock.recv(100) == b""
    finally:
        for sock in stalled:
            sock.close()
