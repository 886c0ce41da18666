"""Fast, table-driven validation of STIX 2.1 objects before they are stored.

Every object posted to the server, and every object the CLI publishes, passes
through :func:`object_problem`.  ``stix2.parse`` builds a full Python object
per input and runs at a few thousand objects a second; this module checks the
same structural rules with plain dict look-ups and a handful of compiled
regular expressions, so a bulk load of a large corpus is not dominated by
validation.

The rules come from the STIX 2.1 OASIS Standard (sections 2-7): identifier and
type syntax, ``spec_version``, required properties per type, timestamp syntax
and ordering, reference syntax and target types, list and dictionary shapes,
and a few cross-property constraints.  Deliberately *not* checked, because
they need a parser or a registry this node does not need to store content:
the STIX pattern grammar of indicators, open-vocabulary values, hash value
formats, granular-marking selector resolution, and the inside of predefined
extensions and of custom (unknown) object types beyond the common properties.

A problem is reported as one short sentence that names the property and, for
a bad value, shows it (truncated), so an API client can fix its input.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from node.timestamps import to_micros

__all__ = ["object_problem", "validate_all", "version_key"]

# A property check gets the property name and its value and returns a reason
# or None; a constraint looks at the whole object after every property passed.
Check = Callable[[str, object], str | None]
Constraint = Callable[[dict[str, Any]], str | None]

SPEC_VERSION: Final = "2.1"
_SHOW_CHARS: Final = 60

_UUID: Final = (
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)
# STIX 2.1 3.1 / 11.1: a-z, 0-9 and '-', 3-250 characters; the stix2 library
# and the OASIS JSON schemas also require a leading letter and no trailing '-'.
_TYPE_NAME: Final = re.compile(r"[a-z][a-z0-9-]{1,248}[a-z0-9]")
# "<type>--<UUID>" (2.9); the RFC 4122 variant nibble is 8, 9, a or b; any version.
_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9-]{1,248}[a-z0-9]--" + _UUID)
_UUID_LENGTH_WITH_SEPARATOR: Final = 38
# STIX 2.1 3.1 / 11.2: a-z, 0-9 and '_', 3-250 characters, leading letter.
_PROPERTY_NAME: Final = re.compile(r"[a-z][a-z0-9_]{2,249}")
# STIX 2.1 2.7: dictionary keys are 1-250 of a-z, A-Z, 0-9, '-' and '_'.
_DICTIONARY_KEY: Final = re.compile(r"[a-zA-Z0-9_-]{1,250}")

_SDO_TYPES: Final = frozenset(
    {
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
    }
)
_SRO_TYPES: Final = frozenset({"relationship", "sighting"})
_META_TYPES: Final = frozenset({"marking-definition", "language-content", "extension-definition"})
_SCO_TYPES: Final = frozenset(
    {
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
    }
)
# Relationships connect SDOs and SCOs (5.1); a sighting is of an SDO (5.2).
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
_OPINIONS: Final = ("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")
_EXTENSION_TYPES: Final = (
    "new-sdo",
    "new-sco",
    "new-sro",
    "property-extension",
    "toplevel-property-extension",
)
_MAX_OBSERVED: Final = 999_999_999


# --------------------------------------------------------------------------
# Rendering values in reasons


def _make_repr() -> reprlib.Repr:
    """A reprlib configuration that keeps reasons short whatever the input size."""
    short = reprlib.Repr()
    short.maxlevel = 2
    short.maxstring = _SHOW_CHARS
    short.maxother = _SHOW_CHARS
    short.maxlist = short.maxdict = short.maxtuple = 4
    return short


_REPR: Final = _make_repr()


def _show(value: object) -> str:
    """repr() of ``value`` cut to about 60 characters (strings keep their start)."""
    if isinstance(value, str):
        if len(value) <= _SHOW_CHARS:
            return repr(value)
        return repr(value[:_SHOW_CHARS]) + "..."
    text = _REPR.repr(value)
    return text if len(text) <= 2 * _SHOW_CHARS else text[: 2 * _SHOW_CHARS] + "..."


def _choices(values: Iterable[str]) -> str:
    """'a', 'b' or 'c' -- for reasons that list the accepted values."""
    quoted = [repr(value) for value in sorted(values)]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# --------------------------------------------------------------------------
# Property checks (each: name, value -> reason or None)


def _accept(name: str, value: object) -> str | None:
    """For properties checked before the property loop (type, id, spec_version)."""
    return None


def _string(name: str, value: object) -> str | None:
    if isinstance(value, str):
        return None
    return f"{name!r} must be a string, got {_show(value)}"


def _boolean(name: str, value: object) -> str | None:
    if isinstance(value, bool):
        return None
    return f"{name!r} must be true or false, got {_show(value)}"


def _timestamp(name: str, value: object) -> str | None:
    # The ASCII and trailing-"Z" guards close two gaps of the shared regex in
    # node.timestamps: \d matches non-ASCII digits and $ matches before "\n".
    if isinstance(value, str) and value.isascii() and value.endswith("Z"):
        try:
            to_micros(value)
        except ValueError:
            pass
        else:
            return None
    return f"{name!r} is not an RFC 3339 UTC timestamp: {_show(value)}"


def _integer(low: int | None = None, high: int | None = None) -> Check:
    """An integer (not a bool, not a float) within [low, high]."""

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name!r} must be an integer, got {_show(value)}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name!r} must be between {low} and {high}, got {value!r}"
        return None

    return check


def _number(low: float, high: float) -> Check:
    """A JSON number within [low, high] (NaN fails the comparison)."""

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{name!r} must be a number, got {_show(value)}"
        if not low <= value <= high:
            return f"{name!r} must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _enum(allowed: Iterable[str]) -> Check:
    values = frozenset(allowed)

    def check(name: str, value: object) -> str | None:
        if isinstance(value, str) and value in values:
            return None
        return f"{name!r} must be {_choices(values)}, got {_show(value)}"

    return check


def _list_of(item: Check) -> Check:
    """A non-empty list whose items pass ``item`` (STIX 2.1 2.8 forbids empty lists)."""

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, list):
            return f"{name!r} must be a list, got {_show(value)}"
        if not value:
            return f"{name!r} must not be an empty list (omit the property instead)"
        for index, entry in enumerate(value):
            problem = item(f"{name}[{index}]", entry)
            if problem is not None:
                return problem
        return None

    return check


def _ref(allowed: Iterable[str] = (), forbidden: Iterable[str] = ()) -> Check:
    """An identifier, optionally restricted to some target types or excluding some."""
    allowed_types = frozenset(allowed)
    forbidden_types = frozenset(forbidden)

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, str) or _IDENTIFIER.fullmatch(value) is None:
            return f"{name!r} must be an identifier '<type>--<UUID>', got {_show(value)}"
        target = value[:-_UUID_LENGTH_WITH_SEPARATOR]
        if allowed_types and target not in allowed_types:
            return f"{name!r} must reference {_choices(allowed_types)}, got {_show(value)}"
        if target in forbidden_types:
            return f"{name!r} cannot reference a {target!r} object: {_show(value)}"
        return None

    return check


def _refs(allowed: Iterable[str] = (), forbidden: Iterable[str] = ()) -> Check:
    return _list_of(_ref(allowed, forbidden))


def _dictionary(value_check: Check | None = None) -> Check:
    """A non-empty JSON object with STIX dictionary keys (2.7), values optionally checked."""

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, dict):
            return f"{name!r} must be a JSON object, got {_show(value)}"
        if not value:
            return f"{name!r} must not be an empty object (omit the property instead)"
        for key, entry in value.items():
            if not isinstance(key, str) or _DICTIONARY_KEY.fullmatch(key) is None:
                return f"{name!r} has an invalid dictionary key {_show(key)}"
            if value_check is not None:
                problem = value_check(f"{name}[{key!r}]", entry)
                if problem is not None:
                    return problem
        return None

    return check


def _object(name: str, value: object) -> str | None:
    if isinstance(value, dict):
        return None
    return f"{name!r} must be a JSON object, got {_show(value)}"


def _extensions(name: str, value: object) -> str | None:
    """Extension names (predefined or extension-definition ids) mapped to objects."""
    if not isinstance(value, dict) or not value:
        return f"{name!r} must be a non-empty JSON object, got {_show(value)}"
    for key, entry in value.items():
        if not isinstance(key, str) or _DICTIONARY_KEY.fullmatch(key) is None:
            return f"{name!r} has an invalid extension name {_show(key)}"
        if key.startswith("extension-definition--") and _IDENTIFIER.fullmatch(key) is None:
            return f"{name!r} key is not an extension-definition identifier: {_show(key)}"
        if not isinstance(entry, dict):
            return f"{name}[{key!r}] must be a JSON object, got {_show(entry)}"
    return None


_STRING: Final = _string
_BOOLEAN: Final = _boolean
_TIMESTAMP: Final = _timestamp
_STRINGS: Final = _list_of(_string)
_ANY_REF: Final = _ref()
_ANY_REFS: Final = _refs()
_COUNT: Final = _integer(0)
_HASHES: Final = _dictionary(_string)
_DICTIONARY: Final = _dictionary()


# --------------------------------------------------------------------------
# Embedded types (items of common list properties)


def _missing_in(name: str, key: str) -> str:
    return f"{name} is missing required property {key!r}"


def _external_reference(name: str, value: object) -> str | None:
    """STIX 2.1 2.5: source_name plus at least one of description, url, external_id."""
    if not isinstance(value, dict):
        return f"{name} must be a JSON object, got {_show(value)}"
    if "source_name" not in value:
        return _missing_in(name, "source_name")
    if not ({"description", "url", "external_id"} & value.keys()):
        return f"{name} needs at least one of 'description', 'url' or 'external_id'"
    for key in ("source_name", "description", "url", "external_id"):
        if key in value and not isinstance(value[key], str):
            return f"{name}.{key} must be a string, got {_show(value[key])}"
    if "hashes" in value:
        return _HASHES(f"{name}.hashes", value["hashes"])
    return None


def _kill_chain_phase(name: str, value: object) -> str | None:
    """STIX 2.1 2.6: kill_chain_name and phase_name, both strings."""
    if not isinstance(value, dict):
        return f"{name} must be a JSON object, got {_show(value)}"
    for key in ("kill_chain_name", "phase_name"):
        if key not in value:
            return _missing_in(name, key)
        if not isinstance(value[key], str):
            return f"{name}.{key} must be a string, got {_show(value[key])}"
    return None


_MARKING_REF: Final = _ref({"marking-definition"})


def _granular_marking(name: str, value: object) -> str | None:
    """STIX 2.1 7.2.3: selectors plus exactly one of marking_ref and lang."""
    if not isinstance(value, dict):
        return f"{name} must be a JSON object, got {_show(value)}"
    if "selectors" not in value:
        return _missing_in(name, "selectors")
    problem = _STRINGS(f"{name}.selectors", value["selectors"])
    if problem is not None:
        return problem
    has_ref, has_lang = "marking_ref" in value, "lang" in value
    if has_ref == has_lang:
        return f"{name} needs exactly one of 'marking_ref' and 'lang'"
    if has_ref:
        return _MARKING_REF(f"{name}.marking_ref", value["marking_ref"])
    return _string(f"{name}.lang", value["lang"])


def _email_mime_part(name: str, value: object) -> str | None:
    """STIX 2.1 6.6.2: a MIME part carries body or body_raw_ref."""
    if not isinstance(value, dict):
        return f"{name} must be a JSON object, got {_show(value)}"
    if "body" not in value and "body_raw_ref" not in value:
        return f"{name} needs 'body' or 'body_raw_ref'"
    return None


def _registry_value(name: str, value: object) -> str | None:
    if isinstance(value, dict):
        return None
    return f"{name} must be a JSON object, got {_show(value)}"


_EXTERNAL_REFERENCES: Final = _list_of(_external_reference)
_KILL_CHAIN_PHASES: Final = _list_of(_kill_chain_phase)


# --------------------------------------------------------------------------
# Cross-property constraints (each: object -> reason or None)


def _not_before(earlier: str, later: str) -> int:
    """Compare two valid timestamps: <0, 0 or >0 like ``later - earlier``.

    Same-length STIX timestamps have the same layout, so their text order is
    their time order; otherwise fall back to integer microseconds.
    """
    if len(earlier) == len(later):
        return (later > earlier) - (later < earlier)
    return to_micros(later) - to_micros(earlier)


def _ordered(earlier: str, later: str, *, strictly: bool = False) -> Constraint:
    """``later`` must not precede ``earlier`` (or must follow it, when strictly)."""
    relation = "later than" if strictly else "later than or equal to"

    def check(obj: dict[str, Any]) -> str | None:
        first, second = obj.get(earlier), obj.get(later)
        if first is None or second is None:
            return None
        difference = _not_before(first, second)
        if difference > 0 or (difference == 0 and not strictly):
            return None
        return f"{later!r} ({second}) must be {relation} {earlier!r} ({first})"

    return check


def _at_least_one(type_name: str, names: Iterable[str]) -> Constraint:
    options = tuple(names)
    listed = _choices(options) if len(options) <= 4 else "one of its own properties"

    def check(obj: dict[str, Any]) -> str | None:
        for option in options:
            if option in obj:
                return None
        return f"a {type_name!r} object needs at least {listed}"

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


def _malware_family_name(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 4.11: a malware family must be named."""
    if obj.get("is_family") is True and "name" not in obj:
        return "missing required property 'name' for type 'malware' (required when is_family)"
    return None


