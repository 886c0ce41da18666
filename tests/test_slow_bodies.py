"""How the server's socket tells an ordinary body that arrives in pieces from a
slow client (``node.server._DeadlineSocket``), on a socket pair: deterministic,
where many writers against a real server (tests/test_serving.py) show the same
behaviour over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from node.errors import BodyTimeout
from node.server import _PROMPT_WAIT, _DeadlineSocket

READ_TIMEOUT = 2.0


@dataclass
class FakeWorker:
    """What ``_DeadlineSocket`` asks of its gunicorn worker."""

    slow_waits: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(1)
    )
    request_timeout: float = 30.0
    cfg: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(timeout=READ_TIMEOUT))

    def request_deadline(self, conn) -> float:
        return conn.request_started + self.request_timeout

    def _late_description(self) -> str:
        return "late"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client_side = socket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


def reader(sock: socket.socket, worker: FakeWorker) -> tuple[_DeadlineSocket, SimpleNamespace]:
    conn = SimpleNamespace(request_started=time.monotonic())
    return _DeadlineSocket(sock, conn, worker), conn


def send_later(sock: socket.socket, data: bytes, after: float) -> threading.Timer:
    timer = threading.Timer(after, sock.sendall, args=(data,))
    timer.start()
    return timer


def test_a_brief_pause_is_waited_for_while_every_slow_slot_is_taken(pair) -> None:
    server_side, client_side = pair
    worker = FakeWorker()
    worker.slow_waits.acquire()  # another client is being waited for
    wrapped, conn = reader(server_side, worker)
    send_later(client_side, b"rest of the body", _PROMPT_WAIT / 4).join()
    assert wrapped.recv(100) == b"rest of the body"
    assert not getattr(conn, "slow", False)


def test_a_long_pause_without_a_free_slot_is_refused_as_a_slow_client(pair) -> None:
    server_side, _client_side = pair
    worker = FakeWorker()
    worker.slow_waits.acquire()
    wrapped, conn = reader(server_side, worker)
    started = time.monotonic()
    with pytest.raises(BodyTimeout, match="as many slow clients as it allows"):
        wrapped.recv(100)
    assert _PROMPT_WAIT <= time.monotonic() - started < READ_TIMEOUT
    assert conn.slow and conn.read_failed


def test_a_slow_connection_is_refused_at_once_without_a_free_slot(pair) -> None:
    server_side, _client_side = pair
    worker = FakeWorker()
    worker.slow_waits.acquire()
    wrapped, conn = reader(server_side, worker)
    conn.slow = True
    started = time.monotonic()
    with pytest.raises(BodyTimeout, match="slow clients"):
        wrapped.recv(100)
    assert time.monotonic() - started < _PROMPT_WAIT


def test_a_free_slot_waits_up_to_the_read_timeout_and_then_says_so(pair) -> None:
    server_side, client_side = pair
    worker = FakeWorker()
    wrapped, conn = reader(server_side, worker)
    timer = send_later(client_side, b"late piece", _PROMPT_WAIT * 2)
    assert wrapped.recv(100) == b"late piece"  # waited past the prompt wait
    timer.join()
    assert conn.slow  # it has been slow once
    with pytest.raises(BodyTimeout, match=f"nothing for {READ_TIMEOUT:g} s"):
        wrapped.recv(100)
    assert worker.slow_waits.acquire(blocking=False)  # the slot was given back


def test_the_request_deadline_bounds_every_wait(pair) -> None:
    server_side, _client_side = pair
    worker = FakeWorker(request_timeout=0.3)
    wrapped, _conn = reader(server_side, worker)
    started = time.monotonic()
    with pytest.raises(BodyTimeout, match="late"):
        wrapped.recv(100)
    assert time.monotonic() - started < READ_TIMEOUT
