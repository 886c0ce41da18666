"""Fast, table-driven validation of STIX 2.1 objects before they are stored.

Every object posted to the server, and every object the CLI publishes, passes
through :func:`object_problem`.  ``stix2.parse`` builds a full Python object
per input and manages about a thousand objects a second; this module checks
the structural rules of the standard with dict look-ups and a few compiled
regular expressions (tens of thousands of objects a second), so validation
does not dominate a bulk load.

The rules come from the STIX 2.1 OASIS Standard (sections 2-7): type and
identifier syntax, ``spec_version``, required properties per type, timestamp
syntax and ordering, reference syntax and target types, list and dictionary
shapes, property names, granular-marking selectors, and the cross-property
constraints of each type.  Deliberately *not* checked, because they need a
parser or a registry and are not needed to store and serve content:
open-vocabulary values, hash value formats,
the inside of predefined extensions and embedded observables, and the
properties of custom (unknown) object types beyond the common ones.  The
pattern of an indicator whose ``pattern_type`` is ``stix`` is checked by the
reference parser (:mod:`node.patterns`).

A problem is reported as one short sentence that names the property and shows
the offending value (truncated), because the server hands it to the client.
"""

from __future__ import annotations

import functools
import json
import re
import reprlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from node.timestamps import to_micros

__all__ = [
    "STIX_TYPES",
    "object_problem",
    "validate_all",
    "version_key",
    "version_micros",
    "version_stamp",
]

# A value check returns None or a phrase about the value ("must be a string,
# got 5"); the caller puts the property name in front.  Checks never build the
# name themselves, so a valid value costs no string formatting.
Check = Callable[[object], str | None]
# A constraint looks at the whole object once every property passed its check.
Constraint = Callable[[dict[str, Any]], str | None]

SPEC_VERSION: Final = "2.1"
_SHOW_CHARS: Final = 60

# STIX 2.1 2.9: "<type>--<UUID>", the UUID in canonical 8-4-4-4-12 form with the
# RFC 4122 variant (nibble 8, 9, a or b), any version, hex digits in either case
# in references.  An object's own ``id`` must be in lower case (``_id_problem``):
# RFC 4122 (section 3) writes UUIDs so and reads either case as the same UUID,
# and the store compares ids exactly, so an upper-case spelling would store a
# second object under one UUID (beside ours, past the creator rule and the
# concealment of what a partner may not see).
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)
_UUID_LENGTH: Final = 36
_SEPARATOR: Final = "--"
_MIN_IDENTIFIER_LENGTH: Final = 3 + len(_SEPARATOR) + _UUID_LENGTH
# A type name has at most 250 characters (STIX 2.1 section 2.9, ``_TYPE_NAME``):
# a longer string is no identifier, and is never kept in ``_type_of_identifier``'s cache.
_MAX_IDENTIFIER_LENGTH: Final = 250 + len(_SEPARATOR) + _UUID_LENGTH
# STIX 2.1 3.1 / 11.1: a-z, 0-9 and '-', 3-250 characters.  The stix2 library
# and the OASIS JSON schemas also require a leading letter; none may end in '-'.
_TYPE_NAME: Final = re.compile(r"[a-z][a-z0-9-]{1,248}[a-z0-9]")
# STIX 2.1 3.1 / 11.2: a-z, 0-9 and '_', 3-250 characters, leading letter.
_PROPERTY_NAME: Final = re.compile(r"[a-z][a-z0-9_]{2,249}")
# STIX 2.1 2.7: dictionary keys are 1-250 of a-z, A-Z, 0-9, '-' and '_'.
_DICTIONARY_KEY: Final = re.compile(r"[a-zA-Z0-9_-]{1,250}")
# STIX 2.1 5.1: relationship types are limited to a-z, 0-9 and '-'.
_RELATIONSHIP_TYPE: Final = re.compile(r"[a-z0-9-]{1,250}")
# A list step in a granular-marking selector, e.g. "[0]" (7.2.3.1).
_LIST_INDEX: Final = re.compile(r"\[([0-9]{1,9})\]")
# STIX 2.1 2.3 / 2.10: binary is base64 (RFC 4648), hex is whole octets.
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
# Timestamps that are valid whatever the year: ASCII digits, no leap second,
# no February 29th.  Matching them is ~8x cheaper than node.timestamps.to_micros,
# which stays the authority for every other string (leap days, invalid ones).
_EASY_TIMESTAMP: Final = re.compile(
    r"(?!0000)[0-9]{4}-"
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"  # any month: days 01-28
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"  # not February: 29 and 30
    r"|(?:0[13578]|1[02])-31)"  # the 31-day months
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?Z"
)

_SDO_TYPES: Final = frozenset(
    [
        "attack-pattern",
        "campaign",
        "course-of-action",
        "grouping",
        "identity",
        "incident",
        "indicator",
        "infrastructure",
        "intrusion-set",
        "location",
        "malware",
        "malware-analysis",
        "note",
        "observed-data",
        "opinion",
        "report",
        "threat-actor",
        "tool",
        "vulnerability",
    ]
)
_SRO_TYPES: Final = frozenset({"relationship", "sighting"})
_META_TYPES: Final = frozenset({"marking-definition", "language-content", "extension-definition"})
_SCO_TYPES: Final = frozenset(
    [
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    ]
)
_KNOWN_TYPES: Final = _SDO_TYPES | _SRO_TYPES | _META_TYPES | _SCO_TYPES
STIX_TYPES: Final = _KNOWN_TYPES  # every object type STIX 2.1 defines
# spec_version is required on all but SCOs (STIX 2.1 3.2, 6.1).
_SPEC_VERSION_REQUIRED: Final = _SDO_TYPES | _SRO_TYPES | _META_TYPES
# Relationships connect SDOs and SCOs (5.1); a sighting is of an SDO (5.2);
# malware analysis results are SCOs (4.12).
_NOT_RELATIONSHIP_ENDPOINT: Final = _SRO_TYPES | _META_TYPES | {"bundle"}
_NOT_SDO: Final = _SCO_TYPES | _NOT_RELATIONSHIP_ENDPOINT
_NOT_SCO: Final = _SDO_TYPES | _NOT_RELATIONSHIP_ENDPOINT