def _location_given(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 4.10: region, country, or latitude with longitude; precision needs both."""
    has_lat, has_long = "latitude" in obj, "longitude" in obj
    if has_lat != has_long:
        return "'latitude' and 'longitude' must be given together"
    if "precision" in obj and not has_lat:
        return "'precision' requires 'latitude' and 'longitude'"
    if has_lat or "region" in obj or "country" in obj:
        return None
    return "a 'location' needs 'region', 'country', or 'latitude' and 'longitude'"


def _marking_definition(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 7.2.1: definition_type with definition, or extensions (TLP 2.0 style)."""
    kind, definition = obj.get("definition_type"), obj.get("definition")
    if kind is None and definition is None:
        if "extensions" in obj:
            return None
        return "a marking-definition needs 'definition_type' and 'definition', or 'extensions'"
    if kind is None or definition is None:
        return "'definition_type' and 'definition' must be given together"
    if kind == "statement" and not isinstance(definition.get("statement"), str):
        return "a statement marking needs a string 'definition.statement'"
    if kind == "tlp":
        colour = definition.get("tlp")
        if not isinstance(colour, str) or _TLP_IDS.get(colour) != obj["id"]:
            return f"TLP marking {_show(colour)} must use its standard id, not {obj['id']!r}"
    return None


def _email_body(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 6.6: body only for single-part, body_multipart only for multipart."""
    multipart = obj.get("is_multipart")
    if multipart is True and "body" in obj:
        return "'body' must not be present when 'is_multipart' is true"
    if multipart is False and "body_multipart" in obj:
        return "'body_multipart' must not be present when 'is_multipart' is false"
    return None


def _active_traffic(obj: dict[str, Any]) -> str | None:
    """STIX 2.1 6.12: ongoing traffic has no end."""
    if obj.get("is_active") is True and "end" in obj:
        return "'end' must not be present when 'is_active' is true"
    return None


# --------------------------------------------------------------------------
# Per-type tables


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one object type requires: its property checks, requirements, constraints."""

    checks: Mapping[str, Check]
    required: tuple[str, ...]
    constraints: tuple[Constraint, ...]


_COMMON: Final[dict[str, Check]] = {
    "type": _accept,
    "id": _accept,
    "spec_version": _accept,
    "created": _TIMESTAMP,
    "modified": _TIMESTAMP,
    "created_by_ref": _ref({"identity"}),
    "revoked": _BOOLEAN,
    "labels": _STRINGS,
    "confidence": _integer(0, 100),
    "lang": _STRING,
    "external_references": _EXTERNAL_REFERENCES,
    "object_marking_refs": _refs({"marking-definition"}),
    "granular_markings": _list_of(_granular_marking),
    "extensions": _extensions,
    "defanged": _BOOLEAN,
}
_CREATED_BEFORE_MODIFIED: Final = _ordered("created", "modified")
_SEEN: Final = _ordered("first_seen", "last_seen")
_SDO_BASE: Final = ("spec_version", "created", "modified")

_NAMED: Final[dict[str, Check]] = {"name": _STRING, "description": _STRING}
_ALIASED: Final[dict[str, Check]] = {**_NAMED, "aliases": _STRINGS}
_SEEN_TIMES: Final[dict[str, Check]] = {"first_seen": _TIMESTAMP, "last_seen": _TIMESTAMP}
_REFERRING: Final[dict[str, Check]] = {"object_refs": _ANY_REFS}
_SOFTWARE_REF: Final = _ref({"software"})
_ADDRESS_REF: Final = _ref({"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"})
_EMAIL_ADDRS: Final = _refs({"email-addr"})
_FILE_TIMES: Final[dict[str, Check]] = {
    "ctime": _TIMESTAMP,
    "mtime": _TIMESTAMP,
    "atime": _TIMESTAMP,
}
_IP_PROPERTIES: Final[dict[str, Check]] = {
    "value": _STRING,
    "resolves_to_refs": _refs({"mac-addr"}),
    "belongs_to_refs": _refs({"autonomous-system"}),
}

# type -> (type-specific checks, type-specific required properties, constraints)
_SDO_TABLE: Final[dict[str, tuple[dict[str, Check], tuple[str, ...], tuple[Constraint, ...]]]] = {
    "attack-pattern": ({**_ALIASED, "kill_chain_phases": _KILL_CHAIN_PHASES}, ("name",), ()),
    "campaign": ({**_ALIASED, **_SEEN_TIMES, "objective": _STRING}, ("name",), (_SEEN,)),
    "course-of-action": (dict(_NAMED), ("name",), ()),
    "grouping": ({**_NAMED, **_REFERRING, "context": _STRING}, ("context", "object_refs"), ()),
    "identity": (
        {
            **_NAMED,
            "roles": _STRINGS,
            "identity_class": _STRING,
            "sectors": _STRINGS,
            "contact_information": _STRING,
        },
        ("name",),
        (),
    ),
    "incident": ({**_NAMED, "kill_chain_phases": _KILL_CHAIN_PHASES}, ("name",), ()),
    "indicator": (
        {
            **_NAMED,
            "indicator_types": _STRINGS,
            "pattern": _STRING,
            "pattern_type": _STRING,
            "pattern_version": _STRING,
            "valid_from": _TIMESTAMP,
            "valid_until": _TIMESTAMP,
            "kill_chain_phases": _KILL_CHAIN_PHASES,
        },
        ("pattern", "pattern_type", "valid_from"),
        (_ordered("valid_from", "valid_until", strictly=True),),
    ),
    "infrastructure": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            "infrastructure_types": _STRINGS,
            "kill_chain_phases": _KILL_CHAIN_PHASES,
        },
        ("name",),
        (_SEEN,),
    ),
    "intrusion-set": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            "goals": _STRINGS,
            "resource_level": _STRING,
            "primary_motivation": _STRING,
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
            "region": _STRING,
            "country": _STRING,
            "administrative_area": _STRING,
            "city": _STRING,
            "street_address": _STRING,
            "postal_code": _STRING,
        },
        (),
        (_location_given,),
    ),
    "malware": (
        {
            **_ALIASED,
            **_SEEN_TIMES,
            "malware_types": _STRINGS,
            "is_family": _BOOLEAN,
            "kill_chain_phases": _KILL_CHAIN_PHASES,
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
            "product": _STRING,
            "version": _STRING,
            "host_vm_ref": _SOFTWARE_REF,
            "operating_system_ref": _SOFTWARE_REF,
            "installed_software_refs": _refs({"software"}),
            "configuration_version": _STRING,
            "modules": _STRINGS,
            "analysis_engine_version": _STRING,
            "analysis_definition_version": _STRING,
            "submitted": _TIMESTAMP,
            "analysis_started": _TIMESTAMP,
            "analysis_ended": _TIMESTAMP,
            "result_name": _STRING,
            "result": _STRING,
            "analysis_sco_refs": _refs(forbidden=_NOT_SCO),
            "sample_ref": _ANY_REF,
        },
        ("product",),
        (_at_least_one("malware-analysis", ("result", "analysis_sco_refs")),),
    ),
    "note": (
        {**_REFERRING, "abstract": _STRING, "content": _STRING, "authors": _STRINGS},
        ("content", "object_refs"),
        (),
    ),
    "observed-data": (
        {
            **_REFERRING,
            "first_observed": _TIMESTAMP,
            "last_observed": _TIMESTAMP,
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
        {**_REFERRING, "explanation": _STRING, "authors": _STRINGS, "opinion": _enum(_OPINIONS)},
        ("opinion", "object_refs"),
        (),
    ),
    "report": (
        {**_NAMED, **_REFERRING, "report_types": _STRINGS, "published": _TIMESTAMP},
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
            "sophistication": _STRING,
            "resource_level": _STRING,
            "primary_motivation": _STRING,
            "secondary_motivations": _STRINGS,
            "personal_motivations": _STRINGS,
        },
        ("name",),
        (_SEEN,),
    ),
    "tool": (
        {
            **_ALIASED,
            "tool_types": _STRINGS,
            "kill_chain_phases": _KILL_CHAIN_PHASES,
            "tool_version": _STRING,
        },
        ("name",),
        (),
    ),
    "vulnerability": (dict(_NAMED), ("name",), ()),
    "relationship": (
        {
            "relationship_type": _STRING,
            "description": _STRING,
            "source_ref": _ref(forbidden=_NOT_RELATIONSHIP_ENDPOINT),
            "target_ref": _ref(forbidden=_NOT_RELATIONSHIP_ENDPOINT),
            "start_time": _TIMESTAMP,
            "stop_time": _TIMESTAMP,
        },
        ("relationship_type", "source_ref", "target_ref"),
        (_ordered("start_time", "stop_time", strictly=True),),
    ),
    "sighting": (
        {
            **_SEEN_TIMES,
            "description": _STRING,
            "count": _integer(0, _MAX_OBSERVED),
            "sighting_of_ref": _ref(forbidden=_NOT_SDO),
            "observed_data_refs": _refs({"observed-data"}),
            "where_sighted_refs": _refs({"identity", "location"}),
            "summary": _BOOLEAN,
        },
        ("sighting_of_ref",),
        (_SEEN,),
    ),
}

