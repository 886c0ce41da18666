"""Serving the app with gunicorn, a production WSGI server (never Flask's dev server).

Each gunicorn worker builds its own app with ``create_app`` after the fork,
so no database connection is shared between processes.

With ``[server] tls_cert`` the node serves HTTPS only, TLS 1.2 or later; with
``tls_client_ca`` it also asks clients for a certificate (optional, so that
people with passwords or tokens still get in) and verifies any it is given
against that CA bundle: an untrusted certificate fails the handshake.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import NoReturn

from gunicorn.app.base import BaseApplication
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from node import metrics
from node.config import Config, ConfigError, ServerConfig
from node.errors import BodyTimeout
from node.mediatypes import TAXII_21

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


# Heads are gathered without a thread up to this size; a larger one is left to
# gunicorn's parser, which refuses it (431) or reads the rest under the deadline.
_MAX_GATHERED_HEAD = 64 * 1024
# How long a thread waits for the first bytes of a new connection before the
# connection is parked on the poller (gunicorn itself waits 5 s).
_FIRST_BYTES_WAIT = 0.1
# How long a body read may wait before its connection counts as slow.
_PROMPT_WAIT = 0.1
# How long a closing connection is read (and discarded) before it is closed.
_LINGER_SECONDS = 2.0
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _head_complete(held: bytes) -> bool:
    """Whether ``held`` contains the end of a request's head (RFC 9112, 2.1: an empty
    line; gunicorn also takes bare LF)."""
    return b"\r\n\r\n" in held or b"\n\n" in held


class TaxiiThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, hardened against slow clients, with TAXII error bodies.

    gthread hands a connection to a thread as soon as it is readable, and the
    thread then blocks until the request's head is in: 48 clients sending one
    header byte every 2 s, each read well within any read timeout, held every
    thread and real requests timed out.  Here:

    * A request's head is gathered without holding a thread: a thread takes
      what has arrived and, while the head is incomplete, parks the connection
      on gunicorn's poller until more bytes come.  gunicorn's parser only ever
      sees complete heads.
    * Every request has a deadline, ``[server] request_timeout`` from its first
      byte, for its head and body together, however steadily it trickles;
      past it, the client gets 408 and the connection closes.  Each wait for
      more bytes is also bounded by ``[server] timeout``.
    * At most half of the threads (at least one) may wait for a slow body at
      once (``_DeadlineSocket``: a body is slow once a read of it has waited
      over ``_PROMPT_WAIT``); beyond that a slow body's read fails (408), so
      slow clients cannot take the threads others need.
    * Errors gunicorn answers itself (a malformed request line, 414, 431, bad
      chunking...) get a TAXII error body (3.6.1) instead of an HTML page.

    This uses gthread internals of gunicorn 27 (``TConn``, ``_DEFER``,
    ``pending_conns``), hence the pin in pyproject.toml.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = float(self.app.node_config.server.request_timeout)
        self.slow_waits = threading.BoundedSemaphore(max(1, self.cfg.threads // 2))
        self.lingering: list[tuple[float, object]] = []  # (until, socket) being closed
        self.setting_up: dict[int, tuple[float, int]] = {}  # id(conn) -> (until, descriptor)
        self._setting_up_lock = threading.Lock()

    def init_process(self) -> None:
        threading.Thread(target=self._cut_slow_set_ups, name="set-up watchdog", daemon=True).start()
        super().init_process()

    def _cut_slow_set_ups(self) -> None:
        """gunicorn sets a connection up (the TLS handshake) on a blocking socket
        without a timeout: a client that stops halfway through its ClientHello
        would hold a thread for ever.  Past ``[server] timeout``, its socket is
        shut down, which ends the handshake with an error."""
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            # Under the lock: a registered connection's descriptor is still its own.
            with self._setting_up_lock:
                for until, descriptor in self.setting_up.values():
                    if until <= now:
                        _shut_down(descriptor)

    def handle(self, conn):
        self._instrument(conn)
        if not conn.initialized:
            ready = self._set_up(conn)
            if ready is not True:
                return ready
        if not conn.is_http2 and conn.parser is not None:
            waiting = self._gather_head(conn)
            if waiting is not None:
                return waiting
        try:
            return super().handle(conn)
        finally:
            conn.request_started = None
            conn.slow = False  # each request of a kept-alive connection starts prompt

    def _instrument(self, conn) -> None:
        """Once per connection: after gunicorn's own set-up (TLS, the parser), the
        socket gets read timeouts and the parser reads through ``_DeadlineSocket``."""
        if hasattr(conn, "plain_init"):
            return
        conn.plain_init = conn.init
        conn.request_started = None

        def init_with_deadline() -> None:
            conn.plain_init()
            conn.sock.settimeout(self.cfg.timeout)
            unreader = getattr(conn.parser, "unreader", None)
            if unreader is not None and not isinstance(unreader.sock, _DeadlineSocket):
                unreader.sock = _DeadlineSocket(unreader.sock, conn, self)

        conn.init = init_with_deadline

    def _set_up(self, conn):
        """True once a new connection is set up; else what ``handle`` returns."""
        if not conn.data_ready and not conn.wait_for_data(_FIRST_BYTES_WAIT):
            return gthread._DEFER  # no bytes yet: wait on the poller, not in a thread
        conn.data_ready = True
        with self._setting_up_lock:
            # The descriptor, not the socket: TLS wrapping detaches the socket object.
            self.setting_up[id(conn)] = (time.monotonic() + self.cfg.timeout, conn.sock.fileno())
        try:
            conn.sock.setblocking(True)
            conn.init()
        except (OSError, ssl.SSLError) as exc:
            self.log.debug("connection set-up failed: %s", exc)
            return False
        finally:
            with self._setting_up_lock:
                del self.setting_up[id(conn)]
        return True

    def _gather_head(self, conn):
        """None when the head is in (or is gunicorn's to refuse); else what ``handle``
        returns: park the connection (``_DEFER``) or close it (False)."""
        unreader = conn.parser.unreader
        held = unreader.take_buffered()
        try:
            held, closed = _read_available(_raw(unreader.sock), held, _MAX_GATHERED_HEAD)
        finally:
            unreader.unread(held)
        if held and conn.request_started is None:
            conn.request_started = time.monotonic()
        if not held:
            return False if closed else gthread._DEFER
        if closed or len(held) >= _MAX_GATHERED_HEAD or _head_complete(held):
            return None
        if time.monotonic() >= conn.request_started + self.request_timeout:
            self._send(conn.sock, 408, "Request Timeout", self._late_description())
            return False
        return gthread._DEFER

    def _late_description(self) -> str:
        return (
            f"the request did not arrive within {self.request_timeout:g} s "
            "([server] request_timeout)"
        )

    def request_deadline(self, conn) -> float:
        started = conn.request_started or time.monotonic()
        return started + self.request_timeout

    def _keepalive_after(self, conn, keepalive):
        # A body that failed to arrive in time is not drained (gunicorn would
        # wait up to 5 s more for it): the connection closes.
        if getattr(conn, "read_failed", False):
            return False
        return super()._keepalive_after(conn, keepalive)

    def finish_request(self, conn, fs) -> None:
        if not fs.cancelled() and fs.exception() is None and fs.result() is False:
            # gunicorn would linger on this socket for up to 2 s in the main
            # thread (util.close_graceful), so 48 clients that never close would
            # stall the whole worker: linger on the poller instead.
            self.nr_conns -= 1
            self._linger(conn.sock)
            return
        super().finish_request(conn, fs)
        # A parked connection waits for its next bytes at most [server] timeout,
        # and never past its request's deadline (gunicorn would give it keepalive).
        if conn in self.pending_conns:
            conn.timeout = time.monotonic() + self.cfg.timeout
            if getattr(conn, "request_started", None) is not None:
                conn.timeout = min(conn.timeout, self.request_deadline(conn))

    def _linger(self, sock) -> None:
        """Close as RFC 9112 9.6 asks (FIN, then read until the client closes, so that
        unread bytes do not turn into a reset that truncates our answer), on the poller."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            _close(sock)
            return
        self.lingering.append((time.monotonic() + _LINGER_SECONDS, sock))

    def _drain(self, sock) -> None:
        try:
            if sock.recv(65536):
                return
        except _WOULD_BLOCK:
            return
        except OSError:
            pass
        self._forget(sock)

    def _forget(self, sock) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.poller.unregister(sock)
        _close(sock)
        self.lingering = [(when, other) for when, other in self.lingering if other is not sock]

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for sock in [sock for until, sock in self.lingering if until <= now]:
            self._forget(sock)

    def handle_request(self, req, conn):
        # The head is in: the application reads the body through _DeadlineSocket
        # and writes the response on a blocking socket.
        conn.sock.settimeout(None)
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc) -> None:
        captured = _CapturedResponse()
        super().handle_error(req, captured, addr, exc)
        status, _, reason = captured.status_line().partition(" ")
        self._send(
            client,
            int(status or 400),
            reason or "Bad Request",
            f"the request could not be read: {reason or 'malformed'}{_detail(exc)}",
        )

    def _send(self, client, status: int, reason: str, description: str) -> None:
        """A TAXII error (3.6.1) written straight to the client, then the connection closes."""
        body = json.dumps(
            {"title": reason, "http_status": str(status), "description": description}
        ).encode()
        response = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Connection: close\r\nContent-Type: {TAXII_21}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        try:
            client.settimeout(self.cfg.timeout)
            client.sendall(response)
        except (OSError, AttributeError):
            self.log.debug("failed to send the error response")


