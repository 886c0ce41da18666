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
from enum import Enum

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
    Column("answered_at", BigInteger, nullable=False),  # labels an unversioned SCO
    PrimaryKeyConstraint("peer", "collection_id", "object_id", "version"),
)


class Answer(Enum):
    ADDED = "added"  # first seen: answered as stored
    ALREADY = "already present"  # the same content again
    CONFLICT = "conflict"  # another content under this id and version


def digest(obj: dict[str, object]) -> str:
    return hashlib.sha256(jsoncodec.dumps(obj).encode()).hexdigest()


def answer(
    connection: Connection,
    peer: str,
    collection_id: str,
    versions: Iterable[tuple[str, int, str]],
    now: int,
) -> dict[tuple[str, int], tuple[Answer, int]]:
    """How to answer each (object id, version, digest) refused for what the peer may not
    see, with the instant first answered; remembers the new ones."""
    wanted = {(object_id, version): content for object_id, version, content in versions}
    c = concealed.c
    statement = select(c.object_id, c.version, c.digest, c.answered_at).where(
        c.peer == peer, c.collection_id == collection_id
    )
    known = {
        (row.object_id, row.version): (row.digest, row.answered_at)
        for row in select_in(connection, statement, c.object_id, {oid for oid, _ in wanted})
    }
    answers: dict[tuple[str, int], tuple[Answer, int]] = {}
    new = []
    for key, content in wanted.items():
        if key in known:
            seen, at = known[key]
            answers[key] = (Answer.ALREADY if seen == content else Answer.CONFLICT, at)
        else:
            answers[key] = (Answer.ADDED, now)
            new.append({"peer": peer, "collection_id": collection_id, "object_id": key[0],
                        "version": key[1], "digest": content, "answered_at": now})  # fmt: skip
    if new:
        connection.execute(concealed.insert(), new)
    return answers