_META_TABLE: Final[dict[str, tuple[dict[str, Check], tuple[str, ...], tuple[Constraint, ...]]]] = {
    "marking-definition": (
        {"name": _STRING, "definition_type": _STRING, "definition": _object},
        ("spec_version", "created"),
        (_marking_definition,),
    ),
    "language-content": (
        {
            "object_ref": _ANY_REF,
            "object_modified": _TIMESTAMP,
            "contents": _dictionary(_dictionary()),
        },
        (*_SDO_BASE, "object_ref", "contents"),
        (),
    ),
    "extension-definition": (
        {
            **_NAMED,
            "schema": _STRING,
            "version": _STRING,
            "extension_types": _list_of(_enum(_EXTENSION_TYPES)),
            "extension_properties": _STRINGS,
        },
        (*_SDO_BASE, "name", "schema", "version", "extension_types", "created_by_ref"),
        (),
    ),
}

_SCO_TABLE: Final[dict[str, tuple[dict[str, Check], tuple[str, ...], tuple[Constraint, ...]]]] = {
    "artifact": (
        {
            "mime_type": _STRING,
            "payload_bin": _STRING,
            "url": _STRING,
            "hashes": _HASHES,
            "encryption_algorithm": _STRING,
            "decryption_key": _STRING,
        },
        (),
        (
            _at_least_one("artifact", ("payload_bin", "url")),
            _exclusive("payload_bin", "url"),
            _requires("url", "hashes"),
        ),
    ),
    "autonomous-system": (
        {"number": _integer(0), "name": _STRING, "rir": _STRING},
        ("number",),
        (),
    ),
    "directory": (
        {
            **_FILE_TIMES,
            "path": _STRING,
            "path_enc": _STRING,
            "contains_refs": _refs({"file", "directory"}),
        },
        ("path",),
        (),
    ),
    "domain-name": (
        {"value": _STRING, "resolves_to_refs": _refs({"ipv4-addr", "ipv6-addr", "domain-name"})},
        ("value",),
        (),
    ),
    "email-addr": (
        {"value": _STRING, "display_name": _STRING, "belongs_to_ref": _ref({"user-account"})},
        ("value",),
        (),
    ),
    "email-message": (
        {
            "is_multipart": _BOOLEAN,
            "date": _TIMESTAMP,
            "content_type": _STRING,
            "from_ref": _ref({"email-addr"}),
            "sender_ref": _ref({"email-addr"}),
            "to_refs": _EMAIL_ADDRS,
            "cc_refs": _EMAIL_ADDRS,
            "bcc_refs": _EMAIL_ADDRS,
            "message_id": _STRING,
            "subject": _STRING,
            "received_lines": _STRINGS,
            "additional_header_fields": _DICTIONARY,
            "body": _STRING,
            "body_multipart": _list_of(_email_mime_part),
            "raw_email_ref": _ref({"artifact"}),
        },
        ("is_multipart",),
        (_email_body,),
    ),
    "file": (
        {
            **_FILE_TIMES,
            "hashes": _HASHES,
            "size": _COUNT,
            "name": _STRING,
            "name_enc": _STRING,
            "magic_number_hex": _STRING,
            "mime_type": _STRING,
            "parent_directory_ref": _ref({"directory"}),
            "contains_refs": _ANY_REFS,
            "content_ref": _ref({"artifact"}),
        },
        (),
        (_at_least_one("file", ("name", "hashes")),),
    ),
    "ipv4-addr": (dict(_IP_PROPERTIES), ("value",), ()),
    "ipv6-addr": (dict(_IP_PROPERTIES), ("value",), ()),
    "mac-addr": ({"value": _STRING}, ("value",), ()),
    "mutex": ({"name": _STRING}, ("name",), ()),
    "network-traffic": (
        {
            "start": _TIMESTAMP,
            "end": _TIMESTAMP,
            "is_active": _BOOLEAN,
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
            "src_payload_ref": _ref({"artifact"}),
            "dst_payload_ref": _ref({"artifact"}),
            "encapsulates_refs": _refs({"network-traffic"}),
            "encapsulated_by_ref": _ref({"network-traffic"}),
        },
        ("protocols",),
        (
            _at_least_one("network-traffic", ("src_ref", "dst_ref")),
            _ordered("start", "end"),
            _active_traffic,
        ),
    ),
    "process": (
        {
            "is_hidden": _BOOLEAN,
            "pid": _integer(),
            "created_time": _TIMESTAMP,
            "cwd": _STRING,
            "command_line": _STRING,
            "environment_variables": _DICTIONARY,
            "opened_connection_refs": _refs({"network-traffic"}),
            "creator_user_ref": _ref({"user-account"}),
            "image_ref": _ref({"file"}),
            "parent_ref": _ref({"process"}),
            "child_refs": _refs({"process"}),
        },
        (),
        (),
    ),
    "software": (
        {
            "name": _STRING,
            "cpe": _STRING,
            "swid": _STRING,
            "languages": _STRINGS,
            "vendor": _STRING,
            "version": _STRING,
        },
        ("name",),
        (),
    ),
    "url": ({"value": _STRING}, ("value",), ()),
    "user-account": (
        {
            "user_id": _STRING,
            "credential": _STRING,
            "account_login": _STRING,
            "account_type": _STRING,
            "display_name": _STRING,
            "is_service_account": _BOOLEAN,
            "is_privileged": _BOOLEAN,
            "can_escalate_privs": _BOOLEAN,
            "is_disabled": _BOOLEAN,
            "account_created": _TIMESTAMP,
            "account_expires": _TIMESTAMP,
            "credential_last_changed": _TIMESTAMP,
            "account_first_login": _TIMESTAMP,
            "account_last_login": _TIMESTAMP,
        },
        (),
        (),
    ),
    "windows-registry-key": (
        {
            "key": _STRING,
            "values": _list_of(_registry_value),
            "modified_time": _TIMESTAMP,
            "creator_user_ref": _ref({"user-account"}),
            "number_of_subkeys": _COUNT,
        },
        (),
        (),
    ),
    "x509-certificate": (
        {
            "is_self_signed": _BOOLEAN,
            "hashes": _HASHES,
            "version": _STRING,
            "serial_number": _STRING,
            "signature_algorithm": _STRING,
            "issuer": _STRING,
            "validity_not_before": _TIMESTAMP,
            "validity_not_after": _TIMESTAMP,
            "subject": _STRING,
            "subject_public_key_algorithm": _STRING,
            "subject_public_key_modulus": _STRING,
            "subject_public_key_exponent": _integer(),
            "x509_v3_extensions": _object,
        },
        (),
        (),
    ),
}
# STIX 2.1 6.11, 6.16-6.18: "at least one of the properties defined below MUST
# be included" -- extensions count, the common SCO properties do not.
_AT_LEAST_ONE_OWN: Final = frozenset(
    {"process", "user-account", "windows-registry-key", "x509-certificate"}
)


