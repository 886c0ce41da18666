"""Recalls that reach the partner: withdraw here, and the peer purges what it holds.

Sending side.  When a peer's current version of an object is withheld by
egress (raised to RED, a denied label), egress itself serves the peer a recall
in its place (``node.recall``, ``node.store.recalls.recall_for``).  A DELETE
removes what egress would read, so :func:`withdraw`, called before it, queues
a recall for each peer that received the object; egress serves it at the
place in the collection it took when queued.

Receiving side.  :func:`honour` acts on a recall only when it comes from the
object's origin (the peer every held version came from); any other recall is
refused and audited.  It purges every version (``recalls = "purge"``, the
default) or stores the revoked version (``"revoke"``), records the recall and
audits it; the object is never passed on again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from node import jsoncodec
from node.recall import RecallMode, recall_reason
from node.store import audit, objects, recalls
from node.store.audit import AuditRecord, Direction
from node.store.objects import ObjectQuery
from node.store.schema import objects_table


def withdraw(
    connection: Connection,
    collection_id: str,
    object_ids: list[str],
    reason: str,
    redactions: Mapping[str, frozenset[str]],
) -> int:
    """Queue a recall for each peer that received one of ``object_ids``; call before a
    DELETE, while the versions are still stored.  ``redactions``: the peers mapped to
    the collection, each with its egress ``redact`` list.  Returns how many were queued."""
    queued = 0
    for object_id in sorted(set(object_ids)):
        for peer in sorted(recalls.peers_delivered(connection, collection_id, object_id)):
            if peer not in redactions:
                continue
            recall = recalls.recall_for(connection, peer, collection_id, object_id, reason,
                                        redactions[peer])  # fmt: skip
            if recall is None:
                continue
            if recalls.queue(connection, peer, collection_id, object_id, recall["modified"],
                             jsoncodec.dumps(recall), reason):  # fmt: skip
                queued += 1
                _audit_queued(connection, peer, collection_id, recall, reason)
    return queued


def _audit_queued(
    connection: Connection, peer: str, collection_id: str, recall: dict[str, Any], reason: str
) -> None:
    audit.record(
        connection,
        [
            AuditRecord(
                action="recall-queued",
                direction=Direction.PUSH,
                object_id=recall["id"],
                version=recall["modified"],
                peer=peer,
                collection_id=collection_id,
                rule="recall",
                detail=reason,
            )
        ],
    )


@dataclass(frozen=True)
class Honoured:
    """What :func:`honour` did with one recall."""

    object_id: str
    done: bool
    action: str  # purged, revoked, refused, ignored
    detail: str


def honour(
    connection: Connection,
    peer: str,
    collection_id: str,
    recall: dict[str, Any],
    mode: RecallMode,
    direction: str,
) -> Honoured:
    """Act on a recall from ``peer``, in the caller's write transaction; audited."""
    object_id = recall["id"]
    origins = _origins(connection, collection_id, object_id)
    reason = recall_reason(recall)
    if not origins:
        result = Honoured(object_id, False, "ignored", "nothing of the object is held here")
    elif origins != {peer}:
        held_from = ", ".join(sorted("this node" if o is None else str(o) for o in origins))
        result = Honoured(object_id, False, "refused",
                          f"recall from {peer}, but the object came from {held_from}")  # fmt: skip
    elif mode is RecallMode.PURGE:
        query = ObjectQuery(collection_id=collection_id, limit=1, ids=(object_id,),
                            versions=("all",))  # fmt: skip
        removed = objects.delete(connection, query)
        recalls.record_recalled(connection, collection_id, object_id, peer, mode.value)
        result = Honoured(object_id, True, "purged", f"{removed} version(s) purged: {reason}")
    else:
        outcome = objects.add_objects(connection, collection_id, [recall], origin=peer)
        recalls.record_recalled(connection, collection_id, object_id, peer, mode.value)
        stored = "revoked version stored" if outcome.stored else "already revoked"
        result = Honoured(object_id, True, "revoked", f"{stored}: {reason}")
    audit.record(
        connection,
        [
            AuditRecord(
                action="recall-" + result.action,
                direction=Direction(direction),
                object_id=object_id,
                version=recall.get("modified"),
                peer=peer,
                collection_id=collection_id,
                rule="recall",
                detail=result.detail,
            )
        ],
    )
    return result


def _origins(connection: Connection, collection_id: str, object_id: str) -> set[str | None]:
    t = objects_table
    statement = (
        t.select()
        .with_only_columns(t.c.origin)
        .where(t.c.collection_id == collection_id, t.c.object_id == object_id)
        .distinct()
    )
    return set(connection.execute(statement).scalars())
