"""The sync worker: pushes to and pulls from each peer, mapping by mapping.

Guarantees, and how they are kept:

* nothing lost: cursors advance only in the transaction that commits what
  they cover (pull: the stored objects; push: the audit of what the peer
  acknowledged), so a worker killed at any instant resumes from its last
  commit; a peer that is down leaves the cursor where it was;
* nothing duplicated: versions are idempotent on both ends (id + modified),
  and a version that came from a peer is never pushed back to it (origin);
* nothing leaked: egress policy runs on every object before it is sent.

Cursors are the server's ``date_added`` values, never this machine's clock
(TAXII 2.1 section 3.4.2 and 3.5).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from node import jsoncodec
from node.client import ObjectPage, RemoteError, TaxiiClient, split_envelopes
from node.config import Config, PeerConfig
from node.policy import DEPENDENCY_TYPES, Decision
from node.sharing import (
    Agreement,
    Agreements,
    EgressPage,
    Position,
    admit,
    decision_records,
    egress,
    settle,
)
from node.sharing.records import (
    ALREADY_AT_PEER,
    ALREADY_HERE,
    already_present,
    undecided_dead_letters,
)
from node.store import Store, audit, objects, syncstate
from node.store.audit import Action, AuditRecord, Direction
from node.timestamps import from_micros, is_timestamp, now_micros, to_micros
from node.validation import version_stamp

from .delivery import Delivery, EnvelopePoster
from .schedule import Backoff, Lane, Schedule

log = logging.getLogger(__name__)

# A pull round reads at most this many pages (100,000 versions at the default
# ``batch``) or for this many seconds, then ends with its cursor saved: a peer
# whose paging never ends (``more`` true with a fresh ``next`` on every page), or
# that answers slowly, cannot keep the worker from every other lane; the next
# round goes on where this one stopped.
PULL_PAGES_PER_ROUND = 100
PULL_SECONDS_PER_ROUND = 15.0
# Paging by ``added_after`` alone (a peer that says ``more`` without a ``next``), a
# page of versions all added at one instant is asked for again with twice the limit,
# up to this many, to get past that instant.
PULL_LIMIT_MAX = 10_000
# The page size of the check whether refused versions are held by the peer after all:
# every version of 50 ids in one page, whatever the peer's ``batch`` (the check reads
# one page per 50 ids).
SUSPECTS_LIMIT = 1000
# A push round with nothing to send asks the peer's API root when the peer has not
# answered for this long, so that a peer that is down is reported, not "ok".
PROBE_AFTER_SECONDS = 10.0


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

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _PushBatch:
    """One batch of local versions, decided and serialised, waiting to be sent."""

    to_send: list[tuple[dict, str]]  # (object, its JSON text)
    decisions: list[Decision]
    last_date_added: int
    more: bool


def with_retries(call, attempts: int, stop: threading.Event | None = None):
    """Run ``call``, retrying transient peer errors with backoff; re-raise the last."""
    backoff = Backoff(cap=8.0)
    for attempt in range(attempts):
        try:
            return call()
        except RemoteError as exc:
            if not exc.transient or attempt == attempts - 1 or (stop and stop.is_set()):
                raise
            log.warning("transient peer error, retrying: %s", exc)
            backoff.wait(stop)
    raise AssertionError("unreachable")


class MappingSync:
    """Push and pull for one mapping of one peer."""

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

    def remote_collection(self) -> str:
        if self._remote_id is None:
            name = self.agreement.mapping.remote
            self._remote_id = self._call(lambda: self.client.collection_id(name))
        return self._remote_id

    # -- push -----------------------------------------------------------------

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
            result.error = str(exc)
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
        """Send every batch after the cursor; return how many were sent."""
        sent_dependencies: set[str] = set()
        after = state.cursor
        batches = 0
        in_flight: tuple[Future, _PushBatch] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="push") as sender:
            while not self.stop.is_set():
                batch = self._prepare_push(after, sent_dependencies)
                if in_flight is not None:
                    in_flight[0].result()  # delivered, or its RemoteError: N+1 is not sent
                sending = None
                if batch is not None:
                    sending = sender.submit(self._send, remote_id, batch.to_send, poster)
                if in_flight is not None:
                    self._commit_push(state, *in_flight, result)  # while N+1 is on the wire
                    in_flight = None
                if batch is None or sending is None:
                    return batches
                in_flight, batches = (sending, batch), batches + 1
                after = batch.last_date_added
                if not batch.more:
                    break
            if in_flight is not None:
                self._commit_push(state, *in_flight, result)
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

    def _commit_push(self, state, sending: Future, batch: _PushBatch, result) -> None:
        delivery: Delivery = sending.result()  # re-raises the sender's RemoteError
        failures = delivery.failures
        records = self._push_records(batch.decisions, delivery)
        tally = _tally(records, Direction.PUSH)
        acknowledged = _dependency_keys([obj for obj, _ in batch.to_send], records)
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(connection, self.peer, self.key, Direction.PUSH, failures)
            syncstate.record_dependencies(connection, self.peer, self.key, acknowledged)
            state.cursor = batch.last_date_added
            _count(state, tally)
            syncstate.save(connection, state)
        _add(result, tally)

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
        delivery.failures = _as_sent(to_send, delivery.failures)
        delivery.failures.extend(oversized)
        delivery.failures, held = self._not_already_held(remote_id, to_send, delivery.failures)
        delivery.already_present |= held
        return delivery

    def _not_already_held(
        self, remote_id: str, sent: list[dict], failures: list[dict]
    ) -> tuple[list[dict], set[tuple[str, str]]]:
        """The failures, less versions the peer turns out to hold exactly as we sent them
        (returned apart: already present).

        Some servers answer a re-posted (id, version) with a failure instead of success
        (medallion 3.0.0: "Unable to process object"): a dependency sent again in a later
        round, a batch sent again after a crash.  Those are delivered, not refused.
        """
        by_key = {(obj.get("id"), _version_text(obj)): obj for obj in sent}
        failed = [(f.get("id"), f.get("version")) for f in failures]
        suspects = sorted({by_key[key]["id"] for key in failed if key in by_key})
        held: set[tuple] = set()
        for start in range(0, len(suspects), 50):
            params = {
                "match[id]": ",".join(suspects[start : start + 50]),
                "match[version]": "all",
                "limit": SUSPECTS_LIMIT,
            }
            try:
                page = self._call(lambda params=params: self.client.page(remote_id, params))
            except RemoteError:
                return failures, set()  # cannot tell: keep every failure
            for obj in page.objects:
                if isinstance(obj, dict):
                    key = (obj.get("id"), _version_text(obj))
                    if by_key.get(key) == obj:
                        held.add(key)
        kept = [f for f in failures if (f.get("id"), f.get("version")) not in held]
        return kept, {(str(i), str(v)) for i, v in held}

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
            result.error = str(exc)
            return result
        records = self._push_records(decisions, delivery)
        tally = _tally(records, Direction.PUSH)
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(
                connection, self.peer, self.key, Direction.PUSH, delivery.failures
            )
            syncstate.record_dependencies(
                connection, self.peer, self.key, _dependency_keys([o for o, _ in outgoing], records)
            )
            state = syncstate.load(connection, self.peer, self.key, Direction.PUSH)
            _count(state, tally)
            syncstate.save(connection, state)
        _add(result, tally)
        return result

    # -- pull -----------------------------------------------------------------

    def pull(self) -> RoundResult:
        """Fetch the peer's versions added after the pull cursor, under ingress policy.

        Each page is committed with the cursor it makes safe (``_commit_point``).  A
        round stops after ``PULL_PAGES_PER_ROUND`` pages or ``PULL_SECONDS_PER_ROUND``;
        the next round, of this worker or of another run (the position is kept with
        the pull state), goes on from where it stopped with the same ``next`` token,
        so that progress does not rest on the peer's date headers; a round that failed
        also goes on at the page that failed.  From the committed cursor when the peer
        no longer takes that token, or failed it twice running.
        """
        result = RoundResult(self.peer, self.key, Direction.PULL)
        with self.store.read() as connection:
            state = syncstate.load(connection, self.peer, self.key, Direction.PULL)
        resume, state.pull_resume = _PullPosition.resuming(state), None
        fresh = _PullPosition(_usable(state.remote_cursor), None, self.agreement.peer.batch)
        position: _PullPosition | None = resume or fresh
        resume_failed = False
        try:
            remote_id = self.remote_collection()
            started = time.monotonic()
            for _ in range(PULL_PAGES_PER_ROUND):
                if position is None or self.stop.is_set():
                    break
                try:
                    page = self._fetch(remote_id, position)
                except RemoteError as exc:
                    if position is not resume:
                        raise
                    if exc.transient:
                        resume_failed = True  # twice running: from the cursor next time
                        raise
                    # The peer no longer takes the kept token (expired, or its paging
                    # changed): from the cursor, which every stored page moved.
                    log.info("%s %s: paging again from the cursor: %s", self.peer, self.key, exc)
                    position = resume = fresh
                    page = self._fetch(remote_id, position)
                self._store_page(state, page, _commit_point(page, state.remote_cursor), result)
                position = self._next_position(page, position)
                if time.monotonic() - started > PULL_SECONDS_PER_ROUND:
                    break
        except RemoteError as exc:
            result.error = str(exc)
        if position is not None and not resume_failed:
            # Also after a failure: the next round asks for the page that failed, with
            # its token, rather than from the cursor (which moved only as far as the
            # date headers showed it safe to); unless that page was already asked for
            # again, so that a token the peer answers 5xx to for good is dropped.
            state.pull_resume = position.resume_text(state.remote_cursor)
        self.record_attempt(state, result)
        return result

    def _fetch(self, remote_id: str, position: _PullPosition) -> ObjectPage:
        """The page at ``position``; asked for again with half the limit, down to one
        version, while the peer's answer is too large or too deep to read."""
        limit = position.limit
        while True:
            try:
                return self._call(
                    lambda limit=limit: self.client.objects_page(
                        remote_id,
                        added_after=position.added_after,
                        next_token=position.next_token,
                        limit=limit,
                    )
                )
            except RemoteError as exc:
                if not exc.too_much or limit == 1:
                    raise
                limit //= 2

    def _next_position(self, page: ObjectPage, position: _PullPosition) -> _PullPosition | None:
        """Where the page after ``page`` is, or None at the end of the collection.

        The peer's ``next`` token when it gives one (TAXII 2.1 section 3.4.3); else
        (``next`` is optional) ``added_after`` just before the page's
        ``X-TAXII-Date-Added-Last``, so that versions added at that instant and not
        yet served are not skipped (those served are served again and stored once).
        """
        if not page.more:
            return None
        batch = self.agreement.peer.batch
        if page.next is not None:
            return _PullPosition(position.added_after, page.next, batch)
        if page.date_added_last is None:
            raise RemoteError(
                "the peer answers more: true without a next token or an "
                "X-TAXII-Date-Added-Last header: it cannot be paged further",
                transient=False,
            )
        basis = just_before(page.date_added_last)
        asked = _micros_or_none(position.added_after)
        first = page.date_added_first or page.date_added_last
        if asked is not None and to_micros(first) <= asked:
            raise RemoteError(
                f"the peer answered added_after={position.added_after} with versions added "
                f"from {first}, and gives no next token: it cannot be paged further",
                transient=False,
            )
        if basis != position.added_after or position.next_token is not None:
            return _PullPosition(basis, None, batch)
        if position.limit >= PULL_LIMIT_MAX:
            raise RemoteError(
                f"the peer pages without next tokens and added more than {PULL_LIMIT_MAX} "
                f"versions at {page.date_added_last}: they cannot be paged past",
                transient=False,
            )
        return _PullPosition(basis, None, min(PULL_LIMIT_MAX, position.limit * 2))

    def refetch(self, object_id: str, version: str | None) -> RoundResult:
        """Pull one version again now, under ingress policy, without moving the cursor
        (a dead letter retried by an operator).  Refusals become dead letters again."""
        result = RoundResult(self.peer, self.key, Direction.PULL)
        params = {"match[id]": object_id, "match[version]": version or "last"}
        try:
            remote_id = self.remote_collection()
            page = self._call(lambda: self.client.page(remote_id, params))
        except RemoteError as exc:
            result.error = str(exc)
            return result
        with self.store.write() as connection:
            counts = self._ingest(connection, page, result)
            state = syncstate.load(connection, self.peer, self.key, Direction.PULL)
            _count(state, counts)
            syncstate.save(connection, state)
        return result

    def _store_page(self, state, page: ObjectPage, date_added_last: str | None, result) -> None:
        with self.store.write() as connection:
            counts = self._ingest(connection, page, result)
            if date_added_last:
                state.remote_cursor = date_added_last
            _count(state, counts)
            syncstate.save(connection, state)

    def _ingest(self, connection, page: ObjectPage, result: RoundResult) -> RoundResult:
        """Store what the one ingress decision accepts of the page's objects, audit every
        decision and dead-letter what the store refuses and what could not be read; the
        counts go into a fresh ``RoundResult`` that is also added to ``result``."""
        collection_id = self.agreement.collection_id
        admission = admit(connection, self.agreement, page.objects, to_peer=False)
        outcome = objects.add_objects(
            connection, collection_id, admission.accepted, origin=self.peer, valid=admission.valid
        )
        records = settle(
            connection,
            self.agreement,
            admission,
            outcome,
            Direction.PULL,
            to_peer=False,
            agreements=self.agreements,
        )
        failures = outcome.failures + [_unreadable(object_id) for object_id in page.unreadable]
        records += undecided_dead_letters(
            self.peer, collection_id, Direction.PULL, records, failures
        )
        audit.record(connection, records)
        syncstate.add_dead_letters(connection, self.peer, self.key, Direction.PULL, failures)
        counts = _tally(records, Direction.PULL)
        counts.already_present += len(admission.echoes)  # ours served back, built-in TLP
        _add(result, counts)
        return counts

    # -- bookkeeping ------------------------------------------------------------

    def record_attempt(self, state, result: RoundResult) -> None:
        now = now_micros()
        with self.store.write() as connection:
            fresh = syncstate.load(connection, state.peer, state.mapping, state.direction)
            fresh.last_attempt = now
            fresh.pull_resume = state.pull_resume
            if result.ok:
                fresh.last_success = now
                fresh.last_error = None
            else:
                fresh.last_error = result.error
            syncstate.save(connection, fresh)


