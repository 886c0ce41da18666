"""Deleting objects here, and recalling them from the peers that received them.

TAXII 2.1 has no tombstones (section 5.7 deletes versions, nothing tells a
poller): a peer that received a deleted version would keep it for ever.  So a
deletion queues, in the same transaction and before the versions go, a recall
for each peer mapped to the collection that received one of them
(``node.operations.recalls.withdraw_deleted``), and is audited.  The API's
DELETE, ``taxii-node delete`` and the console's object page all call
:func:`delete_versions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection

from node.sharing import Agreement
from node.sharing.gates import recall_deleted
from node.store import audit, objects
from node.store.audit import Action, AuditRecord, Direction
from node.store.objects import ObjectQuery


@dataclass(frozen=True)
class Deletion:
    """What a deletion did: versions removed, recalls queued for peers."""

    deleted: int
    recalls: int


def delete_versions(
    connection: Connection,
    agreements: Iterable[Agreement],
    query: ObjectQuery,
    object_id: str,
    *,
    actor: str,
) -> Deletion:
    """Delete the versions of ``object_id`` that ``query`` selects (its ``ids`` name
    that object), after queuing their recalls; audited as ``actor``.  Inside the
    caller's write transaction."""
    deleting = objects.matching_versions(connection, query)
    if not deleting:
        return Deletion(0, 0)
    recalls = recall_deleted(connection, agreements, query.collection_id, object_id, deleting)
    deleted = objects.delete(connection, query)
    if deleted:
        record = AuditRecord(
            action=Action.DELETED,
            direction=Direction.LOCAL,
            object_id=object_id,
            collection_id=query.collection_id,
            detail=f"{deleted} version(s) deleted",
            actor=actor,
        )
        audit.record(connection, [record])
    return Deletion(deleted, recalls)
