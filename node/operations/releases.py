"""Four-eyes release: list, approve and reject the versions waiting for a peer.

A mapping whose egress sets ``release = "approval"`` queues every version that
passes its egress policy (``node.store.releases``); nothing of it leaves for
that peer, pushed by our worker or pulled by the partner, until an account
with the role ``releaser`` approves it.  The rules live here, once:

* the releaser is an account holding the role, and is not the account that
  published the version (four eyes); it sees and decides only the versions of
  collections it may read;
* a rejection gives a reason;
* one action covers one version, a report (or any container) with everything
  it references, or everything matching a filter (type, label, TLP), and is
  one transaction with one audit record per version, naming who decided and why;
* approval is per version: a later version of the same object waits again.

Dependencies (identities, marking definitions) are never queued: they travel
with the objects they serve once those are released.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from node import jsoncodec
from node.errors import Conflict, InvalidValue, NotFound
from node.policy import DEPENDENCY_TYPES, Decision
from node.sharing import Agreement, Position, egress
from node.sharing.gates import AWAITING_RULE
from node.store import accounts, audit, publishers, releases, roles
from node.store.audit import Action, Direction
from node.store.releases import Entry, Queued, ReleaseState
from node.timestamps import to_micros
from node.tlp import TLP, parse_level, tlp_of

from . import holds
from .holds import CLI_WORDING, Wording, decision_records, rejection_reason

_MAX_REPORT_DEPTH = 8
_IDS_CHUNK = 300


@dataclass(frozen=True)
class Selection(holds.Selection):
    """Which queued versions an action covers (criteria are ANDed; at least one is given).

    ``pks`` are queue entries (``release list`` shows them); ``report`` is a
    container's id: its queued version and those of everything it references;
    ``types``, ``labels`` (any of them) and ``tlp`` (a level name) filter by content.
    """

    report: str | None = None
    types: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    tlp: str | None = None

    @property
    def narrowed(self) -> bool:
        return super().narrowed or bool(self.report or self.types or self.labels or self.tlp)


@dataclass(frozen=True)
class QueueItem:
    """One queued version as the CLI and the console show it."""

    entry: Entry
    name: str | None
    tlp: str | None
    labels: tuple[str, ...]
    publisher: str | None

    def as_dict(self) -> dict:
        e = self.entry
        return {
            "entry": e.pk,
            "peer": e.peer,
            "collection": e.collection_id,
            "id": e.object_id,
            "type": e.type,
            "version": e.version_text,
            "name": self.name,
            "tlp": self.tlp,
            "labels": list(self.labels),
            "published_by": self.publisher,
            "state": str(e.state),
            "decided_by": e.decided_by,
            "reason": e.reason,
        }


def refresh(connection: Connection, agreements: Iterable[Agreement]) -> int:
    """Queue every version that egress holds back as awaiting release, for each mapping
    with ``release = "approval"`` (the egress pipeline decides; this records what it
    decided, so that releasers can list it).  Returns how many were new.

    Upkeep is incremental: each mapping resumes from its cursor (the ``date_added``
    egress decided the collection up to, under the mapping's current egress rules,
    ``node.store.releases``), so a refresh costs the versions added since, not the
    collection.  What a new version can change in its object's other versions (an
    older version passes only while its object is shared) is decided again with it.
    New egress rules decide every version again, once.  A link or report is
    queued when it is added (what it references may still await release), so one
    release action can cover them together.  One that policy withheld for what it
    referenced then (a RED target, say) is decided again with a new version of its
    own or under new rules, not when its target changes: finding what references
    an object would cost a scan of the collection, the cost this cursor avoids.
    Nothing leaks meanwhile: egress holds such a link back as awaiting release.
    """
    new = 0
    for agreement in agreements:
        if agreement.egress.release == "approval":
            new += _refresh_mapping(connection, agreement)
    return new


def _refresh_mapping(connection: Connection, agreement: Agreement) -> int:
    peer, collection_id = agreement.peer.name, agreement.collection_id
    rules = _rules_digest(agreement)
    after = releases.cursor(connection, peer, collection_id, rules)
    decisions, reached = _decided_since(connection, agreement, after)
    if after is not None:
        decisions += _other_versions(connection, agreement, {d.object_id for d in decisions})
    awaiting = [_queued(d) for d in decisions if _awaits_a_releaser(d)]
    new = releases.enqueue(connection, peer, collection_id, awaiting)
    releases.save_cursor(connection, peer, collection_id, rules, max(reached, after or 0))
    return new


def _awaits_a_releaser(decision: Decision) -> bool:
    """Whether egress holds the version back for a releaser to decide.  Dependencies
    (identities, marking and extension definitions) wait too, but for no releaser:
    they leave only with an object that names them, once that is released."""
    kind = decision.object_id.partition("--")[0]
    return decision.rule == AWAITING_RULE and kind not in DEPENDENCY_TYPES


def _rules_digest(agreement: Agreement) -> str:
    """The mapping's egress rules as written in the config, as a digest."""
    written = json.dumps(dict(agreement.mapping.egress), sort_keys=True, default=str)
    return hashlib.sha256(written.encode()).hexdigest()


