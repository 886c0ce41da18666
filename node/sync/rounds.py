"""What push and pull rounds of one mapping share: the round's result and its
counts, retries of transient peer errors, the peer's collection, and the record of
each attempt that ``taxii-node sync status`` shows."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from node.client import RemoteError, TaxiiClient, Throttled
from node.sharing import Agreement
from node.sharing.records import ALREADY_AT_PEER, ALREADY_HERE
from node.store import Store, syncstate
from node.store.audit import Action, AuditRecord, Direction
from node.timestamps import now_micros
from node.validation import version_stamp

from .schedule import Backoff

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    peer: str
    mapping: str
    direction: Direction  # PUSH or PULL
    sent: int = 0
    received: int = 0
    withheld: int = 0
    dead_lettered: int = 0
    already_present: int = 0  # versions the receiving side held already
    error: str | None = None
    retry_after: float | None = None  # seconds the peer asked us to wait (Retry-After)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def of_records(cls, records: list[AuditRecord], direction: Direction) -> RoundResult:
        """The counts of a batch's decision records: sent and received count versions that
        were new at the receiving side, already present ones are counted apart."""
        tally = cls("", "", direction)
        for record in records:
            if record.detail in (ALREADY_AT_PEER, ALREADY_HERE):
                tally.already_present += 1
            elif record.action == Action.SENT:
                tally.sent += 1
            elif record.action == Action.RECEIVED:
                tally.received += 1
            elif record.action == Action.WITHHELD:
                tally.withheld += 1
            elif record.action == Action.DEAD_LETTER:
                tally.dead_lettered += 1
        return tally

    def add(self, counts: RoundResult) -> None:
        self.sent += counts.sent
        self.received += counts.received
        self.already_present += counts.already_present
        self.withheld += counts.withheld
        self.dead_lettered += counts.dead_lettered


# Retries within a round back off up to this many seconds; a peer asking (Retry-After)
# to wait up to this long is waited for within the round, a longer wait ends the round
# and the lane's next round comes after it (``Schedule.finished``).
RETRY_BACKOFF_CAP = 8.0


def with_retries(call, attempts: int, stop: threading.Event | None = None):
    """Run ``call``, retrying transient peer errors with backoff; re-raise the last.

    A peer's Retry-After (RFC 9110 section 10.2.3) replaces the backoff when it is
    short; a longer one is not waited for here (the lane's other rounds and the other
    lanes would wait with it): the error ends the round."""
    backoff = Backoff(cap=RETRY_BACKOFF_CAP)
    for attempt in range(attempts):
        try:
            return call()
        except Throttled as exc:
            last = attempt == attempts - 1 or (stop is not None and stop.is_set())
            if last or exc.retry_after > RETRY_BACKOFF_CAP:
                raise
            log.warning("the peer asks to wait %g s, then retrying: %s", exc.retry_after, exc)
            (stop or threading.Event()).wait(exc.retry_after)
        except RemoteError as exc:
            last = attempt == attempts - 1 or (stop is not None and stop.is_set())
            if not exc.transient or not exc.retry_now or last:
                raise
            log.warning("transient peer error, retrying: %s", exc)
            backoff.wait(stop)
    raise AssertionError("unreachable")


class MappingRounds:
    """What push and pull of one mapping of one peer share."""

    def __init__(
        self,
        store: Store,
        agreement: Agreement,
        client: TaxiiClient,
        *,
        retries: int = 4,
        stop: threading.Event | None = None,
        agreements: Sequence[Agreement] = (),
    ) -> None:
        self.store = store
        self.agreement = agreement
        # The node's agreements: a recall honoured on a pull is relayed to their peers
        # that the object was passed on to (node.operations.recalls).
        self.agreements = tuple(agreements) or (agreement,)
        self.client = client
        self.retries = retries
        self.stop = stop or threading.Event()
        self._remote_id: str | None = None
        self._max_content_length: int | None = None

    @property
    def peer(self) -> str:
        return self.agreement.peer.name

    @property
    def key(self) -> str:
        return self.agreement.mapping.key

    def _call(self, call):
        return with_retries(call, self.retries, self.stop)

    def _fail(self, result: RoundResult, exc: RemoteError) -> None:
        """``exc`` as the round's error; after a 404 the peer's collection is looked up
        again next round (an alias now naming another collection, one re-created).  A
        peer's Retry-After goes with it, for the schedule (``Schedule.finished``)."""
        if exc.status == 404:
            self._remote_id = None
        result.error = str(exc)
        if isinstance(exc, Throttled):
            result.retry_after = exc.retry_after

    def remote_collection(self) -> str:
        if self._remote_id is None:
            name = self.agreement.mapping.remote
            self._remote_id = self._call(lambda: self.client.collection_id(name))
        return self._remote_id

    # -- bookkeeping ------------------------------------------------------------

    def record_attempt(self, state, result: RoundResult) -> None:
        """The round's attempt (and where a pull goes on), onto the state as stored now;
        a resume point only while the cursor is the one the round started from."""
        now = now_micros()
        with self.store.write() as connection:
            fresh = syncstate.load(connection, state.peer, state.mapping, state.direction)
            fresh.last_attempt = now
            if fresh.cursor_moves == state.cursor_moves:
                fresh.pull_resume = state.pull_resume
            if result.ok:
                fresh.last_success = now
                fresh.last_error = None
            else:
                fresh.last_error = result.error
            syncstate.save(connection, fresh)


class CursorMoved(Exception):
    """An operator moved the lane's cursor (``sync set-cursor``) while a round ran: the
    round stops, and the next starts at the operator's cursor."""


def commit_progress(connection, state: syncstate.SyncState, counts: RoundResult) -> bool:
    """Add ``counts`` to the state as stored now and save the round's cursor and resume
    point with them, in the transaction that commits what they cover; False, and the
    cursor left as it is, if an operator moved it since the round loaded the state.

    Onto the stored state, so that counts another writer added meanwhile (an
    operator's retry of a dead letter) are kept.  The batch or page itself is
    committed either way: what crossed is stored and audited.
    """
    stored = syncstate.load(connection, state.peer, state.mapping, state.direction)
    count_in_state(stored, counts)
    moved = stored.cursor_moves != state.cursor_moves
    if not moved:
        stored.cursor, stored.remote_cursor = state.cursor, state.remote_cursor
        stored.pull_resume = state.pull_resume
    syncstate.save(connection, stored)
    return not moved


def count_in_state(state: syncstate.SyncState, counts: RoundResult) -> None:
    state.sent += counts.sent
    state.received += counts.received
    state.already_present += counts.already_present
    state.withheld += counts.withheld
    state.dead_lettered += counts.dead_lettered


def version_text(obj: dict) -> str:
    return version_stamp(obj) or ""
