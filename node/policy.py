"""Sharing policy: which STIX objects may leave this node, and which it accepts.

One engine serves both directions of a partner mapping:

* **egress**, evaluated at the source before pushing objects to the partner and when the
  partner's sync account reads a collection over TAXII;
* **ingress**, evaluated at the destination before storing what the partner sent.

Policies are declared per mapping and direction in the node's TOML configuration and parsed
into :class:`Rules`.  :class:`Policy` turns rules into :class:`Decision` objects, each naming
the rule that made it so the audit log can say *why* an object was or was not shared.

Two kinds of rule withhold objects, and the difference matters for dependencies:

* **protective** rules say the content must not travel: TLP:RED on egress, ``ids_deny``,
  ``types_deny``, ``max_tlp`` / AMBER+STRICT, ``labels_deny`` (and malformed objects);
* **selective** rules choose what is worth sending: ``types_allow``, ``unmarked``,
  ``labels_require``, ``created_by_allow``, ``min_confidence``.

Identity, marking-definition and extension-definition objects are *dependencies*: an
object that references its author identity, its markings or the definitions of the
extensions it uses (the keys of ``extensions``) is only usable with them.  A
dependency withheld by a selective rule (typically our own unmarked identity) still
travels with any allowed object that references it; one withheld by a protective rule
never does.

Referential safety (:meth:`Policy.apply`): a relationship or sighting is withheld when an
object it links is withheld, since it would otherwise tell the partner something about that
object; containers lose (or are withheld for) withheld ``object_refs``.  Every other
reference (a ``*_ref``/``*_refs`` property holding STIX ids, at any depth: a
language-content's ``object_ref``, ``sample_refs``, SCO ``*_ref`` ...) is a link too: it
names the object and often says something about it.  Links to objects outside the batch
are judged on their stored version through the resolver; links to objects nobody knows
follow ``unresolved_refs``.

The policy runs on the sync hot path, so :meth:`Policy.decide` copies an object only when
it must change it (redaction), and :meth:`Policy.apply` only copies containers it trims.
Input objects are never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from node.errors import ConfigError
from node.tlp import (
    TLP,
    TLP2_EXTENSION_ID,
    TLP_BY_MARKING_ID,
    declared_level,
    parse_level,
    tlp_of,
)
from node.tomlreader import first_unknown_key
from node.validation import version_stamp

Direction = Literal["egress", "ingress"]
Resolver = Callable[[str], dict[str, Any] | None]
"""Returns the latest stored version of the object with this id, or None when unknown."""
T = TypeVar("T")


class PolicyError(ConfigError):
    """A policy configuration error; the message starts with the offending key path."""


class Rule(StrEnum):
    """Rule names recorded in decisions (and so in the audit log)."""

    ALLOWED = "allowed"
    DEPENDENCY = "dependency"
    RED_NEVER_LEAVES = "tlp:red-never-leaves"
    INVALID = "invalid"
    IDS_DENY = "ids.deny"
    TYPES_DENY = "types.deny"
    TYPES_ALLOW = "types.allow"
    TLP_MAX = "tlp.max"
    TLP_AMBER_STRICT = "tlp.amber-strict"
    UNMARKED = "unmarked"
    LABELS_DENY = "labels.deny"
    LABELS_REQUIRE = "labels.require"
    CREATED_BY_ALLOW = "created_by.allow"
    CONFIDENCE_MIN = "confidence.min"
    CONFIDENCE_MISSING = "confidence.missing"
    REF_WITHHELD = "ref.withheld-target"
    REF_UNRESOLVED = "ref.unresolved"
    REPORTS_TRIM = "reports.trim"
    REPORTS_WITHHOLD = "reports.withhold"
    REPORTS_EMPTY = "reports.empty"
    REDACTED_AWAY = "redact.nothing-left"
    CREATOR_ONLY = "versions.creator-only"


PROTECTIVE_RULES: frozenset[str] = frozenset(
    {
        Rule.RED_NEVER_LEAVES,
        Rule.INVALID,
        Rule.IDS_DENY,
        Rule.TYPES_DENY,
        Rule.TLP_MAX,
        Rule.TLP_AMBER_STRICT,
        Rule.LABELS_DENY,
    }
)
"""Rules whose withholding a dependency cannot override (see the module docstring)."""

# What an object needs in order to be read, which travels with it: its author, its
# markings and the definitions of the extensions it uses (STIX 2.1 section 7.3).
DEPENDENCY_TYPES: frozenset[str] = frozenset(
    {"identity", "marking-definition", "extension-definition"}
)
CONTAINER_TYPES: frozenset[str] = frozenset(
    {"report", "grouping", "note", "opinion", "observed-data"}
)
# Properties whose target must be shareable for the referencing object to make sense.
_LINK_PROPERTIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "relationship": ("source_ref", "target_ref"),
        "sighting": ("sighting_of_ref", "observed_data_refs", "where_sighted_refs"),
    }
)

_STIX_TYPE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# (in any letter case: a reference is judged as the lower-case id it names, _canonical)
_STIX_ID = re.compile(rf"^[a-z0-9][a-z0-9-]*[a-z0-9]--{_UUID}$", re.IGNORECASE)
_IDENTITY_ID = re.compile(rf"^identity--{_UUID}$")
_CUSTOM_PROPERTY = re.compile(r"^x_[A-Za-z0-9_]+$")


# --------------------------------------------------------------------------- configuration

_CONFIG_KEYS = (
    "types_allow",
    "types_deny",
    "max_tlp",
    "allow_amber_strict",
    "unmarked",
    "min_confidence",
    "missing_confidence",
    "labels_require",
    "labels_deny",
    "created_by_allow",
    "ids_deny",
    "redact",
    "reports",
    "unresolved_refs",
    "accept_foreign_versions",
    "release",
    "onward",
    "quarantine",
    "recalls",
)
_EGRESS_ONLY = ("release", "onward")
_INGRESS_ONLY = ("accept_foreign_versions", "quarantine", "recalls")


@dataclass(frozen=True, kw_only=True)
class Rules:
    """Parsed, validated policy rules for one mapping and direction.

    Build with :meth:`from_config`, which applies the direction's defaults: egress is
    conservative (a partner only gets what the operator opted into), ingress accepts what
    the partner's own egress policy already let through.  Configuration keys:

    ``types_allow`` / ``types_deny``
        STIX types to share exclusively / never (empty: no restriction).
    ``max_tlp``
        Most restrictive TLP level shared (default egress "green", ingress "red").  TLP:RED
        never passes egress whatever this says.
    ``allow_amber_strict``
        Second opt-in for TLP:AMBER+STRICT (default egress false, ingress true).
    ``unmarked``
        "withhold" or "share" objects without TLP marking (default egress "withhold",
        ingress "share").  TLP marking definitions themselves are exempt.
    ``min_confidence`` / ``missing_confidence``
        Minimum ``confidence`` (0-100, default none); objects without one are "share"d
        (default) or "withhold"n.
    ``labels_require`` / ``labels_deny``
        The object must carry at least one of / none of these labels (in any letter
        case: a label ``SECRET`` is denied by ``labels_deny = ["secret"]``).
    ``created_by_allow``
        Identity ids whose objects may be shared (e.g. only what we authored); objects
        without ``created_by_ref``, SCOs included, are then withheld.
    ``ids_deny``
        Object ids never shared.
    ``redact``
        Custom ``x_`` properties removed from what is sent or stored.
    ``reports``
        "trim" (default) or "withhold" containers referencing withheld objects.
    ``unresolved_refs``
        "withhold" or "share" links to objects neither in the batch nor stored (default
        egress "withhold", ingress "share": the target may simply arrive in a later batch).
    ``accept_foreign_versions``
        Ingress only (default false): accept the partner's new versions of objects whose
        versions were made here or by another producer.  STIX 2.1 section 3.6 lets only an
        object's creator version it, so by default such versions are refused.
    ``release`` / ``onward``
        Egress only: "approval" holds what passes in the peer's release queue until a
        releaser approves it (default "automatic"); "allow" lets versions that came from
        another peer be passed on to this one (default "never").  Applied by
        ``node.sharing.gates``.
    ``quarantine`` / ``recalls``
        Ingress only: true holds what the peer sends for review (default false); what a
        recall from the object's origin does, "purge" (default) or "revoke".

    Identifiers (``ids_deny``, ``created_by_allow``, TLP marking ids) compare without
    regard to letter case: some producers write UUIDs in upper case, and a TLP:RED
    marking must be recognised however it is spelt.
    """

    direction: Direction
    max_tlp: TLP
    allow_amber_strict: bool
    unmarked: Literal["withhold", "share"]
    unresolved_refs: Literal["withhold", "share"]
    types_allow: frozenset[str] = frozenset()
    types_deny: frozenset[str] = frozenset()
    min_confidence: int | None = None
    missing_confidence: Literal["share", "withhold"] = "share"
    labels_require: frozenset[str] = frozenset()
    labels_deny: frozenset[str] = frozenset()
    created_by_allow: frozenset[str] = frozenset()
    ids_deny: frozenset[str] = frozenset()
    redact: frozenset[str] = frozenset()
    reports: Literal["trim", "withhold"] = "trim"
    accept_foreign_versions: bool = False
    release: Literal["automatic", "approval"] = "automatic"
    onward: Literal["never", "allow"] = "never"
    quarantine: bool = False
    recalls: Literal["purge", "revoke"] = "purge"

    @classmethod
    def from_config(
        cls, table: Mapping[str, Any] | None, *, direction: Direction, where: str
    ) -> Rules:
        """Validate one policy table (as parsed by tomllib) and apply the direction defaults.

        ``where`` is the key path of the table (e.g. ``peers.node-b.mappings[0].egress``);
        every :class:`PolicyError` message starts with it, followed by the offending key.

        Defaults (egress / ingress): ``max_tlp`` green / red, ``allow_amber_strict``
        false / true, ``unmarked`` withhold / share, ``unresolved_refs`` withhold / share;
        ``missing_confidence`` share, ``reports`` trim, lists empty.

        AMBER+STRICT needs a double opt-in: ``max_tlp`` at "amber+strict" or "red" *and*
        ``allow_amber_strict = true``, because TLP:AMBER+STRICT limits sharing to the
        recipient's own organisation, which "at most AMBER" alone does not make explicit.
        """
        if direction not in ("egress", "ingress"):
            raise ValueError(f"direction must be 'egress' or 'ingress', not {direction!r}")
        reader = _TableReader(table, where)
        egress = direction == "egress"
        # Egress must not leak; ingress trusts the partner's egress policy by default.
        cautious = "withhold" if egress else "share"
        max_tlp = reader.level("max_tlp", TLP.GREEN if egress else TLP.RED)
        rules = cls(
            direction=direction,
            types_allow=reader.names("types_allow", _STIX_TYPE, "a STIX type name"),
            types_deny=reader.names("types_deny", _STIX_TYPE, "a STIX type name"),
            max_tlp=max_tlp,
            allow_amber_strict=reader.boolean("allow_amber_strict", not egress),
            unmarked=reader.choice("unmarked", ("withhold", "share"), cautious),
            min_confidence=reader.confidence("min_confidence"),
            missing_confidence=reader.choice("missing_confidence", ("share", "withhold"), "share"),
            labels_require=_folded(reader.names("labels_require", None, "a label")),
            labels_deny=_folded(reader.names("labels_deny", None, "a label")),
            created_by_allow=_lowered(
                reader.names("created_by_allow", _IDENTITY_ID, "an identity id")
            ),
            ids_deny=_lowered(reader.names("ids_deny", _STIX_ID, "a STIX id")),
            redact=reader.custom_properties("redact"),
            reports=reader.choice("reports", ("trim", "withhold"), "trim"),
            unresolved_refs=reader.choice("unresolved_refs", ("withhold", "share"), cautious),
            accept_foreign_versions=reader.boolean("accept_foreign_versions", False),
            release=reader.choice("release", ("automatic", "approval"), "automatic"),
            onward=reader.choice("onward", ("never", "allow"), "never"),
            quarantine=reader.boolean("quarantine", False),
            recalls=reader.choice("recalls", ("purge", "revoke"), "purge"),
        )
        reader.check_consistency(rules)
        return rules


class _TableReader:
    """Reads typed values out of one policy table, raising PolicyError with key paths."""

    def __init__(self, table: Mapping[str, Any] | None, where: str) -> None:
        if table is None:
            table = {}
        if not isinstance(table, Mapping):
            raise PolicyError(f"{where}: must be a table of policy keys, not {_kind(table)}")
        unknown = first_unknown_key(table, _CONFIG_KEYS)
        if unknown is not None:
            raise PolicyError(
                f"{where}.{unknown.key}: unknown policy key{unknown.hint}; {unknown.listing}"
            )
        self._table = table
        self._where = where

    def path(self, key: str) -> str:
        return f"{self._where}.{key}"

    def level(self, key: str, default: TLP) -> TLP:
        if key not in self._table:
            return default
        value = self._table[key]
        try:
            return parse_level(value)
        except ValueError as exc:
            raise PolicyError(f"{self.path(key)}: {exc}") from None

    def boolean(self, key: str, default: bool) -> bool:
        value = self._table.get(key, default)
        if not isinstance(value, bool):
            raise PolicyError(f"{self.path(key)}: must be true or false, not {value!r}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> Any:
        value = self._table.get(key, default)
        if value not in options:
            allowed = " or ".join(repr(option) for option in options)
            raise PolicyError(f"{self.path(key)}: must be {allowed}, not {value!r}")
        return value

    def confidence(self, key: str) -> int | None:
        value = self._table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise PolicyError(f"{self.path(key)}: must be an integer from 0 to 100, not {value!r}")
        return value

    def names(self, key: str, pattern: re.Pattern[str] | None, what: str) -> frozenset[str]:
        """A list of non-empty strings, each matching ``pattern`` when given."""
        values = self._table.get(key, [])
        if not isinstance(values, list):
            raise PolicyError(f"{self.path(key)}: must be an array of strings, not {values!r}")
        for index, value in enumerate(values):
            valid = isinstance(value, str) and value and (pattern is None or pattern.match(value))
            if not valid:
                raise PolicyError(f"{self.path(key)}[{index}]: {value!r} is not {what}")
        return frozenset(values)

    def custom_properties(self, key: str) -> frozenset[str]:
        """Property names to redact: custom ``x_`` names only.

        Removing a standard property could make an object invalid (a required one) or change
        its meaning; custom properties are where node-internal annotations live.
        """
        names = self.names(key, None, "a property name")
        for index, name in enumerate(self._table.get(key, [])):
            if not _CUSTOM_PROPERTY.match(name):
                raise PolicyError(
                    f"{self.path(key)}[{index}]: {name!r} is not a custom property; "
                    "only names starting with x_ can be redacted"
                )
        return names

    def check_consistency(self, rules: Rules) -> None:
        """Reject combinations that cannot mean what the operator wrote."""
        self._disjoint("types_deny", rules.types_deny, "types_allow", rules.types_allow)
        self._disjoint("labels_deny", rules.labels_deny, "labels_require", rules.labels_require)
        if self._table.get("allow_amber_strict") is True and rules.max_tlp < TLP.AMBER_STRICT:
            raise PolicyError(
                f"{self.path('allow_amber_strict')}: has no effect unless max_tlp is "
                f"'amber+strict' or 'red' (it is {rules.max_tlp.config_name!r})"
            )
        wrong_side = _INGRESS_ONLY if rules.direction == "egress" else _EGRESS_ONLY
        for key in wrong_side:
            if key in self._table:
                side = "ingress" if rules.direction == "egress" else "egress"
                raise PolicyError(
                    f"{self.path(key)}: applies to {side} only "
                    f"({'what this node accepts from' if side == 'ingress' else 'what leaves for'}"
                    " the partner)"
                )
        if "missing_confidence" in self._table and rules.min_confidence is None:
            raise PolicyError(
                f"{self.path('missing_confidence')}: has no effect without min_confidence"
            )

    def _disjoint(
        self, key: str, values: frozenset[str], other: str, others: frozenset[str]
    ) -> None:
        both = sorted(values & others)
        if both:
            raise PolicyError(f"{self.path(key)}: {both[0]!r} is also in {other}")


def _kind(value: object) -> str:
    return type(value).__name__


def _lowered(values: frozenset[str]) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one object version.

    ``obj`` is what to send or store: the input object itself when nothing had to change,
    a redacted or trimmed shallow copy otherwise, None when withheld.  Treat it as read-only.
    """

    object_id: str
    version: str
    allowed: bool
    rule: str
    detail: str
    obj: dict[str, Any] | None


