"""Recalls that reach the partner: withdraw here, and the peer purges what it holds.

Sending side.  When a peer's current version of an object is withheld by
egress (raised to RED, a denied label), egress itself serves the peer a recall
in its place (``node.recall``, ``node.store.recalls.recall_for``).  A DELETE
removes what egress would read, so :func:`withdraw_deleted`, called before it,
queues a recall for each peer that received one of the versions it removes
(the whole object, or some versions: see there); egress serves it at the place
in the collection it took when queued, and no other version of the object to
that peer afterwards.

Receiving side.  :func:`honour` acts on a recall only when it comes from the
object's origin (the peer every held version came from); any other recall is
refused and audited.  It purges every version (``recalls = "purge"``, the
default) or stores a revoked version (``"revoke"``), records the recall and
audits it; the object is never passed on again.  The revoked version is the
latest held one with ``revoked: true``, the recall's ``modified`` and reason:
nothing else of the recall's content is stored, which ingress policy (and
quarantine) never judged.

Onward recalls.  A node that passed the object on (mapping egress ``onward =
"allow"``) relays the recall it honoured, in the same transaction and before
it purges: each peer its audit shows it passed the object on to is queued a
recall of the version *that* peer received, with the origin's ``modified``
(so a peer reached both ways gets one version of the recall) and a reason
naming the origin.  The chain is verified hop by hop, each node against the
peer it received the object from: the relaying node acts only on a recall
its origin sent (the check above), and relays only to peers it recorded
delivering the object to; the next node, which recorded the relaying node as
the object's origin when it received it, honours the relayed recall by the
same rule.  It cannot check the first hop itself (nothing in a STIX 2.1
version says who made a revocation, section 3.6: ``revoked`` is final and
anyone holding the object may issue a newer version), so it trusts the peer
it trusted for the content.  A peer that holds the object from the origin
directly refuses a relayed copy (``recall-refused``) and honours the
origin's own recall.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from node import jsoncodec
from node.recall import RecallMode, RecallOutcome, recall_reason, recall_version
from node.store import audit, objects, recalls
from node.store.audit import Action, AuditRecord, Direction
from node.store.objects import ObjectQuery
from node.store.schema import objects_table


def withdraw(
    connection: Connection,
    collection_id: str,
    object_ids: list[str],
    reason: str,
    redactions: Mapping[str, frozenset[str]],
    modified: str | None = None,
) -> int:
    """Queue a recall for each peer that received one of ``object_ids``; call before a
    DELETE (or a purge), while the versions are still stored.  ``redactions``: the
    peers mapped to the collection, each with its egress ``redact`` list; ``modified``:
    the recall version's (see ``node.recall.recall_version``).  Returns how many were
    queued."""
    queued = 0
    for object_id in sorted(set(object_ids)):
        for peer in sorted(recalls.peers_delivered(connection, collection_id, object_id)):
            if peer not in redactions:
                continue
            recall = recalls.recall_for(connection, peer, collection_id, object_id, reason,
                                        redactions[peer], modified)  # fmt: skip
            if recall is None:
                continue
            if recalls.queue(connection, peer, collection_id, object_id, recall["modified"],
                             jsoncodec.dumps(recall), reason):  # fmt: skip
                queued += 1
                _audit_queued(connection, peer, collection_id, recall, reason)
    return queued


def withdraw_deleted(
    connection: Connection,
    collection_id: str,
    object_id: str,
    deleting: set[int],
    reason: str,
    redactions: Mapping[str, frozenset[str]],
) -> int:
    """Before a DELETE of the versions ``deleting`` of ``object_id`` (all of them, or some:
    TAXII 2.1 section 5.7, ``match[version]``): queue a recall for each peer that
    received one of them.  Returns how many were queued.

    A peer that received none of the deleted versions keeps what it has: nothing it
    holds was withdrawn.  One that did gets a recall of the object, even when older
    or newer versions remain here and are still shareable: a peer cannot be told to
    drop one version (TAXII 2.1 has no tombstones), a remaining older version cannot
    be sent again as a newer one (its ``modified`` is what it is, STIX 2.1 section
    3.6), and a newer one would leave the deleted content in the peer's history.
    A revoked object stays revoked (section 3.6), so from then on egress serves that
    peer no version of it (rule ``recall.sent``); the versions that remain are still
    shared with the peers that received none of the deleted ones.  To share the
    remaining content with the peer again, publish it as a new object.
    """
    received = recalls.versions_delivered(connection, collection_id, object_id)
    affected = {
        peer: redact for peer, redact in redactions.items() if received.get(peer, set()) & deleting
    }
    if not affected:
        return 0
    return withdraw(connection, collection_id, [object_id], reason, affected)


def _audit_queued(
    connection: Connection, peer: str, collection_id: str, recall: dict[str, Any], reason: str
) -> None:
    audit.record(
        connection,
        [
            AuditRecord(
                action=Action.RECALL_QUEUED,
                direction=Direction.PUSH,
                object_id=recall["id"],
                version=recall["modified"],
                peer=peer,
                collection_id=collection_id,
                rule=recalls.RECALL_RULE,
                detail=reason,
            )
        ],
    )


@dataclass(frozen=True)
class Honoured:
    """What :func:`honour` did with one recall."""

    object_id: str
    done: bool
    action: RecallOutcome
    detail: str


# The audit action of each outcome.
_AUDIT_ACTIONS = {
    RecallOutcome.PURGED: Action.RECALL_PURGED,
    RecallOutcome.REVOKED: Action.RECALL_REVOKED,
    RecallOutcome.REFUSED: Action.RECALL_REFUSED,
    RecallOutcome.IGNORED: Action.RECALL_IGNORED,
}


def honour(
    connection: Connection,
    peer: str,
    collection_id: str,
    recall: dict[str, Any],
    mode: RecallMode,
    direction: Direction,
    onward: Mapping[str, frozenset[str]],
) -> Honoured:
    """Act on a recall from ``peer``, in the caller's write transaction; audited.

    ``onward``: the peers mapped to the collection with their egress ``redact``
    lists; those this node passed the object on to get the recall relayed (see
    above), unless it is refused or ignored here."""
    object_id = recall["id"]
    origins = _origins(connection, collection_id, object_id)
    if not origins:
        result = Honoured(
            object_id, False, RecallOutcome.IGNORED, "nothing of the object is held here"
        )
    elif origins != {peer}:
        held_from = ", ".join(sorted("this node" if o is None else str(o) for o in origins))
        result = Honoured(object_id, False, RecallOutcome.REFUSED,
                          f"recall from {peer}, but the object came from {held_from}")  # fmt: skip
    else:
        result = _act(connection, peer, collection_id, recall, mode, onward)
    _audit_honoured(connection, peer, collection_id, recall, result, direction)
    return result


def _act(
    connection: Connection,
    peer: str,
    collection_id: str,
    recall: dict[str, Any],
    mode: RecallMode,
    onward: Mapping[str, frozenset[str]],
) -> Honoured:
    """Relay, then purge or revoke: a recall from the object's origin."""
    object_id, reason = recall["id"], recall_reason(recall)
    relayed = _relay(connection, peer, collection_id, recall, onward)
    passed = f"; relayed to {relayed} peer(s) it was passed on to" if relayed else ""
    if mode is RecallMode.PURGE:
        query = ObjectQuery(collection_id=collection_id, limit=1, ids=(object_id,),
                            versions=("all",))  # fmt: skip
        removed = objects.delete(connection, query)
        recalls.record_recalled(connection, collection_id, object_id, peer, mode)
        return Honoured(object_id, True, RecallOutcome.PURGED,
                        f"{removed} version(s) purged: {reason}{passed}")  # fmt: skip
    held = objects.latest(connection, collection_id, object_id)
    assert held is not None  # (``honour`` found the origin's versions in this transaction)
    stored = "already revoked"  # (a recall received again: a revoked object stays so)
    if held.get("revoked") is not True:
        modified = recall.get("modified")
        revoked = recall_version(held, reason, modified if isinstance(modified, str) else None)
        objects.add_objects(connection, collection_id, [revoked], origin=peer)
        stored = "revoked version stored"
    recalls.record_recalled(connection, collection_id, object_id, peer, mode)
    return Honoured(object_id, True, RecallOutcome.REVOKED, f"{stored}: {reason}{passed}")