def _tally(records: list[AuditRecord], direction: Direction) -> RoundResult:
    """The counts of a batch's decision records: sent and received count versions that
    were new at the receiving side, already present ones are counted apart."""
    tally = RoundResult("", "", direction)
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


def _count(state: syncstate.SyncState, counts: RoundResult) -> None:
    state.sent += counts.sent
    state.received += counts.received
    state.already_present += counts.already_present
    state.withheld += counts.withheld
    state.dead_lettered += counts.dead_lettered


def _add(result: RoundResult, counts: RoundResult) -> None:
    result.sent += counts.sent
    result.received += counts.received
    result.already_present += counts.already_present
    result.withheld += counts.withheld
    result.dead_lettered += counts.dead_lettered


def _dependency_keys(sent: list[dict], records: list[AuditRecord]) -> list[tuple[str, str]]:
    """(id, version) of the identities and marking definitions the peer acknowledged."""
    delivered = {(r.object_id, r.version or "") for r in records if r.action == Action.SENT}
    return [
        key
        for obj in sent
        if obj.get("type") in DEPENDENCY_TYPES
        and (key := (str(obj.get("id")), _version_text(obj))) in delivered
    ]


def _version_text(obj: dict) -> str:
    return version_stamp(obj) or ""


def _outgoing(page: EgressPage) -> list[tuple[dict, str]]:
    """(object, JSON text) of what an egress page lets leave, dependencies included."""
    return [(item.decision.obj, item.body) for item in page.items if item.decision.obj]


