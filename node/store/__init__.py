"""The durable store: SQLite (default) or PostgreSQL, behind one small facade.

Repositories are modules of functions that take a SQLAlchemy ``Connection``
(``objects``, ``catalog``, ``statuses``, ``accounts``, ``syncstate``), so the
caller chooses the transaction: one POST envelope is one write transaction.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Connection, Engine, select

from node.timestamps import now_micros

from . import schema
from .engine import (
    PooledReads,
    after_writes,
    create_store_engine,
    read_transaction,
    statement_reads,
    write_transaction,
    writer_turns,
)
from .objects import INSERTED_ROWS


class Store:
    """One node's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)
        self._statistics = _Statistics(self.engine)
        self._writer_turn = writer_turns(self.engine)
        self._after_write = after_writes(self.engine)
        self._before_close: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> list[str]:
        """Create or upgrade the schema; return the steps applied."""
        applied = schema.migrate(self.engine, now_micros())
        self.setting("pagination_key", default=secrets.token_hex(32))
        return applied

    def is_current(self) -> bool:
        return schema.current_version(self.engine) == schema.LATEST_VERSION

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with read_transaction(self.engine) as connection:
            yield connection

    def read_statement(self) -> AbstractContextManager[PooledReads]:
        """A connection for one-statement reads (a page): no transaction around
        them (``engine.statement_reads``)."""
        return statement_reads(self.engine)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._writer_turn(), write_transaction(self.engine) as connection:
            connection.info.pop(INSERTED_ROWS, None)
            yield connection
            inserted = connection.info.pop(INSERTED_ROWS, 0)
        if inserted:
            self._statistics.inserted(inserted)
        self._after_write()

    def setting(self, key: str, default: str | None = None) -> str | None:
        """A node-wide setting; stores ``default`` when the key is absent."""
        table = schema.settings
        with self.write() as connection:
            value = connection.execute(select(table.c.value).where(table.c.key == key)).scalar()
            if value is None and default is not None:
                connection.execute(table.insert().values(key=key, value=default))
                value = default
        return value

    def before_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the store closes, before its connections go
        (writers of queued records flush there, not after the database is gone)."""
        self._before_close.append(callback)

    def close(self) -> None:
        callbacks, self._before_close = self._before_close, []
        for callback in callbacks:
            callback()
        self.engine.dispose()


# Every column but the JSON text, which is only ever matched by LIKE (the
# console's search), where no statistics of it would help.
_ANALYZE = "ANALYZE objects ({})".format(
    ", ".join(column.name for column in schema.objects_table.columns if column.name != "body")
)


class _Statistics:
    """Keeps PostgreSQL's statistics of ``objects`` current as a collection grows.

    The planner chooses indexes from them: a table never analysed is planned
    as small (a page or an existence check by the first index on
    collection_id, i.e. a scan of the collection).  Autovacuum would analyse
    it (migration 5 lowers the table's thresholds), but autovacuum may be off
    or behind during a bulk publication, so each process analyses the table
    itself once its own inserts since the last ANALYZE reach the table's
    estimated size (at least 1,000 rows).  Statistics at most one doubling old
    serve the node's queries: the planner scales its row estimates by the
    table's current size, and the selectivities it takes from the statistics
    stay right.  ANALYZE samples a bounded number of rows (30,000 at the
    default statistics target) and skips ``body``, about 40% of its cost; at
    100,000 rows it takes about 0.1 s once per doubling (0.25 ms of the
    server's CPU per POST of 100), where analysing at each tenth's growth took
    0.2 s every 10,000 rows (2 ms per POST).  SQLite needs no statistics for
    the node's queries.
    """

    _MINIMUM = 1_000

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pending = 0
        self._threshold = self._MINIMUM

    def inserted(self, rows: int) -> None:
        if self._engine.dialect.name != "postgresql":
            return
        with self._lock:
            self._pending += rows
            if self._pending < self._threshold:
                return
            self._pending = 0
        with self._engine.connect() as connection:
            connection.exec_driver_sql(_ANALYZE)
            # regclass: the objects table this session's search_path names, not
            # any schema's table of that name.
            estimate = connection.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'objects'::regclass"
            ).scalar()
            connection.commit()
        # The next ANALYZE once this process has inserted as many rows again.
        self._threshold = max(self._MINIMUM, int(estimate or 0))


__all__ = ["Store"]
