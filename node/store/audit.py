"""The audit trail, tamper-evident: sharing decisions, deletions, logins and admin changes.

Each record carries the hash of the previous one (a hash chain) and the hash
of the chain's head is kept in ``settings``; ``verify`` recomputes the chain
and names the first record that was altered, removed or inserted, and notices
records cut off the end.  Records are appended in the caller's transaction, so
a decision and its effect commit (or vanish) together.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from node import jsoncodec
from node.timestamps import now_micros

from .engine import insert_rows, placeholder, row_lock_clause
from .schema import audit_table, settings

if TYPE_CHECKING:
    from . import Store

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
_FIELDS = ("at", "actor", "peer", "direction", "collection_id", "object_id", "version",
           "action", "rule", "detail")  # fmt: skip


class Action(StrEnum):
    """What an audit record says happened (the ``action`` column)."""

    SENT = "sent"  # pushed to a peer by our worker
    RECEIVED = "received"  # stored from a peer (pulled by us or posted by it)
    SERVED = "served"  # read by a peer's sync account over TAXII
    WITHHELD = "withheld"  # kept back by policy (egress) or refused (ingress)
    DEAD_LETTER = "dead-letter"  # the receiving side refused an allowed version
    DELETED = "deleted"
    PUBLISHED = "published"
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    QUARANTINED = "quarantined"  # held for review on arrival (ingress quarantine = true)
    QUARANTINE_ACCEPTED = "quarantine-accepted"
    QUARANTINE_REJECTED = "quarantine-rejected"
    RELEASE_APPROVED = "release-approved"  # egress release = "approval"
    RELEASE_REJECTED = "release-rejected"
    RECALL_QUEUED = "recall-queued"  # a recall waits to be sent to a peer
    RECALL_PURGED = "recall-purged"  # a peer's recall, honoured here (operations.recalls)
    RECALL_REVOKED = "recall-revoked"
    RECALL_REFUSED = "recall-refused"
    RECALL_IGNORED = "recall-ignored"
    # Changes an operator made (direction ADMIN), from the CLI or the console
    # (node.operations): the record's object_id is the account (or dead letter's object).
    USER_ADDED = "user-added"
    USER_REMOVED = "user-removed"
    USER_UNLOCKED = "user-unlocked"
    RIGHTS_GRANTED = "rights-granted"
    ROLE_GRANTED = "role-granted"
    ROLE_REMOVED = "role-removed"
    PASSWORD_CHANGED = "password-changed"
    CERTIFICATE_BOUND = "certificate-bound"
    CERTIFICATE_UNBOUND = "certificate-unbound"
    TOKEN_CREATED = "token-created"
    TOKEN_REVOKED = "token-revoked"
    DEAD_LETTER_SKIPPED = "dead-letter-skipped"
    DEAD_LETTER_RETRIED = "dead-letter-retried"
    CURSOR_SET = "cursor-set"  # an operator moved a sync lane's cursor


class Direction(StrEnum):
    """Which way the record's subject travelled (the ``direction`` column)."""

    PUSH = "push"  # our worker sending
    PULL = "pull"  # our worker fetching
    SERVE = "serve"  # a peer's account reading from us
    RECEIVE = "receive"  # a peer's account posting to us
    LOCAL = "local"  # publications and deletions by local accounts
    ADMIN = "admin"  # account and token changes from the CLI
    AUTH = "auth"  # logins


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: Action
    direction: Direction
    object_id: str | None = None
    version: str | None = None
    peer: str | None = None
    collection_id: str | None = None
    rule: str | None = None
    detail: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class Verification:
    records: int
    broken_at: int | None  # pk of the first bad record
    reason: str | None
    head: str = GENESIS  # hash of the last record checked

    @property
    def ok(self) -> bool:
        return self.reason is None


def _digest(previous: str, row: dict[str, Any]) -> str:
    return _chained(previous, tuple(row[name] for name in _FIELDS))