def _detail(exc: BaseException) -> str:
    """gunicorn's words for what it refused ("Invalid HTTP Header: 'HOST'"), short."""
    text = str(exc).strip()
    return f" ({text[:100]})" if text else ""


def _shut_down(descriptor: int) -> None:
    """Shut the socket behind ``descriptor`` down (a blocked read in another thread
    then returns), through a duplicate that is closed again."""
    with contextlib.suppress(OSError):
        duplicate = socket.fromfd(descriptor, socket.AF_INET, socket.SOCK_STREAM)
        with duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


def _close(sock) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _raw(sock):
    return sock.sock if isinstance(sock, _DeadlineSocket) else sock


def _read_available(sock, held: bytes, limit: int) -> tuple[bytes, bool]:
    """``held`` and whatever has arrived on ``sock`` (up to ``limit``), without
    waiting; and whether the client closed its side."""
    prior = sock.gettimeout()
    sock.setblocking(False)
    try:
        while len(held) < limit and not _head_complete(held):
            try:
                chunk = sock.recv(limit - len(held))
            except _WOULD_BLOCK:
                return held, False
            except OSError:
                return held, True
            if not chunk:
                return held, True
            held += chunk
        return held, False
    finally:
        sock.settimeout(prior)


class _DeadlineSocket:
    """The socket as gunicorn's parser reads it (request bodies, large heads).

    A read takes what has arrived.  When it would have to wait, the wait holds
    one of the worker's slow-client slots (half of the threads), so that slow
    clients cannot take every thread.  With no slot free, a connection that
    has never been slow may still wait ``_PROMPT_WAIT`` without one: bodies of
    ordinary clients arrive in pieces, and many arriving at once are not slow
    clients.  A connection whose read waited longer is slow from then on, and
    without a slot its read fails at once.  No wait goes past ``[server]
    timeout`` (or the caller's shorter socket timeout) nor past the request's
    deadline.  Each failure is a ``BodyTimeout`` naming its limit, which the
    body reader (``node.taxii.bodies``) answers with 408.
    """

    def __init__(self, sock, conn, worker: TaxiiThreadWorker) -> None:
        self.sock = sock
        self._conn = conn
        self._worker = worker

    def recv(self, size: int) -> bytes:
        sock = self.sock
        prior = sock.gettimeout()
        try:
            sock.setblocking(False)
            try:
                return sock.recv(size)
            except _WOULD_BLOCK:
                pass
            longest = min([self._worker.cfg.timeout] + ([prior] if prior else []))
            slots = self._worker.slow_waits
            if slots.acquire(blocking=False):
                try:
                    return self._wait_or_fail(sock, size, longest)
                finally:
                    slots.release()
            if not getattr(self._conn, "slow", False):
                data = self._wait(sock, size, min(_PROMPT_WAIT, longest))
                if data is not None:
                    return data
                self._conn.slow = True
            self._fail(
                "the body arrives slowly and the server is already waiting for as many "
                "slow clients as it allows"
            )
        finally:
            sock.settimeout(prior)

    def _wait_or_fail(self, sock, size: int, longest: float) -> bytes:
        data = self._wait(sock, size, longest)
        if data is None:
            self._fail(f"the body stopped arriving (nothing for {longest:g} s)")
        return data

    def _wait(self, sock, size: int, wait: float) -> bytes | None:
        """What arrives within ``wait`` (and the request's deadline); None if
        nothing did.  A wait past ``_PROMPT_WAIT`` marks the connection slow."""
        remaining = self._worker.request_deadline(self._conn) - time.monotonic()
        if remaining <= 0:
            self._fail(self._worker._late_description())
        started = time.monotonic()
        sock.settimeout(max(0.001, min(wait, remaining)))
        try:
            return sock.recv(size)
        except TimeoutError:
            if wait >= remaining:
                self._fail(self._worker._late_description())
            return None
        finally:
            if time.monotonic() - started > _PROMPT_WAIT:
                self._conn.slow = True

    def _fail(self, description: str) -> NoReturn:
        self._conn.read_failed = True
        raise BodyTimeout(description)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


