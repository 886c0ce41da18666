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
from typing import Any, Unpack

from sqlalchemy import BigInteger, Column, Connection, Table, Text, delete, select

from node import jsoncodec
from node.timestamps import now_micros
from node.validation import version_key, version_stamp

from .heldversions import Criteria, HeldRow, HeldVersion, held_columns, hold_new, narrowed
from .schema import metadata

quarantine_table = Table(
    "quarantine",
    metadata,
    *held_columns("uq_quarantine"),
    Column("body", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Held(HeldRow):
    """A version a peer sent, held for review, with the body as received."""

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
    now = now_micros()
    versions = [
        HeldVersion(item["id"], item["type"], version_key(item), version_stamp(item) or "")
        for item in items
    ]
    extra = [{"body": jsoncodec.dumps(item), "received_at": now} for item in items]
    return hold_new(connection, quarantine_table, peer, collection_id, versions, extra)


def held(connection: Connection, **criteria: Unpack[Criteria]) -> list[Held]:
    """Held versions, oldest first."""
    statement = narrowed(select(quarantine_table), quarantine_table, **criteria)
    return [Held(**row._mapping) for row in connection.execute(statement)]


def release(connection: Connection, chosen: Iterable[Held]) -> int:
    """Remove ``chosen`` from the hold (after they were stored, or when rejected)."""
    pks = [entry.pk for entry in chosen]
    if not pks:
        return 0
    statement = delete(quarantine_table).where(quarantine_table.c.pk.in_(pks))
    return connection.execute(statement).rowcount