def _chained(previous: str, fields: tuple[Any, ...]) -> str:
    """The hash of a record whose ``_FIELDS`` are ``fields``, following ``previous``."""
    payload = jsoncodec.dumps([previous, *fields])
    return hashlib.sha256(payload.encode()).hexdigest()


def _lock_head(connection: Connection) -> str:
    """The chain's head hash, locked until commit (writers append one at a time)."""
    # Driver SQL: every POST appends a record, and SQLAlchemy's select() and
    # update() constructs cost more than these two one-row statements.
    statement = (
        f"SELECT value FROM settings WHERE key = {placeholder(connection)}"
        f"{row_lock_clause(connection)}"
    )
    head: str | None = connection.exec_driver_sql(statement, (HEAD_KEY,)).scalar()
    if head is None:
        _insert_genesis_head(connection)
        head = connection.exec_driver_sql(statement, (HEAD_KEY,)).scalar_one()
    return head


def _insert_genesis_head(connection: Connection) -> None:
    """Start the chain, unless a concurrent writer just did.

    Two first writers on PostgreSQL both find no head; a plain INSERT would
    fail one of them on the primary key.  ON CONFLICT DO NOTHING waits for the
    other's commit instead, and the caller's locking re-read then sees its head.
    """
    dialect = connection.dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    connection.execute(
        insert(settings).values(key=HEAD_KEY, value=GENESIS).on_conflict_do_nothing()
    )


def record(connection: Connection, records: Iterable[AuditRecord], at: int | None = None) -> None:
    """Append records to the chain in the caller's transaction."""
    records = list(records)
    if not records:
        return
    at = now_micros() if at is None else at
    head = _lock_head(connection)
    rows = []
    for r in records:
        fields = (
            at,
            r.actor,
            r.peer,
            r.direction,
            r.collection_id,
            r.object_id,
            r.version,
            r.action,
            r.rule,
            r.detail,
        )  # the order of _FIELDS
        digest = _chained(head, fields)
        rows.append((*fields, head, digest))
        head = digest
    _append(connection, rows, head)


_COLUMNS = (*_FIELDS, "prev_hash", "hash")


# At most this many records are appended on PostgreSQL by one INSERT that also moves
# the head; more (a sync batch's thousand) go by COPY.
_ONE_STATEMENT_APPEND = 10


def _append(connection: Connection, rows: list[tuple[Any, ...]], head: str) -> None:
    """Insert ``rows`` (in ``_COLUMNS`` order) and make ``head`` the chain's head.

    Straight to the driver: SQLAlchemy's per-row parameter handling would cost
    more than the inserts.  The head's lock is held from ``_lock_head`` to the
    commit and orders every writer of every collection, so on PostgreSQL the few
    records of a POST go in one statement with the head's update (a
    data-modifying WITH, run whether or not its output is read): one round trip
    under the lock instead of three (COPY's two and the UPDATE).
    """
    marker = placeholder(connection)
    if connection.dialect.name == "postgresql" and len(rows) <= _ONE_STATEMENT_APPEND:
        row = f"({', '.join([marker] * len(_COLUMNS))})"
        connection.exec_driver_sql(
            f"WITH appended AS (INSERT INTO audit ({', '.join(_COLUMNS)}) "
            f"VALUES {', '.join([row] * len(rows))}) "
            f"UPDATE settings SET value = {marker} WHERE key = {marker}",
            (*(value for row_values in rows for value in row_values), head, HEAD_KEY),
        )
        return
    insert_rows(connection, "audit", _COLUMNS, rows)
    connection.exec_driver_sql(
        f"UPDATE settings SET value = {marker} WHERE key = {marker}", (head, HEAD_KEY)
    )


@dataclass(frozen=True)
class AuditFilter:
    """Which audit records to read.  The text filters match exactly, empty for any;
    ``since`` and ``until`` (microseconds) bound ``at``, both included."""

    peer: str = ""
    action: str = ""
    rule: str = ""
    object_id: str = ""
    since: int | None = None
    until: int | None = None
    before_pk: int | None = None  # keyset position: pk of the last row shown (newest first)
    limit: int | None = 100  # None: every record that matches
    oldest_first: bool = False  # the oldest ``limit``, oldest first; else the newest, newest first


