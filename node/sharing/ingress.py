"""Ingress: what this node accepts from a peer, pulled by our worker or posted by the peer.

One function, :func:`admit`, decides for both paths, before the objects are
stored; :func:`settle` turns the store's outcome into audit records and, for
the peer's own account, status messages that reveal nothing egress withholds.

Besides the mapping's ingress policy:

* **malformed items** (not valid STIX 2.1) never reach the policy, whose rules
  read valid objects only: they go on to the store, whose validation refuses
  each with its message, as for any publisher, and their valid siblings are
  decided and stored;
* **echoes**: a version this node already holds from elsewhere (ours, served
  back by a peer that does not record origins) is "already present", not a
  conflicting version;
* **the built-in TLP definitions** (``node.tlp``) are "already present" whatever
  a peer sends under their ids, pulled or posted: the node's own stand, a peer
  (which sends them as dependencies of TLP-marked objects, or serves back the
  ones we pushed) never becomes their origin, and nothing about them is audited
  as received from it;
* **only the creator versions an object** (STIX 2.1 section 3.6): a new version
  of an object whose stored versions were made here or by another producer
  (another origin, or another ``created_by_ref``) is refused, unless the
  mapping's ingress policy sets ``accept_foreign_versions = true``.

A peer's account learns from a refusal only what its own object and our
policy say: a refusal that rests on what we store (a reference, a version we
hold, the creator rule) reads "refused by this node's ingress policy" unless
the stored object is one the peer may see anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from node import jsoncodec
from node.policy import PROTECTIVE_RULES, Decision, Policy, Rule
from node.recall import is_recall
from node.store import concealed, objects, provenance
from node.store.audit import Action, AuditRecord, Direction
from node.store.objects import AddOutcome, allocate_date_added
from node.timestamps import from_micros, to_micros
from node.tlp import TLP_BY_MARKING_ID, tlp_marking_definitions
from node.validation import (
    object_problem,
    sco_version_problem,
    version_micros,
    version_stamp,
)

from .agreements import Agreement
from .egress import stored_version_visible, visible
from .gates import divert
from .records import (
    ALREADY_HERE,
    ALREADY_PRESENT,
    already_present,
    already_present_keys,
    decision_records,
)

REFUSED = "refused by this node's ingress policy"
COLLISION = "a different object with this id and version is already stored"
CREATOR_ONLY = "only the object's creator may version it"
# Rules that judge the object alone, so naming them tells the peer nothing about our store.
_OWN_RULES = PROTECTIVE_RULES | {
    Rule.TYPES_ALLOW,
    Rule.UNMARKED,
    Rule.LABELS_REQUIRE,
    Rule.CREATED_BY_ALLOW,
    Rule.CONFIDENCE_MIN,
    Rule.CONFIDENCE_MISSING,
}

Resolver = Callable[[str], dict[str, Any] | None]


@dataclass
class Admission:
    """What to store of one batch from a peer, and why the rest is not stored."""

    accepted: list[Any] = field(default_factory=list)  # objects to store (malformed items too:
    # the store's validation reports them; policy only ever sees valid STIX objects)
    refused: list[dict[str, Any]] = field(default_factory=list)  # status failures
    echoes: list[dict[str, Any]] = field(
        default_factory=list
    )  # status successes ("already present")
    decisions: list[Decision] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)  # to quarantine instead of storing
    recalls: list[dict[str, Any]] = field(default_factory=list)  # recalls to honour (gates)
    # The id() of the items found valid here, for the store not to check them again
    # (``objects.prepare``): what policy changes is a new object, checked there.
    valid: set[int] = field(default_factory=set)


def admit(
    connection: Connection, agreement: Agreement, items: Sequence[object], *, to_peer: bool
) -> Admission:
    """Decide ``items`` from the agreement's peer (``to_peer``: answers go to its account)."""
    peer = agreement.peer.name
    collection_id = agreement.collection_id
    admission = Admission()
    candidates: list[dict[str, Any]] = []
    stored_versions = _stored_versions(connection, collection_id, items)
    held = _held_from_elsewhere(stored_versions, peer)
    for item in items:
        # (a push of new objects holds none of them: no version parsed per item then)
        stored = (
            held.get((str(item.get("id")), version_micros(item) or 0))
            if held and isinstance(item, dict)
            else None
        )
        if not isinstance(item, dict):
            admission.accepted.append(item)  # the store's validation refuses it
        elif str(item.get("id", "")).lower() in TLP_BY_MARKING_ID:
            admission.echoes.append(_detail(item, ALREADY_PRESENT))
        elif object_problem(item) is not None:
            admission.accepted.append(item)  # policy and recalls judge valid STIX only
        elif is_recall(item):
            admission.recalls.append(item)
        elif (problem := sco_version_problem(item)) is not None:
            # Validation lets a revoked SCO carry ``modified`` (this node's record of a
            # recall); a partner's that is no recall would shadow ours (an SCO id names
            # a value: a partner can post first under the id our publication will have).
            admission.refused.append(_detail(item, problem))
        else:
            admission.valid.add(id(item))
            if stored is None or (to_peer and jsoncodec.loads(stored) != item):
                candidates.append(item)  # a different version under a held one: _creator_only
            elif not to_peer or _version_visible(connection, agreement, _detail(item, "")):
                admission.echoes.append(_detail(item, ALREADY_PRESENT))
            else:
                admission.refused.append(_detail(item, REFUSED))
    rules = agreement.ingress
    resolver = local_resolver(connection, collection_id)
    if to_peer:
        resolver = _as_the_peer_sees(connection, agreement, resolver)
    decisions = Policy(rules, resolver).apply(candidates)
    if not rules.accept_foreign_versions:
        decisions = _creator_only(stored_versions, peer, decisions)
    else:
        decisions = _none_over_hidden(connection, agreement, stored_versions, decisions)
    admission.decisions = decisions
    for decision in decisions:
        if decision.allowed and decision.obj is not None:
            if rules.quarantine and _reviewable(decision.obj, admission.valid):
                admission.held.append(decision.obj)
            else:
                admission.accepted.append(decision.obj)
        else:
            message = _refusal(connection, agreement, decision) if to_peer else decision.detail
            admission.refused.append(
                {"id": decision.object_id, "version": decision.version, "message": message}
            )
    return admission