def _exactly(obj: dict) -> Position:
    """The egress position of one stored version (a dead letter retried)."""
    version = _version_text(obj)
    key: str | int = to_micros(version) if version else "all"
    return Position(ids=(obj["id"],), versions=(key,))


@dataclass(frozen=True)
class _PullPosition:
    """Where a pull's next page is: the request's ``added_after`` and the peer's
    ``next`` token within it, with the page's ``limit``."""

    added_after: str | None
    next_token: str | None
    limit: int

    def resume_text(self, cursor: str | None) -> str:
        """This position, kept with the pull state for the next round (another run of
        the worker included): valid while the committed cursor is ``cursor``."""
        return jsoncodec.dumps({"cursor": cursor, "added_after": self.added_after,
                                "next": self.next_token, "limit": self.limit})  # fmt: skip

    @classmethod
    def resuming(cls, state: syncstate.SyncState) -> _PullPosition | None:
        """Where the last round stopped, unless the cursor has moved since (or the
        text is not one ``resume_text`` wrote)."""
        try:
            kept = jsoncodec.loads(state.pull_resume or "null")
        except ValueError:
            return None
        if not isinstance(kept, dict) or kept.get("cursor") != state.remote_cursor:
            return None
        after, token, limit = kept.get("added_after"), kept.get("next"), kept.get("limit")
        if not isinstance(limit, int) or limit < 1:
            return None
        if not all(isinstance(value, str | None) for value in (after, token)):
            return None
        return cls(after, token, limit)


