"""Database engines for the two supported stores, SQLite and PostgreSQL.

Both are reached through SQLAlchemy Core.  The one thing the two differ on that
matters to TAXII is how writers are serialised (see ``write_transaction``):
``date_added`` must grow in commit order, or a poller resuming from
``X-TAXII-Date-Added-Last`` could miss an object committed late with an earlier
timestamp (TAXII 2.1 section 3.4.2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url

_WRITE_OPTION = "taxii_node_write"
_Selected = TypeVar("_Selected", bound=Select[Any])


def placeholder(connection: Connection) -> str:
    """The driver's parameter marker, for SQL text sent with ``exec_driver_sql``."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def fetch_all(connection: Connection, statement: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of one SELECT in SQL text, as the driver returns them (tuples).

    Run on a DBAPI cursor of ``connection``, inside its transaction: a
    SQLAlchemy result builds its column metadata for every statement and
    fetches and wraps one row at a time, which cost more than the query on a
    page of 100 rows and as much as it on a page of 1,000.  A lost database
    connection invalidates ``connection``, as SQLAlchemy's own execution does,
    so that the pool does not hand it out again.
    """
    dbapi_connection = connection.connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement, params)
        return list(cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as error:
        if connection.dialect.is_disconnect(error, dbapi_connection.dbapi_connection, cursor):
            connection.invalidate(error)
        raise
    finally:
        cursor.close()


def row_lock_clause(connection: Connection) -> str:
    """ " FOR UPDATE" to append to a SELECT in SQL text, except on SQLite.

    PostgreSQL queues writers on the locked rows; SQLite has no row locks and
    has already serialised writers with BEGIN IMMEDIATE (``write_transaction``).
    """
    return "" if connection.dialect.name == "sqlite" else " FOR UPDATE"


def locking(statement: _Selected, connection: Connection) -> _Selected:
    """``statement`` FOR UPDATE, except on SQLite (see ``row_lock_clause``)."""
    return statement.with_for_update() if row_lock_clause(connection) else statement


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("the SQLite store needs a file path: sqlite:///PATH (WAL needs a file)")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    # Readable by the node's user only, as its secrets are; SQLite gives the
    # -wal and -shm files the database file's permissions.
    os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    # Take transaction control from the sqlite3 module so that BEGIN IMMEDIATE
    # can be issued for writers (SQLAlchemy's documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    # IMMEDIATE takes the single SQLite write lock at BEGIN, so a writer never
    # reads a stale high-water mark of date_added and then upgrades its lock.
    if connection.get_execution_options().get(_WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writers use: committed on success, rolled back on error."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for consistent multi-statement reads (one snapshot)."""
    with engine.connect() as connection, connection.begin():
        yield connection
