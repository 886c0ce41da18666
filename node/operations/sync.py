"""Operator actions on the exchange: dead letters retried or skipped, the policy preview.

A dead letter is an object version the receiving side refused (the peer on
push, this node on pull).  Retrying it sends (or fetches) that version again
now, under the current policy, through the worker's own delivery path; a
renewed refusal becomes a new dead letter.  Skipping drops it for good.  Both
are audited with the operator's name; the refusal itself stays in the audit
trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from node.config import Config
from node.errors import NotFound
from node.policy import Decision
from node.sharing import Agreement, Position, egress
from node.store import Store, audit, objects, search, syncstate
from node.store.audit import AuditRecord, Direction
from node.sync.worker import RoundResult, SyncWorker


@dataclass(frozen=True)
class RetryOutcome:
    object_id: str
    delivered: bool
    message: str


def _dead_letter(store: Store, pk: int) -> dict:
    with store.read() as connection:
        letter = syncstate.dead_letter(connection, pk)
    if letter is None:
        raise NotFound(f"no dead letter {pk} (retried or skipped already?)")
    return letter


def _manual_record(letter: dict, action: str, actor: str, detail: str) -> AuditRecord:
    return AuditRecord(
        action=action,
        direction=Direction.ADMIN,
        object_id=letter["object_id"],
        version=letter["version"],
        peer=letter["peer"],
        rule=letter["direction"],
        detail=f"{letter['mapping']}: {detail}",
        actor=actor,
    )


def skip_dead_letter(store: Store, pk: int, actor: str) -> None:
    """Give up on a dead letter: remove it, and audit who did."""
    letter = _dead_letter(store, pk)
    with store.write() as connection:
        if not syncstate.remove_dead_letter(connection, pk):
            raise NotFound(f"no dead letter {pk} (retried or skipped already?)")
        audit.record(
            connection,
            [_manual_record(letter, "dead-letter-skipped", actor, f"was: {letter['reason']}")],
        )


def _stored_version(store: Store, collection_id: str, letter: dict) -> dict | None:
    with store.read() as connection:
        found = search.versions(connection, collection_id, letter["object_id"])
    for version in found:
        if not letter["version"] or version.version_text == letter["version"]:
            return version.obj
    return None


def retry_dead_letter(config: Config, store: Store, pk: int, actor: str) -> RetryOutcome:
    """Send (push) or fetch (pull) a dead letter's version again, now.

    The worker's delivery path decides egress again and records a new dead
    letter if the receiving side refuses again; the old one is removed once
    the attempt reached the other side, kept when it could not.  OperationError
    NotFound when the dead letter, its peer or its mapping is no longer there,
    or (push) the version is no longer stored; ConfigError when our password for
    the peer cannot be read.
    """
    letter = _dead_letter(store, pk)
    # One attempt: an operator is waiting for the answer.
    worker = SyncWorker(config, store, peer=_configured_peer(config, letter["peer"]), retries=1)
    try:
        mapping = next((m for m in worker.mappings if m.key == letter["mapping"]), None)
        if mapping is None:
            raise NotFound(f"peer {letter['peer']!r} has no mapping {letter['mapping']!r}")
        obj = None
        if letter["direction"] == "push":
            obj = _stored_version(store, mapping.agreement.collection_id, letter)
            if obj is None:
                raise NotFound(f"{letter['object_id']} is no longer stored here; skip it")
        if obj is not None:
            result = mapping.redeliver([obj])
        else:
            result = mapping.refetch(letter["object_id"], letter["version"])
    finally:
        worker.close()
    outcome = _outcome(letter, result)
    with store.write() as connection:
        if result.ok:  # delivered, withheld, or refused again (a new dead letter)
            syncstate.remove_dead_letter(connection, pk)
        audit.record(connection, [_manual_record(letter, "dead-letter-retried", actor,
                                                 outcome.message)])  # fmt: skip
    return outcome


def _configured_peer(config: Config, name: str) -> str:
    if not any(peer.name == name for peer in config.peers):
        raise NotFound(f"peer {name!r} is no longer configured")
    return name


def _outcome(letter: dict, result: RoundResult) -> RetryOutcome:
    object_id = letter["object_id"]
    if not result.ok:
        return RetryOutcome(object_id, False, f"the peer could not be reached: {result.error}")
    if result.dead_lettered:
        return RetryOutcome(object_id, False, "refused again (a new dead letter records why)")
    if result.sent or result.received:
        verb = "sent to" if letter["direction"] == "push" else "received from"
        return RetryOutcome(object_id, True, f"{verb} {letter['peer']}")
    if result.withheld:
        return RetryOutcome(object_id, False, "the policy now withholds it (see the audit)")
    return RetryOutcome(object_id, True, "already held; nothing to do")


# -- policy preview ---------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLine:
    decision: Decision
    name: str  # the object's name (or value), for people
    type: str


def preview(store: Store, agreement: Agreement, limit: int | None = None) -> Iterator[PreviewLine]:
    """A dry run of egress for one mapping: the decision on every version this node
    would push, dependencies included, in ``date_added`` order.  Nothing is sent or
    recorded.  It is the worker's own egress code in the worker's batches, so the
    preview says what a push does.  ``limit`` stops after that many decisions."""
    after = 0
    sent: set[str] = set()
    produced = 0
    while True:
        with store.read() as connection:
            page = egress(connection, agreement, Position(after=after, scan_limit=1000), sent)
            named: dict[str, Any] = {item.object_id: item.decision.obj for item in page.items}
            for decision in page.decisions:
                if decision.object_id not in named:  # withheld: its name, for people
                    stored = objects.latest(connection, agreement.collection_id, decision.object_id)
                    named[decision.object_id] = stored or {}
        if page.resume_after is None:
            return
        for decision in page.decisions:
            yield _line(decision, named.get(decision.object_id) or {})
            produced += 1
            if limit is not None and produced >= limit:
                return
        after = page.resume_after
        if not page.more:
            return


def _line(decision: Decision, obj: dict) -> PreviewLine:
    name = str(obj.get("name") or obj.get("value") or "")
    return PreviewLine(decision, name, str(obj.get("type") or decision.object_id.split("--")[0]))
