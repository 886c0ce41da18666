"""Object versions held for a peer until somebody decides on them: the shape the
quarantine (``quarantine.py``: what a peer sent, held for review) and the release
queue (``releases.py``: what egress lets through for a peer, held for a releaser)
share.

Both hold a version of an object in a collection, for one peer, once (a
unique (peer, collection, object, version)), are listed oldest first and
narrowed by peer, collection, entries and ids, and add only the versions not
held yet.  They differ in what a decision does, so each keeps its own table
and columns: accepting or rejecting a quarantined version removes it (it was
never stored; the body is held here), a release decision is kept (egress
consults it; the body is the stored version's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Select,
    String,
    Table,
    UniqueConstraint,
    select,
    tuple_,
)

from .engine import select_in
from .schema import BigId


class Criteria(TypedDict, total=False):
    """Which held versions a listing covers (each one given narrows it; None: any)."""

    peer: str | None
    collection_id: str | None
    pks: Iterable[int] | None
    object_ids: Iterable[str] | None


@dataclass(frozen=True, slots=True)
class HeldVersion:
    """A version to hold for a peer: which object, its type and its version."""

    object_id: str
    type: str
    version: int  # as objects.version
    version_text: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.object_id, self.version)


@dataclass(frozen=True)
class HeldRow:
    """The columns every held version has (a table's row adds its own)."""

    pk: int
    peer: str
    collection_id: str
    object_id: str
    type: str
    version: int
    version_text: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.object_id, self.version)


def held_columns(unique_name: str) -> list[Column[Any] | UniqueConstraint]:
    """The columns of ``HeldRow`` and the constraint that holds a version once per peer
    (new objects each call: a Column belongs to one table)."""
    return [
        Column("pk", BigId, primary_key=True, autoincrement=True),
        Column("peer", String(128), nullable=False),
        Column("collection_id", String(64), nullable=False),
        Column("object_id", String(300), nullable=False),
        Column("type", String(250), nullable=False),
        Column("version", BigInteger, nullable=False),  # as objects.version
        Column("version_text", String(40), nullable=False),
        UniqueConstraint("peer", "collection_id", "object_id", "version", name=unique_name),
    ]


def rows_of_keys(
    connection: Connection,
    statement: Select[Any],
    table: Table,
    peer: str,
    collection_id: str,
    keys: Iterable[tuple[str, int]],
) -> Iterable[Any]:
    """The rows of ``statement`` (on ``table``) held for the peer under these
    (object id, version) keys."""
    narrowed = statement.where(table.c.peer == peer, table.c.collection_id == collection_id)
    key = tuple_(table.c.object_id, table.c.version)
    return select_in(connection, narrowed, key, keys)


def hold_new(
    connection: Connection,
    table: Table,
    peer: str,
    collection_id: str,
    versions: Sequence[HeldVersion],
    extra: Sequence[Mapping[str, Any]],
) -> int:
    """Hold those of ``versions`` not held yet (each with its ``extra`` columns); return
    how many were new."""
    statement = select(table.c.object_id, table.c.version)
    seen = {
        (row.object_id, row.version)
        for row in rows_of_keys(
            connection, statement, table, peer, collection_id, (v.key for v in versions)
        )
    }
    rows = []
    for version, columns in zip(versions, extra, strict=True):
        if version.key in seen:
            continue
        seen.add(version.key)
        rows.append(
            {
                "peer": peer,
                "collection_id": collection_id,
                "object_id": version.object_id,
                "type": version.type,
                "version": version.version,
                "version_text": version.version_text,
                **columns,
            }
        )
    if rows:
        connection.execute(table.insert(), rows)
    return len(rows)


def narrowed(statement: Select[Any], table: Table, **criteria: Unpack[Criteria]) -> Select[Any]:
    """``statement`` on ``table``, oldest first, narrowed by whichever criteria are given."""
    statement = statement.order_by(table.c.pk)
    peer, collection_id = criteria.get("peer"), criteria.get("collection_id")
    pks, object_ids = criteria.get("pks"), criteria.get("object_ids")
    if peer is not None:
        statement = statement.where(table.c.peer == peer)
    if collection_id is not None:
        statement = statement.where(table.c.collection_id == collection_id)
    if pks is not None:
        statement = statement.where(table.c.pk.in_(sorted(set(pks))))
    if object_ids is not None:
        statement = statement.where(table.c.object_id.in_(sorted(set(object_ids))))
    return statement