def _relay(
    connection: Connection,
    origin: str,
    collection_id: str,
    recall: dict[str, Any],
    onward: Mapping[str, frozenset[str]],
) -> int:
    """Queue the origin's recall for the peers this node passed the object on to (never
    back to the origin); before the purge, while what they received is stored."""
    others = {peer: redact for peer, redact in onward.items() if peer != origin}
    if not others:
        return 0
    modified = recall.get("modified")
    reason = f"recalled by its origin ({origin}): {recall_reason(recall)}"
    return withdraw(connection, collection_id, [recall["id"]], reason, others,
                    modified if isinstance(modified, str) else None)  # fmt: skip


def _audit_honoured(
    connection: Connection,
    peer: str,
    collection_id: str,
    recall: dict[str, Any],
    result: Honoured,
    direction: Direction,
) -> None:
    audit.record(
        connection,
        [
            AuditRecord(
                action=_AUDIT_ACTIONS[result.action],
                direction=direction,
                object_id=result.object_id,
                version=recall.get("modified"),
                peer=peer,
                collection_id=collection_id,
                rule=recalls.RECALL_RULE,
                detail=result.detail,
            )
        ],
    )


def _origins(connection: Connection, collection_id: str, object_id: str) -> set[str | None]:
    t = objects_table
    statement = (
        t.select()
        .with_only_columns(t.c.origin)
        .where(t.c.collection_id == collection_id, t.c.object_id == object_id)
        .distinct()
    )
    return set(connection.execute(statement).scalars())
