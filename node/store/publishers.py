"""Which account published each local version (migration 7).

Four-eyes release needs it: the account that approves a version for a peer
must not be the one that published it.  Versions received from peers have no
publisher here (their origin is the peer).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    PrimaryKeyConstraint,
    String,
    Table,
    select,
    tuple_,
)

from .engine import insert_rows, select_in
from .objects import StoredObject
from .schema import metadata

publishers = Table(
    "publishers",
    metadata,
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("account", String(128), nullable=False),
    PrimaryKeyConstraint("collection_id", "object_id", "version"),
)


_COLUMNS = ("collection_id", "object_id", "version", "account")


def record(
    connection: Connection, collection_id: str, stored: Iterable[StoredObject], account: str
) -> None:
    """Record ``account`` as the publisher of the new versions ``stored`` (an AddOutcome's).

    Straight to the driver (``engine.insert_rows``): on a POST of 100,
    SQLAlchemy's per-row parameter handling cost more than the inserts.
    """
    rows = [
        (collection_id, item.object_id, item.version, account)
        for item in stored
        if item.origin is None
    ]
    insert_rows(connection, "publishers", _COLUMNS, rows)


def publishers_of(
    connection: Connection, collection_id: str, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The publisher of each (object id, version) that has one."""
    p = publishers
    statement = select(p.c.object_id, p.c.version, p.c.account).where(
        p.c.collection_id == collection_id
    )
    rows = select_in(connection, statement, tuple_(p.c.object_id, p.c.version), keys)
    return {(row.object_id, row.version): row.account for row in rows}
