"""How the store uses its PostgreSQL connections: reads without a transaction,
a pooled connection checked only after it sat idle, a lost one never handed out again.

Each test drops the node's connections from the server side
(``pg_terminate_backend``, as a restart or an idle timeout would) or watches
them from another session (``pg_stat_activity``), so what is asserted is what
the server saw.  SQLite has no connections to lose: PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import pytest
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.engine import make_url

from node.store import Store, catalog, objects
from node.store.engine import create_store_engine, fetch_all, statement_reads
from node.store.objects import ObjectQuery

COLLECTION = "c0ffee00-0000-4000-8000-0000000000cc"

# The conftest fixture, on its PostgreSQL side only.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def pg_url(store_url: str | None) -> str:
    if store_url is None:
        pytest.skip("PostgreSQL only: SQLite has no server connections")
    store = Store(store_url)
    store.migrate()
    with store.write() as connection:
        catalog.upsert(connection, catalog.Collection(id=COLLECTION, title="connections"))
    store.close()
    return store_url


@pytest.fixture
def observer(pg_url: str) -> Iterator[Engine]:
    """Another session on the same server, to look at and end the store's sessions."""
    url = make_url(pg_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        pid: int = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    return pid


def _terminate(observer: Engine, pid: int) -> None:
    with observer.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # pg_terminate_backend only signals: wait until the session is gone.
        for _ in range(500):
            gone = connection.execute(
                text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
            if gone:
                return
            connection.execute(text("SELECT pg_sleep(0.01)"))
    raise AssertionError(f"backend {pid} did not end")


def test_a_page_read_opens_no_transaction(pg_url: str, observer: Engine) -> None:
    """``statement_reads`` is autocommit on PostgreSQL: no BEGIN/COMMIT round trips,
    so while the connection is still held after a page, the server sees it idle,
    not "idle in transaction"."""
    engine = create_store_engine(pg_url)
    try:
        with statement_reads(engine) as connection:
            objects.page_bodies(connection, ObjectQuery(COLLECTION, limit=10))
            pid = fetch_all(connection, "SELECT pg_backend_pid()", ())[0][0]
            with observer.connect() as watching:
                state = watching.execute(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
        assert state == "idle"
    finally:
        engine.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    pg_url: str, observer: Engine
) -> None:
    """Past the idle time (0 here: always), checkout checks the connection and the
    pool opens a fresh one for the request instead of failing it."""
    engine = create_store_engine(pg_url, ping_idle_seconds=0)
    try:
        first = _backend_pid(engine)
        _terminate(observer, first)
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def test_a_connection_lost_under_a_page_read_is_not_handed_out_again(
    pg_url: str, observer: Engine
) -> None:
    """A connection used moments ago is not checked (the idle time is long here); if
    the server dropped it, the read fails once, with SQLAlchemy's error saying the
    connection was invalidated, and the next request gets a fresh connection
    rather than the same failure."""
    engine = create_store_engine(pg_url, ping_idle_seconds=3600)
    query = ObjectQuery(COLLECTION, limit=10)
    try:
        first = _backend_pid(engine)
        _terminate(observer, first)
        with pytest.raises(exc.OperationalError) as raised, statement_reads(engine) as connection:
            objects.page_bodies(connection, query)
        assert raised.value.connection_invalidated
        assert _backend_pid(engine) != first
        with statement_reads(engine) as connection:
            assert objects.page_bodies(connection, query).bodies == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("failure", ["in the read", "none"])
def test_a_page_read_hands_its_connection_back_transactional(pg_url: str, failure: str) -> None:
    """The autocommit of ``statement_reads`` ends with it, also when the read fails:
    the pool's next holder of that connection (a writer) gets transactions."""
    engine = create_store_engine(pg_url)
    try:
        with engine.connect() as connection:  # one connection in the pool, handed out again
            first = connection.connection.dbapi_connection
        expected = pytest.raises(RuntimeError) if failure != "none" else nullcontext()
        with expected, statement_reads(engine) as reads:
            assert reads.connection.dbapi_connection is first
            assert first.autocommit
            if failure != "none":
                raise RuntimeError(failure)
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is first
            assert not first.autocommit
            connection.exec_driver_sql("CREATE TEMPORARY TABLE undone (x int)")
            connection.rollback()
            assert not connection.exec_driver_sql(
                "SELECT count(*) FROM pg_class WHERE relname = 'undone'"
            ).scalar_one()
    finally:
        engine.dispose()
