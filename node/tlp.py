"""Traffic Light Protocol levels and the STIX marking definitions that carry them.

Two generations of TLP circulate in STIX 2.1 data and both must be understood:

* TLP 1.0 (WHITE, GREEN, AMBER, RED) is predefined by STIX 2.1 itself (section 7.2.1.4);
  the node keeps those four objects, as the stix2 library serialises them, in
  ``data/tlp1.json`` (data rather than an import of stix2, which costs a command
  line a third of a second to start).
* TLP 2.0 (CLEAR, GREEN, AMBER, AMBER+STRICT, RED) is defined outside the specification, by
  the OASIS extension ``extension-definition--60a3c5c5-...``.  stix2 does not ship these
  objects, so the node keeps them, exactly as OASIS published them, in ``data/tlp.json``.
  (The published objects carry no ``created_by_ref``: CISA's identity
  ``identity--b3bca3c2-...`` authors the extension definition, not the markings, and adding
  one would make our copies differ from every other producer's.)

A marking is recognised by its identifier only: a marking-definition that merely calls
itself "TLP:GREEN" under another id is not TLP, because any producer can mint one.  The
identifier is compared without regard to letter case (``marking-definition--E828B379-...``
is TLP:RED too): UUIDs are case-insensitive (RFC 4122, 3) and some producers write them in
upper case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from enum import IntEnum
from importlib import resources
from types import MappingProxyType
from typing import Any

TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"


class TLP(IntEnum):
    """TLP levels ordered from least to most restrictive, so levels compare with ``<``.

    TLP 1.0 WHITE and TLP 2.0 CLEAR are the same level (``TLP.WHITE is TLP.CLEAR``).
    AMBER+STRICT sits between AMBER and RED: it narrows AMBER to the recipient organisation.
    """

    CLEAR = 0
    WHITE = 0  # TLP 1.0 name of CLEAR: an alias, not a distinct member
    GREEN = 1
    AMBER = 2
    AMBER_STRICT = 3
    RED = 4

    @property
    def label(self) -> str:
        """Display name as TLP writes it: ``CLEAR``, ``AMBER+STRICT``..."""
        return self.name.replace("_", "+")

    @property
    def config_name(self) -> str:
        """The spelling used in configuration files: ``clear``, ``amber+strict``..."""
        return self.label.lower()


TLP2_MARKING_IDS: Mapping[TLP, str] = MappingProxyType(
    {
        TLP.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        TLP.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        TLP.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        TLP.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
        TLP.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    }
)
"""The TLP 2.0 marking-definition id of each level (OASIS extension), e.g. for marking."""

TLP1_MARKING_IDS: Mapping[TLP, str] = MappingProxyType(
    {
        TLP.WHITE: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        TLP.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        TLP.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        TLP.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
    }
)
"""The TLP 1.0 marking-definition id of each level, predefined by STIX 2.1."""

TLP_BY_MARKING_ID: Mapping[str, TLP] = MappingProxyType(
    {marking_id: level for level, marking_id in TLP2_MARKING_IDS.items()}
    | {marking_id: level for level, marking_id in TLP1_MARKING_IDS.items()}
)
"""Every TLP marking-definition id, of either version, to its level."""

_LEVEL_BY_NAME: Mapping[str, TLP] = MappingProxyType(
    {
        "clear": TLP.CLEAR,
        "white": TLP.WHITE,
        "green": TLP.GREEN,
        "amber": TLP.AMBER,
        "amber+strict": TLP.AMBER_STRICT,
        "red": TLP.RED,
    }
)


def parse_level(name: str) -> TLP:
    """Read a TLP level name as written in configuration, case-insensitively.

    Accepts both versions' names ("white" is "clear").  Raises ``ValueError`` listing the
    accepted names, so a configuration error tells the operator what to write instead.
    """
    level = _LEVEL_BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None
    if level is None:
        accepted = ", ".join(_LEVEL_BY_NAME)
        raise ValueError(f"{name!r} is not a TLP level ({accepted})")
    return level


def _marking_refs(obj: Mapping[str, Any]) -> Iterator[Any]:
    """The marking-definition ids an object carries, whole-object and granular."""
    yield from obj.get("object_marking_refs") or ()
    for granular in obj.get("granular_markings") or ():
        if isinstance(granular, Mapping) and "marking_ref" in granular:
            yield granular["marking_ref"]


def tlp_of(obj: Mapping[str, Any]) -> TLP | None:
    """The most restrictive TLP level marking any part of ``obj``, or None when it has none.

    Granular markings count as if they covered the whole object: a policy deciding whether
    an object may leave cannot send "part" of it, so the strictest marked part decides.
    Non-TLP markings (statements, copyright...) are ignored here.
    """
    strictest: TLP | None = None
    for ref in _marking_refs(obj):
        level = TLP_BY_MARKING_ID.get(ref.lower()) if isinstance(ref, str) else None
        if level is not None and (strictest is None or level > strictest):
            strictest = level
    return strictest


def declared_level(definition: Mapping[str, Any]) -> TLP | None:
    """The TLP level a marking definition says it stands for, by its content: a
    ``definition_type`` of "tlp" in any letter case with ``definition.tlp`` (STIX 2.1
    section 7.2.1.3), the TLP 2.0 extension's ``tlp_2_0``, OpenCTI's
    ``x_opencti_definition_type`` "TLP" with ``x_opencti_definition`` (its own
    definitions are statements), or a statement or name that reads "TLP:<level>".
    None for any other object.

    TLP is recognised by marking id (``tlp_of``); a definition minted under another
    id is content that claims a level, and sharing must not treat what it marks as
    unmarked: the policy judges such a definition at the level it claims (an
    unreadable level counts as RED), so that what names it is withheld with it.
    """
    if definition.get("type") != "marking-definition":
        return None
    claimed: list[Any] = []
    kind, content = definition.get("definition_type"), definition.get("definition")
    if isinstance(kind, str) and kind.lower() == "tlp" and isinstance(content, Mapping):
        claimed.append(content.get("tlp"))
    extensions = definition.get("extensions")
    if isinstance(extensions, Mapping):
        for key, extension in extensions.items():
            if isinstance(key, str) and key.lower() == TLP2_EXTENSION_ID:
                claimed.append(extension.get("tlp_2_0") if isinstance(extension, Mapping) else None)
    opencti = definition.get("x_opencti_definition_type")
    if isinstance(opencti, str) and opencti.lower() == "tlp":
        claimed.append(definition.get("x_opencti_definition"))
    statement = content.get("statement") if isinstance(content, Mapping) else None
    for text in (statement, definition.get("name")):
        if isinstance(text, str) and _SPELT_LEVEL.fullmatch(text.strip()):
            claimed.append(text)
    levels = [_claimed_level(name) for name in claimed]
    return max(levels) if levels else None


# "TLP:AMBER+STRICT", "tlp: red", "TLP:WHITE": a level as people write it.
_SPELT_LEVEL = re.compile(r"tlp:\s*(clear|white|green|amber|amber\+strict|red)", re.IGNORECASE)


def _claimed_level(name: Any) -> TLP:
    if not isinstance(name, str):
        return TLP.RED
    key = name.strip().lower().removeprefix("tlp:").strip()
    return _LEVEL_BY_NAME.get(key, TLP.RED)


def _tlp2_definitions() -> list[dict[str, Any]]:
    """The five TLP 2.0 marking definitions shipped in the package's ``data/tlp.json``."""
    source = resources.files("node") / "data" / "tlp.json"
    definitions: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    return definitions


def _tlp1_definitions() -> list[dict[str, Any]]:
    """The four TLP 1.0 marking definitions of STIX 2.1 7.2.1.4, from ``data/tlp1.json``."""
    source = resources.files("node") / "data" / "tlp1.json"
    definitions: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    return definitions


def tlp_marking_definitions() -> list[dict[str, Any]]:
    """All nine TLP marking-definition objects: the five TLP 2.0 ones, then the four TLP 1.0.

    A fresh list of fresh dicts on every call, so callers may modify what they get.  Used to
    send a partner the definition of a marking our objects reference when the store lacks it.
    """
    return _tlp2_definitions() + _tlp1_definitions()