def settle(
    connection: Connection,
    agreement: Agreement,
    admission: Admission,
    outcome: AddOutcome,
    direction: Direction,
    *,
    to_peer: bool,
    agreements: Iterable[Agreement],
) -> list[AuditRecord]:
    """The audit records of a stored batch: "received" for each stored version, with
    ``ALREADY_HERE`` as detail when the store held it already (a peer re-posting after
    a crash, a page pulled again); for a peer's account, collision failures about
    versions it may not see are worded as any other refusal.  Quarantined versions are
    held and recalls honoured here, in the batch's write transaction (see ``gates``);
    ``agreements`` (the node's) are the peers a recall honoured is relayed to.  Echoes
    (``admission.echoes``) were not stored and have no record of their own."""
    hidden = (lambda object_id: not visible(connection, agreement, object_id)) if to_peer else None
    diverted = divert(connection, agreement, admission, outcome, direction, agreements, hidden)
    if agreement.ingress.accept_foreign_versions and outcome.stored:
        provenance.note_foreign_versions(connection, agreement.collection_id)
    if to_peer:
        for failure in outcome.failures:
            if failure.get("message") != COLLISION or _posted_by_it(connection, agreement, failure):
                continue  # (its own version: it knows what it posted)
            if not _version_visible(connection, agreement, failure):
                failure["message"] = REFUSED
    records = decision_records(
        agreement.peer.name,
        agreement.collection_id,
        direction,
        [d for d in admission.decisions if (d.object_id, d.version) not in diverted],
        Action.RECEIVED,
        outcome.failures,
    )
    return already_present(records, already_present_keys(outcome.successes), ALREADY_HERE)