def matching(connection: Connection, wanted: AuditFilter) -> list[dict[str, Any]]:
    """The audit rows ``wanted``, as dicts of the table's columns."""
    pk = audit_table.c.pk
    statement = select(audit_table).order_by(pk if wanted.oldest_first else pk.desc())
    if wanted.limit is not None:
        statement = statement.limit(wanted.limit)
    for column, value in (
        (audit_table.c.peer, wanted.peer),
        (audit_table.c.action, wanted.action),
        (audit_table.c.rule, wanted.rule),
        (audit_table.c.object_id, wanted.object_id),
    ):
        if value:
            statement = statement.where(column == value)
    if wanted.since is not None:
        statement = statement.where(audit_table.c.at >= wanted.since)
    if wanted.until is not None:
        statement = statement.where(audit_table.c.at <= wanted.until)
    if wanted.before_pk is not None:
        statement = statement.where(pk < wanted.before_pk)
    return [dict(row._mapping) for row in connection.execute(statement)]


def entries(
    connection: Connection,
    *,
    peer: str | None = None,
    since: int | None = None,
    limit: int | None = 1000,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Audit rows as dicts: the oldest ``limit`` oldest first, or the newest newest
    first (``matching`` by peer and time, for tools and tests)."""
    wanted = AuditFilter(peer=peer or "", since=since, limit=limit, oldest_first=not newest_first)
    return matching(connection, wanted)


def head(connection: Connection) -> str:
    """The recorded head hash of the chain (GENESIS for an empty trail)."""
    value = connection.execute(select(settings.c.value).where(settings.c.key == HEAD_KEY)).scalar()
    return value or GENESIS


def _all_rows(connection: Connection, chunk: int = 5000) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        rows = connection.execute(
            select(audit_table)
            .where(audit_table.c.pk > after)
            .order_by(audit_table.c.pk)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        after = rows[-1].pk


def verify(connection: Connection) -> Verification:
    """Recompute the chain from the first record to the stored head."""
    previous = GENESIS
    count = 0
    for row in _all_rows(connection):
        count += 1
        if row["prev_hash"] != previous:
            return Verification(count, row["pk"], "does not follow the previous record "
                                "(a record before it was removed or inserted)")  # fmt: skip
        if _digest(previous, row) != row["hash"]:
            return Verification(count, row["pk"], "its content does not match its hash (altered)")
        previous = row["hash"]
    head = connection.execute(select(settings.c.value).where(settings.c.key == HEAD_KEY)).scalar()
    if (head or GENESIS) != previous:
        return Verification(count, None, "the chain ends before the recorded head "
                            "(records were removed from the end)", previous)  # fmt: skip
    return Verification(count, None, None, previous)


class AuditQueue:
    """Appends records to the audit chain from a background thread, in batches.

    For what a request must not wait on the write lock to record: partner
    reads and successful logins (a partner's first GET of each auth cache
    period would otherwise queue behind publishers).  Records reach the store
    within ``interval`` seconds (and at interpreter exit); a server process
    killed with SIGKILL loses at most that last interval of such records,
    never a decision the worker or a POST made, nor a failed login (those
    count towards throttling and are written before the answer).
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        store.before_close(self.close)
        self._pending: list[AuditRecord] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def put(self, record: AuditRecord) -> None:
        self.put_all([record])

    def put_all(self, records: list[AuditRecord]) -> None:
        with self._lock:
            if self._closed:
                log.warning("the store is closed; audit records not written: %s", records)
                return
            self._pending.extend(records)
            if self._thread is None:
                self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-queue", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the store is down: keep the records for the next try
                log.exception("could not append queued audit records; retrying")

    def close(self) -> None:
        """Write what is queued; later records are dropped with a warning (the
        store is closing)."""
        with self._lock:
            self._closed = True
        self.flush()

    def flush(self) -> None:
        """Write every queued record now, in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._store.write() as connection:
                record(connection, batch)
        except Exception:
            with self._lock:
                self._pending[:0] = batch
            raise
