"""The recall: a revoked version carrying the node's recall extension (pure functions).

TAXII 2.1 has no tombstones, so a node withdraws what a partner received by
sending it a new version of the version it holds, with ``revoked: true`` (any
TAXII client then sees the object withdrawn, STIX 2.1 section 3.6) and the
property-extension defined in ``node/data/recall-extension.json`` (STIX 2.1
section 7.3), which asks a receiving taxii-node to purge what it holds.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from node.timestamps import from_micros, now_micros, to_micros
from node.validation import version_stamp

EXTENSION_ID = "extension-definition--2176b73d-53d3-44d2-a4ad-ab83ef61142f"
_MILLISECOND = 1_000


class RecallMode(StrEnum):
    """What a mapping's ``ingress.recalls`` asks for (stored in ``recalled.action``)."""

    PURGE = "purge"
    REVOKE = "revoke"


class RecallOutcome(StrEnum):
    """What a node did with a recall it received: the sender's status message says
    ``recall <outcome>`` and the audit action is ``recall-<outcome>``."""

    PURGED = "purged"  # from the object's origin, every version removed
    REVOKED = "revoked"  # from the object's origin, the revoked version stored
    REFUSED = "refused"  # from a peer that is not the object's origin
    IGNORED = "ignored"  # nothing of the object is held here


@cache
def extension_objects() -> tuple[dict[str, Any], ...]:
    """The recall extension-definition and its author's identity, as the node ships them."""
    source = resources.files("node") / "data" / "recall-extension.json"
    loaded: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    return tuple(loaded)


def recall_version(last: dict[str, Any], reason: str, modified: str | None = None) -> dict:
    """A new version of ``last`` (the version the peer holds) that recalls the object.

    Its ``modified`` is ``modified`` when given (egress uses the withheld
    version's, so the recall takes that version's place), else now; either
    way at least one millisecond after ``last``'s, so that it supersedes what
    the peer holds (STIX 2.1 section 3.6).
    """
    stamp = version_stamp(last)
    floor = to_micros(stamp) + _MILLISECOND if isinstance(stamp, str) else 0
    if modified is not None and to_micros(modified) >= floor:
        chosen = modified
    else:
        moment = max(now_micros(), floor)
        chosen = from_micros(-(-moment // _MILLISECOND) * _MILLISECOND)
    recall = dict(last)
    recall["modified"] = chosen
    recall["revoked"] = True
    extensions = dict(recall.get("extensions") or {})
    extensions[EXTENSION_ID] = {
        "extension_type": "property-extension",
        "action": RecallMode.PURGE.value,
        "reason": reason,
    }
    recall["extensions"] = extensions
    return recall


def is_recall(obj: object) -> bool:
    """Whether ``obj`` carries the recall extension (and is revoked, as a recall is)."""
    if not isinstance(obj, dict):
        return False
    extensions = obj.get("extensions")
    return (
        isinstance(extensions, dict) and EXTENSION_ID in extensions and obj.get("revoked") is True
    )


# A recall's reason is kept in the audit and in the revoked version stored: a
# partner's is cut to this many characters.
REASON_LENGTH = 500


def recall_reason(obj: dict[str, Any]) -> str:
    extension = obj["extensions"][EXTENSION_ID]
    reason = extension.get("reason") if isinstance(extension, dict) else None
    return reason[:REASON_LENGTH] if isinstance(reason, str) else ""