class _CapturedResponse:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float | None:
        return None

    def setblocking(self, _flag) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status_line(self) -> str:
        first = self.data.split(b"\r\n", 1)[0].decode("latin-1")
        return first.partition(" ")[2]  # "431 Request Header Fields Too Large"


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_TLS_VERSION
    return context


def _ssl_context(conf, default_ssl_context_factory) -> ssl.SSLContext:
    """gunicorn's ``ssl_context`` hook: its default context, with TLS 1.2 as the floor.

    gunicorn 27 ignores its deprecated ``ssl_version`` setting; this hook is the
    documented way to choose protocol versions.  The default context already
    holds the certificate, the key, the client CA bundle and ``cert_reqs``.
    """
    return _harden(default_ssl_context_factory())


def tls_settings(server: ServerConfig) -> dict:
    """gunicorn settings for the [server] TLS keys (nothing for insecure_http)."""
    if not server.tls:
        return {}
    settings = {
        "certfile": str(server.tls_cert),
        "keyfile": str(server.tls_key or server.tls_cert),
        "ssl_context": _ssl_context,
        "cert_reqs": int(ssl.CERT_NONE),
        "do_handshake_on_connect": True,
    }
    if server.tls_client_ca is not None:
        settings["ca_certs"] = str(server.tls_client_ca)
        # OPTIONAL: analysts authenticate with passwords or tokens and present no
        # certificate; a certificate that is presented must chain to the CA bundle.
        settings["cert_reqs"] = int(ssl.CERT_OPTIONAL)
    return settings