def _decided_since(
    connection: Connection, agreement: Agreement, after: int | None
) -> tuple[list[Decision], int]:
    """Egress's decisions on the versions added after ``after``, and the ``date_added``
    they reach (0 when there were none)."""
    decisions: list[Decision] = []
    reached = 0
    while True:
        position = Position(after=after, scan_limit=1000, unreleased_targets_withheld=False)
        page = egress(connection, agreement, position, set())
        if page.resume_after is None:
            return decisions, reached
        decisions.extend(page.decisions)
        after = reached = page.resume_after
        if not page.more:
            return decisions, reached


def _other_versions(
    connection: Connection, agreement: Agreement, object_ids: set[str]
) -> list[Decision]:
    """Egress's decisions on every version of ``object_ids``, in chunks of ids."""
    ordered = sorted(object_ids)
    decisions: list[Decision] = []
    for start in range(0, len(ordered), _IDS_CHUNK):
        chunk = tuple(ordered[start : start + _IDS_CHUNK])
        position = Position(ids=chunk, unreleased_targets_withheld=False)
        decisions.extend(egress(connection, agreement, position, set()).decisions)
    return decisions


def _queued(decision: Decision) -> Queued:
    version = to_micros(decision.version) if decision.version else 0
    return Queued(decision.object_id, decision.object_id.partition("--")[0], version,
                  decision.version)  # fmt: skip


def list_queue(
    connection: Connection, selection: Selection, releaser: str | None = None
) -> list[QueueItem]:
    """The pending versions the selection covers (all pending ones for an empty selection);
    for ``releaser``, only those in collections it may read (the operator at the command
    line, None, sees all)."""
    entries = _select(connection, selection)
    if releaser is not None:
        entries = _readable_by(connection, entries, releaser)
    return [_item(connection, entry) for entry in entries]


def approve(
    connection: Connection,
    selection: Selection,
    releaser: str,
    *,
    actor: str,
    wording: Wording = CLI_WORDING,
) -> list[QueueItem]:
    """Approve the selected pending versions as ``releaser``; audited, one transaction.
    ``wording``: how refusals name the caller's inputs (flags, form fields)."""
    chosen = _chosen(connection, selection, releaser, wording)
    _check_four_eyes(connection, chosen, releaser)
    releases.decide(connection, [item.entry for item in chosen], ReleaseState.APPROVED,
                    actor=releaser, reason=None)  # fmt: skip
    _audit(connection, chosen, Action.RELEASE_APPROVED, releaser, actor, None)
    return chosen


def reject(
    connection: Connection,
    selection: Selection,
    releaser: str,
    reason: str,
    *,
    actor: str,
    wording: Wording = CLI_WORDING,
) -> list[QueueItem]:
    """Reject the selected pending versions, with a reason; audited, one transaction."""
    reason = rejection_reason(reason, wording)
    chosen = _chosen(connection, selection, releaser, wording)
    releases.decide(connection, [item.entry for item in chosen], ReleaseState.REJECTED,
                    actor=releaser, reason=reason)  # fmt: skip
    _audit(connection, chosen, Action.RELEASE_REJECTED, releaser, actor, reason)
    return chosen


def authenticate_releaser(connection: Connection, name: str, password: str) -> None:
    """The person at the command line is the releaser ``name``: its password, its role.

    Four eyes means two people; the CLI runs with access to the store, so it
    asks for the releaser's own password rather than trusting a name.
    """
    if not accounts.password_matches(password, accounts.password_hash_of(connection, name)):
        raise Conflict(f"wrong password for {name!r}, or no such account")
    check_releaser(connection, name)


def check_releaser(connection: Connection, name: str) -> None:
    """``name`` is an account with the role ``releaser``."""
    if accounts.load_account(connection, name) is None:
        raise NotFound(f"no account named {name!r}")
    if not roles.has_role(connection, name, roles.RELEASER):
        raise Conflict(f"account {name!r} does not have the role {roles.RELEASER!r}")


