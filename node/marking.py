"""Marking objects at publication: a TLP level and an author for objects that lack them.

Analysts publish data that often carries no TLP marking, and the egress policy
withholds unmarked objects by default; ``publish --tlp`` (CLI) and the
console's Publish page mark them as they go in.  One rule for both: an object
without a TLP marking gets the TLP 2.0 marking of the chosen level (marking
definitions themselves are left as their publisher made them), and an object
without ``created_by_ref`` that can carry one (it has ``created``: SDOs, SROs,
marking definitions; STIX 2.1 section 3.2) gets the chosen identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.errors import InvalidValue
from node.tlp import TLP, TLP2_MARKING_IDS, tlp_of

_IDENTITY_ID = re.compile(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Marking:
    """What to add to objects that lack it; None adds nothing."""

    tlp: TLP | None = None
    created_by_ref: str | None = None

    def __post_init__(self) -> None:
        if self.created_by_ref is not None and not _IDENTITY_ID.fullmatch(self.created_by_ref):
            raise InvalidValue(
                f"created_by_ref {self.created_by_ref[:80]!r} is not an identity id "
                "(identity--<UUID>)"
            )


def marked(item: object, marking: Marking) -> object:
    """A copy of ``item`` with the marking's TLP level and author added where it has
    none; anything that is not a JSON object is returned as it is (and fails validation)."""
    if not isinstance(item, dict):
        return item
    copy = dict(item)
    if (
        marking.tlp is not None
        and item.get("type") != "marking-definition"
        and tlp_of(item) is None
    ):
        refs = item.get("object_marking_refs")
        refs = list(refs) if isinstance(refs, list) else []
        copy["object_marking_refs"] = [*refs, TLP2_MARKING_IDS[marking.tlp]]
    if marking.created_by_ref and "created" in item and "created_by_ref" not in item:
        copy["created_by_ref"] = marking.created_by_ref
    return copy