def _unreadable(object_id: str) -> dict[str, str]:
    """The failure of a version the peer served nested too deeply to read."""
    return {
        "id": object_id,
        "message": f"the peer served it nested deeper than {jsoncodec.MAX_DEPTH} levels "
        "of JSON: it could not be read",
    }


def _usable(cursor: str | None) -> str | None:
    """A pull cursor to send as ``added_after``: None (from the start: what is held
    already is stored once) for one that is not a timestamp, which a peer's bad date
    header left before the client checked them."""
    return cursor if is_timestamp(cursor) else None


def just_before(timestamp: str) -> str:
    """The instant a microsecond before ``timestamp``: ``added_after`` that takes in
    everything added at ``timestamp`` (TAXII 2.1 section 3.4.1 keeps what was added
    strictly after)."""
    return from_micros(to_micros(timestamp) - 1)


def _commit_point(page: ObjectPage, cursor: str | None) -> str | None:
    """The pull cursor that may be committed with this page, or None to keep ``cursor``.

    Everything the peer added up to the cursor is stored.  The peer serves versions
    in date_added order, so once a page is stored everything added before its
    ``X-TAXII-Date-Added-Last`` is: the cursor may move to just before it.  Not to
    it: some servers give many versions one date_added (medallion 3.0.0 gives a
    whole POST one), and a page may end inside such a group; resuming at the group
    reads it again and stores nothing twice.  At the end of the collection (``more``
    false) the page's Last itself.  A cursor never moves back.
    """
    last = page.date_added_last
    if last is None:
        return None
    candidate = last if not page.more else just_before(last)
    held = _micros_or_none(cursor)  # (one a peer's bad header left: replaced)
    if held is not None and to_micros(candidate) <= held:
        return None
    return candidate


