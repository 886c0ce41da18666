"""The durable store: SQLite (default) or PostgreSQL, behind one small facade.

Repositories are modules of functions that take a SQLAlchemy ``Connection``
(``objects``, ``catalog``, ``statuses``, ``accounts``, ``syncstate``), so the
caller chooses the transaction: one POST envelope is one write transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, select

from node.timestamps import now_micros

from . import schema
from .engine import create_store_engine, read_transaction, write_transaction


class Store:
    """One node's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)

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

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as connection:
            yield connection

    def setting(self, key: str, default: str | None = None) -> str | None:
        """A node-wide setting; stores ``default`` when the key is absent."""
        table = schema.settings
        with self.write() as connection:
            value = connection.execute(select(table.c.value).where(table.c.key == key)).scalar()
            if value is None and default is not None:
                connection.execute(table.insert().values(key=key, value=default))
                value = default
        return value

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Store"]