def _build_rule(
    type_name: str,
    base_required: tuple[str, ...],
    spec: tuple[dict[str, Check], tuple[str, ...], tuple[Constraint, ...]],
) -> _Rule:
    """Merge a type's own table row with the common properties and base requirements."""
    own, required, constraints = spec
    if type_name in _AT_LEAST_ONE_OWN:
        constraints = (*constraints, _at_least_one(type_name, (*own, "extensions")))
    return _Rule(
        checks={**_COMMON, **own},
        required=tuple(dict.fromkeys((*base_required, *required))),
        constraints=(_CREATED_BEFORE_MODIFIED, *constraints),
    )


def _build_rules() -> dict[str, _Rule]:
    rules = {name: _build_rule(name, _SDO_BASE, spec) for name, spec in _SDO_TABLE.items()}
    rules.update((name, _build_rule(name, (), spec)) for name, spec in _META_TABLE.items())
    rules.update((name, _build_rule(name, (), spec)) for name, spec in _SCO_TABLE.items())
    return rules


_RULES: Final = _build_rules()
# Custom and future types: the common properties only.
_GENERIC: Final = _Rule(checks=_COMMON, required=(), constraints=(_CREATED_BEFORE_MODIFIED,))
# The object types that must carry spec_version (2.1 3.1; optional on SCOs).
_SPEC_VERSION_REQUIRED: Final = _SDO_TYPES | _SRO_TYPES | _META_TYPES