def _as_sent(sent: list[dict], failures: list[dict]) -> list[dict]:
    """The peer's failures, each naming a version as we sent it.

    A peer may write the version of a refused object in another form (the same
    instant without milliseconds: STIX 2.1 section 3.2 allows any precision) or
    leave it out; its failure then names every version of that id we sent.  A
    failure naming nothing we sent is the peer's noise: it is logged, and no dead
    letter is made of it.
    """
    versions: dict[str, list[tuple[str, int | None]]] = {}
    for obj in sent:
        text = _version_text(obj)
        versions.setdefault(str(obj.get("id")), []).append((text, _micros_or_none(text)))
    named: list[dict] = []
    for failure in failures:
        ours = versions.get(str(failure.get("id")), [])
        given = failure.get("version")
        if given:
            micros = _micros_or_none(str(given))
            ours = [(text, at) for text, at in ours if text == given or (at and at == micros)]
        if not ours:
            log.warning("the peer refused something not sent: %.200s", failure)
        named.extend({**failure, "version": text or None} for text, _at in ours)
    return named


def _micros_or_none(text: str | None) -> int | None:
    return to_micros(text) if text is not None and is_timestamp(text) else None


def _failure(obj: dict, message: str) -> dict:
    return {"id": obj.get("id"), "version": version_stamp(obj),
            "message": message}  # fmt: skip