def local_resolver(connection: Connection, collection_id: str) -> Resolver:
    """The latest stored version of a referenced object (any origin), or a TLP definition."""
    builtin = {obj["id"]: obj for obj in tlp_marking_definitions()}

    def resolve(object_id: str) -> dict[str, Any] | None:
        found = objects.latest(connection, collection_id, object_id)
        return found if found is not None else builtin.get(object_id.lower())

    return resolve


def _as_the_peer_sees(connection: Connection, agreement: Agreement, resolve: Resolver) -> Resolver:
    """``resolve``, finding only what the peer may see or posted itself: the objects
    of its POST that reference one withheld from it are judged as if referencing an
    unknown object (``unresolved_refs``), so the answer does not tell it we hold it."""

    def resolve_visible(object_id: str) -> dict[str, Any] | None:
        found = resolve(object_id)
        if found is None or str(found.get("id", "")).lower() in TLP_BY_MARKING_ID:
            return found
        if _only_its_own(connection, agreement, object_id):
            return found
        return found if visible(connection, agreement, object_id) else None

    return resolve_visible


def _stored_versions(
    connection: Connection, collection_id: str, items: Sequence[object]
) -> list[provenance.Version]:
    """Every stored version of the items' objects, whatever their origin: read once per
    batch for both the echoes (``_held_from_elsewhere``) and the creator check
    (``_creator_only``), which read the same rows."""
    ids = {
        item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)
    }
    return list(provenance.versions_of(connection, collection_id, ids, None))


def _held_from_elsewhere(
    stored_versions: list[provenance.Version], peer: str
) -> dict[tuple[str, int], str]:
    """The stored text of each (id, version) of ``stored_versions`` (``_stored_versions``)
    that came from elsewhere than ``peer``.

    A peer that does not record origins (medallion) serves back what we pushed
    to it, redacted or trimmed by our egress policy: our own version coming
    home, not a conflicting one; the local copy stands.  What a peer's account
    posts is an echo only when it is the very version we hold (and may see).
    """
    return {
        (version.object_id, version.version): version.body
        for version in stored_versions
        if version.origin != peer
    }


def _creator_only(
    stored_versions: list[provenance.Version], peer: str, decisions: list[Decision]
) -> list[Decision]:
    """Refuse new versions of objects the peer did not make (STIX 2.1 section 3.6);
    ``stored_versions``: every stored version of the batch's objects."""
    allowed = {d.object_id for d in decisions if d.allowed and d.obj is not None}
    if not allowed or not stored_versions:
        return decisions
    held = provenance.makers(v for v in stored_versions if v.object_id in allowed)
    checked = []
    for decision in decisions:
        makers = held.get(decision.object_id)
        if decision.allowed and decision.obj is not None and makers is not None:
            author = decision.obj.get("created_by_ref")
            foreign = makers.origins != {peer} or makers.authors != {
                author.lower() if isinstance(author, str) else None
            }
            if foreign:
                decision = Decision(
                    decision.object_id,
                    decision.version,
                    False,
                    Rule.CREATOR_ONLY,
                    f"{CREATOR_ONLY}: its versions here were made by "
                    f"{_describe_makers(makers)} (accept_foreign_versions is false)",
                    None,
                )
        checked.append(decision)
    return checked


