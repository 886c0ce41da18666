"""Operator actions on the exchange: dead letters listed, retried or skipped, the
sync status and its cursors, the policy preview.

A dead letter is an object version the receiving side refused (the peer on
push, this node on pull), after the worker's retries.  Retrying it sends (or
fetches) that version again now, under the current policy, through the
worker's own delivery path; a renewed refusal updates the same dead letter
(its answer, last attempt and attempt count).  Skipping drops it for good.
Both are audited with the operator's name; the refusal itself stays in the
audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from node.config import Config
from node.errors import ConfigError, NotFound
from node.policy import Decision
from node.sharing import Agreement, Position, egress
from node.sharing.verdicts import State, state_of
from node.store import Store, audit, objects, search, syncstate
from node.store.audit import Action, AuditRecord, Direction
from node.sync.rounds import RoundResult
from node.sync.worker import SyncWorker
from node.timestamps import from_micros, now_micros, to_micros


@dataclass(frozen=True)
class RetryOutcome:
    object_id: str
    delivered: bool
    message: str


@dataclass(frozen=True)
class DeadLetter:
    """One refused version, as an operator reads it (times in RFC 3339)."""

    pk: int
    peer: str
    mapping: str
    direction: Direction  # PUSH: the peer refused it; PULL: this node did
    object_id: str
    version: str | None
    answer: str  # the receiving side's answer, the last time
    first_attempt: str
    last_attempt: str
    attempts: int

    @classmethod
    def of(cls, row: dict) -> DeadLetter:
        return cls(
            pk=row["pk"],
            peer=row["peer"],
            mapping=row["mapping"],
            direction=Direction(row["direction"]),
            object_id=row["object_id"],
            version=row["version"],
            answer=row["reason"],
            first_attempt=from_micros(row["at"]),
            last_attempt=from_micros(row["last_at"] or row["at"]),
            attempts=row["attempts"] or 1,
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def dead_letters(store: Store, peer: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of ``peer``), oldest first."""
    with store.read() as connection:
        return [DeadLetter.of(row) for row in syncstate.list_dead_letters(connection, peer)]


def _dead_letter(store: Store, pk: int) -> dict:
    with store.read() as connection:
        letter = syncstate.dead_letter(connection, pk)
    if letter is None:
        raise NotFound(f"no dead letter {pk} (retried or skipped already?)")
    return letter


def _manual_record(letter: dict, action: Action, actor: str, detail: str) -> AuditRecord:
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
            [_manual_record(letter, Action.DEAD_LETTER_SKIPPED, actor, f"was: {letter['reason']}")],
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

    The worker's delivery path decides egress again; a renewed refusal updates
    this dead letter (answer, last attempt, attempts).  It is removed once the
    version was delivered, withheld by policy or found held already, and kept
    when the other side refused again or could not be reached.  NotFound when
    the dead letter, its peer or its mapping is no longer there,
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
        if letter["direction"] == Direction.PUSH:
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
        if result.ok and not result.dead_lettered:  # delivered, withheld or held already
            syncstate.remove_dead_letter(connection, pk)
        audit.record(connection, [_manual_record(letter, Action.DEAD_LETTER_RETRIED, actor,
                                                 outcome.message)])  # fmt: skip
    return outcome


def retry_all(
    config: Config, store: Store, actor: str, peer: str | None = None
) -> list[tuple[DeadLetter, RetryOutcome]]:
    """Retry every dead letter (of ``peer``), oldest first, each audited on its own.

    Once a peer cannot be reached, its remaining letters are not tried (each
    would wait for the same timeout); they are reported as not delivered.
    """
    unreachable: dict[str, str] = {}
    outcomes = []
    for letter in dead_letters(store, peer):
        if letter.peer in unreachable:
            outcomes.append((letter, RetryOutcome(letter.object_id, False,
                                                  unreachable[letter.peer])))  # fmt: skip
            continue
        try:
            outcome = retry_dead_letter(config, store, letter.pk, actor)
        except NotFound as error:
            outcome = RetryOutcome(letter.object_id, False, str(error))
        if outcome.message.startswith(_UNREACHABLE):
            unreachable[letter.peer] = outcome.message
        outcomes.append((letter, outcome))
    return outcomes


_UNREACHABLE = "the peer could not be reached"


def _configured_peer(config: Config, name: str) -> str:
    if not any(peer.name == name for peer in config.peers):
        raise NotFound(f"peer {name!r} is no longer configured")
    return name


def _outcome(letter: dict, result: RoundResult) -> RetryOutcome:
    object_id = letter["object_id"]
    if not result.ok:
        return RetryOutcome(object_id, False, f"{_UNREACHABLE}: {result.error}")
    if result.dead_lettered:
        return RetryOutcome(object_id, False, "refused again (the dead letter records why)")
    if result.sent or result.received:
        verb = "sent to" if letter["direction"] == Direction.PUSH else "received from"
        return RetryOutcome(object_id, True, f"{verb} {letter['peer']}")
    if result.withheld:
        return RetryOutcome(object_id, False, "the policy now withholds it (see the audit)")
    return RetryOutcome(object_id, True, "already held; nothing to do")


# -- sync status ------------------------------------------------------------------


