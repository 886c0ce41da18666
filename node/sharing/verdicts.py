"""A version's sharing state for each peer, in the words people read (the console's
object page and policy preview).

One home for those words: the decision is the one ``egress`` makes (the policy and
every gate: release, onward sharing, recalls), so a version awaiting release reads
"awaiting release" wherever it is shown; a version held by quarantine
(``node.store.quarantine``, mapping ingress ``quarantine = true``) is in no peer's
view until it is accepted, so it reads "quarantined" for every peer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection

from node.policy import Decision
from node.store.quarantine import Held

from .agreements import Agreement
from .egress import decision_on
from .gates import AWAITING_RULE, RECALL_RULE, REJECTED_RULE

QUARANTINE_RULE = "quarantine"
ORIGIN_RULE = "origin"


class State(StrEnum):
    SHARED = "shared"
    RECALL = "recall sent"  # the peer is served a recall in the version's place
    AWAITING_RELEASE = "awaiting release"
    RELEASE_REJECTED = "release rejected"
    QUARANTINED = "quarantined"
    WITHHELD = "withheld"

    @property
    def leaves(self) -> bool:
        """Whether something leaves for the peer (the version, or a recall in its place)."""
        return self in (State.SHARED, State.RECALL)


def state_of(decision: Decision) -> State:
    """The state an egress decision puts a version in, for the decision's peer."""
    if decision.allowed:
        return State.RECALL if decision.rule == RECALL_RULE else State.SHARED
    if decision.rule == AWAITING_RULE:
        return State.AWAITING_RELEASE
    if decision.rule == REJECTED_RULE:
        return State.RELEASE_REJECTED
    return State.WITHHELD


@dataclass(frozen=True)
class PeerVerdict:
    """One version's state for one peer mapping of its collection."""

    peer: str
    direction: str
    pushes: bool
    version: str
    state: State
    rule: str
    detail: str


def object_verdicts(
    connection: Connection,
    agreements: Iterable[Agreement],
    collection_id: str,
    object_id: str,
    stored: tuple[int, str, str | None] | None,
    held: Sequence[Held] = (),
) -> list[PeerVerdict]:
    """The state, for each peer mapping the collection, of the object's newest stored
    version (``stored``: its version as the store keys it, its text and its origin)
    and of each version of it that quarantine holds (``held``).

    A stored version that came from a peer is never sent back to it (no echo)."""
    verdicts: list[PeerVerdict] = []
    for agreement in agreements:
        if agreement.collection_id != collection_id:
            continue
        if stored is not None:
            verdict = _stored_verdict(connection, agreement, object_id, stored)
            if verdict is not None:
                verdicts.append(verdict)
        verdicts.extend(_held_verdict(agreement, item) for item in held)
    return verdicts


def _stored_verdict(
    connection: Connection,
    agreement: Agreement,
    object_id: str,
    stored: tuple[int, str, str | None],
) -> PeerVerdict | None:
    version, text, origin = stored
    peer, mapping = agreement.peer.name, agreement.mapping
    if peer == origin:
        return PeerVerdict(peer, mapping.direction, mapping.pushes, text, State.WITHHELD,
                           ORIGIN_RULE, "it came from this peer: never sent back")  # fmt: skip
    decision = decision_on(connection, agreement, object_id, version)
    if decision is None:  # not stored as this version: nothing to decide
        return None
    return PeerVerdict(peer, mapping.direction, mapping.pushes, text, state_of(decision),
                       str(decision.rule), decision.detail)  # fmt: skip


def _held_verdict(agreement: Agreement, item: Held) -> PeerVerdict:
    mapping = agreement.mapping
    detail = (
        f"received from {item.peer}, held for review: shared with no peer until "
        "an analyst accepts it"
    )
    return PeerVerdict(agreement.peer.name, mapping.direction, mapping.pushes,
                       item.version_text, State.QUARANTINED, QUARANTINE_RULE, detail)  # fmt: skip