# STIX 2.1 7.2.1.4: the only TLP 1.0 marking definitions that may exist.
_TLP_IDS: Final = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
_TLP_ID_SET: Final = frozenset(_TLP_IDS.values())
_TLP_CREATED: Final = to_micros("2017-01-20T00:00:00.000Z")
_OPINIONS: Final = ("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")
_EXTENSION_TYPES: Final = (
    "new-sdo",
    "new-sco",
    "new-sro",
    "property-extension",
    "toplevel-property-extension",
)
_ENCRYPTION_ALGORITHMS: Final = ("AES-256-GCM", "ChaCha20-Poly1305", "mime-type-indicated")
_MAX_OBSERVED: Final = 999_999_999


# --------------------------------------------------------------------------
# Rendering reasons


def _make_repr() -> reprlib.Repr:
    """A reprlib configuration that keeps reasons short whatever the input size."""
    short = reprlib.Repr()
    short.maxlevel = 2
    short.maxstring = short.maxother = _SHOW_CHARS
    short.maxlist = short.maxdict = short.maxtuple = 4
    return short


_REPR: Final = _make_repr()


def _show(value: object) -> str:
    """repr() of ``value`` cut to about 60 characters (strings keep their start)."""
    if isinstance(value, str):
        if len(value) <= _SHOW_CHARS:
            return repr(value)
        return repr(value[:_SHOW_CHARS]) + "..."
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits() cannot be printed
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 2 * _SHOW_CHARS else text[: 2 * _SHOW_CHARS] + "..."


def _choices(values: Iterable[str]) -> str:
    """'a', 'b' or 'c' -- for reasons that list the accepted values."""
    quoted = [repr(value) for value in sorted(values)]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _about(subject: str, phrase: str) -> str:
    """Join a subject and a check's phrase: "'labels'" + "[2] must be a string"."""
    return subject + phrase if phrase[0] in ".[" else f"{subject} {phrase}"


def _identifier_type(value: object) -> str | None:
    """The type part of a well-formed '<type>--<UUID>' identifier, else None.

    Slicing the fixed-length UUID off the end avoids the backtracking a single
    regular expression needs to find the '--' inside a hyphenated type.
    """
    if not isinstance(value, str) or not (
        _MIN_IDENTIFIER_LENGTH <= len(value) <= _MAX_IDENTIFIER_LENGTH
    ):
        return None
    return _type_of_identifier(value)


@functools.lru_cache(maxsize=4096)
def _type_of_identifier(value: str) -> str | None:
    """``_identifier_type`` of a string, remembered: the identifiers an envelope names
    again and again (its authors, its marking definitions) are checked once."""
    split = len(value) - _UUID_LENGTH
    if value[split - 2 : split] != _SEPARATOR or _UUID.fullmatch(value, split) is None:
        return None
    prefix = value[: split - 2]
    if prefix in _KNOWN_TYPES or _TYPE_NAME.fullmatch(prefix) is not None:
        return prefix
    return None


# --------------------------------------------------------------------------
# Value checks


def _accept(value: object) -> str | None:
    """For properties checked before the property loop (type, id, spec_version)."""
    return None


def _string(value: object) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_show(value)}"


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {_show(value)}"


def _object(value: object) -> str | None:
    return None if isinstance(value, dict) else f"must be a JSON object, got {_show(value)}"


def _base64(value: object) -> str | None:
    if isinstance(value, str) and _BASE64.fullmatch(value) is not None:
        return None
    return f"must be a base64 string, got {_show(value)}"


def _hex(value: object) -> str | None:
    if isinstance(value, str) and _HEX.fullmatch(value) is not None:
        return None
    return f"must be a string of hex octets, got {_show(value)}"


def _relationship_type(value: object) -> str | None:
    if isinstance(value, str) and _RELATIONSHIP_TYPE.fullmatch(value) is not None:
        return None
    return f"must be 1-250 characters of a-z, 0-9 and '-', got {_show(value)}"


def _timestamp(value: object) -> str | None:
    if isinstance(value, str):
        if _EASY_TIMESTAMP.fullmatch(value) is not None:
            return None
        # The ASCII and trailing-"Z" guards close two gaps of the regex in
        # node.timestamps: \d matches non-ASCII digits and $ matches before "\n".
        if value.isascii() and value.endswith("Z"):
            try:
                to_micros(value)
            except ValueError:
                pass
            else:
                return None
    return f"is not an RFC 3339 UTC timestamp: {_show(value)}"


def _integer(low: int | None = None, high: int | None = None) -> Check:
    """An integer (not a bool, not a float) within [low, high]."""

    def check(value: object) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {_show(value)}"
        if (low is not None and value < low) or (high is not None and value > high):
            upper = "" if high is None else f" and at most {high}"
            return f"must be at least {low}{upper}, got {_show(value)}"
        return None

    return check


def _number(low: float, high: float) -> Check:
    """A JSON number within [low, high]; NaN fails the comparison."""

    def check(value: object) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"must be a number, got {_show(value)}"
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {_show(value)}"
        return None

    return check


def _enum(allowed: Iterable[str]) -> Check:
    values = frozenset(allowed)

    def check(value: object) -> str | None:
        if isinstance(value, str) and value in values:
            return None
        return f"must be {_choices(values)}, got {_show(value)}"

    return check


def _list_of(item: Check) -> Check:
    """A non-empty list whose items pass ``item`` (STIX 2.1 2.8 forbids empty lists)."""

    def check(value: object) -> str | None:
        if not isinstance(value, list):
            return f"must be a list, got {_show(value)}"
        if not value:
            return "must not be an empty list (omit the property instead)"
        for index, entry in enumerate(value):
            problem = item(entry)
            if problem is not None:
                return _about(f"[{index}]", problem)
        return None

    return check


