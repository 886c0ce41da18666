"""Small STIX 2.1 object factories for the sharing tests."""

from __future__ import annotations

import uuid

from node.tlp import TLP, TLP1_MARKING_IDS, TLP2_MARKING_IDS

T0 = "2026-01-01T00:00:00.000Z"
RED = TLP2_MARKING_IDS[TLP.RED]
GREEN = TLP2_MARKING_IDS[TLP.GREEN]
AMBER = TLP2_MARKING_IDS[TLP.AMBER]
RED1 = TLP1_MARKING_IDS[TLP.RED]
GREEN1 = TLP1_MARKING_IDS[TLP.GREEN]


def at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000Z"


def sdo(kind: str, marking: str | None, *, author: dict | None = None, **properties) -> dict:
    obj = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": T0,
        "modified": T0,
        **properties,
    }
    if author is not None:
        obj["created_by_ref"] = author["id"]
    if marking is not None:
        obj["object_marking_refs"] = [marking]
    return obj


def identity(marking: str | None = None, **extra) -> dict:
    return sdo("identity", marking, name="Unit", identity_class="organization", **extra)


def indicator(marking: str | None, value: int = 1, **extra) -> dict:
    return sdo(
        "indicator",
        marking,
        name=f"Malicious IP {value}",
        pattern=f"[ipv4-addr:value = '198.51.100.{value % 250}']",
        pattern_type="stix",
        valid_from="2026-01-01T00:00:00Z",
        **extra,
    )


def malware(marking: str | None, **extra) -> dict:
    return sdo("malware", marking, name="implant", is_family=True, **extra)


def relationship(marking: str | None, source: dict, target: dict, **extra) -> dict:
    return sdo(
        "relationship",
        marking,
        relationship_type="indicates",
        source_ref=source["id"],
        target_ref=target["id"],
        **extra,
    )


def sighting(marking: str | None, seen: dict, **extra) -> dict:
    return sdo("sighting", marking, sighting_of_ref=seen["id"], **extra)


def report(marking: str | None, refs: list[dict], **extra) -> dict:
    return sdo(
        "report",
        marking,
        name="Campaign write-up",
        published=T0,
        object_refs=[ref["id"] for ref in refs],
        **extra,
    )


def note(marking: str | None, refs: list[dict], **extra) -> dict:
    return sdo("note", marking, content="seen it", object_refs=[r["id"] for r in refs], **extra)


def version(obj: dict, modified: str, **changes) -> dict:
    return {**obj, "modified": modified, **changes}


def granular(marking: str) -> dict:
    """Properties that mark an object's name granularly (section 7.2.3)."""
    return {"granular_markings": [{"marking_ref": marking, "selectors": ["name"]}]}