def check_tls(config: Config) -> ssl.SSLContext | None:
    """Load the certificate, key and client CA as gunicorn will; ConfigError if that fails.

    gunicorn would report an unreadable or mismatched file only from its worker
    processes, as a traceback; this checks before it starts.
    """
    server = config.server
    if not server.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(server.tls_cert), str(server.tls_key or server.tls_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{config.path}: [server] tls_cert, tls_key: cannot load {server.tls_cert}: {exc}"
        ) from None
    if server.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(server.tls_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.path}: [server] tls_client_ca: cannot load {server.tls_client_ca}: {exc}"
            ) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return _harden(context)


class NodeServer(BaseApplication):
    def __init__(self, config: Config) -> None:
        self._config = config
        super().__init__()

    @property
    def node_config(self) -> Config:
        """The node's config, for the worker class (gunicorn's cfg has no room for it)."""
        return self._config

    def load_config(self) -> None:
        server = self._config.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        settings = {
            "bind": f"{host}:{server.port}",
            "workers": server.workers,
            "threads": server.threads,
            "worker_class": "node.server.TaxiiThreadWorker",
            "timeout": server.timeout,
            # gunicorn's largest: a filter of 100 ids (taxii.filters) is about 5 kB.
            "limit_request_line": 8190,
            "graceful_timeout": 10,
            "accesslog": "-",
            "logger_class": "node.access_log.AccessLogger",
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": f"taxii-node[{self._config.name}]",
            # One node per process tree: no shared $HOME/.gunicorn/gunicorn.ctl between nodes.
            "control_socket_disable": True,
            "child_exit": _child_exit,
            **tls_settings(server),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from node.app import create_app

        return create_app(self._config)


def _child_exit(_server, worker) -> None:
    metrics.worker_exited(worker.pid)


def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT.

    The worker processes count requests into a directory of this server's
    own (prometheus_client's multiprocess mode), removed at exit; it also
    holds the file through which they let each other's publications go first
    (``node.taxii.priority``).
    """
    check_tls(config)
    with tempfile.TemporaryDirectory(prefix="taxii-node-metrics-") as directory:
        metrics.enable_multiprocess(Path(directory))
        NodeServer(config).run()
