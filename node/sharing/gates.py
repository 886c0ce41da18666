"""What egress and ingress do besides the policy rules: release, onward sharing, recalls
and quarantine (issue: four eyes, quarantine, recalls, a third partner).

Egress (:class:`EgressGates`, applied by ``egress`` to every version its policy
decided, and to the dependencies that travel with them):

* **recalled here**: an object its origin recalled is never passed on (rule
  ``recall.recalled``);
* **recalled from the peer**: once a recall of an object is queued for the peer
  (a DELETE's, or one relayed from the origin), no other version of it leaves
  for that peer: a revoked object stays revoked (STIX 2.1 section 3.6; rule
  ``recall.sent``);
* **onward**: a version that came from another peer leaves only when the
  mapping's egress sets ``onward = "allow"`` (rule ``onward.never``); when it
  does, the decision names the origin;
* **release**: on a mapping with ``release = "approval"``, a version policy
  lets through leaves only once a releaser approved it (``release.awaiting``,
  ``release.rejected``: see ``node.operations.releases``);
* **recall**: when the current version of an object the peer received is now
  withheld, the peer gets instead a recall of the version it holds (a new
  version, revoked, carrying the recall extension), at the withheld version's
  place in the collection; recalls queued by a DELETE
  (``node.operations.recalls.withdraw``) are served at the place they took.

Ingress (:func:`divert`, used by ``admit`` and ``settle``): recalls from the
peer are honoured (only from the object's origin) and relayed to the peers the
object was passed on to (``node.operations.recalls``: onward recalls), and on a
mapping with ``quarantine = true`` what is accepted is held for review instead
of stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from node import jsoncodec
from node.operations import quarantine
from node.operations import recalls as recall_operations
from node.policy import DEPENDENCY_TYPES, Decision
from node.recall import RecallMode, RecallOutcome
from node.store import provenance, recalls, releases
from node.store.audit import Direction
from node.store.releases import ReleaseState
from node.timestamps import to_micros
from node.validation import is_cyber_observable, version_stamp

from .agreements import Agreement

if TYPE_CHECKING:
    from node.store.objects import AddOutcome

    from .egress import Outgoing
    from .ingress import Admission

AWAITING_RULE = "release.awaiting"
REJECTED_RULE = "release.rejected"
ONWARD_RULE = "onward.never"
RECALLED_RULE = "recall.recalled"
RECALL_SENT_RULE = "recall.sent"
RECALL_RULE = recalls.RECALL_RULE
# Rules that hold a version back without withdrawing what the peer holds.
_HOLDING_RULES = frozenset({AWAITING_RULE, REJECTED_RULE, ONWARD_RULE, RECALL_SENT_RULE})
RECALL_REASON = "withdrawn by its origin"
DELETED_REASON = "deleted by its origin"
_RECALL_SENT = "recalled from this peer (a revoked object stays revoked: STIX 2.1 section 3.6)"


def _own_observable(version: provenance.Version) -> bool:
    """Whether ``version`` is a cyber-observable this node published itself: an SCO's id
    names its value (STIX 2.1 section 2.9), so a peer's recall of the value it sent
    does not withdraw our own publication of the same value (a partner that posted an
    address first, then recalled it, would otherwise keep it from every peer)."""
    return version.origin is None and is_cyber_observable(version.type)


def _withheld(decision: Decision, rule: str, detail: str) -> Decision:
    return Decision(decision.object_id, decision.version, False, rule, detail, None)


@dataclass(frozen=True, slots=True)
class QueuedRecall:
    """A recall a DELETE queued, as egress serves it."""

    decision: Decision
    body: str
    date_added: int


class EgressGates:
    """The gates of one egress call: one peer, one collection."""

    def __init__(self, connection: Connection, agreement: Agreement) -> None:
        self.connection = connection
        self.peer = agreement.peer.name
        self.collection_id = agreement.collection_id
        self.rules = agreement.egress
        self._any_recall_queued: bool | None = None
        self._any_recalled_here: bool | None = None

    def recalled_from_peer(self, object_ids: Iterable[str]) -> set[str]:
        """Those of ``object_ids`` with a recall queued for the peer (one query for the
        whole call when none ever was, as on most mappings)."""
        if not self._recall_ever_queued():
            return set()
        return recalls.queued_ids(self.connection, self.peer, self.collection_id, object_ids)

    def _recall_ever_queued(self) -> bool:
        """Whether a recall of anything in the collection was ever queued for the peer
        (asked once per egress call)."""
        if self._any_recall_queued is None:
            self._any_recall_queued = recalls.any_queued(self.connection, self.peer,
                                                         self.collection_id)  # fmt: skip
        return self._any_recall_queued

    def recalled_here(self, object_ids: Iterable[str]) -> set[str]:
        """Those of ``object_ids`` their origin recalled here (one query for the whole
        call when nothing in the collection ever was, as in most collections)."""
        if self._any_recalled_here is None:
            self._any_recalled_here = recalls.any_recalled(self.connection, self.collection_id)
        if not self._any_recalled_here:
            return set()
        return recalls.recalled_ids(self.connection, self.collection_id, object_ids)

    def apply(
        self, versions: Sequence[provenance.Version], decisions: Sequence[Decision]
    ) -> list[Decision]:
        """``decisions`` (the policy's, one per version) with the gates applied."""
        # (The ids are listed only when something in the collection was ever recalled.)
        recalled_here = self.recalled_here(v.object_id for v in versions)
        recalled_from_peer = self.recalled_from_peer(v.object_id for v in versions)
        recalled = recalled_here | recalled_from_peer
        gated = list(decisions)
        # Most versions meet none of these gates: only the recalled and the foreign are visited.
        for index in [
            i for i, v in enumerate(versions) if v.origin is not None or v.object_id in recalled
        ]:
            version, decision = versions[index], gated[index]
            if version.object_id in recalled_here and not _own_observable(version):
                gated[index] = _withheld(decision, RECALLED_RULE, "recalled here by its origin")
            elif version.object_id in recalled_from_peer:
                gated[index] = _withheld(decision, RECALL_SENT_RULE, _RECALL_SENT)
            elif decision.allowed and version.origin is not None:
                gated[index] = self._onward(decision, version.origin)
        if self.rules.release == "approval":
            self._release_gate(versions, gated)
        self._recall_withdrawn(versions, gated)
        return gated

    def _onward(self, decision: Decision, origin: str) -> Decision:
        if self.rules.onward != "allow":
            return _withheld(decision, ONWARD_RULE, f'came from peer {origin} (onward = "never")')
        return replace(decision, detail=f"passed on; origin {origin}")

    def _release_gate(self, versions: Sequence[provenance.Version], gated: list[Decision]) -> None:
        waiting = [i for i, d in enumerate(gated) if d.allowed]
        keys = [(versions[i].object_id, versions[i].version) for i in waiting]
        known = releases.states(self.connection, self.peer, self.collection_id, keys)
        for index, key in zip(waiting, keys, strict=True):
            state = known.get(key)
            if state is ReleaseState.REJECTED:
                gated[index] = _withheld(gated[index], REJECTED_RULE, "rejected by a releaser")
            elif state is not ReleaseState.APPROVED:
                gated[index] = _withheld(gated[index], AWAITING_RULE, "awaiting release")

    def _recall_withdrawn(
        self, versions: Sequence[provenance.Version], gated: list[Decision]
    ) -> None:
        """A current version now withheld, of an object the peer received: the peer gets a
        recall of what it holds in its place (unless a recall of it is queued for the
        peer already: a DELETE's, or one relayed from the origin, which a revoked
        version stored here on ``recalls = "revoke"`` would otherwise repeat).

        A recall repeats the stored version the peer holds, older than the current one
        (``recalls.recall_for``), so an object whose current version is also its oldest
        stored one (most objects: one version) has nothing to recall and costs no
        audit query."""
        withdrawn = [
            i for i, (v, d) in enumerate(zip(versions, gated, strict=True))
            if v.current and not v.oldest and not d.allowed and d.rule not in _HOLDING_RULES
        ]  # fmt: skip
        if not withdrawn:
            return
        ids = {versions[i].object_id for i in withdrawn}
        delivered = recalls.last_delivered(self.connection, self.peer, self.collection_id, ids)
        queued = recalls.queued_ids(self.connection, self.peer, self.collection_id,
                                    delivered.keys())  # fmt: skip
        for index in withdrawn:
            version = versions[index]
            held = delivered.get(version.object_id)
            if held is None or to_micros(held) >= version.version or version.object_id in queued:
                continue
            recall = recalls.recall_for(self.connection, self.peer, self.collection_id,
                                        version.object_id, RECALL_REASON, self.rules.redact,
                                        version.version_text or None)  # fmt: skip
            if recall is not None:
                detail = f"recalls {held}: withdrawn here ({gated[index].rule})"
                gated[index] = Decision(version.object_id, recall["modified"], True, RECALL_RULE,
                                        detail, recall)  # fmt: skip

    def held_back_targets(
        self,
        closure: Sequence[dict[str, Any]],
        *,
        unreleased: bool = True,
        known: Mapping[str, provenance.Version] | None = None,
    ) -> dict[str, tuple[str, str]]:
        """Objects of ``closure`` (current versions) that the gates hold back (id -> rule,
        detail), so that a relationship or report never names what has not left: a version
        awaiting release, one rejected, another peer's object not passed on, or one its
        origin recalled (with ``unreleased`` False, versions awaiting release are not held
        back).  Identities and marking definitions follow the objects they serve and are
        not held back here.  ``known``: current versions the caller read already (by id),
        not read again."""
        ids = {
            obj["id"] for obj in closure
            if isinstance(obj.get("id"), str) and obj.get("type") not in DEPENDENCY_TYPES
        }  # fmt: skip
        if not ids:
            return {}
        held: dict[str, tuple[str, str]] = {
            object_id: (RECALL_SENT_RULE, _RECALL_SENT)
            for object_id in self.recalled_from_peer(ids)
        }
        recalled_here = self.recalled_here(ids)
        check_releases = unreleased and self.rules.release == "approval"
        gated = check_releases or self.rules.onward != "allow"
        if not recalled_here and not gated:
            return held
        current = self._current_versions(ids if gated else recalled_here, known)
        held.update(
            (object_id, (RECALLED_RULE, "recalled here by its origin"))
            for object_id in recalled_here
            if object_id not in current or not _own_observable(current[object_id])
        )
        if not gated:
            return held
        for object_id, version in current.items():
            if object_id in held:
                continue
            if version.origin is not None and self.rules.onward != "allow":
                held[object_id] = (ONWARD_RULE, f"came from peer {version.origin}")
        if check_releases:
            keys = [(oid, v.version) for oid, v in current.items() if oid not in held]
            states = releases.states(self.connection, self.peer, self.collection_id, keys)
            for key in keys:
                state = states.get(key)
                if state is ReleaseState.REJECTED:
                    held[key[0]] = (REJECTED_RULE, "rejected by a releaser")
                elif state is not ReleaseState.APPROVED:
                    held[key[0]] = (AWAITING_RULE, "awaiting release")
        return held

    def _current_versions(
        self, ids: set[str], known: Mapping[str, provenance.Version] | None
    ) -> dict[str, provenance.Version]:
        """The current version of each of ``ids`` that has one, ``known`` ones not read
        again."""
        current = {oid: v for oid, v in (known or {}).items() if oid in ids}
        unknown = ids - current.keys()
        if unknown:
            current.update(provenance.current_versions(self.connection, self.collection_id,
                                                       unknown, self.peer))  # fmt: skip
        return current

    def queued_recalls(
        self,
        after: int | None,
        up_to: int | None,
        ids: Sequence[str],
        types: Sequence[str],
        limit: int | None = None,
    ) -> list[QueuedRecall]:
        """Recalls a DELETE queued for the peer, in ``(after, up_to]`` of date_added (the
        first ``limit`` of them), of the objects ``ids`` and ``types`` select."""
        found: list[QueuedRecall] = []
        if not self._recall_ever_queued():
            return found
        for queued in recalls.outgoing(self.connection, self.peer, self.collection_id, after,
                                       up_to, ids, types, limit):  # fmt: skip
            recall = jsoncodec.loads(queued.body)
            decision = Decision(queued.object_id, queued.version_text, True, RECALL_RULE,
                                f"recall after deletion: {queued.reason}", recall)  # fmt: skip
            found.append(QueuedRecall(decision, queued.body, queued.date_added))
        return found

    def dependencies(self, travelling: list[Outgoing]) -> list[Outgoing]:
        """Dependencies that may travel: not recalled here, not recalled from the peer (a
        revoked object stays revoked: no older version of it follows a new object that
        names it), and not another peer's unless onward sharing is allowed."""
        if not travelling:
            return travelling
        ids = {item.object_id for item in travelling}
        recalled_here = self.recalled_here(ids) | self.recalled_from_peer(ids)
        foreign: set[str] = set()
        if self.rules.onward != "allow":
            current = provenance.current_versions(self.connection, self.collection_id, ids,
                                                  self.peer)  # fmt: skip
            foreign = {oid for oid, v in current.items() if v.origin is not None}
        return [i for i in travelling if i.object_id not in recalled_here | foreign]


def recall_redactions(
    agreements: Iterable[Agreement], collection_id: str
) -> dict[str, frozenset[str]]:
    """The peers mapped to the collection, each with its egress ``redact`` list: whom a
    recall of one of its objects may be queued for, and what it must leave out."""
    return {a.peer.name: a.egress.redact for a in agreements if a.collection_id == collection_id}


def divert(
    connection: Connection,
    agreement: Agreement,
    admission: Admission,
    outcome: AddOutcome,
    direction: Direction,
    agreements: Iterable[Agreement],
    hidden: Callable[[str], bool] | None = None,
) -> set[tuple[str, str]]:
    """Hold the admission's quarantined versions and honour its recalls (audited by the
    operations; a recall honoured is relayed to the other peers of ``agreements`` it was
    passed on to), reporting both in ``outcome`` as the peer's status shows them;
    returns the (id, version) of the versions held, which are not "received".

    A recall refused because the object came from elsewhere would tell the peer's
    account that this node holds it: where ``hidden`` says the peer may not see the
    object, its status gets the answer an unknown id gets ("recall ignored"); the
    audit keeps "recall-refused"."""
    peer, collection_id = agreement.peer.name, agreement.collection_id
    diverted: set[tuple[str, str]] = set()
    if admission.held:
        quarantine.hold(connection, peer, collection_id, admission.held, direction)
        for item in admission.held:
            version = version_stamp(item) or ""
            diverted.add((item["id"], version))
            outcome.successes.append({"id": item["id"], "version": version, "message": "added"})
    mode = RecallMode(agreement.ingress.recalls)
    onward = recall_redactions(agreements, collection_id) if admission.recalls else {}
    for recall in admission.recalls:
        done = recall_operations.honour(connection, peer, collection_id, recall, mode, direction,
                                        onward)  # fmt: skip
        answer = done.action
        if answer is RecallOutcome.REFUSED and hidden is not None and hidden(done.object_id):
            answer = RecallOutcome.IGNORED
        detail = {"id": done.object_id, "version": recall.get("modified"),
                  "message": f"recall {answer.value}"}  # fmt: skip
        refused = answer is RecallOutcome.REFUSED
        (outcome.failures if refused else outcome.successes).append(detail)
    return diverted


def recall_deleted(
    connection: Connection,
    agreements: Iterable[Agreement],
    collection_id: str,
    object_id: str,
    deleting: set[int],
) -> int:
    """Before a DELETE of the versions ``deleting`` of ``object_id`` (every version, or
    some: TAXII 2.1 section 5.7): queue a recall for each peer mapped to the collection
    that received one of them (``node.operations.recalls.withdraw_deleted``).  Returns
    how many were queued."""
    redactions = recall_redactions(agreements, collection_id)
    return recall_operations.withdraw_deleted(
        connection, collection_id, object_id, deleting, DELETED_REASON, redactions
    )