def _ref(allowed: Iterable[str] = (), forbidden: Iterable[str] = ()) -> Check:
    """An identifier, optionally restricted to some target types or excluding some."""
    allowed_types = frozenset(allowed)
    forbidden_types = frozenset(forbidden)

    def check(value: object) -> str | None:
        target = _identifier_type(value)
        if target is None:
            return f"must be an identifier '<type>--<UUID>', got {_show(value)}"
        if allowed_types and target not in allowed_types:
            return f"must reference {_choices(allowed_types)}, got {_show(value)}"
        if target in forbidden_types:
            return f"cannot reference a {target!r} object: {_show(value)}"
        return None

    return check


def _refs(allowed: Iterable[str] = (), forbidden: Iterable[str] = ()) -> Check:
    return _list_of(_ref(allowed, forbidden))


def _dictionary(entry_check: Check | None = None) -> Check:
    """A non-empty JSON object with STIX dictionary keys, values optionally checked."""

    def check(value: object) -> str | None:
        if not isinstance(value, dict):
            return f"must be a JSON object, got {_show(value)}"
        if not value:
            return "must not be an empty object (omit the property instead)"
        for key, entry in value.items():
            if not isinstance(key, str) or _DICTIONARY_KEY.fullmatch(key) is None:
                return f"has an invalid dictionary key {_show(key)}"
            if entry_check is not None:
                problem = entry_check(entry)
                if problem is not None:
                    return _about(f"[{key!r}]", problem)
        return None

    return check


def _extensions(value: object) -> str | None:
    """Extension names (predefined, or extension-definition ids) mapped to objects."""
    if not isinstance(value, dict) or not value:
        return f"must be a non-empty JSON object, got {_show(value)}"
    for key, entry in value.items():
        if not isinstance(key, str) or _DICTIONARY_KEY.fullmatch(key) is None:
            return f"has an invalid extension name {_show(key)}"
        if key.startswith("extension-definition--") and _identifier_type(key) is None:
            return f"has a key that is not an extension-definition id: {_show(key)}"
        if not isinstance(entry, dict):
            return f"[{key!r}] must be a JSON object, got {_show(entry)}"
    return None


_STRINGS: Final = _list_of(_string)
_ANY_REF: Final = _ref()
_ANY_REFS: Final = _refs()
_COUNT: Final = _integer(0)
_HASHES: Final = _dictionary(_string)
_DICTIONARY: Final = _dictionary()
_MARKING_REF: Final = _ref({"marking-definition"})


# --------------------------------------------------------------------------
# Embedded types (the items of some list properties)


def _fields_problem(value: dict[str, Any], fields: Mapping[str, Check]) -> str | None:
    for key, check in fields.items():
        if key in value:
            problem = check(value[key])
            if problem is not None:
                return _about(f".{key}", problem)
    return None


def _external_reference(value: object) -> str | None:
    """STIX 2.1 2.5: source_name plus at least one of description, url, external_id."""
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_show(value)}"
    if "source_name" not in value:
        return "is missing required property 'source_name'"
    if "description" not in value and "url" not in value and "external_id" not in value:
        return "needs at least one of 'description', 'external_id' or 'url'"
    return _fields_problem(value, _EXTERNAL_REFERENCE_FIELDS)


def _kill_chain_phase(value: object) -> str | None:
    """STIX 2.1 2.6: kill_chain_name and phase_name, both strings."""
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_show(value)}"
    for key in ("kill_chain_name", "phase_name"):
        if key not in value:
            return f"is missing required property {key!r}"
    return _fields_problem(value, _KILL_CHAIN_PHASE_FIELDS)


def _granular_marking(value: object) -> str | None:
    """STIX 2.1 7.2.3: selectors plus exactly one of marking_ref and lang."""
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_show(value)}"
    if "selectors" not in value:
        return "is missing required property 'selectors'"
    if ("marking_ref" in value) == ("lang" in value):
        return "needs exactly one of 'marking_ref' and 'lang'"
    return _fields_problem(value, _GRANULAR_MARKING_FIELDS)


def _email_mime_part(value: object) -> str | None:
    """STIX 2.1 6.6.2: a MIME part carries body or body_raw_ref."""
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_show(value)}"
    if "body" not in value and "body_raw_ref" not in value:
        return "needs 'body' or 'body_raw_ref'"
    return _fields_problem(value, _MIME_PART_FIELDS)


_EXTERNAL_REFERENCE_FIELDS: Final[dict[str, Check]] = {
    "source_name": _string,
    "description": _string,
    "url": _string,
    "external_id": _string,
    "hashes": _HASHES,
}
_KILL_CHAIN_PHASE_FIELDS: Final[dict[str, Check]] = {
    "kill_chain_name": _string,
    "phase_name": _string,
}
_GRANULAR_MARKING_FIELDS: Final[dict[str, Check]] = {
    "selectors": _STRINGS,
    "marking_ref": _MARKING_REF,
    "lang": _string,
}
_MIME_PART_FIELDS: Final[dict[str, Check]] = {
    "body": _string,
    "body_raw_ref": _ref({"artifact", "file"}),
    "content_type": _string,
}
_KILL_CHAIN_PHASES: Final = _list_of(_kill_chain_phase)


# --------------------------------------------------------------------------
# Cross-property constraints


def _later(earlier: str, later: str) -> int:
    """Sign of ``later - earlier`` for two valid timestamps.

    Timestamps of the same length share one layout, so text order is time
    order; otherwise compare integer microseconds.
    """
    if len(earlier) == len(later):
        return (later > earlier) - (later < earlier)
    return to_micros(later) - to_micros(earlier)


def _ordered(earlier: str, later: str, *, strictly: bool = False) -> Constraint:
    """``later`` must not precede ``earlier`` (must follow it, when strictly)."""
    relation = "later than" if strictly else "later than or equal to"

    def check(obj: dict[str, Any]) -> str | None:
        first, second = obj.get(earlier), obj.get(later)
        if first is None or second is None:
            return None
        difference = _later(first, second)
        if difference > 0 or (difference == 0 and not strictly):
            return None
        return f"{later!r} {_show(second)} must be {relation} {earlier!r} {_show(first)}"

    return check


