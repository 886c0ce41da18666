"""Versions a partner posted that were refused for what it may not see (migration 13).

A partner's POST must not tell it whether this node holds an object it may not
see: an object with the id of one we withhold from it (an SCO's id is derived
from its value, so a partner can name one it never saw) would otherwise be
refused where an unknown id is added.  Such a refusal is therefore answered as
if the version were stored: "added" the first time, "already present" when the
partner posts the same content again, and the refusal a different content
under that id and version gets (as for a version it stored).  This table
remembers what was so answered, by a digest of the content; the versions
themselves are not stored, and the audit records the refusal
(``node.sharing.ingress``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Connection, PrimaryKeyConstraint, String, Table, select

from node import jsoncodec

from .engine import select_in
from .schema import metadata

concealed = Table(
    "concealed_versions",
    metadata,
    Column("peer", String(128), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", BigInteger, nullable=False),  # as objects.version (0: an SCO's one)
    Column("digest", String(64), nullable=False),  # sha256 of the posted content
    # The date_added an insert would have given it: the label of an SCO without a
    # version in the answers (``objects._valid_detail``), taken from the collection.
    Column("answered_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("peer", "collection_id", "object_id", "version"),
)


def digest(obj: dict[str, object]) -> str:
    return hashlib.sha256(jsoncodec.dumps(obj).encode()).hexdigest()


def known(
    connection: Connection, peer: str, collection_id: str, object_ids: Iterable[str]
) -> dict[tuple[str, int], tuple[str, int]]:
    """(object id, version) -> (digest, date_added label) of what was answered as stored."""
    c = concealed.c
    statement = select(c.object_id, c.version, c.digest, c.answered_at).where(
        c.peer == peer, c.collection_id == collection_id
    )
    return {
        (row.object_id, row.version): (row.digest, row.answered_at)
        for row in select_in(connection, statement, c.object_id, set(object_ids))
    }


def remember(
    connection: Connection, peer: str, collection_id: str, rows: list[tuple[str, int, str, int]]
) -> None:
    """Keep (object id, version, digest, date_added label) as answered stored."""
    if rows:
        connection.execute(
            concealed.insert(),
            [{"peer": peer, "collection_id": collection_id, "object_id": object_id,
              "version": version, "digest": content, "answered_at": label}
             for object_id, version, content, label in rows],
        )  # fmt: skip