class _Verdict(NamedTuple):
    """Why an object is withheld (or, for DEPENDENCY/ALLOWED, why it passes)."""

    rule: Rule
    detail: str


def _version(obj: Mapping[str, Any]) -> str:
    return version_stamp(obj) or ""


def _withheld(obj: Mapping[str, Any], rule: str, detail: str) -> Decision:
    object_id = obj.get("id")
    return Decision(
        object_id=object_id if isinstance(object_id, str) else "",
        version=_version(obj),
        allowed=False,
        rule=rule,
        detail=detail,
        obj=None,
    )


_REASON_LENGTH = 200


def _reason(rule: str, detail: str) -> str:
    """ "rule: detail" of a withheld object, as another object's detail quotes it: cut
    short, so that the details along a chain of references (each quoting the next)
    stay short instead of growing with the chain (and the audit records with them)."""
    reason = f"{rule}: {detail}"
    return reason if len(reason) <= _REASON_LENGTH else reason[: _REASON_LENGTH - 3] + "..."


def _folded(labels: frozenset[str]) -> frozenset[str]:
    return frozenset(label.casefold() for label in labels)


def _labels(obj: Mapping[str, Any]) -> set[str]:
    """The object's labels in one letter case: labels are an open vocabulary written
    by people (``TLP-internal``, ``tlp-internal``), and a deny list must not miss one
    for its spelling."""
    labels = obj.get("labels")
    if not isinstance(labels, list):
        return set()
    return {label.casefold() for label in labels if isinstance(label, str)}


