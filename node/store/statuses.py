"""Status resources (TAXII 2.1 section 4.3.1), kept for the configured retention."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, select

from node import jsoncodec
from node.timestamps import from_micros

from .engine import placeholder
from .schema import statuses_table

_COLUMNS = ("id", "collection_id", "request_timestamp", "total_count", "success_count",
            "failure_count", "successes", "failures", "owner")  # fmt: skip


def record(
    connection: Connection,
    collection_id: str,
    request_timestamp: int,
    successes: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    owner: str | None = None,
) -> dict[str, Any]:
    """Store the outcome of one POST and return its status resource.

    ``owner`` is the account that made the request: only it (and admins) may
    read the status, since it names the objects of the request.

    The node processes an envelope inside the request, so every status is
    "complete" when it is first returned and ``pending`` is always empty.
    """
    status_id = str(uuid.uuid4())
    _name_versions(successes + failures, request_timestamp)
    # Driver SQL: one per POST, where SQLAlchemy's insert construct cost more
    # than the insert.
    markers = ", ".join([placeholder(connection)] * len(_COLUMNS))
    connection.exec_driver_sql(
        f"INSERT INTO statuses ({', '.join(_COLUMNS)}) VALUES ({markers})",
        (status_id, collection_id, request_timestamp, len(successes) + len(failures),
         len(successes), len(failures), jsoncodec.dumps(successes), jsoncodec.dumps(failures),
         owner),
    )  # fmt: skip
    return _resource(
        status_id, request_timestamp, successes, failures, len(successes) + len(failures)
    )


def _name_versions(details: list[dict[str, Any]], request_timestamp: int) -> None:
    """Give each detail without one a ``version``, which 4.3.1 requires (MISP's push
    reads it): an item refused before it had a version that is a timestamp (not STIX,
    a malformed ``modified``, an SCO never stored, so with no date_added) is named by
    the instant of the request."""
    instant: str | None = None
    for detail in details:
        if not detail.get("version"):
            instant = instant or from_micros(request_timestamp)
            detail["version"] = instant


def _resource(
    status_id: str,
    request_timestamp: int,
    successes: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    total: int,
) -> dict[str, Any]:
    resource = {
        "id": status_id,
        "status": "complete",
        "request_timestamp": from_micros(request_timestamp),
        "total_count": total,
        "success_count": len(successes),
        "failure_count": len(failures),
        "pending_count": 0,
    }
    # Empty lists are omitted, as TAXII 2.1 (3.2) asks of optional lists.
    if successes:
        resource["successes"] = successes
    if failures:
        resource["failures"] = failures
    return resource


class FoundStatus(NamedTuple):
    collection_id: str
    owner: str | None  # None for statuses recorded before owners were (migration 8)
    resource: dict[str, Any]


def get(connection: Connection, status_id: str) -> FoundStatus | None:
    """The status resource ``status_id`` with its collection and owner, or None."""
    row = connection.execute(select(statuses_table).where(statuses_table.c.id == status_id)).first()
    if row is None:
        return None
    resource = _resource(
        row.id,
        row.request_timestamp,
        jsoncodec.loads(row.successes),
        jsoncodec.loads(row.failures),
        row.total_count,
    )
    return FoundStatus(row.collection_id, row.owner, resource)


def purge_older_than(connection: Connection, cutoff: int) -> int:
    """Drop statuses requested before ``cutoff``; return how many."""
    result = connection.execute(
        delete(statuses_table).where(statuses_table.c.request_timestamp < cutoff)
    )
    return result.rowcount
