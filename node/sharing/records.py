"""Sharing decisions as audit records and counts: the one place that turns one into the other.

The worker's push and pull, and a partner's POST, audit one record per
decision, in the transaction that commits what the decision was about.  A
partner's reads are audited once per request (what it asked, how many versions
it was served and how many were withheld, by rule), through a background
writer: a read must not take the store's write lock, which would queue behind
publishers and block them.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from node.policy import Decision
from node.store import Store, audit
from node.store.audit import Action, AuditRecord, Direction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counts:
    """What a set of decision records amounts to."""

    passed: int = 0  # sent, received or served
    withheld: int = 0
    dead_lettered: int = 0


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
    failure for its id and version)."""
    refused = {(f.get("id"), f.get("version")): f.get("message") for f in failures}
    records = []
    for d in decisions:
        key = (d.object_id, d.version or None)
        if d.allowed and key in refused:
            action, detail = Action.DEAD_LETTER, str(refused[key])
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


def counts(records: Iterable[AuditRecord]) -> Counts:
    tally = Counter(record.action for record in records)
    return Counts(
        passed=tally[Action.SENT] + tally[Action.RECEIVED] + tally[Action.SERVED],
        withheld=tally[Action.WITHHELD],
        dead_lettered=tally[Action.DEAD_LETTER],
    )


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


class AuditQueue:
    """Appends records to the audit chain from a background thread, in batches.

    Used for partner reads only.  Records reach the store within ``interval``
    seconds (and at interpreter exit); a server process killed with SIGKILL
    loses at most that last interval of read records, never a decision the
    worker or a POST made.
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._pending: list[AuditRecord] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, record: AuditRecord) -> None:
        with self._lock:
            self._pending.append(record)
            if self._thread is None:
                self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-queue", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the store is down: keep the records for the next try
                log.exception("could not append partner-read audit records; retrying")

    def flush(self) -> None:
        """Write every queued record now, in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._store.write() as connection:
                audit.record(connection, batch)
        except Exception:
            with self._lock:
                self._pending[:0] = batch
            raise