def _type_of(ref: str) -> str:
    return ref.partition("--")[0]


def _canonical(ref: Any) -> Any:
    """A reference spelt as the store spells ids, in lower case: RFC 4122 (section 3)
    reads a UUID's hex digits in either case, so ``identity--C7EE...`` names the object
    ``identity--c7ee...`` (whose id validation keeps in lower case), and a reference
    spelt in upper case must be judged as that object, or it would slip past reference
    safety.  Anything but a string as it is."""
    return ref.lower() if isinstance(ref, str) else ref


def _is_tlp_definition(obj: Mapping[str, Any]) -> bool:
    object_id = obj.get("id")
    return (
        obj.get("type") == "marking-definition"
        and isinstance(object_id, str)
        and object_id.lower() in TLP_BY_MARKING_ID
    )


def _link_refs(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(property path, id) of every object ``obj`` refers to besides its author and markings.

    First the properties a relationship, sighting or container is about (any value
    there is a reference, a malformed one too); then every other property named
    ``*_ref`` or ``*_refs`` whose value is a STIX id, at any depth: STIX 2.1 names
    identifier references so (section 2.13 and the ``_ref``/``_refs`` suffix of
    section 3.1), and a language-content's ``object_ref``, a malware's
    ``sample_refs``, a file's ``parent_directory_ref`` or an archive extension's
    ``contains_refs`` name an object as a relationship's ``target_ref`` does.

    A list, walked in one loop over the top-level properties: this runs for every
    object of every batch a partner posts or our worker pushes, and most properties
    are strings that name nothing (``_embedded_refs`` is entered only for ``*_ref``
    strings' ids and for nested values, and a list under a name that is no reference,
    such as ``labels``, only for its nested values).
    """
    kind = obj.get("type", "")
    properties = ("object_refs",) if kind in CONTAINER_TYPES else _LINK_PROPERTIES.get(kind, ())
    found: list[tuple[str, Any]] = []
    for name in properties:
        value = obj.get(name)
        if isinstance(value, list):
            found.extend((f"{name}[{index}]", _canonical(ref)) for index, ref in enumerate(value))
        elif value is not None:
            found.append((name, _canonical(value)))
    for name, value in obj.items():
        if name in properties or name in _DEPENDENCY_PROPERTIES:
            continue
        if isinstance(value, str):
            if name.endswith("_ref") and _STIX_ID.match(value):
                found.append((name, value.lower()))
        elif isinstance(value, dict) or name.endswith(_REFERENCE_SUFFIXES):
            found.extend(_embedded_refs(name, name, value))
        elif isinstance(value, list):  # as _embedded_refs walks it, without a generator
            for index, item in enumerate(value):
                if isinstance(item, _NESTED):
                    found.extend(_embedded_refs(f"{name}[{index}]", "", item))
    return found


_NESTED = (dict, list)
_REFERENCE_SUFFIXES = ("_ref", "_refs")


# The author and markings: dependencies, judged by _named_dependencies.
# (An ``extensions`` key is not a ``*_ref`` property: _extension_definitions names those.)
_DEPENDENCY_PROPERTIES = frozenset({"created_by_ref", "object_marking_refs", "granular_markings"})


def _embedded_refs(path: str, name: str, value: Any) -> Iterator[tuple[str, str]]:
    """(path, id) of the STIX ids in ``*_ref``/``*_refs`` properties within ``value``."""
    if name.endswith("_ref"):
        if isinstance(value, str) and _STIX_ID.match(value):
            yield path, value.lower()
    elif name.endswith("_refs"):
        for index, ref in enumerate(value if isinstance(value, list) else ()):
            if isinstance(ref, str) and _STIX_ID.match(ref):
                yield f"{path}[{index}]", ref.lower()
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _embedded_refs(f"{path}.{key}", key, item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, _NESTED):
                yield from _embedded_refs(f"{path}[{index}]", "", item)


class PerObject(Generic[T]):
    """``compute(obj)`` remembered for each object while this lives (one decision pass).

    A worker's egress batch reads an object's links to find what to resolve, to
    decide it in its closure and to name the dependencies that travel with it; a
    partner's batch to decide it and to promote its dependencies.  Walking every
    property each time was about 29% of the worker's egress CPU.  Keyed by the
    object's identity (decided objects are read-only, see :class:`Decision`), the
    object kept with its value so that its ``id()`` cannot name another object
    while the entry lives; cleared past ``size`` entries, so that a long scan
    holds no more than that beyond what it already holds.  The value is shared:
    read it, never change it.
    """

    def __init__(self, compute: Callable[[Mapping[str, Any]], T], size: int = 20_000) -> None:
        self._compute = compute
        self._size = size
        self._found: dict[int, tuple[Mapping[str, Any], T]] = {}

    def __call__(self, obj: Mapping[str, Any]) -> T:
        found = self._found.get(id(obj))
        if found is not None:
            return found[1]
        if len(self._found) >= self._size:
            self._found.clear()
        value = self._compute(obj)
        self._found[id(obj)] = (obj, value)
        return value


def _extension_definitions(obj: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(property path, id) of the extension definitions ``obj`` uses: the keys of its
    ``extensions`` that are ids (STIX 2.1 section 7.3), TLP 2.0's own left out (the
    TLP definitions always travel and never name a stored object)."""
    extensions = obj.get("extensions")
    if not extensions or not isinstance(extensions, Mapping):
        return  # (most objects have none: no isinstance against the ABC for them)
    for key in extensions:
        is_id = isinstance(key, str) and key.lower().startswith("extension-definition--")
        if is_id and key.lower() != TLP2_EXTENSION_ID:
            yield f"extensions.{key}", key.lower()


def named_ids(obj: Mapping[str, Any]) -> list[str]:
    """The ids of the author, the non-TLP markings and the extension definitions ``obj``
    names (``_named_dependencies``), in lower case: what egress resolves, besides the
    links, before it decides ``obj``."""
    if not _has_dependency_refs(obj):  # (most objects: TLP markings alone)
        return []
    return [
        ref
        for _path, ref in _named_dependencies(obj)
        if isinstance(ref, str) and ref not in TLP_BY_MARKING_ID
    ]


def _named_dependencies(obj: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property path, id) of the author, the markings and the extension definitions
    an object names."""
    author = obj.get("created_by_ref")
    if author is not None:
        yield "created_by_ref", _canonical(author)
    for index, ref in enumerate(obj.get("object_marking_refs") or ()):
        yield f"object_marking_refs[{index}]", _canonical(ref)
    for index, granular in enumerate(obj.get("granular_markings") or ()):
        if isinstance(granular, Mapping) and "marking_ref" in granular:
            yield f"granular_markings[{index}].marking_ref", _canonical(granular["marking_ref"])
    yield from _extension_definitions(obj)


def _has_dependency_refs(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` names an author or a marking other than a TLP one (which is never
    withheld): the objects :meth:`_Batch._author_verdict` must look at."""
    if obj.get("created_by_ref") or obj.get("granular_markings"):
        return True
    if next(_extension_definitions(obj), None) is not None:
        return True
    markings = obj.get("object_marking_refs") or ()
    return any(not isinstance(ref, str) or ref.lower() not in TLP_BY_MARKING_ID for ref in markings)


def _dependency_refs(obj: Mapping[str, Any], links: list[tuple[str, Any]]) -> Iterator[str]:
    """Ids of identities and marking definitions that ``obj`` references anywhere we look
    (``links``: its ``_link_refs``)."""
    author = obj.get("created_by_ref")
    candidates: list[Any] = [author] if author else []
    candidates.extend(obj.get("object_marking_refs") or ())
    for granular in obj.get("granular_markings") or ():
        if isinstance(granular, Mapping):
            candidates.append(granular.get("marking_ref"))
    candidates.extend(ref for _path, ref in links)
    candidates.extend(ref for _path, ref in _extension_definitions(obj))
    for ref in candidates:
        if isinstance(ref, str) and _type_of(ref := ref.lower()) in DEPENDENCY_TYPES:
            yield ref


def _without_selectors(markings: list[Any], removed: AbstractSet[str]) -> list[Any]:
    """Granular markings minus selectors that pointed into removed properties
    (``removed``: dotted paths, as selectors spell them, STIX 2.1 section 7.2.3.1)."""
    kept = []
    for marking in markings:
        selectors = marking.get("selectors") if isinstance(marking, Mapping) else None
        if not isinstance(selectors, list):
            kept.append(marking)
            continue
        remaining = [s for s in selectors if not _within(str(s), removed)]
        if len(remaining) == len(selectors):
            kept.append(marking)
        elif remaining:
            kept.append({**marking, "selectors": remaining})
    return kept


def _within(selector: str, paths: AbstractSet[str]) -> bool:
    """Whether ``selector`` names one of ``paths`` or something inside one."""
    return any(selector == path or selector.startswith((f"{path}.", f"{path}[")) for path in paths)


def _redacted_translations(
    obj: Mapping[str, Any], redact: AbstractSet[str]
) -> tuple[dict[str, Any] | None, list[str]]:
    """A language-content's ``contents`` without the translations of ``redact``
    properties (STIX 2.1 section 7.1: ``contents`` maps each language to the translated
    properties of ``object_ref``), and the paths removed; (None, []) when none is there.

    A translation of a redacted property is that property's content in another
    language: it must not leave where the property does not."""
    contents = obj.get("contents")
    if obj.get("type") != "language-content" or not isinstance(contents, Mapping):
        return None, []
    removed: list[str] = []
    kept: dict[str, Any] = {}
    for language, translated in contents.items():
        if isinstance(translated, Mapping) and not redact.isdisjoint(translated):
            removed += [
                f"contents.{language}.{name}" for name in sorted(redact & translated.keys())
            ]
            translated = {k: v for k, v in translated.items() if k not in redact}
            if not translated:  # nothing left in it (STIX dictionaries are not empty)
                removed.append(f"contents.{language}")
                continue
        kept[language] = translated
    return (kept, removed) if removed else (None, [])


# --------------------------------------------------------------------------- policy


class Policy:
    """Evaluates objects against one set of :class:`Rules`.

    ``resolve(id)`` returns the latest stored version of a referenced object, or None when
    unknown.  :meth:`apply` uses it for references that point outside the batch, so that a
    relationship is not sent when its target is withheld even if the target was synced (or
    refused) in an earlier batch.  Without a resolver every such reference is unresolved.
    """

    def __init__(
        self, rules: Rules, resolve: Resolver | None = None, *, resolves_elsewhere: bool = False
    ) -> None:
        self._rules = rules
        self._resolve = resolve
        # ``resolve`` finds objects held where the decided objects are not (egress: the
        # node's other collections): what policy withholds there withholds what names
        # it, but a reference to them is otherwise one the recipient cannot resolve.
        self.resolves_elsewhere = resolves_elsewhere
        # Egress: TLP:RED never leaves, whatever the rules say.
        self.outgoing = rules.direction == "egress"
        self._checks = self._active_checks()
        self._links = PerObject(_link_refs)  # each object's links, walked once

    @property
    def rules(self) -> Rules:
        return self._rules

    def linked_ids(self, obj: Mapping[str, Any]) -> list[str]:
        """The ids ``obj`` refers to besides its author and markings (see ``_link_refs``):
        what egress must resolve before it can decide ``obj``."""
        return [ref for _path, ref in self._links(obj) if isinstance(ref, str)]

    # ----------------------------------------------------------------- single objects

    def decide(self, obj: dict[str, Any]) -> Decision:
        """Per-object rules only: no reference checks, no dependency promotion."""
        verdict = self._verdict(obj)
        if verdict is not None:
            return _withheld(obj, verdict.rule, verdict.detail)
        return self._allowed(obj, Rule.ALLOWED, f"passes the {self._rules.direction} policy")

    def decide_dependency(self, obj: dict[str, Any], referrer: str = "") -> Decision:
        """Decide an identity or marking definition that an allowed object references.

        For objects the caller fetched because :meth:`dependencies` named them.  Selective
        rules are waived (rule "dependency"); protective rules still withhold.  Other types
        get a plain :meth:`decide`.
        """
        verdict = self._verdict(obj)
        if verdict is None:
            return self._allowed(obj, Rule.ALLOWED, f"passes the {self._rules.direction} policy")
        if obj.get("type") in DEPENDENCY_TYPES and verdict.rule not in PROTECTIVE_RULES:
            return self._promoted(obj, verdict, referrer)
        return _withheld(obj, verdict.rule, verdict.detail)

    # ----------------------------------------------------------------- batches

    def apply(self, objs: Iterable[dict[str, Any]]) -> list[Decision]:
        """Decide a batch, in input order, keeping what is shared referentially safe.

        Beyond :meth:`decide`: relationships and sightings whose referenced objects are
        withheld are withheld; containers (report, grouping, note, opinion, observed-data)
        are trimmed or withheld per ``reports``; identities and marking definitions that an
        allowed object references are allowed with it (rule "dependency").
        """
        return _Batch(self, list(objs)).run()

    def apply_versions(
        self,
        current: Iterable[dict[str, Any]],
        versions: Iterable[dict[str, Any]],
        *,
        held_by_recipient: frozenset[str] = frozenset(),
        held_back: Mapping[str, tuple[str, str]] | None = None,
        gated: Mapping[str, tuple[str, str]] | None = None,
    ) -> tuple[list[Decision], list[Decision]]:
        """Decide ``versions`` of objects whose current versions are ``current`` (egress).

        ``current`` holds the newest version of every object the versions concern and of
        every object they reference, transitively (the caller resolves them), so the
        decisions do not depend on which other objects happen to be decided with them:
        an object is shared when its current version is; an older version of a shared
        object passes on its own rules and references; every version of an object whose
        current version is withheld is withheld.  References to ids in
        ``held_by_recipient`` (the recipient's own objects) are safe.  Objects in
        ``held_back`` (id -> rule, detail) are withheld whatever the rules say: what
        sharing holds back besides policy (awaiting release, not passed on), so that
        links to them are withheld and containers trimmed as for any withheld target.
        Objects in ``gated`` (id -> rule, detail) are being decided here and will
        not leave, for a gate's reason the caller applies to each of their versions
        itself: links to them are withheld and containers trimmed, their own decisions
        are the rules'.

        Identities and marking definitions withheld by a selective rule are not promoted
        here: they travel as dependencies (:meth:`dependencies`, :meth:`decide_dependency`).
        Returns (decisions on ``current``, decisions on ``versions``), each in input order.
        """
        batch = _Batch(self, list(current), held=held_by_recipient, held_back=held_back,
                       gated=gated)  # fmt: skip
        batch.run(promote=False)
        by_id = {d.object_id: (obj, d) for obj, d in zip(batch.objs, batch.decisions, strict=True)}
        decided = []
        for obj in versions:
            found = by_id.get(obj.get("id"))  # type: ignore[arg-type]
            if found is not None and _version(found[0]) == _version(obj):
                decided.append(found[1])
            elif found is not None and not found[1].allowed:
                state = found[1]
                detail = f"its current version is withheld ({_reason(state.rule, state.detail)})"
                decided.append(_withheld(obj, state.rule, detail))
            else:
                decided.append(batch.decide_version(obj))
        return batch.decisions, decided

    def dependencies(self, decisions: Iterable[Decision]) -> set[str]:
        """Ids of identities and marking definitions referenced by allowed objects but absent
        from ``decisions``: the caller fetches them (TLP definitions are also available from
        :func:`node.tlp.tlp_marking_definitions`) and passes each to :meth:`decide_dependency`.
        """
        present: set[str] = set()
        referenced: set[str] = set()
        for decision in decisions:
            present.add(decision.object_id)
            if decision.allowed and decision.obj is not None:
                referenced.update(_dependency_refs(decision.obj, self._links(decision.obj)))
        return referenced - present

    # ----------------------------------------------------------------- internals

    def _verdict(self, obj: Mapping[str, Any]) -> _Verdict | None:
        """The first rule withholding ``obj``, or None when every rule lets it pass."""
        level = None if _is_tlp_definition(obj) else tlp_of(obj)
        if obj.get("type") == "marking-definition" and not _is_tlp_definition(obj):
            claimed = declared_level(obj)  # one minted to mean a TLP level
            if claimed is not None and (level is None or claimed > level):
                level = claimed
        if level is TLP.RED and self.outgoing:
            return _Verdict(Rule.RED_NEVER_LEAVES, "TLP:RED never leaves this node")
        if not isinstance(obj.get("id"), str) or not isinstance(obj.get("type"), str):
            return _Verdict(Rule.INVALID, "object has no string id and type")
        for check in self._checks:
            verdict = check(obj, level)
            if verdict is not None:
                return verdict
        return None

    def _active_checks(
        self,
    ) -> tuple[Callable[[Mapping[str, Any], TLP | None], _Verdict | None], ...]:
        """Only the configured checks, in evaluation order: protective before selective."""
        rules = self._rules
        wanted = (
            (rules.ids_deny, self._check_ids_deny),
            (rules.types_deny, self._check_types_deny),
            (True, self._check_tlp),
            (rules.labels_deny, self._check_labels_deny),
            (rules.types_allow, self._check_types_allow),
            (rules.labels_require, self._check_labels_require),
            (rules.created_by_allow, self._check_created_by),
            (rules.min_confidence is not None, self._check_confidence),
        )
        return tuple(check for enabled, check in wanted if enabled)

    def _check_ids_deny(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        if obj["id"].lower() in self._rules.ids_deny:
            return _Verdict(Rule.IDS_DENY, f"{obj['id']} is in ids_deny")
        return None

    def _check_types_deny(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        if obj["type"] in self._rules.types_deny:
            return _Verdict(Rule.TYPES_DENY, f"type {obj['type']!r} is in types_deny")
        return None

    def _check_types_allow(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        if obj["type"] not in self._rules.types_allow:
            return _Verdict(Rule.TYPES_ALLOW, f"type {obj['type']!r} is not in types_allow")
        return None

    def _check_tlp(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        """TLP ceiling, the AMBER+STRICT opt-in, and unmarked objects.

        TLP marking definitions are exempt: they are the markings, not marked content.
        """
        rules = self._rules
        if level is None:
            if rules.unmarked == "withhold" and not _is_tlp_definition(obj):
                return _Verdict(Rule.UNMARKED, "no TLP marking (unmarked = withhold)")
            return None
        if level > rules.max_tlp:
            detail = f"TLP:{level.label} above max_tlp {rules.max_tlp.label}"
            return _Verdict(Rule.TLP_MAX, detail)
        if level is TLP.AMBER_STRICT and not rules.allow_amber_strict:
            detail = "TLP:AMBER+STRICT needs allow_amber_strict = true"
            return _Verdict(Rule.TLP_AMBER_STRICT, detail)
        return None

    def _check_labels_deny(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        denied = self._rules.labels_deny.intersection(_labels(obj))
        if denied:
            return _Verdict(Rule.LABELS_DENY, f"label {min(denied)!r} is in labels_deny")
        return None

    def _check_labels_require(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        if self._rules.labels_require.isdisjoint(_labels(obj)):
            wanted = ", ".join(sorted(self._rules.labels_require))
            return _Verdict(Rule.LABELS_REQUIRE, f"carries none of labels_require ({wanted})")
        return None

    def _check_created_by(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        """Objects without ``created_by_ref`` (SCOs included) cannot show who wrote them."""
        author = obj.get("created_by_ref")
        if author is None:
            return _Verdict(Rule.CREATED_BY_ALLOW, "no created_by_ref (created_by_allow is set)")
        if not isinstance(author, str) or author.lower() not in self._rules.created_by_allow:
            detail = f"created_by_ref {author} not in created_by_allow"
            return _Verdict(Rule.CREATED_BY_ALLOW, detail)
        return None

    def _check_confidence(self, obj: Mapping[str, Any], level: TLP | None) -> _Verdict | None:
        rules = self._rules
        confidence = obj.get("confidence")
        if not isinstance(confidence, int) or isinstance(confidence, bool):
            if rules.missing_confidence == "withhold":
                detail = "no confidence (missing_confidence = withhold)"
                return _Verdict(Rule.CONFIDENCE_MISSING, detail)
            return None
        if rules.min_confidence is not None and confidence < rules.min_confidence:
            detail = f"confidence {confidence} below min_confidence {rules.min_confidence}"
            return _Verdict(Rule.CONFIDENCE_MIN, detail)
        return None

    def _allowed(self, obj: dict[str, Any], rule: Rule, detail: str) -> Decision:
        sent, removed = self._redacted(obj)
        if sent.get("type") == "language-content" and sent.get("contents") == {}:
            detail = f"every translation is of a redacted property ({', '.join(removed)})"
            return _withheld(obj, Rule.REDACTED_AWAY, detail)
        if removed:
            detail = f"{detail}; redacted {', '.join(removed)}"
        return Decision(obj["id"], _version(obj), True, rule, detail, sent)

    def _promoted(self, obj: dict[str, Any], verdict: _Verdict, referrer: str) -> Decision:
        """Allow a dependency that, on its own, a selective rule would have withheld."""
        by = f" by {referrer}" if referrer else ""
        detail = f"referenced{by} (on its own: {verdict.rule}: {verdict.detail})"
        return self._allowed(obj, Rule.DEPENDENCY, detail)

    def _redacted(self, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        return redacted(obj, self._rules.redact)


def redacted(obj: dict[str, Any], redact: AbstractSet[str]) -> tuple[dict[str, Any], list[str]]:
    """``obj`` without the ``redact`` properties, nor their translations in a
    language-content (and the paths removed): a copy only when one is present.  What
    egress sends, and what a recall repeats of what was sent (``node.store.recalls``)."""
    if not redact:
        return obj, []
    contents, translations = _redacted_translations(obj, redact)
    if redact.isdisjoint(obj) and contents is None:
        return obj, []
    removed = {key for key in obj if key in redact}
    copy = {key: value for key, value in obj.items() if key not in removed}
    if contents is not None:
        copy["contents"] = contents
    paths = removed | set(translations)
    granular = copy.get("granular_markings")
    if isinstance(granular, list):
        granular = _without_selectors(granular, paths)
        if granular:
            copy["granular_markings"] = granular
        else:
            del copy["granular_markings"]
    return copy, sorted(paths)


# --------------------------------------------------------------------------- batch run


class _Stored(NamedTuple):
    """What the resolver said about an id outside the batch."""

    found: bool
    verdict: _Verdict | None


class _Batch:
    """State of one :meth:`Policy.apply` call (kept off the Policy, which is shared)."""

    def __init__(
        self,
        policy: Policy,
        objs: list[dict[str, Any]],
        held: frozenset[str] = frozenset(),
        held_back: Mapping[str, tuple[str, str]] | None = None,
        gated: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.policy = policy
        self.objs = objs
        self.held = held  # ids the recipient holds itself: references to them are safe
        self.decisions = [policy.decide(obj) for obj in objs]
        if held_back:
            self._hold_back(held_back)
        self.positions: dict[str, list[int]] = {}
        self.withheld: dict[str, Decision] = {}  # id -> a withheld version's decision
        self.protected: set[str] = set()  # ids with a version withheld by a protective rule
        self.stored: dict[str, _Stored] = {}
        # Each object's _link_refs, walked once: the checks below read them up to three
        # times, and the policy's dependencies() once more.
        self.links = [policy._links(obj) for obj in objs]
        for position, decision in enumerate(self.decisions):
            self.positions.setdefault(decision.object_id, []).append(position)
            if not decision.allowed:
                self._record_withheld(decision)
        if gated:
            self._count_gated_as_withheld(gated)

    def _count_gated_as_withheld(self, gated: Mapping[str, tuple[str, str]]) -> None:
        """Count these objects withheld as link targets, leaving their own decisions."""
        for object_id, (rule, detail) in gated.items():
            positions = self.positions.get(object_id)
            if positions and object_id not in self.withheld:
                self.withheld[object_id] = _withheld(self.objs[positions[0]], rule, detail)

    def _hold_back(self, held_back: Mapping[str, tuple[str, str]]) -> None:
        for position, decision in enumerate(self.decisions):
            reason = held_back.get(decision.object_id)
            if reason is not None and decision.allowed:
                self.decisions[position] = _withheld(self.objs[position], *reason)

    def run(self, promote: bool = True) -> list[Decision]:
        self._withhold_broken_links()
        self._trim_containers()
        if promote:
            self._promote_dependencies()
        return self.decisions

    def decide_version(self, obj: dict[str, Any]) -> Decision:
        """One more version, judged against this batch's decisions without changing them."""
        decision = self.policy.decide(obj)
        if not decision.allowed:
            return decision
        verdict = self._author_verdict(obj)
        links = self.policy._links(obj)
        if verdict is None and self._is_linking(obj, links):
            verdict = self._link_verdict(obj, links)
        if verdict is not None:
            return _withheld(obj, verdict.rule, verdict.detail)
        return self._trim(decision, obj)

    # ----------------------------------------------------------------- reference safety

    def _withhold_broken_links(self) -> None:
        """Withhold objects whose links or named dependencies are withheld, transitively.

        Withholding only ever spreads (allowed -> withheld), and an object's verdict can
        change only when an object it names is withheld: so each object is checked once,
        and again only when something it names has just been withheld.  The work grows
        with the references, not with the square of the batch: passes "until nothing
        changes" cost one pass per link of a chain (10,000 notes posted by a partner,
        each listing the next, held a server thread for many minutes).
        """
        referrers: dict[str, list[int]] = {}
        checks: list[tuple[int, bool, bool]] = []  # (position, authored, linking)
        links = self.links
        for position, obj in enumerate(self.objs):
            authored = _has_dependency_refs(obj)
            linking = self._is_linking(obj, links[position])
            if not (authored or linking):
                continue
            checks.append((position, authored, linking))
            named = _named_dependencies(obj) if authored else iter(())
            for ref in {ref for _path, ref in (*named, *links[position]) if isinstance(ref, str)}:
                referrers.setdefault(ref, []).append(position)
        kinds = {position: (authored, linking) for position, authored, linking in checks}
        pending = [position for position, _, _ in reversed(checks)]  # popped in input order
        queued = set(pending)
        while pending:
            position = pending.pop()
            queued.discard(position)
            decision = self.decisions[position]
            if not decision.allowed and not self._is_promotable(position, decision):
                continue
            withheld = self._check_links(position, *kinds[position])
            if withheld is None:
                continue
            for referrer in referrers.get(withheld, ()):
                if referrer not in queued:
                    queued.add(referrer)
                    pending.append(referrer)

    def _check_links(self, position: int, authored: bool, linking: bool) -> str | None:
        """Withhold the object at ``position`` if its author, markings or links now say so;
        the id withheld, or None.

        Also checked: an identity or marking definition withheld by a selective rule,
        which travels when an allowed object names it (``_promote_dependencies``).  If
        what it names is withheld, it may not travel either (it would name what policy
        keeps back), and neither may the objects that name it.
        """
        obj = self.objs[position]
        dependency = not self.decisions[position].allowed  # (see _withhold_broken_links)
        verdict = self._author_verdict(obj) if authored else None
        if verdict is not None:
            self._withhold(position, verdict, protect=True)
        elif linking and (verdict := self._link_verdict(obj, self.links[position])) is not None:
            self._withhold(position, verdict, protect=dependency)
        else:
            return None
        return self.decisions[position].object_id

    def _author_verdict(self, obj: Mapping[str, Any]) -> _Verdict | None:
        """Why ``obj`` must be withheld for the identity or marking it names, if it must.

        An object naming an author (``created_by_ref``) or a marking definition that a
        protective rule withholds is withheld with it: sending it would name what policy
        keeps back, and the optional property cannot be dropped without changing the
        version the partner would hold.
        """
        for path, ref in _named_dependencies(obj):
            if ref == obj.get("id") or (isinstance(ref, str) and ref.lower() in TLP_BY_MARKING_ID):
                continue  # an identity naming itself; TLP definitions always travel
            problem = self._reference_problem(ref)
            if problem is not None and problem.rule is Rule.REF_WITHHELD:
                return _Verdict(problem.rule, f"{path} {ref} {problem.detail}")
        return None

    def _is_linking(self, obj: Mapping[str, Any], links: list[tuple[str, Any]]) -> bool:
        """Whether ``obj`` is about other objects (its type, or ``links``: its ``_link_refs``)."""
        kind = obj.get("type")
        return kind in _LINK_PROPERTIES or kind in CONTAINER_TYPES or bool(links)

    def _link_verdict(
        self, obj: Mapping[str, Any], links: list[tuple[str, Any]]
    ) -> _Verdict | None:
        """Why an object must now be withheld for what it links to (``links``, its
        ``_link_refs``), if it must: any link but a container's ``object_refs`` withholds
        it; those are trimmed (``reports``)."""
        listing = obj.get("type") in CONTAINER_TYPES
        refs: list[tuple[str, Any]] = []
        for path, ref in links:
            if listing and path.startswith("object_refs["):
                refs.append((path, ref))
                continue
            problem = self._reference_problem(ref)
            if problem is not None:
                return _Verdict(problem.rule, f"{path} {ref} {problem.detail}")
        if not listing:
            return None
        blocked = [(path, ref, p) for path, ref in refs if (p := self._reference_problem(ref))]
        if not blocked:
            return None
        path, ref, problem = blocked[0]
        if self.policy.rules.reports == "withhold":
            detail = f"{len(blocked)} withheld reference(s), first {path} {ref} {problem.detail}"
            return _Verdict(Rule.REPORTS_WITHHOLD, detail)
        if len(blocked) == len(refs):
            detail = f"all {len(refs)} object_refs withheld, first {ref} {problem.detail}"
            return _Verdict(Rule.REPORTS_EMPTY, detail)
        return None

    def _reference_problem(self, ref: Any) -> _Verdict | None:
        """Why referencing ``ref`` is unsafe, or None when the reference may be shared.

        A dependency (identity, marking definition) only blocks when a protective rule
        withholds it: otherwise it travels with the referencing object.
        """
        if not isinstance(ref, str):
            return _Verdict(Rule.REF_UNRESOLVED, "is not a STIX id")
        ref = ref.lower()  # (see _canonical)
        if ref in self.held:
            return None
        is_dependency = _type_of(ref) in DEPENDENCY_TYPES
        if ref in self.positions:
            blocked = ref in self.protected if is_dependency else ref in self.withheld
            if not blocked:
                return None
            reason = self.withheld[ref]
            return _Verdict(
                Rule.REF_WITHHELD, f"is withheld ({_reason(reason.rule, reason.detail)})"
            )
        stored = self._stored(ref)
        verdict = stored.verdict
        # (a dependency withheld by a selective rule travels with what names it)
        selective = is_dependency and verdict is not None and verdict.rule not in PROTECTIVE_RULES
        if stored.found and verdict is not None and not selective:
            detail = f"is withheld ({_reason(verdict.rule, verdict.detail)})"
            return _Verdict(Rule.REF_WITHHELD, detail)
        if stored.found and not self.policy.resolves_elsewhere:
            return None
        # Not held, or held only in another collection (which does not travel with this
        # one): the target stays unknown to the recipient.
        if is_dependency or self.policy.rules.unresolved_refs == "share":
            return None
        return _Verdict(Rule.REF_UNRESOLVED, "is neither in the batch nor stored")

    def _stored(self, ref: str) -> _Stored:
        """The per-object verdict on the stored version of ``ref``, resolved once per batch."""
        if ref not in self.stored:
            resolve = self.policy._resolve
            obj = resolve(ref) if resolve is not None else None
            verdict = None if obj is None else self.policy._verdict(obj)
            self.stored[ref] = _Stored(obj is not None, verdict)
        return self.stored[ref]

    def _trim_containers(self) -> None:
        """Cut withheld references out of allowed containers (reports = "trim")."""
        for position, obj in enumerate(self.objs):
            decision = self.decisions[position]
            if decision.allowed:
                self.decisions[position] = self._trim(decision, obj)

    def _trim(self, decision: Decision, obj: Mapping[str, Any]) -> Decision:
        """``decision`` for a container with its withheld ``object_refs`` cut out."""
        refs = obj.get("object_refs") if obj.get("type") in CONTAINER_TYPES else None
        if not isinstance(refs, list):
            return decision
        kept = [ref for ref in refs if self._reference_problem(ref) is None]
        return decision if len(kept) == len(refs) else self._trimmed(decision, refs, kept)

    def _trimmed(self, decision: Decision, refs: list[Any], kept: list[Any]) -> Decision:
        sent = {**(decision.obj or {}), "object_refs": kept}
        detail = f"object_refs trimmed: {len(refs) - len(kept)} of {len(refs)} withheld"
        return Decision(decision.object_id, decision.version, True, Rule.REPORTS_TRIM, detail, sent)

    # ----------------------------------------------------------------- dependencies

    def _promote_dependencies(self) -> None:
        """Allow selectively-withheld identities/markings that an allowed object references.

        Promoted objects' own references (an identity's author, a marking's marking) are
        followed too.
        """
        candidates: dict[str, list[int]] = {}
        for position, decision in enumerate(self.decisions):
            if self._is_promotable(position, decision):
                candidates.setdefault(decision.object_id, []).append(position)
        if not candidates:
            return
        queue = [p for p, decision in enumerate(self.decisions) if decision.allowed]
        while queue and candidates:
            referrer = self.decisions[queue.pop()]
            referring = referrer.obj or {}
            for ref in _dependency_refs(referring, self.policy._links(referring)):
                for position in candidates.pop(ref, ()):
                    self._promote(position, referrer.object_id)
                    queue.append(position)

    def _promote(self, position: int, referrer: str) -> None:
        withheld = self.decisions[position]
        verdict = _Verdict(Rule(withheld.rule), withheld.detail)
        self.decisions[position] = self.policy._promoted(self.objs[position], verdict, referrer)

    def _is_promotable(self, position: int, decision: Decision) -> bool:
        """Whether the version at ``position`` is a dependency that travels when an allowed
        object names it: withheld by a selective rule, and naming nothing withheld."""
        return (
            not decision.allowed
            and decision.rule not in PROTECTIVE_RULES
            and self.objs[position].get("type") in DEPENDENCY_TYPES
            and decision.object_id not in self.protected
        )

    # ----------------------------------------------------------------- bookkeeping

    def _withhold(self, position: int, verdict: _Verdict, protect: bool = False) -> None:
        decision = _withheld(self.objs[position], verdict.rule, verdict.detail)
        self.decisions[position] = decision
        self._record_withheld(decision)
        if protect:
            # Withheld for the author it names: it cannot travel as a dependency either.
            self.protected.add(decision.object_id)
            self.withheld[decision.object_id] = decision  # report this reason

    def _record_withheld(self, decision: Decision) -> None:
        self.withheld.setdefault(decision.object_id, decision)
        if decision.rule in PROTECTIVE_RULES:
            self.protected.add(decision.object_id)
            self.withheld[decision.object_id] = decision  # report the protective reason