def _chosen(
    connection: Connection, selection: Selection, releaser: str, wording: Wording
) -> list[QueueItem]:
    """The pending versions the selection covers in collections ``releaser`` may read: a
    releaser decides only on what it can inspect (a version elsewhere is as unknown)."""
    check_releaser(connection, releaser)
    selection.check_names_some(wording.release_choices)
    entries = _readable_by(connection, _select(connection, selection), releaser)
    chosen = [_item(connection, entry) for entry in entries]
    if not chosen:
        raise NotFound("no pending version matches")
    return chosen


def _readable_by(connection: Connection, entries: list[Entry], name: str) -> list[Entry]:
    account = accounts.load_account(connection, name)
    if account is None:
        return []
    return [entry for entry in entries if account.rights_on(entry.collection_id).can_read]


def _check_four_eyes(connection: Connection, chosen: Sequence[QueueItem], releaser: str) -> None:
    own = [item for item in chosen if item.publisher == releaser]
    if own:
        listed = ", ".join(f"{i.entry.object_id} {i.entry.version_text}" for i in own[:5])
        raise Conflict(
            f"{releaser!r} published {len(own)} of these versions and cannot release them "
            f"(four eyes): {listed}"
        )


def _select(connection: Connection, selection: Selection) -> list[Entry]:
    pending = releases.entries(
        connection, state=ReleaseState.PENDING, **selection.criteria(connection)
    )
    if selection.report is not None:
        pending = _with_report(connection, pending, selection.report)
    level = _tlp_level(selection.tlp) if selection.tlp else None
    chosen = []
    for entry in pending:
        obj = _body(entry)
        if selection.types and entry.type not in selection.types:
            continue
        if selection.labels and not set(selection.labels) & set(_labels(obj)):
            continue
        if level is not None and tlp_of(obj) != level:
            continue
        chosen.append(entry)
    return chosen


def _tlp_level(name: str) -> TLP:
    """The TLP level a selection names; an unknown name is the caller's mistake to fix
    (``parse_level`` says ValueError, as configuration reading wants)."""
    try:
        return parse_level(name)
    except ValueError as error:
        raise InvalidValue(f"TLP: {error}") from None


def _with_report(connection: Connection, pending: list[Entry], report_id: str) -> list[Entry]:
    """The pending versions of ``report_id`` and of everything it references, transitively."""
    by_id: dict[str, list[Entry]] = {}
    for entry in pending:
        by_id.setdefault(entry.object_id, []).append(entry)
    if report_id not in by_id:
        raise NotFound(f"no pending version of {report_id!r}")
    reached, frontier = {report_id}, [report_id]
    for _ in range(_MAX_REPORT_DEPTH):
        following = []
        for object_id in frontier:
            for entry in by_id.get(object_id, ()):
                for ref in _references(_body(entry)):
                    if ref not in reached:
                        reached.add(ref)
                        following.append(ref)
        if not following:
            break
        frontier = following
    return [entry for entry in pending if entry.object_id in reached]


def _references(obj: dict) -> Iterable[str]:
    """The ids ``obj``'s top-level ``*_ref``/``*_refs`` properties name, in lower case
    (the store's spelling: a reference may write its UUID in upper case)."""
    for name, value in obj.items():
        if name.endswith("_ref") and isinstance(value, str):
            yield value.lower()
        elif name.endswith("_refs") and isinstance(value, list):
            yield from (ref.lower() for ref in value if isinstance(ref, str))


def _body(entry: Entry) -> dict:
    if entry.body is None:
        return {}
    loaded = jsoncodec.loads(entry.body)
    return loaded if isinstance(loaded, dict) else {}


def _labels(obj: dict) -> list[str]:
    labels = obj.get("labels")
    return [label for label in labels if isinstance(label, str)] if isinstance(labels, list) else []


def _item(connection: Connection, entry: Entry) -> QueueItem:
    obj = _body(entry)
    found = publishers.publishers_of(connection, entry.collection_id, [entry.key])
    level = tlp_of(obj)
    name = obj.get("name")
    return QueueItem(
        entry=entry,
        name=name if isinstance(name, str) else None,
        tlp=level.label if level is not None else None,
        labels=tuple(_labels(obj)),
        publisher=found.get(entry.key),
    )


def _audit(
    connection: Connection,
    chosen: Sequence[QueueItem],
    action: Action,
    releaser: str,
    actor: str,
    reason: str | None,
) -> None:
    detail = f"by {releaser} ({actor})" + (f": {reason}" if reason else "")
    entries = [item.entry for item in chosen]
    records = decision_records(
        entries, action, Direction.PUSH, rule="release", detail=detail, actor=releaser
    )
    audit.record(connection, records)