def _at_least_one(type_name: str, names: Iterable[str]) -> Constraint:
    options = tuple(names)
    wanted = _choices(options) if len(options) <= 3 else "one of its own properties"

    def check(obj: dict[str, Any]) -> str | None:
        for option in options:
            if option in obj:
                return None
        return f"a {type_name!r} object needs at least {wanted}"

    return check


def _exclusive(first: str, second: str) -> Constraint:
    def check(obj: dict[str, Any]) -> str | None:
        if first in obj and second in obj:
            return f"{first!r} and {second!r} must not both be present"
        return None

    return check


def _requires(present: str, needed: str) -> Constraint:
    def check(obj: dict[str, Any]) -> str | None:
        if present in obj and needed not in obj:
            return f"{needed!r} is required when {present!r} is present"
        return None

    return check


def _selects(obj: dict[str, Any], selector: str) -> bool:
    """Whether a granular-marking selector ("a.[0].b") names something in obj."""
    node: object = obj
    for step in selector.split("."):
        index = _LIST_INDEX.fullmatch(step)
        if index is not None:
            position = int(index.group(1))
            if not isinstance(node, list) or position >= len(node):
                return False
            node = node[position]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return False
    return True


def _granular_selectors(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 7.2.3.1: each selector must refer to content present in the object."""
    for position, marking in enumerate(obj.get("granular_markings", ())):
        for selector in marking["selectors"]:
            if not _selects(obj, selector):
                return (
                    f"'granular_markings'[{position}] selector {_show(selector)} "
                    "does not match anything in the object"
                )
    return None


def _malware_family_name(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 4.11: a malware family must be named."""
    if obj.get("is_family") is True and "name" not in obj:
        return "missing required property 'name' for type 'malware' (is_family is true)"
    return None


def _location_given(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 4.10: region, country, or latitude with longitude; precision needs both."""
    has_latitude, has_longitude = "latitude" in obj, "longitude" in obj
    if has_latitude != has_longitude:
        return "'latitude' and 'longitude' must be given together"
    if "precision" in obj and not has_latitude:
        return "'precision' requires 'latitude' and 'longitude'"
    if has_latitude or "region" in obj or "country" in obj:
        return None
    return "a 'location' needs 'region', 'country', or 'latitude' and 'longitude'"


def _marking_definition(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 7.2.1: definition_type with definition, or extensions (TLP 2.0 style).

    TLP 1.0 markings must be the four standard objects (7.2.1.4): id and created.
    """
    kind, definition = obj.get("definition_type"), obj.get("definition")
    if kind is None and definition is None:
        if "extensions" in obj:
            return None
        return "a marking-definition needs 'definition_type' and 'definition', or 'extensions'"
    if kind is None or definition is None:
        return "'definition_type' and 'definition' must be given together"
    if kind == "statement" and not isinstance(definition.get("statement"), str):
        return f"a statement marking needs a string 'statement', got {_show(definition)}"
    if kind == "tlp" and obj["id"] in _TLP_ID_SET:
        colour = definition.get("tlp")
        if not isinstance(colour, str) or _TLP_IDS.get(colour) != obj["id"]:
            return f"TLP marking {_show(colour)} must use its standard id, not {obj['id']!r}"
        if to_micros(obj["created"]) != _TLP_CREATED:
            return f"TLP marking {colour!r} must have the standard 'created' 2017-01-20T00:00:00Z"
    # A "tlp" definition under an id of its own (STIX 2.1 7.2.1.4 says not to make one)
    # is stored: refused, what it marks would be stored and judged as if unmarked; held,
    # the policy judges it at the level it claims (node.tlp.declared_level).
    return None


def _email_body(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 6.6: body only on single-part, body_multipart only on multipart."""
    multipart = obj.get("is_multipart")
    if multipart is True and "body" in obj:
        return "'body' must not be present when 'is_multipart' is true"
    if multipart is False and "body_multipart" in obj:
        return "'body_multipart' must not be present when 'is_multipart' is false"
    return None


def _stix_pattern(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 4.7: a pattern of type ``stix`` is in the STIX patterning language (9)."""
    pattern, version = obj["pattern"], obj.get("pattern_version", "2.1")
    if obj["pattern_type"] != "stix" or not isinstance(pattern, str):
        return None
    from node.patterns import pattern_problem

    problem = pattern_problem(pattern, version if isinstance(version, str) else "2.1")
    return None if problem is None else f"'pattern' is not a valid STIX pattern: {problem}"


def _ended_traffic(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 6.12: "If the end property is provided, [is_active] MUST be false"."""
    if "end" in obj and obj.get("is_active") is not False:
        return "'is_active' must be false when 'end' is present"
    return None


# --------------------------------------------------------------------------
# Per-type tables


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one object type is checked."""

    checks: Mapping[str, Check]  # every known property -> its value check
    required: tuple[str, ...]  # beyond type and id, which every object needs
    constraints: tuple[Constraint, ...]


# A table row: (type-specific checks, type-specific required properties, constraints).
_Row = tuple[dict[str, Check], tuple[str, ...], tuple[Constraint, ...]]

_COMMON: Final[dict[str, Check]] = {
    "type": _accept,
    "id": _accept,
    "spec_version": _accept,
    "created": _timestamp,
    "modified": _timestamp,
    "created_by_ref": _ref({"identity"}),
    "revoked": _boolean,
    "labels": _STRINGS,
    "confidence": _integer(0, 100),
    "lang": _string,
    "external_references": _list_of(_external_reference),
    "object_marking_refs": _refs({"marking-definition"}),
    "granular_markings": _list_of(_granular_marking),
    "extensions": _extensions,
    "defanged": _boolean,
}
_SDO_REQUIRED: Final = ("spec_version", "created", "modified")
_CREATED_MODIFIED: Final = _ordered("created", "modified")
# Run on every object, whatever its type.
_GENERIC_CONSTRAINTS: Final = (_CREATED_MODIFIED, _granular_selectors)
_SEEN: Final = _ordered("first_seen", "last_seen")

_NAMED: Final[dict[str, Check]] = {"name": _string, "description": _string}
_ALIASED: Final[dict[str, Check]] = {**_NAMED, "aliases": _STRINGS}
_SEEN_TIMES: Final[dict[str, Check]] = {"first_seen": _timestamp, "last_seen": _timestamp}
_PHASED: Final[dict[str, Check]] = {"kill_chain_phases": _KILL_CHAIN_PHASES}
_REFERRING: Final[dict[str, Check]] = {"object_refs": _ANY_REFS}
_SOFTWARE_REF: Final = _ref({"software"})
_ADDRESS_REF: Final = _ref({"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"})
_EMAIL_ADDR_REF: Final = _ref({"email-addr"})
_EMAIL_ADDR_REFS: Final = _refs({"email-addr"})
_USER_REF: Final = _ref({"user-account"})
_ARTIFACT_REF: Final = _ref({"artifact"})
_FILE_TIMES: Final[dict[str, Check]] = dict.fromkeys(("ctime", "mtime", "atime"), _timestamp)
_IP_ADDRESS: Final[dict[str, Check]] = {
    "value": _string,
    "resolves_to_refs": _refs({"mac-addr"}),
    "belongs_to_refs": _refs({"autonomous-system"}),
}

_SDO_SRO_TABLE: Final[dict[str, _Row]] = {
    "attack-pattern": ({**_ALIASED, **_PHASED}, ("name",), ()),
    "campaign": ({**_ALIASED, **_SEEN_TIMES, "objective": _string}, ("name",), (_SEEN,)),
    "course-of-action": (_NAMED, ("name",), ()),
    "grouping": ({**_NAMED, **_REFERRING, "context": _string}, ("context", "object_refs"), ()),
    "identity": (
        {
            **_NAMED,
            "roles": _STRINGS,
            "identity_class": _string,
            "sectors": _STRINGS,
            "contact_information": _string,
        },
        ("name",),
        (),
    ),
    "incident": ({**_NAMED, **_PHASED}, ("name",), ()),
    "indicator": (
        {
            **_NAMED,
            **_PHASED,
            "indicator_types": _STRINGS,
            "pattern": _string,
            "pattern_type": _string,
            "pattern_version": _string,
            "valid_from": _timestamp,
            "valid_until": _timestamp,
        },
        ("pattern", "pattern_type", "valid_from"),
        (_ordered("valid_from", "valid_until", strictly=True), _stix_pattern),
    ),
    "infrastructure": (
        {**_ALIASED, **_SEEN_TIMES, **_PHASED, "infrastructure_types": _STRINGS},
        ("name",),
        (_SEEN,),
    ),
    "intrusion-set": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            "goals": _STRINGS,
            "resource_level": _string,
            "primary_motivation": _string,
            "secondary_motivations": _STRINGS,
        },
        ("name",),
        (_SEEN,),
    ),
    "location": (
        {
            **_NAMED,
            "latitude": _number(-90.0, 90.0),
            "longitude": _number(-180.0, 180.0),
            "precision": _number(0.0, float("inf")),
            "region": _string,
            "country": _string,
            "administrative_area": _string,
            "city": _string,
            "street_address": _string,
            "postal_code": _string,
        },
        (),
        (_location_given,),
    ),
    "malware": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            **_PHASED,
            "malware_types": _STRINGS,
            "is_family": _boolean,
            "operating_system_refs": _refs({"software"}),
            "architecture_execution_envs": _STRINGS,
            "implementation_languages": _STRINGS,
            "capabilities": _STRINGS,
            "sample_refs": _refs({"file", "artifact"}),
        },
        ("is_family",),
        (_SEEN, _malware_family_name),
    ),
    "malware-analysis": (
        {
            "product": _string,
            "version": _string,
            "host_vm_ref": _SOFTWARE_REF,
            "operating_system_ref": _SOFTWARE_REF,
            "installed_software_refs": _refs({"software"}),
            "configuration_version": _string,
            "modules": _STRINGS,
            "analysis_engine_version": _string,
            "analysis_definition_version": _string,
            "submitted": _timestamp,
            "analysis_started": _timestamp,
            "analysis_ended": _timestamp,
            "result_name": _string,
            "result": _string,
            "analysis_sco_refs": _refs(forbidden=_NOT_SCO),
            "sample_ref": _ref(forbidden=_NOT_SCO),
        },
        ("product",),
        (_at_least_one("malware-analysis", ("result", "analysis_sco_refs")),),
    ),
    "note": (
        {**_REFERRING, "abstract": _string, "content": _string, "authors": _STRINGS},
        ("content", "object_refs"),
        (),
    ),
    "observed-data": (
        {
            **_REFERRING,
            "first_observed": _timestamp,
            "last_observed": _timestamp,
            "number_observed": _integer(1, _MAX_OBSERVED),
            "objects": _dictionary(_object),
        },
        ("first_observed", "last_observed", "number_observed"),
        (
            _at_least_one("observed-data", ("objects", "object_refs")),
            _exclusive("objects", "object_refs"),
            _ordered("first_observed", "last_observed"),
        ),
    ),
    "opinion": (
        {**_REFERRING, "explanation": _string, "authors": _STRINGS, "opinion": _enum(_OPINIONS)},
        ("opinion", "object_refs"),
        (),
    ),
    "report": (
        {**_NAMED, **_REFERRING, "report_types": _STRINGS, "published": _timestamp},
        ("name", "published", "object_refs"),
        (),
    ),
    "threat-actor": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            "threat_actor_types": _STRINGS,
            "roles": _STRINGS,
            "goals": _STRINGS,
            "sophistication": _string,
            "resource_level": _string,
            "primary_motivation": _string,
            "secondary_motivations": _STRINGS,
            "personal_motivations": _STRINGS,
        },
        ("name",),
        (_SEEN,),
    ),
    "tool": (
        {**_ALIASED, **_PHASED, "tool_types": _STRINGS, "tool_version": _string},
        ("name",),
        (),
    ),
    "vulnerability": (_NAMED, ("name",), ()),
    "relationship": (
        {
            "relationship_type": _relationship_type,
            "description": _string,
            "source_ref": _ref(forbidden=_NOT_RELATIONSHIP_ENDPOINT),
            "target_ref": _ref(forbidden=_NOT_RELATIONSHIP_ENDPOINT),
            "start_time": _timestamp,
            "stop_time": _timestamp,
        },
        ("relationship_type", "source_ref", "target_ref"),
        (_ordered("start_time", "stop_time", strictly=True),),
    ),
    "sighting": (
        {
            **_SEEN_TIMES,
            "description": _string,
            "count": _integer(0, _MAX_OBSERVED),
            "sighting_of_ref": _ref(forbidden=_NOT_SDO),
            "observed_data_refs": _refs({"observed-data"}),
            "where_sighted_refs": _refs({"identity", "location"}),
            "summary": _boolean,
        },
        ("sighting_of_ref",),
        (_SEEN,),
    ),
}

