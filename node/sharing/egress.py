"""Egress: what may leave this node for one peer, with every decision.

One function, :func:`egress`, answers for every path by which an object leaves:
the worker's push, each TAXII read by the peer's sync account (objects, one
object, its versions, the manifest) and ``policy preview``.  So the partner
gets the same answer however it asks.

What a peer may see is defined without regard to which objects happen to be
decided together:

* an object's *current* version is its newest one that did not come from the
  peer (the peer's own versions are never sent back, never stand for our
  objects and never decide what an object is: see ``store.provenance``);
* an object is *shared* when policy lets its current version through, with
  every reference resolved against the current versions of what it references
  (transitively); an older version of a shared object passes on its own; no
  version of an object that is not shared leaves;
* identities and marking definitions that shared objects need travel with
  them (the policy's "dependency" rule), at their current version.

A peer's view is therefore the store as if the versions policy withholds from
it had never existed, and everything a read answers (objects, ``more``,
``next``, the version filters "first" and "last") is computed on that view;
the ``next`` position skips the withheld versions already examined, so paging
never scans them twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, cast

import orjson
from sqlalchemy import Connection

from node import jsoncodec
from node.policy import (
    PROTECTIVE_RULES,
    Decision,
    PerObject,
    Policy,
    Rule,
    named_ids,
)
from node.store import provenance
from node.store.objects import ObjectQuery
from node.timestamps import from_micros
from node.tlp import tlp_marking_definitions

from .agreements import Agreement
from .gates import EgressGates

_MAX_CLOSURE = 50_000
_NOTHING: dict[str, Any] = {}  # the decoded object of a row served from the cache
_NO_FIRST: dict[str, int] = {}
_NOTHING_REMEMBERED: Mapping[int, Any] = MappingProxyType({})
_MAX_CHUNK = 5_000


@dataclass(frozen=True)
class Position:
    """Where an egress scan starts and what it selects (TAXII 2.1 section 3.4 filters).

    ``limit`` counts versions to serve (dependencies travel on top of it); None
    for no limit.  ``scan_limit`` stops after that many stored versions were
    examined (the worker's batches); a peer's reads have none, so that ``more``
    says whether more *served* versions follow, never whether withheld ones do.
    """

    after: int | None = None
    limit: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str | int, ...] = ("all",)
    spec_versions: tuple[str, ...] = ()
    scan_limit: int | None = None
    # False only to fill the release queue: a report or relationship is queued while
    # what it references still awaits release (so one action can release them
    # together); what is served never links to an unreleased object.
    unreleased_targets_withheld: bool = True

    @classmethod
    def of(cls, query: ObjectQuery) -> Position:
        """The position of a TAXII request's parsed filters."""
        return cls(
            after=query.after,
            limit=query.limit,
            ids=query.ids,
            types=query.types,
            versions=query.versions,
            spec_versions=query.spec_versions,
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One version that leaves, as the JSON text to send."""

    decision: Decision
    body: str
    date_added: int | None  # None for a dependency travelling with the page
    version_label: str  # the version as manifests and version lists name it
    needs: frozenset[str] = frozenset()  # the identities and markings it references

    @property
    def object_id(self) -> str:
        return self.decision.object_id


@dataclass
class EgressPage:
    """What leaves for one position, and every decision made to find it."""

    rows: list[Outgoing] = field(default_factory=list)  # in date_added order
    dependencies: list[Outgoing] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # rows and dependencies
    more: bool = False
    resume_after: int | None = None  # where the next page starts; None: nothing examined
    withheld: Counter[str] = field(default_factory=Counter)  # by rule
    # The date_added of each scanned version decided, in the order of the first
    # ``decisions`` (a page that ends early drops those past its end).
    decided_at: list[int] = field(default_factory=list)

    @property
    def items(self) -> list[Outgoing]:
        return self.rows + self.dependencies

    @property
    def served_decisions(self) -> list[Decision]:
        return [item.decision for item in self.items]


# A version examined: decoded (``_NOTHING`` when remembered), its decision (None when the
# version filter skips it) and, when the cache knew the decision, the item it makes.
_Entry = tuple[provenance.Version, dict[str, Any], Decision | None, "Outgoing | None"]
_Entries = list[_Entry]


# A remembered decision, as the entry a scan makes of it: the version (its body left out,
# flagged current), nothing decoded, the decision (its object left out) and the item.
Remembered = tuple[provenance.Version, dict[str, Any], Decision, Outgoing]


class DecisionCache:
    """Decisions on stored versions that reference nothing, kept between a peer's reads.

    Such a version's decision depends only on its (immutable) text and the mapping's
    rules, as long as it is its object's current version, which every scan checks
    again; so a partner re-reading a collection costs the rows, not the policy.  A
    (collection, date_added) names one stored row for good (date_added only grows;
    a released version takes a new one), so entries are kept by peer and collection,
    then date_added; all are dropped when they reach ``size``.
    """

    def __init__(self, size: int = 200_000) -> None:
        self._size = size
        self._count = 0
        self._tables: dict[tuple[str, str], dict[int, Remembered]] = {}
        self._lock = threading.Lock()

    def table(self, peer: str, collection_id: str) -> Mapping[int, Remembered]:
        """What is remembered for the peer in the collection, by date_added (read
        without the lock: a reader sees an entry whole or not at all)."""
        return self._tables.get((peer, collection_id), _NOTHING_REMEMBERED)

    def put(self, peer: str, collection_id: str, remembered: Remembered) -> None:
        with self._lock:
            if self._count >= self._size:
                self._tables = {}
                self._count = 0
            table = self._tables.setdefault((peer, collection_id), {})
            added = remembered[0].date_added
            self._count += added not in table
            table[added] = remembered


def egress(
    connection: Connection,
    agreement: Agreement,
    position: Position,
    already_sent: set[str] | None = None,
    cache: DecisionCache | None = None,
) -> EgressPage:
    """The versions after ``position`` that may leave for the agreement's peer.

    ``already_sent`` (ids) lets a worker's round or a preview skip dependencies
    that earlier pages carried; it is updated with what this page sends.  With
    ``cache`` (a peer's reads), decisions on versions that reference nothing are
    remembered between calls; the decisions are the same either way.  Served
    items from the cache carry no decoded object (``decision.obj`` is None).
    """
    run = _Run(connection, agreement, position, cache)
    page = run.scan()
    _add_queued_recalls(run, page)
    page.dependencies = run.dependencies(page.rows, already_sent)
    _supersede_row_decisions(page)
    page.decisions.extend(item.decision for item in page.dependencies)
    if already_sent is not None:
        already_sent.update(item.object_id for item in page.items)
    return page


def _add_queued_recalls(run: _Run, page: EgressPage) -> None:
    """Recalls a DELETE queued for the peer, served among the rows in the collection's
    date_added order (see ``gates``): those in the window the scan covered, or past its
    end when it reached the end of the collection; with a ``limit``, the page ends at
    the first item that does not fit, and the next page starts there, so that no recall
    and no row is skipped whichever comes first."""
    position = run.position
    if not ({"all", "last"} & set(position.versions)):
        return
    up_to = page.resume_after if page.more else None
    bound = None if position.limit is None else position.limit + 1
    found = run.gates.queued_recalls(position.after, up_to, position.ids, position.types, bound)
    if not found:
        return
    recalls = [Outgoing(q.decision, q.body, q.date_added, q.decision.version) for q in found]
    merged = sorted(page.rows + recalls, key=lambda row: row.date_added or 0)
    if position.limit is not None and len(merged) > position.limit:
        _end_before(page, merged[position.limit].date_added or 0)
        merged = merged[: position.limit]
    elif not page.more:
        page.resume_after = max(page.resume_after or 0, recalls[-1].date_added or 0)
    page.rows = merged
    queued = {id(recall) for recall in recalls}
    page.decisions.extend(row.decision for row in merged if id(row) in queued)


def _end_before(page: EgressPage, cut: int) -> None:
    """End ``page`` just before date_added ``cut``: what the scan decided from there on
    is decided again by the next page (so neither served nor counted withheld here)."""
    decisions, decided_at = [], []
    for decision, at in zip(page.decisions, page.decided_at, strict=True):
        if at < cut:
            decisions.append(decision)
            decided_at.append(at)
        elif not decision.allowed:
            page.withheld[str(decision.rule)] -= 1
    page.withheld += Counter()  # drop zero counts
    page.decisions, page.decided_at = decisions, decided_at
    page.more, page.resume_after = True, cut - 1


def _supersede_row_decisions(page: EgressPage) -> None:
    """Drop the row decision "withheld (unmarked...)" of a dependency that leaves with the
    page anyway, so that a version is decided once: sent as a dependency."""
    travelling = {(item.object_id, item.decision.version) for item in page.dependencies}
    if not travelling:
        return
    dropped = [
        d for d in page.decisions if not d.allowed and (d.object_id, d.version) in travelling
    ]
    if not dropped:
        return
    for decision in dropped:
        page.withheld[str(decision.rule)] -= 1
    gone = {id(decision) for decision in dropped}
    page.decisions = [d for d in page.decisions if id(d) not in gone]
    page.withheld += Counter()  # drop zero counts


def visible(connection: Connection, agreement: Agreement, object_id: str) -> bool:
    """Whether the peer may learn that ``object_id`` exists: its current version leaves."""
    page = egress(connection, agreement, Position(ids=(object_id,), versions=("last",), limit=1))
    return bool(page.rows)


def decision_on(
    connection: Connection, agreement: Agreement, object_id: str, version: int
) -> Decision | None:
    """The egress decision on one stored version (None when the peer never sees it
    decided: it is the peer's own version, or it is not stored)."""
    page = egress(connection, agreement, Position(ids=(object_id,), versions=(version,)))
    return next((d for d in page.decisions if d.object_id == object_id), None)


def stored_version_visible(
    connection: Connection, agreement: Agreement, object_id: str, version: int
) -> bool:
    """Whether one stored version of ``object_id`` is part of what the peer may see."""
    page = egress(connection, agreement, Position(ids=(object_id,), versions=(version,)))
    return bool(page.rows)


class _VersionFilter:
    """match[version] (3.4.2) on the peer's view: "last" and "first" are the newest and
    oldest versions it may see, exact versions match as stored; items are ORed."""

    def __init__(self, versions: Sequence[str | int]) -> None:
        self.all = "all" in versions
        self.last = "last" in versions
        self.first = "first" in versions
        self.exact = {v for v in versions if isinstance(v, int)}
        self.only_last = not self.all and self.last and not self.first and not self.exact

    def selects(
        self,
        version: provenance.Version,
        first: Mapping[str, int],
        last: Mapping[str, int] | None = None,
    ) -> bool:
        """Whether the filter takes ``version``.  ``first``: the oldest version of each
        object in the peer's view; ``last``, when given, the newest, for an older version
        to stand in for a current one a gate holds back (``_Run._shown``).  A current
        version is always taken by "last": the gates decide whether it leaves."""
        if self.all:
            return True
        if self.last and (
            version.current or (last is not None and last.get(version.object_id) == version.version)
        ):
            return True
        if self.first and first.get(version.object_id) == version.version:
            return True
        if version.version in self.exact:
            return True
        # A version without created/modified is labelled by its date_added.
        return not version.version_text and version.date_added in self.exact


class _Run:
    """One call of :func:`egress`."""

    def __init__(
        self,
        connection: Connection,
        agreement: Agreement,
        position: Position,
        cache: DecisionCache | None = None,
    ) -> None:
        self.cache = cache
        self.connection = connection
        self.agreement = agreement
        self.peer = agreement.peer.name
        self.position = position
        # Objects the references name that only other collections hold: judged, never
        # sent (the mapping shares this collection); see ``_resolve_closure``.
        self.elsewhere: dict[str, dict[str, Any]] = {}
        self.policy = Policy(agreement.egress, self.elsewhere.get, resolves_elsewhere=True)
        # What each decoded object names, found once per call (rows, closure, dependencies).
        policy = self.policy  # not ``self``: a closure over the run would make a cycle
        self.references = PerObject(lambda obj: _references(obj, policy))
        self.gates = EgressGates(connection, agreement)
        self.filter = _VersionFilter(position.versions)
        # "last" is the current version unless a gate may hold it back while an older
        # one leaves (a newer version awaiting release, another peer's newer version not
        # passed on): then the scan reads every version and finds each object's last in
        # the peer's view, as ``all`` and versions/ would show it (``_shown``).
        self.last_in_view = self.filter.last and _gates_may_hold_current(agreement)
        self.window = provenance.Scan(
            collection_id=agreement.collection_id,
            peer=self.peer,
            after=position.after,
            ids=position.ids,
            types=position.types,
            spec_versions=position.spec_versions,
            current_only=self.filter.only_last and not self.last_in_view,
        )
        self.current: dict[str, dict[str, Any]] = {}  # id -> current version, for the closure
        self.states: dict[str, Decision] = {}  # id -> decision on its current version
        self.held: set[str] = set()  # ids whose every version came from the peer
        self.looked_up: set[str] = set()

    # ----------------------------------------------------------------- rows

    def scan(self) -> EgressPage:
        page = EgressPage(resume_after=None)
        limit, scan_limit = self.position.limit, self.position.scan_limit
        after = self.position.after
        chunk = _first_chunk(limit, scan_limit)
        examined = 0
        rows, decisions, withheld = page.rows, page.decisions, page.withheld
        while True:
            entries, scanned, last = self._entries(after, chunk)
            for version, obj, decision, known in self._gated(entries):
                if decision is None:
                    page.resume_after = version.date_added
                    continue
                if decision.allowed:
                    if limit is not None and len(rows) >= limit:
                        page.more = True
                        page.resume_after = version.date_added - 1
                        return page
                    rows.append(
                        known if known is not None else self._outgoing(version, obj, decision)
                    )
                else:
                    withheld[str(decision.rule)] += 1
                decisions.append(decision)
                page.decided_at.append(version.date_added)
                page.resume_after = version.date_added
            examined += scanned
            if scanned < chunk or last is None:
                return page
            if scan_limit is not None and examined >= scan_limit:
                page.more = True
                return page
            after = last
            chunk = _next_chunk(limit, len(page.rows), scan_limit, examined)

    def _gated(self, entries: _Entries) -> _Entries:
        """``entries`` with the gates applied to their decisions (``gates``: release,
        onward sharing, recalls), remembered decisions included."""
        chosen = [i for i, entry in enumerate(entries) if entry[2] is not None]
        if not chosen:
            return entries
        before = [cast(Decision, entries[i][2]) for i in chosen]
        after = self.gates.apply([entries[i][0] for i in chosen], before)
        gated = list(entries)
        for index, old, new in zip(chosen, before, after, strict=True):
            if new is old:
                continue
            version, obj, _, known = entries[index]
            kept = None
            if known is not None and new.allowed and old.allowed and new.obj is old.obj:
                kept = replace(known, decision=new)
            gated[index] = (version, obj, new, kept)
        return gated

    def _outgoing(
        self, version: provenance.Version, obj: dict[str, Any], decision: Decision
    ) -> Outgoing:
        return Outgoing(
            decision,
            _body(decision, obj, version.body),
            version.date_added,
            version.version_text or from_micros(version.date_added),
            frozenset(self.policy.dependencies([decision])),
        )

    def _entries(self, after: int | None, chunk: int) -> tuple[_Entries, int, int | None]:
        """The next ``chunk`` stored versions after ``after``, each decoded with its
        decision (see ``_decide``), how many rows were scanned and the date_added of the
        last one.

        With a cache, the rows are found by their date_added and flags alone, and only
        those it does not know are fetched whole (most of a re-read collection is known).
        """
        window = replace(self.window, after=after)
        if self.cache is None or self.filter.first:
            versions = provenance.scan(self.connection, window, chunk)
            last = versions[-1].date_added if versions else None
            return self._decide(versions), len(versions), last
        heads = provenance.scan_heads(self.connection, window, chunk)
        entries, missing = self._remembered(heads, self.cache)
        if not missing:  # every entry is one
            return cast(_Entries, entries), len(heads), heads[-1][0] if heads else None
        fetched = provenance.at(self.connection, window, missing)
        fresh = [fetched[added] for added in missing if added in fetched]  # date_added order
        decided = {entry[0].date_added: entry for entry in self._decide(fresh)}
        merged = [
            entry if entry is not None else decided.get(head[0])
            for head, entry in zip(heads, entries, strict=True)
        ]
        return [entry for entry in merged if entry is not None], len(heads), heads[-1][0]

    def _remembered(
        self, heads: list[tuple[int, int, int]], cache: DecisionCache
    ) -> tuple[list[_Entry | None], list[int]]:
        """The entry of each row (``provenance.scan_heads``) that the cache knows (a
        current version the version filter selects), None for the others, and the
        date_added of those others."""
        table = cache.table(self.peer, self.agreement.collection_id)
        every_current = self.filter.all or self.filter.last
        selects, states = self.filter.selects, self.states
        entries: list[_Entry | None] = []
        missing: list[int] = []
        for added, current, oldest in heads:
            entry = table.get(added) if current else None
            if entry is not None and (every_current or selects(entry[0], _NO_FIRST)):
                if entry[0].oldest is not (oldest == 1):  # an older version came, or went
                    entry = (entry[0]._replace(oldest=oldest == 1), *entry[1:])
                states[entry[0].object_id] = entry[2]
                entries.append(entry)
            else:
                entries.append(None)
                missing.append(added)
        return entries, missing

    def _decide(self, versions: list[provenance.Version]) -> _Entries:
        """Each version, decoded, with its decision (None when the version filter skips
        it); the fourth item, the cached item of a remembered version, is None here."""
        if not versions:
            return []
        objs = [_decoded(version.body) for version in versions]
        for version, obj in zip(versions, objs, strict=True):
            if version.current:
                self.current[version.object_id] = obj  # so unchanged objects keep their text
        first: dict[str, int] = {}
        last: dict[str, int] | None = None
        if self.filter.first or self.last_in_view:
            # (for "last", only older versions need their object's view: a current
            # version is selected, and the gates decide whether it leaves)
            asked = {v.object_id for v in versions if self.filter.first or not v.current}
            shown = self._shown(asked)
            first = {object_id: oldest for object_id, (oldest, _) in shown.items()}
            if self.last_in_view:
                last = {object_id: newest for object_id, (_, newest) in shown.items()}
        decisions = self._decided_rows(versions, objs)
        return [
            (version, obj, decision if self.filter.selects(version, first, last) else None, None)
            for version, obj, decision in zip(versions, objs, decisions, strict=True)
        ]

    def _decided_rows(
        self, versions: list[provenance.Version], objs: list[dict[str, Any]]
    ) -> list[Decision]:
        """Decisions on rows: a current version that references nothing (most objects)
        is decided on its own rules, which is all the batch would do with it; the others
        with the current versions of what they reach."""
        decided: list[Decision | None] = [None] * len(objs)
        linked: list[int] = []
        for index, (version, obj) in enumerate(zip(versions, objs, strict=True)):
            if version.current and not self.references(obj):
                decision = self.policy.decide(obj)
                decided[index] = decision
                self.states[version.object_id] = decision
                self._remember(version, obj, decision)
            else:
                linked.append(index)
        if linked:
            known = {v.object_id: v for v in (versions[i] for i in linked) if v.current}
            rest = self._versions_decided([objs[index] for index in linked], known)
            for index, decision in zip(linked, rest, strict=True):
                decided[index] = decision
        return [d for d in decided if d is not None]

    def _remember(
        self, version: provenance.Version, obj: dict[str, Any], decision: Decision
    ) -> None:
        if self.cache is None:
            return
        item = self._outgoing(version, obj, decision)
        light = Decision(
            decision.object_id, decision.version, decision.allowed, decision.rule,
            decision.detail, None,
        )  # fmt: skip
        bare = version._replace(body="")
        remembered = (bare, _NOTHING, light, replace(item, decision=light))
        self.cache.put(self.peer, self.agreement.collection_id, remembered)

    def _versions_decided(
        self,
        objs: list[dict[str, Any]],
        known: Mapping[str, provenance.Version] | None = None,
    ) -> list[Decision]:
        """Decisions on ``objs``, judged with the current versions of all they reach."""
        closure = self._closure(objs)
        deciding = {obj["id"] for obj in objs if isinstance(obj.get("id"), str)}
        held = self.gates.held_back_targets(
            closure, unreleased=self.position.unreleased_targets_withheld, known=known
        )
        # The gates decide the versions being decided themselves (``_gated``, per
        # version); as link targets, those the gates hold count as withheld already, or
        # a report on this page would keep naming another peer's object.
        currents, decided = self.policy.apply_versions(
            closure,
            objs,
            held_by_recipient=frozenset(self.held),
            held_back={k: v for k, v in held.items() if k not in deciding},
            gated={k: v for k, v in held.items() if k in deciding},
        )
        self.states.update((d.object_id, d) for d in currents)
        return decided

    def _shown(self, object_ids: set[str]) -> dict[str, tuple[int, int]]:
        """The oldest and the newest version of each object that the peer may see, its
        policy and the gates applied: "first" and "last" of its view (3.4.2)."""
        if not object_ids:
            return {}
        stored = list(provenance.versions_of(self.connection, self.agreement.collection_id,
                                             object_ids, self.peer))  # fmt: skip
        newest: dict[str, int] = {}
        oldest: dict[str, int] = {}
        for version in stored:
            key, number = version.object_id, version.version
            newest[key] = max(newest.get(key, number), number)
            oldest[key] = min(oldest.get(key, number), number)
        flagged = [v._replace(current=v.version == newest[v.object_id],
                              oldest=v.version == oldest[v.object_id]) for v in stored]  # fmt: skip
        decided = self._versions_decided([_decoded(version.body) for version in flagged])
        shown: dict[str, tuple[int, int]] = {}
        for version, decision in zip(flagged, self.gates.apply(flagged, decided), strict=True):
            if decision.allowed:
                low, high = shown.get(version.object_id, (version.version, version.version))
                shown[version.object_id] = (min(low, version.version), max(high, version.version))
        return shown

    # ----------------------------------------------------------------- closure

    def _closure(self, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The current versions of ``objs``' objects and of all they reference, transitively."""
        refs = [self.references(obj) for obj in objs]
        self._resolve_closure(objs, refs)
        reached: dict[str, dict[str, Any]] = {}
        pending = [obj.get("id") for obj in objs]
        for found in refs:
            pending.extend(found)
        followed = {id(obj) for obj in objs}
        while pending:
            object_id = pending.pop()
            if not isinstance(object_id, str) or object_id in reached:
                continue
            current = self.current.get(object_id)
            if current is not None:
                reached[object_id] = current
                if id(current) not in followed:
                    pending.extend(self.references(current))
        return list(reached.values())

    def _resolve_closure(
        self, objs: list[dict[str, Any]], refs: list[list[str]] | None = None
    ) -> None:
        """Fetch the current version of every object ``objs`` reference, transitively.

        References to ids nobody stores stay unknown (the policy's
        ``unresolved_refs``); ids held only as the peer's own versions are safe.
        Past ``_MAX_CLOSURE`` objects, further references stay unknown too (and
        are withheld on egress's default ``unresolved_refs = "withhold"``).
        """
        if refs is None:
            refs = [self.references(obj) for obj in objs]
        pending = {ref for found in refs for ref in found}
        pending.update(obj["id"] for obj in objs if isinstance(obj.get("id"), str))
        while pending and len(self.current) < _MAX_CLOSURE:
            wanted = pending - self.looked_up - self.current.keys()
            if not wanted:
                return
            self.looked_up.update(wanted)
            found = provenance.current_versions(
                self.connection, self.agreement.collection_id, wanted, self.peer
            )
            pending = set()
            for object_id, version in found.items():
                obj = _decoded(version.body)
                self.current[object_id] = obj
                pending.update(self.references(obj))
            missing = wanted - found.keys()
            self._add_builtin_markings(missing)
            missing -= self.current.keys()
            if missing:
                self.held.update(
                    provenance.held_only_by(
                        self.connection, self.agreement.collection_id, missing, self.peer
                    )
                )
                self._look_elsewhere(missing - self.held)

    def _look_elsewhere(self, missing: set[str]) -> None:
        """Find the ids this collection lacks in the node's other collections: an
        object held there is still ours, and what policy withholds there (a TLP:RED
        identity, say) must withhold what names it here too, not pass as unknown."""
        found = provenance.newest_elsewhere(self.connection, self.agreement.collection_id,
                                            missing)  # fmt: skip
        for object_id, body in found.items():
            obj = _decoded(body)
            if isinstance(obj, dict):
                self.elsewhere[object_id] = obj

    def _add_builtin_markings(self, missing: set[str]) -> None:
        """TLP marking definitions the store lacks, from the package (they always travel)."""
        spellings: dict[str, list[str]] = {}
        for ref in missing:
            if ref.startswith("marking-definition--"):
                spellings.setdefault(ref.lower(), []).append(ref)
        if spellings:
            for definition in tlp_marking_definitions():
                for ref in spellings.get(definition["id"], ()):
                    self.current.setdefault(ref, definition)

    # ----------------------------------------------------------------- dependencies

    def dependencies(self, rows: list[Outgoing], already_sent: set[str] | None) -> list[Outgoing]:
        """Identities and marking definitions that the served rows need, at their current
        version, unless a protective rule (or a withheld author) or a gate keeps them back.

        Walked in waves, each wave gated before what it needs is sought: a dependency a
        gate holds back (another peer's identity, say) brings none of its own along, or
        the partner would receive a marking definition that only a withheld object names.
        """
        served = [row.decision for row in rows]
        travelling: list[Outgoing] = []
        seen = {d.object_id for d in served}
        wanted = set().union(*(row.needs for row in rows)) - seen
        seen_ids = set(seen)
        while wanted:
            wave: list[Outgoing] = []
            for dependency_id in sorted(wanted):
                seen.add(dependency_id)
                if already_sent is not None and dependency_id in already_sent:
                    continue
                decision = self._dependency_decision(dependency_id)
                if decision is None or decision.obj is None or decision.object_id in seen_ids:
                    continue  # (a marking id spelt in two letter cases travels once)
                seen_ids.add(decision.object_id)
                needs = frozenset(self.policy.dependencies([decision]))
                wave.append(Outgoing(decision, jsoncodec.dumps(decision.obj), None, "", needs))
            wave = self.gates.dependencies(wave)
            travelling.extend(wave)
            wanted = set().union(*(t.needs for t in wave)) - seen
        return travelling

    def _dependency_decision(self, dependency_id: str) -> Decision | None:
        if dependency_id not in self.current:
            self._resolve_closure([{"id": dependency_id}])
        obj = self.current.get(dependency_id)
        if obj is None:
            return None
        state = self.states.get(dependency_id)
        if state is None:
            self._versions_decided([obj])
            state = self.states.get(dependency_id)
        if state is not None and not state.allowed and _keeps_back(state.rule):
            return None
        decision = self.policy.decide_dependency(obj)
        return decision if decision.allowed else None


def _gates_may_hold_current(agreement: Agreement) -> bool:
    """Whether a gate may withhold an object's current version while an older one
    leaves: a newer version awaiting release (or rejected), or one that came from
    another peer and is not passed on, over one of ours (possible only where some
    peer's ingress accepts foreign versions)."""
    rules = agreement.egress
    return rules.release == "approval" or (rules.onward != "allow" and agreement.foreign_versions)


def _decoded(body: str) -> Any:
    """A stored body, parsed: orjson first (the store holds valid JSON), the codec's
    exact parser for the rare body orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return jsoncodec.loads(body)


def _keeps_back(rule: str) -> bool:
    """Whether a dependency withheld by ``rule`` may not travel even when referenced."""
    return rule in PROTECTIVE_RULES or rule == Rule.REF_WITHHELD


def _references(obj: Mapping[str, Any], policy: Policy) -> list[str]:
    """Ids ``obj`` names that egress must resolve: its author, non-TLP markings, the
    extension definitions it uses (``node.policy.named_ids``) and every link
    (``Policy.linked_ids``: relationships, sightings, containers, and any other
    ``*_ref``/``*_refs`` property), in lower case as the store spells ids.  TLP
    definitions are left out: they are never withheld and always available
    (``node.tlp``)."""
    return [*named_ids(obj), *policy.linked_ids(obj)]


def _body(decision: Decision, obj: dict[str, Any], stored: str) -> str:
    """The stored text when policy changed nothing (the hot path), else the changed object."""
    return stored if decision.obj is obj else jsoncodec.dumps(decision.obj)


def _first_chunk(limit: int | None, scan_limit: int | None) -> int:
    if scan_limit is not None:
        return min(scan_limit, _MAX_CHUNK)
    return min(max(2 * (limit or _MAX_CHUNK), 64), _MAX_CHUNK)


def _next_chunk(limit: int | None, served: int, scan_limit: int | None, examined: int) -> int:
    if scan_limit is not None:
        return max(1, min(scan_limit - examined, _MAX_CHUNK))
    missing = (limit - served + 1) if limit is not None else _MAX_CHUNK
    return min(max(4 * missing, 64), _MAX_CHUNK)
