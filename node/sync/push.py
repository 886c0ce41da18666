"""Push rounds: local versions added since the cursor, under egress policy, to the peer.

Cursors advance only in the transaction that commits the audit of what the peer
acknowledged, so a worker killed at any instant resends at most a batch, and the
peer answers "already present".
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from node.client import (
    RemoteError,
    as_sent,
    not_already_held,
    split_envelopes,
)
from node.policy import DEPENDENCY_TYPES, Decision
from node.sharing import EgressPage, Position, decision_records, egress
from node.sharing.records import ALREADY_AT_PEER, already_present
from node.store import audit, syncstate
from node.store.audit import Action, AuditRecord, Direction
from node.timestamps import to_micros
from node.validation import version_stamp

from .delivery import Delivery, EnvelopePoster
from .rounds import (
    CursorMoved,
    MappingRounds,
    RoundResult,
    commit_progress,
    count_in_state,
    version_text,
    with_retries,
)

log = logging.getLogger(__name__)

# A push round sends at most this many batches (100,000 versions at the default
# ``batch``) or for this many seconds, then ends with its cursor committed, as a pull
# round does (``PULL_PAGES_PER_ROUND``): a peer that acknowledges slowly, or a backlog
# of millions, cannot keep the worker from its other lanes and peers; the next round
# goes on from the committed cursor (each batch commits its own).
PUSH_BATCHES_PER_ROUND = 100
PUSH_SECONDS_PER_ROUND = 15.0
# A push round with nothing to send asks the peer's API root when the peer has not
# answered for this long, so that a peer that is down is reported, not "ok".
PROBE_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class _PushBatch:
    """One batch of local versions, decided and serialised, waiting to be sent."""

    to_send: list[tuple[dict, str]]  # (object, its JSON text)
    decisions: list[Decision]
    last_date_added: int
    more: bool


class Pushing(MappingRounds):
    """The push direction of a mapping."""

    def push(self) -> RoundResult:
        """Send local versions added since the push cursor, under egress policy.

        Batch N+1 is read and decided while batch N is on the wire (one sender
        thread), and batch N's audit and cursor are committed while batch N+1 is
        on the wire; cursors still advance strictly in order, each after the peer
        acknowledged its batch.  Batch N+1 leaves only once the peer acknowledged
        batch N; if batch N's commit then fails, both are sent again by the next
        round, and the peer answers "already present" (as after a crash between a
        delivery and its commit).
        """
        result = RoundResult(self.peer, self.key, Direction.PUSH)
        with self.store.read() as connection:
            state = syncstate.load(connection, self.peer, self.key, Direction.PUSH)
        try:
            remote_id = self.remote_collection()
            if self._max_content_length is None:
                self._max_content_length = self._call(self.client.max_content_length)
            if self._push_batches(state, remote_id, self._poster(remote_id), result) == 0:
                self._confirm_peer_answers()
        except RemoteError as exc:
            self._fail(result, exc)
        except CursorMoved:
            log.info("%s %s push: the cursor was moved; the next round starts there",
                     self.peer, self.key)  # fmt: skip
        self.record_attempt(state, result)
        return result

    def _poster(self, remote_id: str) -> EnvelopePoster:
        """This round's envelope poster: retries, then isolates refused objects."""

        def post(texts: list[str], attempts: int) -> dict:
            call = lambda: self.client.post_serialized(remote_id, texts)  # noqa: E731
            return with_retries(call, attempts, self.stop)

        return EnvelopePoster(post, attempts=self.retries)

    def _confirm_peer_answers(self) -> None:
        """With nothing to send, ask the peer whether it is there (RemoteError if not),
        unless it answered recently: a down peer must not read as a successful push."""
        last = self.client.last_answer
        if last is None or time.monotonic() - last > PROBE_AFTER_SECONDS:
            self._call(self.client.probe)

    def _push_batches(self, state, remote_id: str, poster: EnvelopePoster, result) -> int:
        """Send the batches after the cursor, up to the round's bound
        (``PUSH_BATCHES_PER_ROUND``, ``PUSH_SECONDS_PER_ROUND``); return how many were
        sent.  Past the bound no batch is read: the one in flight is committed, and
        the next round starts after it.  The first batch always goes (however slow
        the round's start), so that every round moves the cursor."""
        sent_dependencies: set[str] = set()
        after = state.cursor
        batches = 0
        in_flight: tuple[Future, _PushBatch] | None = None
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="push") as sender:
            while not self.stop.is_set():
                within_bound = batches == 0 or (
                    batches < PUSH_BATCHES_PER_ROUND
                    and time.monotonic() - started < PUSH_SECONDS_PER_ROUND
                )
                batch = self._prepare_push(after, sent_dependencies) if within_bound else None
                if in_flight is not None:
                    in_flight[0].result()  # delivered, or its RemoteError: N+1 is not sent
                sending = None
                if batch is not None:
                    sending = sender.submit(self._send, remote_id, batch.to_send, poster)
                if in_flight is not None:
                    going_on = self._commit_push(state, *in_flight, result)  # N+1 on the wire
                    in_flight = None
                    if not going_on:
                        if sending is not None and batch is not None:
                            self._commit_push(state, sending, batch, result)  # audited too
                        raise CursorMoved
                if batch is None or sending is None:
                    return batches
                in_flight, batches = (sending, batch), batches + 1
                after = batch.last_date_added
                if not batch.more:
                    break
            if in_flight is not None and not self._commit_push(state, *in_flight, result):
                raise CursorMoved
        return batches

    def _prepare_push(self, after: int, sent_dependencies: set[str]) -> _PushBatch | None:
        """The next batch: the one egress decision on at most the peer's ``batch`` of
        stored versions (never the peer's own: no echo), the cursor moving past the
        withheld ones."""
        position = Position(after=after, scan_limit=self.agreement.peer.batch)
        with self.store.read() as connection:
            page = egress(connection, self.agreement, position, sent_dependencies)
            if page.resume_after is None:
                return None
            self._drop_acknowledged(connection, page)
        return _PushBatch(_outgoing(page), page.decisions, page.resume_after, page.more)

    def _drop_acknowledged(self, connection, page: EgressPage) -> None:
        """Leave out the dependencies the peer acknowledged in an earlier round: each
        identity and marking definition version crosses once per peer and mapping."""
        if not page.dependencies:
            return
        keys = [(item.object_id, item.decision.version or "") for item in page.dependencies]
        known = syncstate.acknowledged_dependencies(connection, self.peer, self.key, keys)
        if not known:
            return
        dropped = [
            item
            for item in page.dependencies
            if (item.object_id, item.decision.version or "") in known
        ]
        dropped_decisions = {id(item.decision) for item in dropped}
        page.dependencies = [item for item in page.dependencies if item not in dropped]
        page.decisions = [d for d in page.decisions if id(d) not in dropped_decisions]

    def _push_records(self, decisions: list[Decision], delivery: Delivery) -> list[AuditRecord]:
        records = decision_records(
            self.peer,
            self.agreement.collection_id,
            Direction.PUSH,
            decisions,
            Action.SENT,
            delivery.failures,
        )
        return already_present(records, delivery.already_present, ALREADY_AT_PEER)

    def _commit_push(self, state, sending: Future, batch: _PushBatch, result) -> bool:
        """Audit what the peer made of ``batch`` and move the cursor past it; False if an
        operator moved the cursor meanwhile (the audit is committed, the cursor stays)."""
        delivery: Delivery = sending.result()  # re-raises the sender's RemoteError
        failures = delivery.failures
        records = self._push_records(batch.decisions, delivery)
        tally = RoundResult.of_records(records, Direction.PUSH)
        acknowledged = _dependency_keys([obj for obj, _ in batch.to_send], records)
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(connection, self.peer, self.key, Direction.PUSH, failures)
            syncstate.record_dependencies(connection, self.peer, self.key, acknowledged)
            state.cursor = batch.last_date_added
            going_on = commit_progress(connection, state, tally)
        result.add(tally)
        return going_on

    def _send(
        self, remote_id: str, outgoing: list[tuple[dict, str]], poster: EnvelopePoster
    ) -> Delivery:
        """POST in envelopes that fit the peer's limit; what the peer made of them."""
        oversized: list[dict] = []
        texts = {id(obj): text for obj, text in outgoing}
        to_send = [obj for obj, _ in outgoing]
        envelopes = list(
            split_envelopes(
                to_send,
                self._max_content_length or 10_000_000,
                serialize=lambda obj: texts[id(obj)],
                on_oversized=lambda obj, _size: oversized.append(
                    _failure(obj, "larger than the peer's max_content_length")
                ),
            )
        )
        delivery = poster.deliver(envelopes)
        delivery.failures = as_sent(to_send, delivery.failures)
        delivery.failures.extend(oversized)
        delivery.failures, held = self._not_already_held(remote_id, to_send, delivery.failures)
        delivery.already_present |= held
        return delivery

    def _not_already_held(
        self, remote_id: str, sent: list[dict], failures: list[dict]
    ) -> tuple[list[dict], set[tuple[str, str]]]:
        """``not_already_held``, each read retried as the round's requests are."""
        return not_already_held(self.client, remote_id, sent, failures, call=self._call)

    def redeliver(self, batch: list[dict]) -> RoundResult:
        """Push ``batch`` again now, under egress policy, without moving the cursor
        (a dead letter retried by an operator).  Refusals become dead letters again."""
        result = RoundResult(self.peer, self.key, Direction.PUSH)
        outgoing: list[tuple[dict, str]] = []
        decisions: list[Decision] = []
        try:
            with self.store.read() as connection:
                for obj in batch:
                    page = egress(connection, self.agreement, _exactly(obj))
                    outgoing += _outgoing(page)
                    decisions += page.decisions
            delivery = Delivery()
            if outgoing:
                remote_id = self.remote_collection()
                delivery = self._send(remote_id, outgoing, self._poster(remote_id))
        except RemoteError as exc:
            self._fail(result, exc)
            return result
        records = self._push_records(decisions, delivery)
        tally = RoundResult.of_records(records, Direction.PUSH)
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(
                connection, self.peer, self.key, Direction.PUSH, delivery.failures
            )
            syncstate.record_dependencies(
                connection, self.peer, self.key, _dependency_keys([o for o, _ in outgoing], records)
            )
            state = syncstate.load(connection, self.peer, self.key, Direction.PUSH)
            count_in_state(state, tally)
            syncstate.save(connection, state)
        result.add(tally)
        return result


def _dependency_keys(sent: list[dict], records: list[AuditRecord]) -> list[tuple[str, str]]:
    """(id, version) of the identities and marking definitions the peer acknowledged."""
    delivered = {(r.object_id, r.version or "") for r in records if r.action == Action.SENT}
    return [
        key
        for obj in sent
        if obj.get("type") in DEPENDENCY_TYPES
        and (key := (str(obj.get("id")), version_text(obj))) in delivered
    ]


def _outgoing(page: EgressPage) -> list[tuple[dict, str]]:
    """(object, JSON text) of what an egress page lets leave, dependencies included."""
    return [(item.decision.obj, item.body) for item in page.items if item.decision.obj]


def _exactly(obj: dict) -> Position:
    """The egress position of one stored version (a dead letter retried)."""
    version = version_text(obj)
    key: str | int = to_micros(version) if version else "all"
    return Position(ids=(obj["id"],), versions=(key,))


def _failure(obj: dict, message: str) -> dict:
    return {"id": obj.get("id"), "version": version_stamp(obj),
            "message": message}  # fmt: skip