@dataclass(frozen=True)
class DirectionStatus:
    """One peer, mapping and direction, as ``sync status`` shows it (RFC 3339 times)."""

    peer: str
    mapping: str
    direction: Direction
    cursor: str | None  # push: our last date_added handled; pull: the peer's
    last_attempt: str | None
    last_success: str | None
    lag_seconds: float | None  # since the last success; None if never
    last_error: str | None  # of the last attempt; None when it succeeded
    sent: int
    received: int
    already_present: int
    withheld: int
    dead_lettered: int
    dead_letters_waiting: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def sync_status(store: Store) -> list[DirectionStatus]:
    """The state of every peer, mapping and direction the worker has run."""
    now = now_micros()
    with store.read() as connection:
        states = syncstate.all_states(connection)
        letters = syncstate.list_dead_letters(connection)
    waiting: dict[tuple[str, str, str], int] = {}
    for row in letters:
        key = (row["peer"], row["mapping"], row["direction"])
        waiting[key] = waiting.get(key, 0) + 1
    return [_direction_status(state, now, waiting) for state in states]


def _direction_status(state: syncstate.SyncState, now: int, waiting: dict) -> DirectionStatus:
    if state.direction is Direction.PUSH:
        cursor = from_micros(state.cursor) if state.cursor else None
    else:
        cursor = state.remote_cursor
    success = state.last_success
    return DirectionStatus(
        peer=state.peer,
        mapping=state.mapping,
        direction=state.direction,
        cursor=cursor,
        last_attempt=from_micros(state.last_attempt) if state.last_attempt else None,
        last_success=from_micros(success) if success else None,
        lag_seconds=round((now - success) / 1e6, 3) if success else None,
        last_error=state.last_error,
        sent=state.sent,
        received=state.received,
        already_present=state.already_present,
        withheld=state.withheld,
        dead_lettered=state.dead_lettered,
        dead_letters_waiting=waiting.get((state.peer, state.mapping, state.direction), 0),
    )


def set_cursor(
    config: Config, store: Store, peer: str, mapping: str, direction: Direction,
    to: str | None, actor: str,
) -> DirectionStatus:  # fmt: skip
    """Move one lane's cursor to ``to`` (an RFC 3339 timestamp; None: the start).

    Back, to send or fetch again what lies after it (after a store was restored
    from a backup, or the peer lost data): what the other side holds already is
    "already present", never a duplicate.  Forward, to pass over what lies
    between (a version the peer serves that cannot be read): nothing between
    crosses in that direction, which is why it is audited, with the cursor it
    replaced.  The round after it starts there, not where a round that stopped
    early would have gone on; a round in flight stops at its next commit, which
    stores and audits what crossed but leaves the cursor where this puts it.

    A push cursor moved (either way) also forgets every dependency the peer
    acknowledged on this mapping (``_forget_acknowledged``).
    """
    lane = _configured_lane(config, peer, mapping, direction)
    micros = _cursor_instant(to)
    with store.write() as connection:
        state = syncstate.load(connection, peer, lane.key, direction)
        before = _direction_status(state, now_micros(), {}).cursor
        if direction is Direction.PUSH:
            state.cursor = micros or 0
            _forget_acknowledged(connection, peer, lane.key)
        else:
            state.remote_cursor = from_micros(micros) if micros is not None else None
        state.pull_resume = None
        state.cursor_moves += 1  # a round in flight leaves the cursor alone (commit_progress)
        syncstate.save(connection, state)
        record = AuditRecord(
            action=Action.CURSOR_SET,
            direction=Direction.ADMIN,
            peer=peer,
            rule=str(direction),
            detail=f"{lane.key}: {before or 'start'} -> {to or 'start'}",
            actor=actor,
        )
        audit.record(connection, [record])
    return _direction_status(state, now_micros(), {})


def _forget_acknowledged(connection, peer: str, mapping: str) -> int:
    """Forget all the identities, marking and extension definitions the peer acknowledged
    on ``mapping``, so that they travel again with the first object that needs them.

    All of them, not only those acknowledged at or after the new cursor: what is kept
    is when the peer acknowledged a dependency, not which objects needed it, and an
    object added after the cursor may need one acknowledged long before (an author's
    identity sent with its first report).  A peer restored from a backup may have lost
    any of them; sending one it holds costs one "already present", while one it lost
    and never gets again leaves every object naming it dangling there (its
    created_by_ref or marking unresolved).  The cursor moved forward forgets them too:
    the cost is the same, and the set is small.
    """
    return syncstate.forget_dependencies(connection, peer, mapping)


def _configured_lane(config: Config, peer: str, mapping: str, direction: Direction):
    """The mapping ``mapping`` of ``peer`` (its key, or its local collection), whose
    worker runs ``direction``; NotFound or ConfigError saying what is not so."""
    configured = next((p for p in config.peers if p.name == peer), None)
    if configured is None:
        raise NotFound(f"no peer {peer!r} in {config.path}")
    lane = next((m for m in configured.mappings if mapping in (m.key, m.local)), None)
    if lane is None:
        keys = ", ".join(m.key for m in configured.mappings) or "none"
        raise NotFound(f"peer {peer!r} has no mapping {mapping!r} (mappings: {keys})")
    runs = lane.worker_pushes if direction is Direction.PUSH else lane.worker_pulls
    if not runs:
        raise ConfigError(f"the worker does not {direction} on {peer} {lane.key}")
    return lane


def _cursor_instant(to: str | None) -> int | None:
    if to is None:
        return None
    try:
        micros = to_micros(to)
    except ValueError as exc:
        raise ConfigError(f"--to {to!r}: {exc}") from None
    if micros > now_micros():
        raise ConfigError(f"--to {to!r} is in the future")
    return micros


# -- policy preview ---------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLine:
    decision: Decision
    name: str  # the object's name (or value), for people
    type: str

    @property
    def state(self) -> State:
        """The decision in the words of the console's object page (shared, awaiting
        release, ...: ``node.sharing.verdicts``)."""
        return state_of(self.decision)


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
