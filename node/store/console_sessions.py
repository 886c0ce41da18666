"""Console sessions ended by signing out (migration 16).

A console session is a signed cookie (``node.console.session``): nothing on the
server knew it, so a copy of the cookie taken before sign-out went on working
until it sat idle.  Each session carries a random id, and signing out records
it here; a cookie naming an ended id signs nobody in.  A record is needed only
while a copy of its cookie could still be within the idle limit, so records
older than that are dropped at the next sign-out.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, String, Table, delete, insert, select

from .schema import metadata

ended_sessions = Table(
    "console_sessions_ended",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("ended_at", BigInteger, nullable=False),  # seconds since the epoch
)


def end(connection: Connection, session_id: str, now: int, idle_seconds: int) -> None:
    """Record that ``session_id`` ended at ``now``; forget records past the idle limit."""
    table = ended_sessions
    connection.execute(delete(table).where(table.c.ended_at < now - idle_seconds))
    if not is_ended(connection, session_id):
        connection.execute(insert(table).values(session_id=session_id, ended_at=now))


def is_ended(connection: Connection, session_id: str) -> bool:
    table = ended_sessions
    found = connection.execute(select(table.c.session_id).where(table.c.session_id == session_id))
    return found.first() is not None