_META_TABLE: Final[dict[str, _Row]] = {
    "marking-definition": (
        {"name": _string, "definition_type": _string, "definition": _object},
        ("spec_version", "created"),
        (_marking_definition,),
    ),
    "language-content": (
        {
            "object_ref": _ANY_REF,
            "object_modified": _timestamp,
            "contents": _dictionary(_DICTIONARY),
        },
        (*_SDO_REQUIRED, "object_ref", "contents"),
        (),
    ),
    "extension-definition": (
        {
            **_NAMED,
            "schema": _string,
            "version": _string,
            "extension_types": _list_of(_enum(_EXTENSION_TYPES)),
            "extension_properties": _STRINGS,
        },
        (*_SDO_REQUIRED, "name", "schema", "version", "extension_types", "created_by_ref"),
        (),
    ),
}

_SCO_TABLE: Final[dict[str, _Row]] = {
    "artifact": (
        {
            "mime_type": _string,
            "payload_bin": _base64,
            "url": _string,
            "hashes": _HASHES,
            "encryption_algorithm": _enum(_ENCRYPTION_ALGORITHMS),
            "decryption_key": _string,
        },
        (),
        (
            _at_least_one("artifact", ("payload_bin", "url")),
            _exclusive("payload_bin", "url"),
            _requires("url", "hashes"),
        ),
    ),
    "autonomous-system": ({"number": _COUNT, "name": _string, "rir": _string}, ("number",), ()),
    "directory": (
        {
            **_FILE_TIMES,
            "path": _string,
            "path_enc": _string,
            "contains_refs": _refs({"file", "directory"}),
        },
        ("path",),
        (),
    ),
    "domain-name": (
        {"value": _string, "resolves_to_refs": _refs({"ipv4-addr", "ipv6-addr", "domain-name"})},
        ("value",),
        (),
    ),
    "email-addr": (
        {"value": _string, "display_name": _string, "belongs_to_ref": _USER_REF},
        ("value",),
        (),
    ),
    "email-message": (
        {
            "is_multipart": _boolean,
            "date": _timestamp,
            "content_type": _string,
            "from_ref": _EMAIL_ADDR_REF,
            "sender_ref": _EMAIL_ADDR_REF,
            "to_refs": _EMAIL_ADDR_REFS,
            "cc_refs": _EMAIL_ADDR_REFS,
            "bcc_refs": _EMAIL_ADDR_REFS,
            "message_id": _string,
            "subject": _string,
            "received_lines": _STRINGS,
            "additional_header_fields": _DICTIONARY,
            "body": _string,
            "body_multipart": _list_of(_email_mime_part),
            "raw_email_ref": _ARTIFACT_REF,
        },
        ("is_multipart",),
        (_email_body,),
    ),
    "file": (
        {
            **_FILE_TIMES,
            "hashes": _HASHES,
            "size": _COUNT,
            "name": _string,
            "name_enc": _string,
            "magic_number_hex": _hex,
            "mime_type": _string,
            "parent_directory_ref": _ref({"directory"}),
            "contains_refs": _refs(forbidden=_NOT_SCO),
            "content_ref": _ARTIFACT_REF,
        },
        (),
        (_at_least_one("file", ("hashes", "name")),),
    ),
    "ipv4-addr": (_IP_ADDRESS, ("value",), ()),
    "ipv6-addr": (_IP_ADDRESS, ("value",), ()),
    "mac-addr": ({"value": _string}, ("value",), ()),
    "mutex": ({"name": _string}, ("name",), ()),
    "network-traffic": (
        {
            "start": _timestamp,
            "end": _timestamp,
            "is_active": _boolean,
            "src_ref": _ADDRESS_REF,
            "dst_ref": _ADDRESS_REF,
            "src_port": _integer(0, 65535),
            "dst_port": _integer(0, 65535),
            "protocols": _STRINGS,
            "src_byte_count": _COUNT,
            "dst_byte_count": _COUNT,
            "src_packets": _COUNT,
            "dst_packets": _COUNT,
            "ipfix": _DICTIONARY,
            "src_payload_ref": _ARTIFACT_REF,
            "dst_payload_ref": _ARTIFACT_REF,
            "encapsulates_refs": _refs({"network-traffic"}),
            "encapsulated_by_ref": _ref({"network-traffic"}),
        },
        ("protocols",),
        (
            _at_least_one("network-traffic", ("src_ref", "dst_ref")),
            _ordered("start", "end"),
            _ended_traffic,
        ),
    ),
    "process": (
        {
            "is_hidden": _boolean,
            "pid": _integer(),
            "created_time": _timestamp,
            "cwd": _string,
            "command_line": _string,
            "environment_variables": _DICTIONARY,
            "opened_connection_refs": _refs({"network-traffic"}),
            "creator_user_ref": _USER_REF,
            "image_ref": _ref({"file"}),
            "parent_ref": _ref({"process"}),
            "child_refs": _refs({"process"}),
        },
        (),
        (),
    ),
    "software": (
        {
            "name": _string,
            "cpe": _string,
            "swid": _string,
            "languages": _STRINGS,
            "vendor": _string,
            "version": _string,
        },
        ("name",),
        (),
    ),
    "url": ({"value": _string}, ("value",), ()),
    "user-account": (
        {
            **dict.fromkeys(
                ("user_id", "credential", "account_login", "account_type", "display_name"),
                _string,
            ),
            **dict.fromkeys(
                ("is_service_account", "is_privileged", "can_escalate_privs", "is_disabled"),
                _boolean,
            ),
            **dict.fromkeys(
                (
                    "account_created",
                    "account_expires",
                    "credential_last_changed",
                    "account_first_login",
                    "account_last_login",
                ),
                _timestamp,
            ),
        },
        (),
        (),
    ),
    "windows-registry-key": (
        {
            "key": _string,
            "values": _list_of(_object),
            "modified_time": _timestamp,
            "creator_user_ref": _USER_REF,
            "number_of_subkeys": _COUNT,
        },
        (),
        (),
    ),
    "x509-certificate": (
        {
            "is_self_signed": _boolean,
            "hashes": _HASHES,
            "version": _string,
            "serial_number": _string,
            "signature_algorithm": _string,
            "issuer": _string,
            "validity_not_before": _timestamp,
            "validity_not_after": _timestamp,
            "subject": _string,
            "subject_public_key_algorithm": _string,
            "subject_public_key_modulus": _string,
            "subject_public_key_exponent": _integer(),
            "x509_v3_extensions": _object,
        },
        (),
        (),
    ),
}
# STIX 2.1 6.11, 6.16-6.18: "at least one of the properties defined below MUST
# be included" -- extensions count, the common SCO properties do not.
_NEEDS_OWN_PROPERTY: Final = frozenset(
    {"process", "user-account", "windows-registry-key", "x509-certificate"}
)