def conceal(
    connection: Connection,
    agreement: Agreement,
    admission: Admission,
    items: Sequence[object],
    refused: list[dict[str, Any]],
    outcome: AddOutcome,
) -> int:
    """Answer the refusals of a peer's POST that rest on what it may not see (worded
    ``REFUSED``) as if the versions were stored, in ``refused`` (the policy's) and
    ``outcome`` (the store's): see ``node.store.concealed``.  Returns how many were.

    Without this, a partner could learn that we hold an object withheld from it by
    posting one with its id: an unknown id is added, a withheld one refused.  A
    reference to a withheld object is refused as one to an unknown object is under
    ``unresolved_refs = "withhold"``: those refusals already read alike and stay.
    """
    hidden = [f for f in (*refused, *outcome.failures) if f.get("message") == REFUSED]
    if agreement.ingress.unresolved_refs == "withhold":
        references = {str(Rule.REF_WITHHELD), str(Rule.REF_UNRESOLVED)}
        by_reference = {(d.object_id, d.version or None) for d in admission.decisions
                        if str(d.rule) in references}  # fmt: skip
        hidden = [f for f in hidden if (f.get("id"), f.get("version") or None) not in by_reference]
    if not hidden:
        return 0
    answered = _Concealment(connection, agreement, items).answer(
        hidden, outcome, repeats_at=len(admission.echoes)
    )
    refused[:] = [f for f in refused if id(f) not in answered]
    outcome.failures[:] = [f for f in outcome.failures if id(f) not in answered]
    return len(answered)


class _Concealment:
    """Answers for one POST's refusals as the store answers what it stores: the first
    time a version is "added" (an SCO labelled by the date_added an insert would take,
    ``objects.allocate_date_added``), then "already present" for the same content and
    the collision for other content, in later POSTs (``node.store.concealed``) as
    within one envelope (``objects._report_repeat``)."""

    def __init__(self, connection: Connection, agreement: Agreement, items: Sequence[object]):
        self.connection, self.peer = connection, agreement.peer.name
        self.collection_id = agreement.collection_id
        self.posted: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for item in items:
            if isinstance(item, dict):
                self.posted.setdefault((item.get("id"), version_stamp(item)), []).append(item)

    def answer(
        self, hidden: list[dict[str, Any]], outcome: AddOutcome, repeats_at: int
    ) -> set[int]:
        """Turn ``hidden`` (failures, in envelope order) into the store's answers: the
        ids of those that became successes (the others now read as collisions).  The
        store reports repeats within an envelope before what it stores: they go in at
        ``repeats_at`` of the successes (after the echoes)."""
        firsts: dict[tuple[str, int], tuple[dict[str, Any], str]] = {}
        answers: list[tuple[dict[str, Any], tuple[str, int], str]] = []
        for failure in hidden:
            queue = self.posted.get((failure.get("id"), failure.get("version") or None))
            item = queue.pop(0) if queue else None
            version = version_micros(item) if item is not None else None
            if item is None or version is None or not isinstance(item.get("id"), str):
                continue
            key, content = (item["id"], version), concealed.digest(item)
            answers.append((failure, key, content))
            firsts.setdefault(key, (failure, content))
        held = concealed.known(self.connection, self.peer, self.collection_id,
                               [key[0] for key in firsts])  # fmt: skip
        new = [key for key in firsts if key not in held]
        labels = dict(zip(new, self._labels(new), strict=True))
        concealed.remember(self.connection, self.peer, self.collection_id,
                           [(*key, firsts[key][1], labels[key]) for key in new])  # fmt: skip
        became: set[int] = set()
        repeats: list[dict[str, Any]] = []
        for failure, key, content in answers:
            first_failure, first_content = firsts[key]
            if failure is first_failure and key in labels:
                message, label = "added", labels[key]
                same = True
            elif failure is first_failure:
                same, label = held[key][0] == content, held[key][1]
                message = ALREADY_PRESENT
            else:  # a repeat within the envelope, labelled as the store labels one
                same, label, message = first_content == content, None, ALREADY_PRESENT
            detail = {"id": key[0], "message": message if same else COLLISION}
            shown = failure.get("version") or (from_micros(label) if label else None)
            if shown:
                detail["version"] = shown
            if same:
                (outcome.successes if failure is first_failure else repeats).append(detail)
                became.add(id(failure))
            else:
                failure.clear()
                failure.update(detail)
        outcome.successes[repeats_at:repeats_at] = repeats
        return became

    def _labels(self, keys: list[tuple[str, int]]) -> list[int]:
        """The date_added labels of new answers: taken from the collection's own
        sequence for those without a version (the SCOs the labels show), as inserts."""
        unversioned = [key for key in keys if key[1] == 0]
        taken = iter(allocate_date_added(self.connection, self.collection_id, len(unversioned)))
        return [next(taken) if key[1] == 0 else 0 for key in keys]


