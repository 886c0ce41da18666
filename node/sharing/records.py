"""Sharing decisions as audit records: the one place that turns one into the other.

The worker's push and pull, and a partner's POST, audit one record per
decision, in the transaction that commits what the decision was about.  A
partner's reads are audited once per request (what it asked, how many versions
it was served and how many were withheld, by rule), and once per version of
content it was served ("served", as the push records "sent": what a recall
must reach, ``node.store.recalls``), through ``node.store.audit.AuditQueue``:
a read must not take the store's write lock, which would queue behind
publishers and block them.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from node.policy import Decision
from node.store.audit import Action, AuditRecord, Direction
from node.store.recalls import RECALL_RULE

ALREADY_PRESENT = "already present"  # a status success (TAXII 2.1 section 4.3.1) for a
# version the receiving side held already, as this node's store answers it
ALREADY_AT_PEER = "already present at the peer"  # the detail of such a push record
ALREADY_HERE = "already present here"  # the detail of such a pull or receive record


def decision_records(
    peer: str,
    collection_id: str,
    direction: Direction,
    decisions: Iterable[Decision],
    allowed_action: Action,
    failures: Iterable[dict[str, Any]] = (),
) -> list[AuditRecord]:
    """One audit record per decision: ``allowed_action`` (sent, received), withheld
    with its rule, or dead-letter when the receiving side refused the version (a
    failure for its id and version).

    Failures are matched to decisions by (id, version), each failure once, to the
    last decisions of that key: a page or envelope holding two contents under one
    version has the first stored and the later one refused (the store's rule), so
    the first is received and only the later one is a dead letter.
    """
    refused: dict[tuple[Any, Any], list[Any]] = {}
    for failure in failures:
        key = (failure.get("id"), failure.get("version"))
        refused.setdefault(key, []).append(failure.get("message"))
    # Per key, the first (allowed decisions - failures) were stored; the rest take the
    # failures' messages in order.
    allowed = Counter((d.object_id, d.version or None) for d in decisions if d.allowed)
    stored_first = {key: max(0, allowed[key] - len(messages)) for key, messages in refused.items()}
    pending = {key: deque(messages) for key, messages in refused.items()}
    records = []
    for d in decisions:
        key = (d.object_id, d.version or None)
        if d.allowed and key in pending and stored_first[key] > 0:
            stored_first[key] -= 1
            action, detail = allowed_action, d.detail
        elif d.allowed and pending.get(key):
            action, detail = Action.DEAD_LETTER, str(pending[key].popleft())
        else:
            action, detail = (allowed_action if d.allowed else Action.WITHHELD), d.detail
        records.append(
            AuditRecord(
                action=action,
                direction=direction,
                object_id=d.object_id,
                version=d.version or None,
                peer=peer,
                collection_id=collection_id,
                rule=str(d.rule),
                detail=detail,
            )
        )
    return records


def already_present_keys(successes: Iterable[object]) -> set[tuple[str, str]]:
    """(id, version) of the status successes that say the version was held already
    (a peer's status is untrusted JSON: anything but such a detail is ignored)."""
    return {
        (str(s.get("id")), str(s.get("version") or ""))
        for s in successes
        if isinstance(s, dict) and s.get("message") == ALREADY_PRESENT
    }


def already_present(
    records: list[AuditRecord], keys: set[tuple[str, str]], detail: str
) -> list[AuditRecord]:
    """``records`` with ``detail`` on the sent or received versions that ``keys`` (id,
    version) say the receiving side held already: so that "sent" and "received" count
    what was new there, and the audit says which was not.

    A version without created/modified (an SCO) has one version per id; the receiver
    labels it by its date_added, so it is matched by id.
    """
    if not keys:
        return records
    ids = {object_id for object_id, _ in keys}
    return [
        replace(record, detail=detail)
        if record.action in (Action.SENT, Action.RECEIVED)
        and (
            (record.object_id, record.version or "") in keys
            or (record.version is None and record.object_id in ids)
        )
        else record
        for record in records
    ]


def read_record(
    peer: str, account: str, collection_id: str, request: str, decisions: Iterable[Decision]
) -> AuditRecord:
    """The one record of a partner's read: ``request`` (endpoint and filters) and counts."""
    served = 0
    withheld: Counter[str] = Counter()
    for decision in decisions:
        if decision.allowed:
            served += 1
        else:
            withheld[str(decision.rule)] += 1
    rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(withheld.items()))
    detail = f"{request}: served {served} version(s), withheld {sum(withheld.values())}"
    return AuditRecord(
        action=Action.SERVED,
        direction=Direction.SERVE,
        peer=peer,
        actor=account,
        collection_id=collection_id,
        detail=detail + (f" ({rules})" if rules else ""),
    )


def undecided_dead_letters(
    peer: str,
    collection_id: str,
    direction: Direction,
    records: list[AuditRecord],
    failures: Iterable[dict[str, Any]],
) -> list[AuditRecord]:
    """A dead-letter record for each failure no record of ``records`` accounts for (an
    object the store's validation refused before any policy saw it), so that a round's
    audit and counts agree with its dead letters."""
    decided = {(r.object_id, r.version or None) for r in records}
    return [
        AuditRecord(
            action=Action.DEAD_LETTER,
            direction=direction,
            object_id=str(f.get("id") or "") or None,
            version=f.get("version") or None,
            peer=peer,
            collection_id=collection_id,
            detail=str(f.get("message", "")),
        )
        for f in failures
        if (f.get("id"), f.get("version") or None) not in decided
    ]


def served_records(
    peer: str, account: str, collection_id: str, decisions: Iterable[Decision]
) -> list[AuditRecord]:
    """A "served" record per version of content a partner's read delivered (its rows and
    the dependencies that travelled with them; recalls are not content it received)."""
    return [
        AuditRecord(
            action=Action.SERVED,
            direction=Direction.SERVE,
            object_id=decision.object_id,
            version=decision.version,
            peer=peer,
            actor=account,
            collection_id=collection_id,
            rule=str(decision.rule),
            detail=decision.detail,
        )
        for decision in decisions
        if decision.allowed and str(decision.rule) != RECALL_RULE
    ]


class RecentDeliveries:
    """The versions each peer was lately served by this process, so that a partner
    re-reading a collection adds no "served" record for what it was served already.

    Only an optimisation: a version served again after the table was cleared (past
    ``size`` entries), or by another server process, is recorded again, and the
    recipients a recall looks for stay the same.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._seen: set[tuple[str, str, str, str | None]] = set()
        self._lock = threading.Lock()

    def new(self, peer: str, collection_id: str, decisions: list[Decision]) -> list[Decision]:
        """Those of ``decisions`` not served to the peer lately; from now on they are."""
        fresh = []
        with self._lock:
            if len(self._seen) + len(decisions) > self._size:
                self._seen.clear()
            seen = self._seen
            for decision in decisions:
                key = (peer, collection_id, decision.object_id, decision.version)
                if key not in seen:
                    seen.add(key)
                    fresh.append(decision)
        return fresh