def _build_rule(type_name: str, base_required: tuple[str, ...], row: _Row) -> _Rule:
    """Merge a table row with the common properties and the category's requirements."""
    own, required, constraints = row
    if type_name in _NEEDS_OWN_PROPERTY:
        constraints = (*constraints, _at_least_one(type_name, (*own, "extensions")))
    return _Rule(
        checks={**_COMMON, **own},
        required=tuple(dict.fromkeys((*base_required, *required))),
        constraints=(*_GENERIC_CONSTRAINTS, *constraints),
    )


def _build_rules() -> dict[str, _Rule]:
    rules = {name: _build_rule(name, _SDO_REQUIRED, row) for name, row in _SDO_SRO_TABLE.items()}
    for table in (_META_TABLE, _SCO_TABLE):
        rules.update((name, _build_rule(name, (), row)) for name, row in table.items())
    return rules


_RULES: Final = _build_rules()
# Custom and future object types get the common properties only.
_GENERIC: Final = _Rule(checks=_COMMON, required=(), constraints=_GENERIC_CONSTRAINTS)


# --------------------------------------------------------------------------
# Public API


def _type_problem(obj: dict[str, Any]) -> str | None:
    if "type" not in obj:
        return "missing required property 'type'"
    value = obj["type"]
    if not isinstance(value, str):
        return f"'type' must be a string, got {_show(value)}"
    if value == "bundle":
        return "a bundle is not a STIX object: send the objects it contains"
    if value in _KNOWN_TYPES or _TYPE_NAME.fullmatch(value) is not None:
        return None
    return (
        "'type' must be 3-250 characters of a-z, 0-9 and '-', starting with a letter "
        f"and not ending with '-', got {_show(value)}"
    )


