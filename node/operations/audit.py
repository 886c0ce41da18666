"""The audit trail: the record every operation appends for the change it made, and
the reads the command line and the console show (the listing, the chain's state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from node.errors import InvalidValue
from node.store import audit, search
from node.store.audit import Action, AuditFilter, AuditRecord, Direction, Verification
from node.store.schema import MAX_STORE_INTEGER


def record_change(
    connection: Connection, actor: str, action: Action, subject: str, detail: str = ""
) -> None:
    """Record an administrative change of ``subject`` (an account) made by ``actor``."""
    audit.record(
        connection,
        [
            AuditRecord(
                action=action,
                direction=Direction.ADMIN,
                actor=actor,
                object_id=subject,
                detail=detail or None,
            )
        ],
    )


_MAX_LIMIT = MAX_STORE_INTEGER  # the largest LIMIT both stores take


def entries(connection: Connection, wanted: AuditFilter) -> list[dict[str, Any]]:
    """The records ``wanted`` (``at`` in microseconds), as the CLI lists and exports
    them and the console pages through them.  A limit is from 1 up (None: all): a
    negative LIMIT means "no limit" to SQLite and an error to PostgreSQL, one past
    64 bits an OverflowError to both."""
    if wanted.limit is not None and not 1 <= wanted.limit <= _MAX_LIMIT:
        raise InvalidValue(f"limit {wanted.limit}: a number from 1 to {_MAX_LIMIT} (or none)")
    return audit.matching(connection, wanted)


def verify(connection: Connection) -> Verification:
    """Recompute the hash chain from its first record to the recorded head."""
    return audit.verify(connection)


@dataclass(frozen=True)
class ChainSummary:
    records: int
    head: str  # the recorded head hash
    verification: Verification | None  # None: not checked (see ``summary``)


def summary(connection: Connection, *, verify_up_to: int | None = None) -> ChainSummary:
    """The trail's size and head, its chain verified when it holds at most
    ``verify_up_to`` records (None: whatever its size; verifying reads every record)."""
    records, _ = search.audit_totals(connection)
    checked = verify_up_to is None or records <= verify_up_to
    return ChainSummary(records, audit.head(connection), verify(connection) if checked else None)