def _guarded(
    mapping: MappingSync, direction: Direction, run: Callable[[], RoundResult]
) -> Callable[[], RoundResult]:
    """``run``, with any error it did not expect (a store that is down, a defect)
    turned into a failed round: logged with its traceback, recorded as the
    direction's last error where the store allows, and backed off like a peer's
    failure, so that one mapping's trouble never stops the others or the worker.
    Nothing of the failed batch was committed (each batch commits with its cursor),
    so the next round starts again from the cursor."""

    def guarded() -> RoundResult:
        try:
            return run()
        except Exception as exc:
            log.exception("%s %s %s: round failed", mapping.peer, mapping.key, direction)
            result = RoundResult(mapping.peer, mapping.key, direction)
            result.error = f"internal error: {type(exc).__name__}: {exc}"[:500]
            try:
                with mapping.store.read() as connection:
                    state = syncstate.load(connection, mapping.peer, mapping.key, direction)
                mapping.record_attempt(state, result)
            except Exception:
                log.exception("could not record the failed round")
            return result

    return guarded


class SyncWorker:
    """Runs every mapping of every (or one) peer: once, or until stopped."""

    def __init__(
        self, config: Config, store: Store, *, peer: str | None = None, retries: int = 4
    ) -> None:
        self.config = config
        self.store = store
        self.stop = threading.Event()
        agreements = Agreements(config, store)
        self._peers: list[PeerConfig] = [config.peer(peer)] if peer else list(config.peers)
        self._clients: dict[str, TaxiiClient] = {}
        self.mappings: list[MappingSync] = []
        for agreement in agreements:
            if peer and agreement.peer.name != peer:
                continue
            client = self._client(agreement.peer)
            self.mappings.append(
                MappingSync(
                    store,
                    agreement,
                    client,
                    retries=retries,
                    stop=self.stop,
                    agreements=list(agreements),
                )
            )

    def _client(self, peer: PeerConfig) -> TaxiiClient:
        if peer.name not in self._clients:
            self._clients[peer.name] = TaxiiClient(
                peer.api_root,
                peer.user,
                peer.password(),
                timeout=peer.timeout,
                ca_bundle=peer.ca_bundle,
                client_cert=peer.client_cert,
                client_key=peer.client_key,
            )
        return self._clients[peer.name]

    def run_once(self) -> list[RoundResult]:
        """One push and one pull round for each mapping, as its ``worker`` key says."""
        return [run() for _, run in self._rounds()]

    def _rounds(self) -> list[tuple[Lane, Callable[[], RoundResult]]]:
        """Each direction our worker carries, as a lane of the schedule and its round."""
        rounds: list[tuple[Lane, Callable[[], RoundResult]]] = []
        for mapping in self.mappings:
            config = mapping.agreement.mapping
            carried = ((Direction.PUSH, config.worker_pushes, mapping.push),
                       (Direction.PULL, config.worker_pulls, mapping.pull))  # fmt: skip
            for direction, carries, run in carried:
                if carries:
                    name = f"{mapping.peer} {mapping.key} {direction}"
                    rounds.append((Lane(name, config.interval), _guarded(mapping, direction, run)))
        return rounds

    def run_forever(self, on_result: Callable[[RoundResult, bool], None] | None = None) -> None:
        """Run each direction of each mapping at its interval until ``stop`` is set,
        backing off each on its own failures.  ``on_result`` gets every round's result
        and whether that direction was failing before it."""
        rounds = self._rounds()
        schedule = Schedule(lane for lane, _ in rounds)
        runs = {id(lane): run for lane, run in rounds}
        while not self.stop.is_set():
            for lane in schedule.due():
                if self.stop.is_set():
                    break
                was_failing = lane.failing
                result = runs[id(lane)]()
                schedule.finished(lane, result.ok)
                if on_result:
                    on_result(result, was_failing)
            self.stop.wait(max(0.05, schedule.seconds_to_next()))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
