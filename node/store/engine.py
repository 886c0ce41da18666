"""Database engines for the two supported stores, SQLite and PostgreSQL.

Both are reached through SQLAlchemy Core.  The one thing the two differ on that
matters to TAXII is how writers are serialised (see ``write_transaction``):
``date_added`` must grow in commit order, or a poller resuming from
``X-TAXII-Date-Added-Last`` could miss an object committed late with an earlier
timestamp (TAXII 2.1 section 3.4.2).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar, TypeVarTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    PoolProxiedConnection,
    Row,
    Select,
    create_engine,
    event,
    exc,
)
from sqlalchemy.engine import Dialect, make_url

from node.errors import InvalidValue, StoreError

_WRITE_OPTION = "taxii_node_write"
# How long a SQLite connection waits for another's write lock before it gives up
# with "database is locked" (``is_store_busy``), in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
_RETURNED_AT = "taxii_node_returned_at"
# Pooled PostgreSQL connections idle this long are checked before use.
PING_IDLE_SECONDS = 2.0


class DriverConnection(Protocol):
    """What ``fetch_all`` and ``placeholder`` use of a connection: its dialect, its
    pooled driver connection, and invalidating that.  A SQLAlchemy ``Connection``
    is one; so is the lighter ``PooledReads`` of ``statement_reads``."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def connection(self) -> PoolProxiedConnection: ...

    def invalidate(self, exception: BaseException | None = None) -> None: ...


class PooledReads:
    """A pooled driver connection for one-statement reads (``statement_reads``).

    A SQLAlchemy ``Connection`` around it (its construction, execution
    options, and release) cost a GET by id more than the SELECT did; reads by
    ``fetch_all`` need only the pooled connection and the dialect.
    """

    __slots__ = ("connection", "dialect")

    def __init__(self, dialect: Dialect, connection: PoolProxiedConnection) -> None:
        self.dialect = dialect
        self.connection = connection

    def invalidate(self, exception: BaseException | None = None) -> None:
        """The connection is lost: the pool must not hand it out again."""
        self.connection.invalidate(exception)


def placeholder(connection: DriverConnection) -> str:
    """The driver's parameter marker, for SQL text sent with ``exec_driver_sql``."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def fetch_all(connection: DriverConnection, statement: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of one SELECT in SQL text, as the driver returns them (tuples).

    Run on a DBAPI cursor of ``connection``, inside its transaction if it has
    one: a SQLAlchemy result builds its column metadata for every statement
    and fetches and wraps one row at a time, which cost more than the query on
    a page of 100 rows and as much as it on a page of 1,000.  Errors come out
    as SQLAlchemy's (``DBAPIError`` subclasses), and a lost server connection
    is invalidated, as SQLAlchemy's own execution does, so that the pool does
    not hand it out again.
    """
    dbapi_connection = connection.connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement, params)
        # A list already in sqlite3 and psycopg (the DBAPI types say Sequence): no copy.
        return cast("list[Any]", cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as error:
        lost = connection.dialect.is_disconnect(error, dbapi_connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(
            statement,
            params,
            error,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from error
    finally:
        cursor.close()


def insert_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (values in ``columns`` order) straight to the driver, in the
    caller's transaction.

    PostgreSQL gets them by COPY (one statement, rows adapted in C), SQLite by
    executemany of one prepared INSERT.  SQLAlchemy's per-row parameter
    processing of an ``insert()``, and psycopg's per-row pipeline of an
    executemany, cost more than the inserts on a POST of 100.
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        # The DBAPI connection is the one SQLAlchemy's transaction runs on.
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    marker = placeholder(connection)
    connection.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})",
        list(rows),
    )


