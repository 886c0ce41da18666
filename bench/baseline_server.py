"""A minimal TAXII-shaped server: the platform's floor that ``make bench`` compares the node with.

Not part of the node and not a TAXII server: it does the least work that the
benchmark's HTTP workload needs, on the same platform (Python, gunicorn with
the node's worker shape, SQLite in WAL mode, orjson), so that node / baseline
shows what the node's own work costs:

* POST ``/api/collections/<id>/objects/``: parse the envelope, store each
  object as JSON text with an increasing ``date_added`` in one transaction
  (BEGIN IMMEDIATE), answer a small status body.  No validation, no status
  resource kept, no audit.
* GET ``.../objects/?limit=N[&next=K]``: keyset page over ``date_added``,
  answered as a join of the stored strings.
* GET ``.../objects/<id>/``: the object by primary key.
* Every request checks HTTP Basic against a hash computed once per process.

Run by the benchmark as ``gunicorn 'bench.baseline_server:create_app("DB")'``
(an app factory: nothing is built at import).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import orjson

USER = "admin"
PASSWORD = "admin-password-1"
MEDIA_TYPE = "application/taxii+json;version=2.1"
_PREFIX = "/api/collections/"

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class Baseline:
    """The WSGI application; one SQLite connection per thread."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.local = threading.local()
        self.secret = hashlib.sha256(f"{USER}:{PASSWORD}".encode()).digest()
        with self._connect() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, "
                "date_added INTEGER NOT NULL UNIQUE, body TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @property
    def connection(self) -> sqlite3.Connection:
        if not hasattr(self.local, "connection"):
            self.local.connection = self._connect()
        return self.local.connection

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not self._authorised(environ.get("HTTP_AUTHORIZATION", "")):
            return _respond(start_response, "401 Unauthorized", b'{"title":"unauthorised"}')
        path = environ.get("PATH_INFO", "")
        if not path.startswith(_PREFIX):
            return _respond(start_response, "404 Not Found", b'{"title":"not found"}')
        _collection, _, rest = path[len(_PREFIX) :].partition("/")
        if environ["REQUEST_METHOD"] == "POST" and rest == "objects/":
            return _respond(start_response, "202 Accepted", self.post(environ))
        if rest == "objects/":
            return _respond(start_response, "200 OK", self.page(environ))
        if rest.startswith("objects/") and rest.endswith("/"):
            body = self.by_id(rest[len("objects/") : -1])
            if body is not None:
                return _respond(start_response, "200 OK", body)
        return _respond(start_response, "404 Not Found", b'{"title":"not found"}')

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        try:
            credentials = base64.b64decode(encoded)
        except ValueError:
            return False
        return hmac.compare_digest(hashlib.sha256(credentials).digest(), self.secret)

    def post(self, environ: dict) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        envelope = orjson.loads(environ["wsgi.input"].read(length))
        rows = [(obj["id"], orjson.dumps(obj).decode()) for obj in envelope.get("objects", [])]
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            last = connection.execute("SELECT MAX(date_added) FROM objects").fetchone()[0] or 0
            start = max(time.time_ns() // 1000, last + 1)
            connection.executemany(
                "INSERT OR IGNORE INTO objects (id, date_added, body) VALUES (?, ?, ?)",
                [(oid, start + i, body) for i, (oid, body) in enumerate(rows)],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return orjson.dumps({"status": "complete", "success_count": len(rows)})

    def page(self, environ: dict) -> bytes:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        limit = int(query.get("limit", ["100"])[0])
        after = int(query.get("next", ["0"])[0])
        rows = self.connection.execute(
            "SELECT date_added, body FROM objects WHERE date_added > ? ORDER BY date_added LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        tail = f'"more":true,"next":"{rows[-1][0]}"' if more else '"more":false'
        return ('{"objects":[' + ",".join(body for _, body in rows) + "]," + tail + "}").encode()

    def by_id(self, object_id: str) -> bytes | None:
        row = self.connection.execute("SELECT body FROM objects WHERE id = ?", (object_id,))
        found = row.fetchone()
        return None if found is None else ('{"objects":[' + found[0] + "]}").encode()


def _respond(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", MEDIA_TYPE), ("Content-Length", str(len(body)))])
    return [body]


def create_app(database: str) -> Baseline:
    """The gunicorn app factory."""
    return Baseline(database)