# --------------------------------------------------------------------------
# Public API


def _type_problem(value: object) -> str | None:
    if value is None:
        return "missing required property 'type'"
    if not isinstance(value, str):
        return f"'type' must be a string, got {_show(value)}"
    if _TYPE_NAME.fullmatch(value) is None:
        return (
            "'type' must be 3-250 characters of a-z, 0-9 and '-', starting with a letter "
            f"and not ending with '-': {_show(value)}"
        )
    if value == "bundle":
        return "a bundle is not a STIX object: send the objects it contains"
    return None


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
    if not isinstance(value, str) or _IDENTIFIER.fullmatch(value) is None:
        return f"'id' must be '{type_name}--<RFC 4122 UUID>', got {_show(value)}"
    if value[:-_UUID_LENGTH_WITH_SEPARATOR] != type_name:
        return f"id {_show(value)} does not match type {type_name!r}"
    return None


def _properties_problem(checks: Mapping[str, Check], obj: dict[str, Any]) -> str | None:
    """Run the table check of every known property; name-check the unknown ones."""
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
        problem = check(key, value)
        if problem is not None:
            return problem
    return None


def object_problem(obj: object) -> str | None:
    """Return None when obj is a valid STIX 2.1 object, else a short human-readable reason.

    Reasons look like "'created' is not an RFC 3339 UTC timestamp: 'yesterday'",
    "missing required property 'name' for type 'malware'" or
    "id 'indicator--...' does not match type 'malware'": the server returns them
    to the client verbatim, so each names the property and the offending value.
    Never raises, whatever JSON-like value it is given; only the first problem
    found is reported.
    """
    if not isinstance(obj, dict):
        return f"a STIX object must be a JSON object, got {type(obj).__name__}: {_show(obj)}"
    type_name = obj.get("type")
    problem = _type_problem(type_name)
    if problem is not None:
        return problem
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
    return None


def version_key(obj: dict[str, Any]) -> int:
    """Microseconds since epoch of `modified`, else `created`, else 0.

    STIX versions an object by ``modified``; objects without it (marking
    definitions) have one version at ``created``, and SCOs without either are a
    single version, keyed 0.  Assumes obj already passed object_problem.
    """
    stamp = obj.get("modified") or obj.get("created")
    return to_micros(stamp) if stamp else 0


def validate_all(objs: Iterable[object]) -> tuple[list[dict], list[tuple[object, str]]]:
    """Split objs into (valid objects, [(invalid object, reason)]), keeping input order.

    Lets callers that take a batch (a TAXII envelope, a bundle file) store the
    good objects and report every bad one, instead of failing on the first.
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
