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
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from node.client import ObjectPage, RemoteError, TaxiiClient, split_envelopes
from node.config import Config, PeerConfig
from node.policy import Decision
from node.sharing import (
    Agreement,
    Agreements,
    EgressPage,
    Position,
    admit,
    counts,
    decision_records,
    egress,
    settle,
)
from node.store import Store, audit, objects, syncstate
from node.store.audit import Action, Direction
from node.timestamps import from_micros, now_micros, to_micros

log = logging.getLogger(__name__)

PUSH_BATCH = 1000
PULL_PAGE = 1000


@dataclass
class RoundResult:
    peer: str
    mapping: str
    direction: str
    sent: int = 0
    received: int = 0
    withheld: int = 0
    dead_lettered: int = 0
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


@dataclass
class Backoff:
    """Exponential backoff with full jitter, for retries inside and between rounds."""

    base: float = 0.5
    cap: float = 60.0
    attempt: int = 0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**self.attempt))

    def wait(self, stop: threading.Event | None = None) -> None:
        seconds = self.delay()
        self.attempt += 1
        if stop is not None:
            stop.wait(seconds)
        else:
            self.sleep(seconds)

    def reset(self) -> None:
        self.attempt = 0


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
    ) -> None:
        self.store = store
        self.agreement = agreement
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
        thread); cursors still advance strictly in order, each after the peer
        acknowledged its batch.
        """
        result = RoundResult(self.peer, self.key, "push")
        with self.store.read() as connection:
            state = syncstate.load(connection, self.peer, self.key, "push")
        try:
            remote_id = self.remote_collection()
            if self._max_content_length is None:
                self._max_content_length = self._call(self.client.max_content_length)
            self._push_batches(state, remote_id, result)
        except RemoteError as exc:
            result.error = str(exc)
        self._record_attempt(state, result)
        return result

    def _push_batches(self, state, remote_id: str, result: RoundResult) -> None:
        sent_dependencies: set[str] = set()
        after = state.cursor
        in_flight: tuple[Future, _PushBatch] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="push") as sender:
            while not self.stop.is_set():
                batch = self._prepare_push(after, sent_dependencies)
                if in_flight is not None:
                    self._commit_push(state, *in_flight, result)
                    in_flight = None
                if batch is None:
                    return
                in_flight = (sender.submit(self._send, remote_id, batch.to_send), batch)
                after = batch.last_date_added
                if not batch.more:
                    break
            if in_flight is not None:
                self._commit_push(state, *in_flight, result)

    def _prepare_push(self, after: int, sent_dependencies: set[str]) -> _PushBatch | None:
        """The next batch: the one egress decision on at most PUSH_BATCH stored versions
        (never the peer's own: no echo), the cursor moving past the withheld ones."""
        position = Position(after=after, scan_limit=PUSH_BATCH)
        with self.store.read() as connection:
            page = egress(connection, self.agreement, position, sent_dependencies)
        if page.resume_after is None:
            return None
        return _PushBatch(_outgoing(page), page.decisions, page.resume_after, page.more)

    def _push_records(self, decisions: list[Decision], failures: list[dict]):
        return decision_records(
            self.peer,
            self.agreement.collection_id,
            Direction.PUSH,
            decisions,
            Action.SENT,
            failures,
        )

    def _commit_push(self, state, sending: Future, batch: _PushBatch, result) -> None:
        failures = sending.result()  # re-raises the sender's RemoteError
        records = self._push_records(batch.decisions, failures)
        tally = counts(records)
        sent, withheld = tally.passed, tally.withheld
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(connection, self.peer, self.key, "push", failures)
            state.cursor = batch.last_date_added
            state.sent += sent
            state.withheld += withheld
            state.dead_lettered += len(failures)
            syncstate.save(connection, state)
        result.sent += sent
        result.withheld += withheld
        result.dead_lettered += len(failures)

    def _send(self, remote_id: str, outgoing: list[tuple[dict, str]]) -> list[dict]:
        """POST in envelopes that fit the peer's limit; return the peer's failures."""
        failures: list[dict] = []
        texts = {id(obj): text for obj, text in outgoing}
        to_send = [obj for obj, _ in outgoing]
        envelopes = split_envelopes(
            to_send,
            self._max_content_length or 10_000_000,
            serialize=lambda obj: texts[id(obj)],
            on_oversized=lambda obj, _size: failures.append(
                _failure(obj, "larger than the peer's max_content_length")
            ),
        )
        for envelope in envelopes:
            status = self._post_envelope(remote_id, envelope)
            failures.extend(status.get("failures", []))
        return self._not_already_held(remote_id, to_send, failures)

    def _not_already_held(self, remote_id: str, sent: list[dict], failures: list[dict]):
        """The failures, less versions the peer turns out to hold exactly as we sent them.

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
                "limit": PULL_PAGE,
            }
            try:
                page = self._call(lambda params=params: self.client.page(remote_id, params))
            except RemoteError:
                return failures  # cannot tell: keep every failure
            for obj in page.objects:
                if isinstance(obj, dict):
                    key = (obj.get("id"), _version_text(obj))
                    if by_key.get(key) == obj:
                        held.add(key)
        return [f for f in failures if (f.get("id"), f.get("version")) not in held]

    def _post_envelope(self, remote_id: str, envelope: list[tuple[dict, str]]) -> dict:
        texts = [text for _, text in envelope]
        try:
            return self._call(lambda: self.client.post_serialized(remote_id, texts))
        except RemoteError as exc:
            if exc.transient or exc.status in (401, 403, 404):
                raise  # the peer or our access is at fault, not the objects: retry later
            if len(envelope) == 1:
                return {"failures": [_failure(envelope[0][0], str(exc))]}
            # Find the object the peer refuses by halving the envelope.
            middle = len(envelope) // 2
            first = self._post_envelope(remote_id, envelope[:middle])
            second = self._post_envelope(remote_id, envelope[middle:])
            return {"failures": first.get("failures", []) + second.get("failures", [])}

    def redeliver(self, batch: list[dict]) -> RoundResult:
        """Push ``batch`` again now, under egress policy, without moving the cursor
        (a dead letter retried by an operator).  Refusals become dead letters again."""
        result = RoundResult(self.peer, self.key, "push")
        outgoing: list[tuple[dict, str]] = []
        decisions: list[Decision] = []
        try:
            with self.store.read() as connection:
                for obj in batch:
                    page = egress(connection, self.agreement, _exactly(obj))
                    outgoing += _outgoing(page)
                    decisions += page.decisions
            failures = self._send(self.remote_collection(), outgoing) if outgoing else []
        except RemoteError as exc:
            result.error = str(exc)
            return result
        records = self._push_records(decisions, failures)
        tally = counts(records)
        with self.store.write() as connection:
            audit.record(connection, records)
            syncstate.add_dead_letters(connection, self.peer, self.key, "push", failures)
            state = syncstate.load(connection, self.peer, self.key, "push")
            result.sent = tally.passed
            result.withheld = tally.withheld
            result.dead_lettered = len(failures)
            state.sent += result.sent
            state.withheld += result.withheld
            state.dead_lettered += result.dead_lettered
            syncstate.save(connection, state)
        return result

    # -- pull -----------------------------------------------------------------

    def pull(self) -> RoundResult:
        """Fetch the peer's versions added after the pull cursor, under ingress policy."""
        result = RoundResult(self.peer, self.key, "pull")
        with self.store.read() as connection:
            state = syncstate.load(connection, self.peer, self.key, "pull")
        try:
            remote_id = self.remote_collection()
            # A ``next`` token continues the request that returned it: every page of the
            # round repeats the first page's added_after, though the cursor moves per page.
            added_after = state.remote_cursor
            next_token: str | None = None
            previous_last: str | None = None
            while not self.stop.is_set():
                page = self._call(
                    lambda token=next_token: self.client.objects_page(
                        remote_id, added_after=added_after, next_token=token, limit=PULL_PAGE
                    )
                )
                cursor = _safe_resume_point(page, previous_last)
                self._store_page(state, page.objects, cursor, result)
                if not page.more:
                    break
                next_token = page.next
                previous_last = page.date_added_last
        except RemoteError as exc:
            result.error = str(exc)
        self._record_attempt(state, result)
        return result

    def refetch(self, object_id: str, version: str | None) -> RoundResult:
        """Pull one version again now, under ingress policy, without moving the cursor
        (a dead letter retried by an operator).  Refusals become dead letters again."""
        result = RoundResult(self.peer, self.key, "pull")
        params = {"match[id]": object_id, "match[version]": version or "last"}
        try:
            remote_id = self.remote_collection()
            page = self._call(lambda: self.client.page(remote_id, params))
        except RemoteError as exc:
            result.error = str(exc)
            return result
        with self.store.write() as connection:
            counts = self._ingest(connection, page.objects, result)
            state = syncstate.load(connection, self.peer, self.key, "pull")
            _count(state, counts)
            syncstate.save(connection, state)
        return result

    def _store_page(self, state, items: list, date_added_last: str | None, result) -> None:
        with self.store.write() as connection:
            counts = self._ingest(connection, items, result)
            if date_added_last:
                state.remote_cursor = date_added_last
            _count(state, counts)
            syncstate.save(connection, state)

    def _ingest(self, connection, items: list, result: RoundResult) -> RoundResult:
        """Store what the one ingress decision accepts of ``items``, audit every decision
        and dead-letter what the store refuses; the counts go into a fresh
        ``RoundResult`` that is also added to ``result``."""
        collection_id = self.agreement.collection_id
        admission = admit(connection, self.agreement, items, to_peer=False)
        outcome = objects.add_objects(
            connection, collection_id, admission.accepted, origin=self.peer
        )
        records = settle(
            connection, self.agreement, admission, outcome, Direction.PULL, to_peer=False
        )
        audit.record(connection, records)
        syncstate.add_dead_letters(connection, self.peer, self.key, "pull", outcome.failures)
        page = RoundResult(self.peer, self.key, "pull")
        page.received = len(outcome.stored)
        page.withheld = len(admission.refused)
        page.dead_lettered = len(outcome.failures)
        result.received += page.received
        result.withheld += page.withheld
        result.dead_lettered += page.dead_lettered
        return page

    # -- bookkeeping ------------------------------------------------------------

    def _record_attempt(self, state, result: RoundResult) -> None:
        now = now_micros()
        with self.store.write() as connection:
            fresh = syncstate.load(connection, state.peer, state.mapping, state.direction)
            fresh.last_attempt = now
            if result.ok:
                fresh.last_success = now
                fresh.last_error = None
            else:
                fresh.last_error = result.error
            syncstate.save(connection, fresh)


def _count(state: syncstate.SyncState, counts: RoundResult) -> None:
    state.received += counts.received
    state.withheld += counts.withheld
    state.dead_lettered += counts.dead_lettered


def _version_text(obj: dict) -> str:
    version = obj.get("modified") or obj.get("created")
    return version if isinstance(version, str) else ""


def _outgoing(page: EgressPage) -> list[tuple[dict, str]]:
    """(object, JSON text) of what an egress page lets leave, dependencies included."""
    return [(item.decision.obj, item.body) for item in page.items if item.decision.obj]


def _exactly(obj: dict) -> Position:
    """The egress position of one stored version (a dead letter retried)."""
    version = _version_text(obj)
    key: str | int = to_micros(version) if version else "all"
    return Position(ids=(obj["id"],), versions=(key,))


def _safe_resume_point(page: ObjectPage, previous_last: str | None) -> str | None:
    """The pull cursor that may be committed with this page, or None to keep the old one.

    Resuming with ``added_after=T`` skips everything added at T.  Some servers
    give many objects one date_added (medallion 3.0.0 gives a whole POST one),
    so a page may end inside such a group.  A page's own -Last is therefore
    safe only at the end of the collection (``more`` false); otherwise the
    previous page's -Last is, once this page is seen to start after it.  The
    objects of this page are committed either way: a resume re-reads them and
    stores nothing twice.
    """
    if not page.more:
        return page.date_added_last
    if previous_last is None or page.date_added_first is None:
        return None
    try:
        if to_micros(page.date_added_first) > to_micros(previous_last):
            return previous_last
    except ValueError:
        pass
    return None


def _failure(obj: dict, message: str) -> dict:
    return {"id": obj.get("id"), "version": obj.get("modified") or obj.get("created"),
            "message": message}  # fmt: skip


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
                MappingSync(store, agreement, client, retries=retries, stop=self.stop)
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
        """One push and one pull round for each mapping, as its direction allows."""
        results = []
        for mapping in self.mappings:
            if mapping.agreement.mapping.pushes:
                results.append(mapping.push())
            if mapping.agreement.mapping.pulls:
                results.append(mapping.pull())
        return results

    def run_forever(self, on_result: Callable[[RoundResult], None] | None = None) -> None:
        """Run each mapping at its interval until ``stop`` is set; back off on failures."""
        due = {id(m): 0.0 for m in self.mappings}
        backoffs = {id(m): Backoff(base=1.0, cap=300.0) for m in self.mappings}
        while not self.stop.is_set():
            now = time.monotonic()
            for mapping in self.mappings:
                if self.stop.is_set() or due[id(mapping)] > now:
                    continue
                ok = self._run_mapping(mapping, on_result)
                backoff = backoffs[id(mapping)]
                if ok:
                    backoff.reset()
                    pause = mapping.agreement.mapping.interval
                else:
                    pause = max(mapping.agreement.mapping.interval, backoff.delay())
                    backoff.attempt += 1
                due[id(mapping)] = time.monotonic() + pause
            next_due = min(due.values(), default=time.monotonic() + 1.0)
            self.stop.wait(max(0.05, next_due - time.monotonic()))

    def _run_mapping(self, mapping: MappingSync, on_result) -> bool:
        ok = True
        rounds = []
        if mapping.agreement.mapping.pushes:
            rounds.append(mapping.push)
        if mapping.agreement.mapping.pulls:
            rounds.append(mapping.pull)
        for run in rounds:
            result = run()
            ok = ok and result.ok
            if on_result:
                on_result(result)
        return ok

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def describe_lag(state: syncstate.SyncState) -> str:
    if state.last_success is None:
        return "never synced"
    seconds = (now_micros() - state.last_success) / 1e6
    return f"{seconds:.1f}s since last success ({from_micros(state.last_success)})"
