"""Quarantine on arrival: list, accept and reject what a peer sent for review.

A mapping whose ingress sets ``quarantine = true`` holds what the peer sends
(after its ingress policy) in ``node.store.quarantine`` instead of the
collection.  Accepting stores it as received from the peer; rejecting drops
it with a reason.  The peer's status resources and sync state are not touched.
Who may: an admin, or an analyst who may write to the collection (the CLI
acts as the node's operator).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from node.errors import Conflict, NotFound
from node.store import accounts, audit, objects, quarantine
from node.store.audit import Action, AuditRecord, Direction
from node.store.quarantine import Held
from node.validation import version_stamp

from .holds import CLI_WORDING, Selection, Wording, decision_records, rejection_reason

_RULE = "quarantine"


def hold(
    connection: Connection,
    peer: str,
    collection_id: str,
    items: Sequence[dict],
    direction: Direction,
) -> int:
    """Hold ``items`` (valid objects ingress let through) from ``peer``; audited per version.

    ``direction``: PULL (our worker fetched them) or RECEIVE (the peer posted them).
    """
    held = quarantine.hold(connection, peer, collection_id, items)
    audit.record(
        connection,
        [
            AuditRecord(
                action=Action.QUARANTINED,
                direction=direction,
                object_id=item.get("id"),
                version=version_stamp(item),
                peer=peer,
                collection_id=collection_id,
                rule=_RULE,
                detail="held for review (ingress quarantine = true)",
            )
            for item in items
        ],
    )
    return held


def list_held(connection: Connection, selection: Selection) -> list[Held]:
    return quarantine.held(connection, **selection.criteria(connection))


def accept(
    connection: Connection,
    selection: Selection,
    *,
    actor: str,
    account: str | None = None,
    wording: Wording = CLI_WORDING,
) -> list[Held]:
    """Store the selected versions in their collection, as received from their peer.
    ``wording``: how refusals name the caller's inputs (flags, form fields)."""
    chosen = _chosen(connection, selection, account, wording)
    by_target: dict[tuple[str, str], list[Held]] = {}
    for entry in chosen:
        by_target.setdefault((entry.peer, entry.collection_id), []).append(entry)
    for (peer, collection_id), entries in by_target.items():
        outcome = objects.add_objects(
            connection, collection_id, [entry.obj for entry in entries], origin=peer
        )
        if outcome.failures:
            first = outcome.failures[0]
            raise Conflict(f"cannot store {first.get('id')}: {first.get('message')}")
    quarantine.release(connection, chosen)
    _audit(connection, chosen, Action.QUARANTINE_ACCEPTED, actor, None)
    return chosen


def reject(
    connection: Connection,
    selection: Selection,
    reason: str,
    *,
    actor: str,
    account: str | None = None,
    wording: Wording = CLI_WORDING,
) -> list[Held]:
    """Drop the selected versions, with a reason."""
    reason = rejection_reason(reason, wording)
    chosen = _chosen(connection, selection, account, wording)
    quarantine.release(connection, chosen)
    _audit(connection, chosen, Action.QUARANTINE_REJECTED, actor, reason)
    return chosen


def _chosen(
    connection: Connection, selection: Selection, account: str | None, wording: Wording
) -> list[Held]:
    selection.check_names_some(wording.held_choices)
    chosen = list_held(connection, selection)
    if not chosen:
        raise NotFound("no held version matches")
    if account is not None:
        _check_may_review(connection, account, {entry.collection_id for entry in chosen})
    return chosen


def _check_may_review(connection: Connection, name: str, collection_ids: set[str]) -> None:
    """An admin, or an analyst who may write to every collection concerned."""
    found = accounts.load_account(connection, name)
    if found is None:
        raise NotFound(f"no account named {name!r}")
    if found.peer is not None:
        raise Conflict(f"{name!r} is a partner's sync account and cannot review quarantine")
    for collection_id in collection_ids:
        if not found.rights_on(collection_id).can_write:
            raise Conflict(f"{name!r} may not write to collection {collection_id}")


def _audit(
    connection: Connection, chosen: Sequence[Held], action: Action, actor: str, reason: str | None
) -> None:
    records = decision_records(
        chosen, action, Direction.LOCAL, rule=_RULE, detail=reason, actor=actor
    )
    audit.record(connection, records)