def _spec_version_problem(type_name: str, obj: dict[str, Any]) -> str | None:
    if "spec_version" not in obj:
        if type_name in _SPEC_VERSION_REQUIRED:
            return (
                f"missing required property 'spec_version' for type {type_name!r} "
                "(only STIX 2.1 objects are accepted)"
            )
        return None
    value = obj["spec_version"]
    if value == SPEC_VERSION:
        return None
    return f"'spec_version' must be '2.1' (only STIX 2.1 objects are accepted), got {_show(value)}"


def _id_problem(type_name: str, obj: dict[str, Any]) -> str | None:
    if "id" not in obj:
        return f"missing required property 'id' for type {type_name!r}"
    value = obj["id"]
    prefix = _identifier_type(value)
    if prefix is None:
        return f"'id' must be '{type_name}--<RFC 4122 UUID>', got {_show(value)}"
    if prefix != type_name:
        return f"id {_show(value)} does not match type {type_name!r}"
    if not value.islower():  # (its type part has letters, all lower case)
        return (f"'id' {_show(value)}: write the UUID's hex digits in lower case, as "
                "RFC 4122 section 3 does (identifiers are compared exactly here)")  # fmt: skip
    return None


def _properties_problem(checks: Mapping[str, Check], obj: dict[str, Any]) -> str | None:
    """Check every known property's value; name-check the unknown (custom) ones."""
    for key, value in obj.items():
        check = checks.get(key)
        if check is None:
            if not isinstance(key, str):
                return f"property names must be strings, got {_show(key)}"
            if _PROPERTY_NAME.fullmatch(key) is None:
                return (
                    f"property name {_show(key)} must be 3-250 characters of a-z, 0-9 "
                    "and '_', starting with a letter"
                )
            continue
        problem = check(value)
        if problem is not None:
            return _about(repr(key), problem)
    return None


def object_problem(obj: object) -> str | None:
    """Return None when obj is a valid STIX 2.1 object, else a short human-readable reason.

    Reasons look like "'created' is not an RFC 3339 UTC timestamp: 'yesterday'",
    "missing required property 'name' for type 'malware'" or
    "id 'indicator--...' does not match type 'malware'": the server passes them
    to the client as they are, so each names the property and the offending
    value.  Only the first problem found is reported.  Never raises, whatever
    JSON-like value it is given.
    """
    if not isinstance(obj, dict):
        return f"a STIX object must be a JSON object, got {type(obj).__name__} {_show(obj)}"
    problem = _type_problem(obj)
    if problem is not None:
        return problem
    type_name: str = obj["type"]
    problem = _spec_version_problem(type_name, obj) or _id_problem(type_name, obj)
    if problem is not None:
        return problem
    rule = _RULES.get(type_name, _GENERIC)
    for name in rule.required:
        if name not in obj:
            return f"missing required property {name!r} for type {type_name!r}"
    problem = _properties_problem(rule.checks, obj)
    if problem is not None:
        return problem
    for constraint in rule.constraints:
        problem = constraint(obj)
        if problem is not None:
            return problem
    if type_name in _SCO_TYPES:
        return _observable_problem(obj)
    return None


