"""What the two queues of held versions share: the quarantine (``quarantine.py``:
what a peer sent, held for review) and the release queue (``releases.py``: what
waits for a releaser before it leaves).

Both are narrowed the same way (peer, collection by id or alias, entries,
ids, or everything), refuse an action that names nothing, want a reason for a
rejection, and audit each decided version with who decided it
(``node.store.heldversions`` is their shared store shape).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection

from node.errors import InvalidValue, NotFound
from node.store import catalog
from node.store.audit import Action, AuditRecord, Direction
from node.store.heldversions import Criteria, HeldRow
from node.store.schema import MAX_STORE_INTEGER


@dataclass(frozen=True)
class Wording:
    """How a refusal names what the caller should give: the CLI's flags or the
    console's form fields.  The rules are the operations', once; only the words
    for the inputs are the caller's."""

    release_choices: str  # what names pending versions (``check_names_some``)
    held_choices: str  # what names quarantined versions
    reason: str  # where a rejection's reason goes


CLI_WORDING = Wording(
    release_choices="entries, --id, --report, --type, --label, --tlp, or --all",
    held_choices="entries, --id, or --all",
    reason="--reason",
)
CONSOLE_WORDING = Wording(
    release_choices=(
        "tick entries, fill in Report id, Type, Label or TLP, or tick every pending version"
    ),
    held_choices="tick entries",
    reason="fill in Reason",
)


@dataclass(frozen=True)
class Selection:
    """Which held versions an action covers (criteria are ANDed)."""

    peer: str | None = None
    collection: str | None = None  # id or alias
    pks: tuple[int, ...] = ()  # entries, as listed
    object_ids: tuple[str, ...] = ()
    everything: bool = False

    @property
    def narrowed(self) -> bool:
        """Whether the selection names some versions (an action needs it, or ``everything``)."""
        return bool(self.pks or self.object_ids)

    def criteria(self, connection: Connection) -> Criteria:
        """The selection as the store lists held versions (the collection resolved)."""
        check_entry_numbers(self.pks)
        return Criteria(
            peer=self.peer,
            collection_id=collection_id(connection, self.collection),
            pks=self.pks or None,
            object_ids=self.object_ids or None,
        )

    def check_names_some(self, choices: str) -> None:
        """An action covers what the selection names, or everything when it says so;
        ``choices``: how the caller names the ways to say which (``Wording``)."""
        if not (self.narrowed or self.everything):
            raise InvalidValue(f"say which versions: {choices}")


def check_entry_numbers(pks: Iterable[int]) -> None:
    """Entries are numbers the store can hold: a larger one (or one below 1) names no
    entry, and binding it would fail in the driver rather than say so."""
    for pk in pks:
        if not 1 <= pk <= MAX_STORE_INTEGER:
            raise InvalidValue(
                f"no entry {pk}: entries are whole numbers from 1 to {MAX_STORE_INTEGER}"
            )


def collection_id(connection: Connection, collection: str | None) -> str | None:
    """The id of the collection named by id or alias (None: any collection)."""
    if collection is None:
        return None
    found = catalog.find(connection, collection)
    if found is None:
        raise NotFound(f"no collection {collection!r}")
    return found.id


def rejection_reason(reason: str | None, wording: Wording = CLI_WORDING) -> str:
    """The reason a rejection gives, recorded in the audit trail: never empty."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidValue(f"a rejection needs a reason ({wording.reason})")
    return reason


def decision_records(
    rows: Iterable[HeldRow],
    action: Action,
    direction: Direction,
    *,
    rule: str,
    detail: str | None,
    actor: str,
) -> list[AuditRecord]:
    """One audit record per decided version, naming who decided it."""
    return [
        AuditRecord(
            action=action,
            direction=direction,
            object_id=row.object_id,
            version=row.version_text or None,
            peer=row.peer,
            collection_id=row.collection_id,
            rule=rule,
            detail=detail,
            actor=actor,
        )
        for row in rows
    ]
