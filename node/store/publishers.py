"""Which account published each local version.

Four-eyes release needs it: the account that approves a version for a peer
must not be the one that published it.  Versions received from peers have no
publisher here (their origin is the peer).  The publisher is written with the
version's row (``objects.store_prepared(..., publisher=...)``, column
``objects.publisher``, migration 11); migration 7 had kept it in a table of its
own, ``legacy_publishers``, which migration 11 moves into the rows and drops.
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

from .engine import select_in
from .schema import metadata, objects_table

# Created by migration 7 and dropped by migration 11: for those two steps only.
legacy_publishers = Table(
    "publishers",
    metadata,
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("account", String(128), nullable=False),
    PrimaryKeyConstraint("collection_id", "object_id", "version"),
)


def publishers_of(
    connection: Connection, collection_id: str, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The publisher of each stored (object id, version) that has one."""
    o = objects_table
    statement = select(o.c.object_id, o.c.version, o.c.publisher).where(
        o.c.collection_id == collection_id, o.c.publisher.is_not(None)
    )
    rows = select_in(connection, statement, tuple_(o.c.object_id, o.c.version), keys)
    return {(row.object_id, row.version): row.publisher for row in rows}