def in_values(
    connection: Connection, column: str, values: Sequence[Any]
) -> tuple[str, tuple[Any, ...]]:
    """``column`` is one of ``values``, as SQL text and its parameters.

    On PostgreSQL one array parameter (``= ANY(%s)``): the statement text is
    the same for any number of values, so psycopg parses it once and the
    server keeps it prepared; a list of markers is a new text per count.
    """
    if connection.dialect.name == "postgresql":
        return f"{column} = ANY(%s)", (list(values),)
    return f"{column} IN ({', '.join(['?'] * len(values))})", tuple(values)


# Values per IN (...) list: (object id, version) pairs take two parameters each, and
# SQLite before 3.32 allows 999 parameters in a statement.
IN_CHUNK = 300
_Key = TypeVar("_Key", str, int, tuple[str, int], tuple[str, str])
_Columns = TypeVarTuple("_Columns")


def in_chunks(values: Iterable[_Key], size: int = IN_CHUNK) -> Iterator[list[_Key]]:
    """``values`` sorted and without repeats, in lists of at most ``size``, one IN each."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def select_in(
    connection: Connection,
    statement: Select[*_Columns],
    key: ColumnElement[Any],
    values: Iterable[_Key],
    size: int = IN_CHUNK,
) -> Iterator[Row[*_Columns]]:
    """The rows of ``statement`` whose ``key`` (a column, or a ``tuple_`` of columns) is
    one of ``values``: one statement a chunk, so any number of values fits."""
    for chunk in in_chunks(values, size):
        yield from connection.execute(statement.where(key.in_(chunk)))


def row_lock_clause(connection: Connection) -> str:
    """ " FOR UPDATE" to append to a SELECT in SQL text, except on SQLite.

    PostgreSQL queues writers on the locked rows; SQLite has no row locks and
    has already serialised writers with BEGIN IMMEDIATE (``write_transaction``).
    """
    return "" if connection.dialect.name == "sqlite" else " FOR UPDATE"


def create_store_engine(url: str, ping_idle_seconds: float = PING_IDLE_SECONDS) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``); a SQLite
    file that does not exist is created (``missing_sqlite_file`` tells beforehand).

    ``ping_idle_seconds``: see ``ping_after_idle`` (PostgreSQL only).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_size=5, max_overflow=10)
        ping_after_idle(engine, ping_idle_seconds)
        return engine
    raise InvalidValue(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


def ping_after_idle(engine: Engine, seconds: float) -> None:
    """Check a pooled connection with a ``SELECT 1`` before use only when it sat
    unused in the pool for ``seconds`` or more (and once when new).

    ``pool_pre_ping`` checks at every checkout: a round trip to the server per
    request, a quarter of a page's on PostgreSQL.  What the check catches is a
    connection the server dropped while it sat in the pool (a restart, an idle
    timeout, a failover); one handed back moments ago is handed out unchecked.
    Should the server have dropped it meanwhile, the request's statement fails
    and SQLAlchemy's disconnect handling (and ``fetch_all``'s) invalidates the
    pool's connections, so only requests in flight at that moment fail.
    A failed check makes the pool open a fresh connection instead (SQLAlchemy's
    documented checkout protocol: ``DisconnectionError``).
    """

    def returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is not None and time.monotonic() - returned_at < seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()  # the check's own transaction, not the caller's
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"the pooled connection is gone: {error}") from error

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", check)


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store ``url`` when it does not exist, else None.

    Opening a store creates its file (``create_store_engine``): a read-only
    command asks first, so that at a mistyped path it leaves no empty store
    (and folders) behind for the next command to find.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    database = Path(parsed.database)
    return None if database.exists() else database


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidValue("the SQLite store needs a file path: sqlite:///PATH (WAL needs a file)")
    _create_private_file(Path(database))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


# What to tell a client the store was busy for (seconds of Retry-After, RFC 9110 10.2.3).
BUSY_RETRY_AFTER = 5


def is_store_busy(error: BaseException) -> bool:
    """Whether ``error`` says another connection held the SQLite write lock past the
    busy timeout: the store is busy, not broken, and the request may be tried again
    (an answer of 503 with Retry-After, rather than 500)."""
    if not isinstance(error, exc.OperationalError):
        return False
    original = error.orig
    return isinstance(original, sqlite3.OperationalError) and (
        "database is locked" in str(original) or "database is busy" in str(original)
    )


def _create_private_file(database: Path) -> None:
    """Create the database file readable by the node's user only, as its secrets are
    (SQLite gives the -wal and -shm files the database file's permissions).

    An existing file is left unopened: closing any descriptor of a file drops
    every POSIX lock this process holds on it, those of its open SQLite
    connections included (https://www.sqlite.org/howtocorrupt.html, 2.2).
    Another process closing its last connection would then checkpoint and
    delete the WAL that this process's connections go on writing to.
    """
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    except OSError as error:
        # A path the operator gave ([store] path): theirs to fix, in one line.
        raise StoreError(f"cannot create the store {database}: {error.strerror or error}") from None


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    # Take transaction control from the sqlite3 module so that BEGIN IMMEDIATE
    # can be issued for writers (SQLAlchemy's documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WalCheckpoints.AUTOMATIC_PAGES}")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    # IMMEDIATE takes the single SQLite write lock at BEGIN, so a writer never
    # reads a stale high-water mark of date_added and then upgrades its lock.
    if connection.get_execution_options().get(_WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


class WriterQueue:
    """Queues SQLite writers before BEGIN IMMEDIATE, so that each release lets the next in.

    SQLite lets a writer that finds the database locked sleep and retry (its
    busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries), so while one
    POST commits the others wake late: the lock sits free for most of a
    waiter's sleep, and 16 threads of two gunicorn workers spent more time
    waiting for it than writing.  Here the threads of one process wait on a
    lock (woken at once), and the one thread per process at the head polls an
    ``flock`` of a file beside the database every ``_POLL`` seconds, which
    orders the processes (workers, the CLI, the sync worker).  SQLite's own
    lock still serialises the transactions, so correctness never depends on
    the queue: past ``_PATIENCE`` seconds in it a writer goes on to BEGIN
    IMMEDIATE, which waits with SQLite's busy timeout and fails as before.

    The lock file is opened once per process, after gunicorn's fork (an
    ``flock`` belongs to the open file, which a forked child would share).
    """

    _POLL = 0.0005
    _PATIENCE = 30.0

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + "-writer")
        self._pid = -1
        self._lock = threading.RLock()
        self._held = 0  # how deep the holding thread's turns nest
        self._descriptor = -1

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This thread's turn to write, after the writers ahead of it."""
        if self._pid != os.getpid():  # a fresh process: nothing of the parent's
            self._pid, self._lock = os.getpid(), threading.RLock()
            self._held, self._descriptor = 0, -1
        if not self._lock.acquire(timeout=self._PATIENCE):
            yield
            return
        try:
            if self._held == 0 and not self._lock_file():
                yield
                return
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
                if self._held == 0:
                    fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _lock_file(self) -> bool:
        if self._descriptor < 0:
            self._descriptor = os.open(self._path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self._PATIENCE
        while True:
            try:
                fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(self._POLL)


class WalCheckpoints:
    """Checkpoints SQLite's write-ahead log after writes, outside the writers' queue.

    SQLite checkpoints by itself in the commit that takes the log past its
    ``wal_autocheckpoint`` (1,000 pages by default, every ten or twenty POSTs
    of 100 objects): inside that writer's turn of the ``WriterQueue``, so
    every writer queued behind it waited too, 10 to 20 ms each time at
    100,000 objects (one thread posting in-process: a POST's mean wall time
    5.7-7.7 ms with those checkpoints, 4.0-4.4 ms without).  Here each process
    checkpoints after every ``EVERY``-th of its own write transactions, once
    the turn is over, in PASSIVE mode (it never waits for readers or
    writers, and others write meanwhile); connections keep SQLite's own
    checkpoint at ``AUTOMATIC_PAGES`` as the bound for writes that do not
    pass through ``Store.write`` (migrations).
    """

    EVERY = 16
    AUTOMATIC_PAGES = 10_000  # 40 MB of log at SQLite's 4 KB pages

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._writes = 0

    def after_write(self) -> None:
        """Called after each write transaction has ended (and its turn with it)."""
        with self._lock:
            self._writes += 1
            if self._writes < self.EVERY:
                return
            self._writes = 0
        self.checkpoint()

    def checkpoint(self) -> None:
        # On the driver's connection: SQLAlchemy would BEGIN first, and a
        # checkpoint inside a transaction cannot pass that transaction's snapshot.
        with suppress(exc.DBAPIError, sqlite3.Error), self._engine.connect() as connection:
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None
            dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def after_writes(engine: Engine) -> Callable[[], None]:
    """What ``Store.write`` calls after each write transaction: a ``WalCheckpoints``
    count on a SQLite file, nothing on PostgreSQL (which checkpoints by itself,
    outside every transaction)."""
    if _sqlite_file(engine) is None:
        return lambda: None
    return WalCheckpoints(engine).after_write


def writer_turns(engine: Engine) -> Callable[[], AbstractContextManager[None]]:
    """What a writer of ``engine`` enters before its transaction: a ``WriterQueue``
    turn on SQLite, nothing on PostgreSQL (which queues writers on row locks)."""
    database = _sqlite_file(engine)
    if database is None:
        return nullcontext
    return WriterQueue(database).turn


def _sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine; None for PostgreSQL (or SQLite in memory)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    return Path(engine.url.database)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writers use: committed on success, rolled back on error."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


def statement_reads(engine: Engine) -> StatementReads:
    """A pooled connection for one-statement reads: ``with statement_reads(engine) as c``."""
    return StatementReads(engine)


class StatementReads:
    """A pooled connection for reads of one statement each (``fetch_all``), outside
    any transaction.

    One statement reads one snapshot on both engines (PostgreSQL takes a
    snapshot per statement; SQLite runs a statement outside BEGIN in a read
    transaction of its own), so a page needs no BEGIN and COMMIT around it: on
    PostgreSQL the connection is in autocommit mode while it is held, one
    round trip instead of three.  For single SELECTs only: statements that
    must see one snapshot together, or that write, need ``read_transaction``
    or ``write_transaction``.  The pool's checkout and checkin (and so
    ``ping_after_idle``) apply as to any connection.

    A class rather than a generator under ``contextmanager``: entered on every
    page and GET by id, where the generator's machinery cost a third as much
    as the pool's checkout and checkin.
    """

    __slots__ = ("_autocommit", "_engine", "_pooled")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._autocommit = engine.dialect.name == "postgresql"
        self._pooled: PoolProxiedConnection | None = None

    def __enter__(self) -> PooledReads:
        dialect = self._engine.dialect
        pooled = self._pooled = self._engine.raw_connection()
        if self._autocommit:
            driver = pooled.dbapi_connection
            assert driver is not None  # a connection fresh from the pool is open
            try:
                dialect.set_isolation_level(driver, "AUTOCOMMIT")
            except BaseException:
                self._release()
                raise
        return PooledReads(dialect, pooled)

    def __exit__(self, *_exception: object) -> None:
        self._release()

    def _release(self) -> None:
        pooled, self._pooled = self._pooled, None
        assert pooled is not None
        try:
            if self._autocommit and pooled.is_valid:
                # Never back into the pool in autocommit: the next holder may write.
                driver = pooled.dbapi_connection
                assert driver is not None
                self._engine.dialect.reset_isolation_level(driver)
        except Exception as error:
            pooled.invalidate(error)
            raise
        finally:
            pooled.close()


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for consistent multi-statement reads (one snapshot)."""
    with engine.connect() as connection, connection.begin():
        yield connection
