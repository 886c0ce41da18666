"""A deadline on a whole HTTP exchange once connected, headers and TLS handshake included.

``requests`` bounds each socket read (``timeout``), never the exchange: a server
that sends a byte of its headers (or of its TLS handshake) every few seconds
holds the caller for ever, and a worker that was told to stop (SIGTERM) waits
with it.  The connections of a :class:`Watchdog`'s session register their
sockets with the request under way on their thread; past the request's
deadline, or once ``stop`` is set, the watchdog shuts those sockets down, which
ends the read blocked on them with an error the caller turns into its own.
Connecting is bounded by the caller's connect timeout: a socket is the
watchdog's only once connected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

_POLL_SECONDS = 0.25
_current = threading.local()  # .watch: the Watch of the request under way on this thread


class Watch:
    """One request: its deadline, its sockets, and whether the watchdog cut them.

    Each socket is kept as a duplicate of its descriptor: TLS wraps a new connection's
    socket (taking over its descriptor, so the original object can no longer be shut
    down), and a shutdown through any descriptor of a socket cuts the connection.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sockets: list[socket.socket] = []
        self.cut: str | None = None  # why: "deadline" or "stop"
        self.finished = False
        self._lock = threading.Lock()

    def register(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if self.finished:
                duplicate.close()
                return
            self.sockets.append(duplicate)
            cut = self.cut is not None
        if cut:  # (made after the cut: a slow connect)
            _shut(duplicate)

    def finish(self) -> None:
        """The answer is read: nothing to cut any more (its connection may go back to the
        pool, where a later request takes it up)."""
        with self._lock:
            self.finished = True
        self.close()

    def cut_now(self, why: str) -> None:
        with self._lock:
            if self.cut is not None or self.finished:
                return
            self.cut = why
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        with self._lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _register(sock: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and isinstance(sock, socket.socket):
        watch.register(sock)  # (an SSLSocket is one: its descriptor is duplicated)


class _Watched:
    """Registers the connection's socket with the request under way (a new one as it is
    made, before any TLS handshake; a kept-alive one as a request starts on it)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _register(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _register(getattr(self, "sock", None))
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        """Connections through an HTTP(S)_PROXY are watched too."""
        manager = super().proxy_manager_for(proxy, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class Watchdog:
    """Cuts the connections of a session's requests past their deadline or on ``stop``."""

    def __init__(self, session: requests.Session, stop: threading.Event) -> None:
        adapter = _Adapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._stop = stop
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, seconds: float) -> Iterator[Watch]:
        """Watch the request made inside the block (on this thread) for ``seconds``."""
        watch = Watch(time.monotonic() + seconds)
        with self._lock:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-watchdog",
                                                daemon=True)  # fmt: skip
                self._thread.start()
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            with self._lock:
                self._watches.discard(watch)
            watch.close()

    def _run(self) -> None:
        while True:
            time.sleep(_POLL_SECONDS)
            with self._lock:
                if not self._watches:
                    self._thread = None
                    return
                watches = list(self._watches)
            now, stopping = time.monotonic(), self._stop.is_set()
            for watch in watches:
                if watch.cut is None and (stopping or now > watch.deadline):
                    watch.cut_now("stop" if stopping else "deadline")
