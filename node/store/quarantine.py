"""Versions received from a peer and held for review (mapping ingress
``quarantine = true``, migration 7).

They are stored here, not in ``objects``: no TAXII endpoint serves them
(objects, object, versions, manifest), no worker pushes them on, until an
analyst or admin accepts them, which stores them in the collection as
received from the peer, added at acceptance (so every poller sees them).
Rejecting removes them.  The peer's status resource says "added" either way:
what we do with a version after accepting delivery is our own business.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    tuple_,
)

from node import jsoncodec
from node.timestamps import now_micros
from node.validation import version_key, version_stamp

from .schema import BigId, metadata

_IN_CHUNK = 300

quarantine = Table(
    "quarantine",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("peer", String(128), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("version_text", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    UniqueConstraint("peer", "collection_id", "object_id", "version", name="uq_quarantine"),
)


@dataclass(frozen=True)
class Held:
    pk: int
    peer: str
    collection_id: str
    object_id: str
    type: str
    version: int
    version_text: str
    body: str
    received_at: int

    @property
    def obj(self) -> dict[str, Any]:
        loaded: dict[str, Any] = jsoncodec.loads(self.body)
        return loaded


def hold(
    connection: Connection, peer: str, collection_id: str, items: Sequence[dict[str, Any]]
) -> int:
    """Hold valid objects from ``peer``; versions already held are left alone. Returns
    how many were new."""
    keys = [(item["id"], version_key(item)) for item in items]
    present = _present(connection, peer, collection_id, keys)
    now = now_micros()
    rows = []
    for item, key in zip(items, keys, strict=True):
        if key in present:
            continue
        present.add(key)
        rows.append(
            {
                "peer": peer,
                "collection_id": collection_id,
                "object_id": key[0],
                "type": item["type"],
                "version": key[1],
                "version_text": version_stamp(item) or "",
                "body": jsoncodec.dumps(item),
                "received_at": now,
            }
        )
    if rows:
        connection.execute(quarantine.insert(), rows)
    return len(rows)


def _present(
    connection: Connection, peer: str, collection_id: str, keys: Iterable[tuple[str, int]]
) -> set[tuple[str, int]]:
    wanted = sorted(set(keys))
    found: set[tuple[str, int]] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        statement = select(quarantine.c.object_id, quarantine.c.version).where(
            quarantine.c.peer == peer,
            quarantine.c.collection_id == collection_id,
            tuple_(quarantine.c.object_id, quarantine.c.version).in_(chunk),
        )
        found.update((row[0], row[1]) for row in connection.execute(statement))
    return found


def held(
    connection: Connection,
    *,
    peer: str | None = None,
    collection_id: str | None = None,
    pks: Iterable[int] | None = None,
    object_ids: Iterable[str] | None = None,
) -> list[Held]:
    """Held versions, oldest first."""
    statement = select(quarantine).order_by(quarantine.c.pk)
    if peer is not None:
        statement = statement.where(quarantine.c.peer == peer)
    if collection_id is not None:
        statement = statement.where(quarantine.c.collection_id == collection_id)
    if pks is not None:
        statement = statement.where(quarantine.c.pk.in_(sorted(set(pks))))
    if object_ids is not None:
        statement = statement.where(quarantine.c.object_id.in_(sorted(set(object_ids))))
    return [Held(**row._mapping) for row in connection.execute(statement)]


def release(connection: Connection, chosen: Iterable[Held]) -> int:
    """Remove ``chosen`` from the hold (after they were stored, or when rejected)."""
    pks = [entry.pk for entry in chosen]
    if not pks:
        return 0
    return connection.execute(delete(quarantine).where(quarantine.c.pk.in_(pks))).rowcount