def _observable_problem(obj: dict[str, Any]) -> str | None:
    """An SCO's id names its value, and it has one version (STIX 2.1 sections 2.9 and
    6.1): see ``deterministic_id_problem`` and ``sco_version_problem``.  A revoked
    version (how this node records a recall, ``node.recall``) may carry ``modified``;
    a partner's is judged stricter at ingress (``node.sharing.ingress``)."""
    problem = deterministic_id_problem(obj)
    if problem is None and obj.get("revoked") is not True:
        problem = sco_version_problem(obj)
    return problem


# STIX 2.1 section 2.9: an SCO's deterministic id is the UUIDv5, in this namespace, of
# the JSON (RFC 8785 canonical form) of its ID contributing properties.  The types
# whose contributing property is one string or integer, where that form is plain JSON.
SCO_ID_NAMESPACE: Final = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_ONE_CONTRIBUTING_PROPERTY: Final = {
    "ipv4-addr": "value", "ipv6-addr": "value", "mac-addr": "value", "domain-name": "value",
    "url": "value", "email-addr": "value", "mutex": "name", "directory": "path",
    "autonomous-system": "number",
}  # fmt: skip


def deterministic_id_problem(obj: Mapping[str, Any]) -> str | None:
    """Why an SCO's UUIDv5 id is not the one its value gives (STIX 2.1 section 2.9),
    or None (for other objects, and for SCOs with a UUIDv4 id, which STIX allows).

    A deterministic id names a value: a partner that posts ``ipv4-addr--<v5 of
    203.0.113.7>`` with another value would hold, under the id our own publication
    of that address will have, content of its own choosing.  Only the types with one
    contributing property are checked: their canonical form is plain JSON.
    """
    name = _ONE_CONTRIBUTING_PROPERTY.get(obj.get("type", ""))
    object_id = obj.get("id")
    if name is None or not isinstance(object_id, str) or name not in obj:
        return None
    given = object_id.partition("--")[2]
    if len(given) != 36 or given[14] != "5":
        return None
    value = obj[name]
    canonical = json.dumps({name: value}, ensure_ascii=False, separators=(",", ":"))
    expected = f"{obj['type']}--{uuid.uuid5(SCO_ID_NAMESPACE, canonical)}"
    if expected == object_id:
        return None
    return (
        f"id {object_id} is a STIX 2.1 deterministic id (UUIDv5, section 2.9), but not the "
        f"one of {name} {_show(value)}: that is {expected}"
    )


def is_cyber_observable(type_name: str) -> bool:
    """Whether ``type_name`` is one of STIX 2.1's cyber-observable types (section 6)."""
    return type_name in _SCO_TYPES


def sco_version_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a cyber-observable carries a version it should not have, or None.

    STIX 2.1 gives SCOs no ``created`` or ``modified`` (section 6.1: their common
    properties): an SCO has one version.  The store keys versions by ``modified``, so
    a partner's SCO with one (``"modified": "2099-..."``) would be a newer version of
    the address our own publication will carry, served in its place.
    """
    if obj.get("type") not in _SCO_TYPES:
        return None
    present = [name for name in _VERSION_PROPERTIES if name in obj]
    if not present:
        return None
    return (
        f"a {obj['type']} has no {' or '.join(present)} (STIX 2.1 section 6.1: a "
        "cyber-observable has one version, named by its id)"
    )


# STIX 2.1 section 3.6: the properties a version is told apart by, the first set one deciding.
_VERSION_PROPERTIES: Final = ("modified", "created")


def version_stamp(obj: Any) -> str | None:
    """The version of a STIX object: its ``modified``, else its ``created``, else None.

    STIX 2.1 (section 3.6) tells versions of one object apart by ``modified``;
    objects without it (marking definitions) have one version, at ``created``,
    and SCOs without either have one version.  TAXII 2.1 (3.4.2) orders
    match[version] by the same property.  Safe on unvalidated input (None
    unless the property is a non-empty string).
    """
    if not isinstance(obj, dict):
        return None
    for name in _VERSION_PROPERTIES:
        value = obj.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def version_micros(obj: dict[str, Any]) -> int | None:
    """The version the store keys an unvalidated object by, as microseconds since epoch.

    0 for an object with neither ``modified`` nor ``created`` (an SCO: one
    version); None when the property that decides (``modified``, else
    ``created``, as in ``version_stamp``) is set but is not a STIX timestamp,
    so that no stored version can match it.
    """
    value = next((obj[name] for name in _VERSION_PROPERTIES if obj.get(name)), None)
    if value is None:
        return 0
    try:
        return to_micros(value) if isinstance(value, str) else None
    except ValueError:
        return None


def version_key(obj: dict[str, Any]) -> int:
    """Microseconds since epoch of ``version_stamp(obj)``, 0 for an object without one.

    Assumes obj already passed object_problem.
    """
    stamp = version_stamp(obj)
    return to_micros(stamp) if stamp else 0


def validate_all(objs: Iterable[object]) -> tuple[list[dict], list[tuple[object, str]]]:
    """Split objs into (valid objects, [(invalid object, reason)]), each in input order.

    A batch (a TAXII envelope, a bundle file) can then store the good objects
    and report every bad one, rather than stopping at the first.
    """
    valid: list[dict] = []
    invalid: list[tuple[object, str]] = []
    for obj in objs:
        problem = object_problem(obj)
        if problem is None:
            valid.append(obj)  # type: ignore[arg-type]
        else:
            invalid.append((obj, problem))
    return valid, invalid