def _none_over_hidden(
    connection: Connection,
    agreement: Agreement,
    stored_versions: list[provenance.Version],
    decisions: list[Decision],
) -> list[Decision]:
    """With ``accept_foreign_versions``: still refuse a version of an object whose
    stored versions include ones withheld from the peer (it would become the latest
    version of an object it may not see); the refusal reads as the creator rule's."""
    others = {v.object_id for v in stored_versions if v.origin != agreement.peer.name}
    checked = []
    for decision in decisions:
        oid = decision.object_id
        if decision.allowed and oid in others and not visible(connection, agreement, oid):
            decision = Decision(oid, decision.version, False, Rule.CREATOR_ONLY,
                                f"{CREATOR_ONLY}: the object's versions here are withheld "
                                "from the peer (accept_foreign_versions does not reach them)",
                                None)  # fmt: skip
        checked.append(decision)
    return checked


def _describe_makers(makers: provenance.Makers) -> str:
    origins = sorted("this node" if o is None else f"peer {o}" for o in makers.origins)
    authors = sorted(a or "no created_by_ref" for a in makers.authors)
    return f"{', '.join(origins)} ({', '.join(authors)})"


def _refusal(connection: Connection, agreement: Agreement, decision: Decision) -> str:
    """The status message a peer's account gets for a refused version."""
    if decision.rule in _OWN_RULES:
        return f"refused by ingress policy ({decision.rule}): {decision.detail}"
    if decision.rule == Rule.CREATOR_ONLY and (
        visible(connection, agreement, decision.object_id)
        or _only_its_own(connection, agreement, decision.object_id)
    ):
        return CREATOR_ONLY
    return REFUSED


def _posted_by_it(connection: Connection, agreement: Agreement, failure: dict[str, Any]) -> bool:
    """Whether the stored version a failure names came from the agreement's peer."""
    key = _failure_key(failure)
    if key is None:
        return False
    return all(other.version != key[1] for other in _from_others(connection, agreement, key[0]))


def _only_its_own(connection: Connection, agreement: Agreement, object_id: str) -> bool:
    """Whether every version stored of the object came from the agreement's peer, which
    posted them: a refusal about them tells it nothing it does not know."""
    return next(_from_others(connection, agreement, object_id), None) is None


def _from_others(
    connection: Connection, agreement: Agreement, object_id: str
) -> Iterator[provenance.Version]:
    """The stored versions of the object that did not come from the agreement's peer."""
    return provenance.versions_of(connection, agreement.collection_id, [object_id],
                                  agreement.peer.name)  # fmt: skip


def _version_visible(connection: Connection, agreement: Agreement, failure: dict[str, Any]) -> bool:
    key = _failure_key(failure)
    return key is not None and stored_version_visible(connection, agreement, *key)


def _failure_key(failure: dict[str, Any]) -> tuple[str, int] | None:
    """(object id, version as stored) of a status failure, None if it names none."""
    object_id, version = failure.get("id"), failure.get("version")
    if not isinstance(object_id, str) or not isinstance(version, str):
        return None
    try:
        return object_id, to_micros(version)
    except ValueError:
        return None


def _reviewable(obj: dict[str, Any], valid: set[int]) -> bool:
    """Quarantine holds valid objects (the TLP definitions never get here: see ``admit``);
    ``valid``: the ``id()`` of the posted objects already found so (``Admission.valid``),
    so that only what policy changed (a redacted copy) is checked again."""
    return id(obj) in valid or object_problem(obj) is None


def _detail(item: dict[str, Any], message: str) -> dict[str, Any]:
    detail = {"id": item.get("id"), "message": message}
    version = version_stamp(item)
    if version is not None:
        detail["version"] = version
    return detail
