"""Tests for node.validation: every rule accepted and rejected, real corpora, fuzzing.

Valid fixtures are built with the stix2 library (so they are valid by a second,
independent implementation) and serialized to plain JSON dicts; invalid ones
are those fixtures with one thing changed.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import stix2
import stix2.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stix2 import v21

from node.timestamps import to_micros
from node.validation import object_problem, validate_all, version_key, version_micros

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = ("capec-2.1.json", "ics-attack-17.1.json", "ics-attack-18.0.json")

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-02-01T00:00:00.000Z"
T2 = "2024-03-01T12:30:00.123456Z"
SHA256 = "a" * 64


def _json(obj: Any) -> dict[str, Any]:
    return json.loads(obj.serialize())


def _build_valid_objects() -> dict[str, dict[str, Any]]:
    """One or more valid objects of every STIX 2.1 type, made by the stix2 library."""
    identity = v21.Identity(name="ACME CERT", identity_class="organization")
    ipv4 = v21.IPv4Address(value="198.51.100.7")
    ipv6 = v21.IPv6Address(value="2001:db8::1")
    mac = v21.MACAddress(value="00:00:5e:00:53:af")
    email_addr = v21.EmailAddress(value="alice@example.com", display_name="Alice")
    file = v21.File(name="evil.exe", hashes={"SHA-256": SHA256}, size=1024, ctime=T0, mtime=T1)
    artifact = v21.Artifact(payload_bin="aGVsbG8gd29ybGQ=", mime_type="text/plain")
    indicator = v21.Indicator(
        name="Bad file",
        pattern=f"[file:hashes.'SHA-256' = '{SHA256}']",
        pattern_type="stix",
        valid_from=T0,
        valid_until=T2,
        created_by_ref=identity.id,
        labels=["malicious-activity"],
        confidence=80,
        object_marking_refs=[stix2.TLP_GREEN.id],
        external_references=[{"source_name": "acme", "url": "https://example.com/r/1"}],
        kill_chain_phases=[{"kill_chain_name": "lockheed", "phase_name": "delivery"}],
        granular_markings=[
            {"selectors": ["pattern", "kill_chain_phases.[0]"], "marking_ref": stix2.TLP_AMBER.id}
        ],
        allow_custom=True,
        x_acme_score=7,
    )
    malware = v21.Malware(name="BadRAT", is_family=True, first_seen=T0, last_seen=T1)
    campaign = v21.Campaign(name="Operation X", first_seen=T0, last_seen=T2, objective="loot")
    observed = v21.ObservedData(
        first_observed=T0, last_observed=T1, number_observed=3, object_refs=[ipv4.id]
    )
    objects = {
        "identity": identity,
        "attack-pattern": v21.AttackPattern(
            name="Spearphishing",
            external_references=[{"source_name": "capec", "external_id": "CAPEC-163"}],
            kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "initial"}],
        ),
        "campaign": campaign,
        "course-of-action": v21.CourseOfAction(name="Patch", description="Apply patches"),
        "grouping": v21.Grouping(context="suspicious-activity", object_refs=[indicator.id]),
        "incident": v21.Incident(name="Breach 42"),
        "indicator": indicator,
        "infrastructure": v21.Infrastructure(name="C2 net", first_seen=T0, last_seen=T0),
        "intrusion-set": v21.IntrusionSet(name="APT-Z", aliases=["Zed"], goals=["money"]),
        "location": v21.Location(latitude=48.85, longitude=2.35, precision=1000.0),
        "location-region": v21.Location(region="northern-europe"),
        "malware": malware,
        "malware-instance": v21.Malware(is_family=False, sample_refs=[file.id]),
        "malware-analysis": v21.MalwareAnalysis(
            product="acme-av", result="malicious", submitted=T0, analysis_started=T1
        ),
        "malware-analysis-scos": v21.MalwareAnalysis(
            product="sandbox", analysis_sco_refs=[file.id]
        ),
        "note": v21.Note(content="Seen twice", authors=["bob"], object_refs=[malware.id]),
        "observed-data": observed,
        "opinion": v21.Opinion(opinion="agree", object_refs=[indicator.id]),
        "report": v21.Report(name="Q1", published=T1, object_refs=[indicator.id, malware.id]),
        "threat-actor": v21.ThreatActor(name="Mallory", first_seen=T0, last_seen=T1),
        "tool": v21.Tool(name="nmap", tool_version="7.94"),
        "vulnerability": v21.Vulnerability(
            name="CVE-2021-44228",
            external_references=[{"source_name": "cve", "external_id": "CVE-2021-44228"}],
        ),
        "relationship": v21.Relationship(
            indicator, "indicates", malware, start_time=T0, stop_time=T1
        ),
        "relationship-to-sco": v21.Relationship(malware, "communicates-with", ipv4),
        "sighting": v21.Sighting(
            sighting_of_ref=indicator.id,
            where_sighted_refs=[identity.id],
            observed_data_refs=[observed.id],
            first_seen=T0,
            last_seen=T1,
            count=2,
            summary=False,
        ),
        "marking-statement": v21.MarkingDefinition(
            definition_type="statement", definition={"statement": "Copyright ACME"}
        ),
        "marking-tlp-white": stix2.TLP_WHITE,
        "marking-tlp-red": stix2.TLP_RED,
        "marking-tlp2-clear": v21.MarkingDefinition(
            id="marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            created="2022-10-01T00:00:00.000Z",
            name="TLP:CLEAR",
            extensions={
                "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                    "extension_type": "property-extension",
                    "tlp_2_0": "clear",
                }
            },
        ),
        "language-content": v21.LanguageContent(
            object_ref=campaign.id,
            object_modified=campaign.modified,
            contents={"de": {"name": "Operation X", "objective": "Beute"}},
        ),
        "extension-definition": v21.ExtensionDefinition(
            created_by_ref=identity.id,
            name="acme-ext",
            schema="https://example.com/schema.json",
            version="1.0",
            extension_types=["property-extension"],
        ),
        "artifact": artifact,
        "artifact-url": v21.Artifact(url="https://example.com/a.bin", hashes={"SHA-256": SHA256}),
        "autonomous-system": v21.AutonomousSystem(number=64496, name="Example AS"),
        "directory": v21.Directory(path="C:\\Windows", ctime=T0, mtime=T1, atime=T2),
        "domain-name": v21.DomainName(value="example.com", resolves_to_refs=[ipv4.id]),
        "email-addr": email_addr,
        "email-message": v21.EmailMessage(
            is_multipart=False,
            date=T1,
            from_ref=email_addr.id,
            to_refs=[email_addr.id],
            subject="Invoice",
            body="Please pay",
        ),
        "email-multipart": v21.EmailMessage(
            is_multipart=True,
            body_multipart=[{"body": "hello", "content_type": "text/plain"}],
        ),
        "file": file,
        "ipv4-addr": ipv4,
        "ipv6-addr": ipv6,
        "mac-addr": mac,
        "mutex": v21.Mutex(name="Global\\evil"),
        "network-traffic": v21.NetworkTraffic(
            src_ref=ipv4.id,
            dst_ref=ipv6.id,
            protocols=["ipv4", "tcp"],
            src_port=49152,
            dst_port=443,
            start=T0,
            end=T1,
            is_active=False,
        ),
        "process": v21.Process(pid=4242, created_time=T0, command_line="evil.exe -q"),
        "software": v21.Software(name="Word", vendor="Microsoft", version="2019"),
        "url": v21.URL(value="https://example.com/login"),
        "user-account": v21.UserAccount(
            user_id="1001",
            account_created=T0,
            account_expires=T2,
            credential_last_changed=T1,
            account_first_login=T0,
            account_last_login=T1,
        ),
        "windows-registry-key": v21.WindowsRegistryKey(
            key="HKEY_LOCAL_MACHINE\\Software\\Evil",
            modified_time=T1,
            values=[{"name": "Run", "data": "evil.exe", "data_type": "REG_SZ"}],
        ),
        "x509-certificate": v21.X509Certificate(
            issuer="CN=Example CA",
            serial_number="01",
            validity_not_before=T0,
            validity_not_after=T2,
        ),
    }
    built = {name: _json(obj) for name, obj in objects.items()}
    built["custom-object"] = {
        "type": "x-acme-widget",
        "spec_version": "2.1",
        "id": f"x-acme-widget--{uuid.uuid4()}",
        "created": T0,
        "modified": T1,
        "size": "large",
        "x_acme_rank": [1, 2, 3],
    }
    built["sco-without-spec-version"] = {
        "type": "url",
        "id": str(stix2.v21.URL(value="https://example.org/").id),  # STIX 2.1 section 2.9
        "value": "https://example.org/",
    }
    return built


VALID = _build_valid_objects()
VALID_NAMES = sorted(VALID)


def valid(name: str) -> dict[str, Any]:
    """A fresh copy of a valid fixture, safe to mutate."""
    return copy.deepcopy(VALID[name])


def changed(fixture: str, /, drop: tuple[str, ...] = (), **updates: Any) -> dict[str, Any]:
    """A valid fixture with properties dropped and/or set."""
    obj = valid(fixture)
    for key in drop:
        del obj[key]
    obj.update(updates)
    return obj


def problem_of(obj: object) -> str:
    """The reason object_problem gives; fails the test when it accepts obj."""
    reason = object_problem(obj)
    assert reason is not None, f"expected a problem with {obj!r}"
    return reason


def same_uuid(name: str, new_type: str) -> str:
    return f"{new_type}--{VALID[name]['id'].split('--', 1)[1]}"


# --------------------------------------------------------------------------
# Valid objects


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_fixture_is_accepted(name: str) -> None:
    assert object_problem(valid(name)) is None


@pytest.mark.parametrize(
    "marking",
    [stix2.TLP_WHITE, stix2.TLP_GREEN, stix2.TLP_AMBER, stix2.TLP_RED],
    ids=["white", "green", "amber", "red"],
)
def test_standard_tlp_markings_are_accepted(marking: Any) -> None:
    assert object_problem(_json(marking)) is None


def test_fixtures_cover_every_stix_type() -> None:
    types = {obj["type"] for obj in VALID.values()}
    expected = set(stix2.registry.STIX2_OBJ_MAPS["2.1"]["objects"]) - {"bundle"}
    expected |= set(stix2.registry.STIX2_OBJ_MAPS["2.1"]["observables"])
    assert expected <= types


# --------------------------------------------------------------------------
# JSON object, type


@pytest.mark.parametrize("value", [None, [], [VALID["indicator"]], "indicator", 42, 1.5, True])
def test_non_object_is_rejected(value: object) -> None:
    assert "must be a JSON object" in problem_of(value)


def test_missing_type() -> None:
    assert problem_of(changed("indicator", drop=("type",))) == "missing required property 'type'"


@pytest.mark.parametrize(
    "bad_type",
    ["Indicator", "ab", "in_dicator", "indicator-", "-indicator", "1ndicator", "x" * 251, "a b"],
)
def test_bad_type_is_rejected(bad_type: str) -> None:
    reason = problem_of(changed("indicator", type=bad_type))
    assert "'type' must be 3-250 characters" in reason
    assert repr(bad_type)[:20] in reason


@pytest.mark.parametrize("bad_type", [5, ["indicator"], {"a": 1}, None])
def test_non_string_type_is_rejected(bad_type: object) -> None:
    assert problem_of(changed("indicator", type=bad_type)).startswith("'type' must be a string")


@pytest.mark.parametrize("custom_type", ["x-acme-widget", "abc", "x" * 250, "acme-2"])
def test_custom_types_are_accepted(custom_type: str) -> None:
    obj = changed("custom-object", type=custom_type, id=same_uuid("custom-object", custom_type))
    assert object_problem(obj) is None


def test_bundle_is_not_an_object() -> None:
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [VALID["indicator"]]}
    assert "bundle is not a STIX object" in problem_of(bundle)


# --------------------------------------------------------------------------
# id


def test_missing_id() -> None:
    reason = problem_of(changed("malware", drop=("id",)))
    assert reason == "missing required property 'id' for type 'malware'"


def test_id_of_another_type_is_rejected() -> None:
    other = same_uuid("indicator", "indicator")
    reason = problem_of(changed("malware", id=other))
    assert reason == f"id {other!r} does not match type 'malware'"


# Fixed, not random: parameter ids must be the same in every pytest-xdist worker.
SAMPLE_UUID = "3f2b8c1e-7d4a-4e6b-9c5d-1a2b3c4d5e6f"


@pytest.mark.parametrize(
    "bad_id",
    [
        "indicator--1234",
        "indicator-" + SAMPLE_UUID,
        "indicator--" + SAMPLE_UUID.replace("-", ""),
        "indicator--{" + SAMPLE_UUID + "}",
        "indicator--00000000-0000-0000-0000-000000000000",  # nil UUID: not RFC 4122 variant
        "indicator--6ba7b810-9dad-11d1-c0b4-00c04fd430c8",  # Microsoft variant nibble
        "indicator--g" + SAMPLE_UUID[1:],
        "indicator--" + SAMPLE_UUID + "\n",
        "indicator--" + SAMPLE_UUID + "x",
        "Indicator--" + SAMPLE_UUID,
        42,
        None,
    ],
)
def test_malformed_id_is_rejected(bad_id: object) -> None:
    reason = problem_of(changed("indicator", id=bad_id))
    assert reason.startswith("'id' must be 'indicator--<RFC 4122 UUID>', got ")


@pytest.mark.parametrize(
    "good_uuid",
    [
        uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),  # version 1
        uuid.uuid3(uuid.NAMESPACE_DNS, "example.com"),
        uuid.UUID(SAMPLE_UUID),
        uuid.uuid5(uuid.NAMESPACE_DNS, "example.com"),
    ],
)
def test_any_uuid_version_is_accepted(good_uuid: object) -> None:
    assert object_problem(changed("indicator", id=f"indicator--{good_uuid}")) is None


@pytest.mark.parametrize("spelt", [SAMPLE_UUID.upper(), SAMPLE_UUID[:8].upper() + SAMPLE_UUID[8:]])
def test_an_id_with_upper_case_hex_is_refused_and_a_reference_is_not(spelt: str) -> None:
    """Upper case names the same UUID (RFC 4122 section 3) but another stored id."""
    reason = problem_of(changed("indicator", id=f"indicator--{spelt}"))
    assert "write the UUID's hex digits in lower case" in reason
    author = {"created_by_ref": f"identity--{spelt}"}
    assert object_problem(changed("indicator", **author)) is None


# --------------------------------------------------------------------------
# spec_version


@pytest.mark.parametrize("name", ["indicator", "relationship", "marking-statement"])
def test_spec_version_required_on_sdo_sro_and_meta(name: str) -> None:
    reason = problem_of(changed(name, drop=("spec_version",)))
    assert reason.startswith("missing required property 'spec_version' for type")
    assert "STIX 2.1" in reason


@pytest.mark.parametrize("name", ["indicator", "file", "custom-object"])
@pytest.mark.parametrize("version", ["2.0", "2.2", 2.1, None, ""])
def test_spec_version_other_than_2_1_is_rejected(name: str, version: object) -> None:
    reason = problem_of(changed(name, spec_version=version))
    assert reason.startswith("'spec_version' must be '2.1'")
    assert repr(version) in reason


def test_stix_2_0_indicator_is_rejected_with_a_clear_reason() -> None:
    stix20 = json.loads(
        stix2.v20.Indicator(pattern="[url:value = 'http://x.test/']", labels=["x"]).serialize()
    )
    assert "only STIX 2.1 objects are accepted" in problem_of(stix20)


@pytest.mark.parametrize("name", ["sco-without-spec-version", "custom-object"])
def test_spec_version_optional_on_sco_and_custom(name: str) -> None:
    obj = valid(name)
    obj.pop("spec_version", None)
    assert object_problem(obj) is None


@pytest.mark.parametrize(
    ("kind", "properties"),
    [
        (stix2.v21.IPv4Address, {"value": "203.0.113.7"}),
        (stix2.v21.IPv6Address, {"value": "2001:db8::1"}),
        (stix2.v21.MACAddress, {"value": "00:00:5e:00:53:01"}),
        (stix2.v21.DomainName, {"value": "exämple.org"}),
        (stix2.v21.URL, {"value": 'https://a.example/"q"\\p'}),
        (stix2.v21.EmailAddress, {"value": "ü@b.example"}),
        (stix2.v21.Mutex, {"name": "m\u2028x"}),
        (stix2.v21.Directory, {"path": "C:\\Windows"}),
        (stix2.v21.AutonomousSystem, {"number": 64496}),
    ],
)
def test_an_scos_deterministic_id_is_the_one_of_its_value(kind, properties) -> None:
    """The id stix2 derives (STIX 2.1 section 2.9) is accepted; under it, another value
    is refused (it would hold the id our publication of that value has)."""
    made = json.loads(kind(**properties).serialize())
    assert object_problem(made) is None
    name, value = next(iter(properties.items()))
    other = {**made, name: value + 1 if isinstance(value, int) else value + "x"}
    assert "a STIX 2.1 deterministic id" in (problem_of(other) or "")
    assert object_problem({**other, "id": f"{made['type']}--{uuid.uuid4()}"}) is None  # v4: ok


def test_an_sco_has_one_version() -> None:
    """SCOs have no created or modified (STIX 2.1 section 6.1); a revoked version, as
    this node records a recall, may carry modified."""
    address = json.loads(stix2.v21.IPv4Address(value="198.51.100.4").serialize())
    moment = "2026-01-01T00:00:00.000Z"
    assert "has no modified" in (problem_of({**address, "modified": moment}) or "")
    assert "has no created" in (problem_of({**address, "created": moment}) or "")
    assert object_problem({**address, "modified": moment, "revoked": True}) is None


# --------------------------------------------------------------------------
# created / modified and timestamps


@pytest.mark.parametrize("name", ["indicator", "sighting", "language-content"])
@pytest.mark.parametrize("prop", ["created", "modified"])
def test_created_and_modified_required(name: str, prop: str) -> None:
    reason = problem_of(changed(name, drop=(prop,)))
    assert reason == f"missing required property {prop!r} for type {VALID[name]['type']!r}"


def test_marking_definition_needs_created_only() -> None:
    assert "modified" not in VALID["marking-statement"]
    reason = problem_of(changed("marking-statement", drop=("created",)))
    assert reason == "missing required property 'created' for type 'marking-definition'"


@pytest.mark.parametrize(
    "bad",
    [
        "yesterday",
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:00:00.Z",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:60Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z\n",
        "２０２４-01-01T00:00:00Z",  # noqa: RUF001 -- full-width digits
        "2024-01-01t00:00:00z",
        "",
        1704067200,
        None,
        ["2024-01-01T00:00:00Z"],
    ],
)
def test_invalid_timestamp_is_rejected(bad: object) -> None:
    reason = problem_of(changed("indicator", created=bad, modified=bad))
    assert reason.startswith("'created' is not an RFC 3339 UTC timestamp: ")
    assert repr(bad)[:40] in reason


@pytest.mark.parametrize(
    "good",
    [
        "2024-02-29T00:00:00Z",
        "2024-01-31T23:59:59Z",
        "2024-01-01T00:00:00.1Z",
        "2024-01-01T00:00:00.123456789Z",
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_valid_timestamp_is_accepted(good: str) -> None:
    obj = changed("indicator", created=good, modified=good, valid_from=good)
    obj["valid_until"] = "9999-12-31T23:59:59.999Z"
    assert object_problem(obj) is None


@pytest.mark.parametrize("year", ["1900", "2000", "2023", "2024"])
def test_every_calendar_day_agrees_with_to_micros(year: str) -> None:
    for month in range(20):
        for day in range(40):
            stamp = f"{year}-{month:02d}-{day:02d}T23:59:59Z"
            obj = changed("custom-object", created=stamp, drop=("modified",))
            try:
                to_micros(stamp)
            except ValueError:
                assert object_problem(obj) is not None, stamp
            else:
                assert object_problem(obj) is None, stamp


TIMESTAMP_PROPERTIES = [
    ("campaign", "first_seen"),
    ("campaign", "last_seen"),
    ("indicator", "valid_from"),
    ("indicator", "valid_until"),
    ("infrastructure", "first_seen"),
    ("intrusion-set", "first_seen"),
    ("malware", "last_seen"),
    ("malware-analysis", "submitted"),
    ("malware-analysis", "analysis_started"),
    ("malware-analysis", "analysis_ended"),
    ("observed-data", "first_observed"),
    ("observed-data", "last_observed"),
    ("report", "published"),
    ("threat-actor", "first_seen"),
    ("relationship", "start_time"),
    ("relationship", "stop_time"),
    ("sighting", "first_seen"),
    ("sighting", "last_seen"),
    ("language-content", "object_modified"),
    ("directory", "ctime"),
    ("file", "ctime"),
    ("file", "mtime"),
    ("file", "atime"),
    ("email-message", "date"),
    ("network-traffic", "start"),
    ("network-traffic", "end"),
    ("process", "created_time"),
    ("user-account", "account_created"),
    ("user-account", "account_expires"),
    ("user-account", "credential_last_changed"),
    ("user-account", "account_first_login"),
    ("user-account", "account_last_login"),
    ("windows-registry-key", "modified_time"),
    ("x509-certificate", "validity_not_before"),
    ("x509-certificate", "validity_not_after"),
    ("custom-object", "created"),
    ("custom-object", "modified"),
]


@pytest.mark.parametrize(("name", "prop"), TIMESTAMP_PROPERTIES)
def test_typed_timestamp_properties_are_checked(name: str, prop: str) -> None:
    reason = problem_of(changed(name, **{prop: "last tuesday"}))
    assert reason == f"{prop!r} is not an RFC 3339 UTC timestamp: 'last tuesday'"


def test_unknown_timestamp_like_names_are_not_checked() -> None:
    # Only the properties STIX defines as timestamps are checked.
    assert object_problem(changed("indicator", x_acme_seen_time="soon")) is None
    assert object_problem(changed("custom-object", first_seen="soon")) is None


def test_modified_before_created_is_rejected() -> None:
    reason = problem_of(changed("indicator", created=T1, modified=T0))
    assert reason.startswith("'modified' '2024-01-01T00:00:00Z' must be later than or equal to")


def test_created_modified_compare_by_time_not_text() -> None:
    assert object_problem(changed("indicator", created=T0, modified=T1)) is None
    same_instant = changed("indicator", created="2024-01-01T00:00:00.000Z", modified=T0)
    assert object_problem(same_instant) is None
    earlier = changed(
        "indicator", created="2024-01-01T00:00:01Z", modified="2024-01-01T00:00:00.9Z"
    )
    assert "'modified'" in problem_of(earlier)


@pytest.mark.parametrize(
    ("name", "earlier", "later", "strict"),
    [
        ("campaign", "first_seen", "last_seen", False),
        ("infrastructure", "first_seen", "last_seen", False),
        ("malware", "first_seen", "last_seen", False),
        ("threat-actor", "first_seen", "last_seen", False),
        ("sighting", "first_seen", "last_seen", False),
        ("observed-data", "first_observed", "last_observed", False),
        ("network-traffic", "start", "end", False),
        ("indicator", "valid_from", "valid_until", True),
        ("relationship", "start_time", "stop_time", True),
    ],
)
def test_timestamp_ordering(name: str, earlier: str, later: str, strict: bool) -> None:
    reversed_ = changed(name, **{earlier: T2, later: T1})
    assert problem_of(reversed_).startswith(f"{later!r} ")
    equal = changed(name, **{earlier: T1, later: T1})
    if strict:
        assert "must be later than" in problem_of(equal)
    else:
        assert object_problem(equal) is None


# --------------------------------------------------------------------------
# Required properties per type


REQUIRED = [
    ("attack-pattern", "name"),
    ("campaign", "name"),
    ("course-of-action", "name"),
    ("grouping", "context"),
    ("grouping", "object_refs"),
    ("identity", "name"),
    ("incident", "name"),
    ("indicator", "pattern"),
    ("indicator", "pattern_type"),
    ("indicator", "valid_from"),
    ("infrastructure", "name"),
    ("intrusion-set", "name"),
    ("malware", "is_family"),
    ("malware-analysis", "product"),
    ("note", "content"),
    ("note", "object_refs"),
    ("observed-data", "first_observed"),
    ("observed-data", "last_observed"),
    ("observed-data", "number_observed"),
    ("opinion", "opinion"),
    ("opinion", "object_refs"),
    ("report", "name"),
    ("report", "published"),
    ("report", "object_refs"),
    ("threat-actor", "name"),
    ("tool", "name"),
    ("vulnerability", "name"),
    ("relationship", "relationship_type"),
    ("relationship", "source_ref"),
    ("relationship", "target_ref"),
    ("sighting", "sighting_of_ref"),
    ("language-content", "object_ref"),
    ("language-content", "contents"),
    ("extension-definition", "name"),
    ("extension-definition", "schema"),
    ("extension-definition", "version"),
    ("extension-definition", "extension_types"),
    ("extension-definition", "created_by_ref"),
    ("autonomous-system", "number"),
    ("directory", "path"),
    ("domain-name", "value"),
    ("email-addr", "value"),
    ("email-message", "is_multipart"),
    ("ipv4-addr", "value"),
    ("ipv6-addr", "value"),
    ("mac-addr", "value"),
    ("url", "value"),
    ("mutex", "name"),
    ("network-traffic", "protocols"),
    ("software", "name"),
]


@pytest.mark.parametrize(("name", "prop"), REQUIRED)
def test_required_property(name: str, prop: str) -> None:
    reason = problem_of(changed(name, drop=(prop,)))
    assert reason == f"missing required property {prop!r} for type {VALID[name]['type']!r}"


def test_malware_family_needs_a_name() -> None:
    reason = problem_of(changed("malware", drop=("name",)))
    assert reason.startswith("missing required property 'name' for type 'malware'")
    assert object_problem(valid("malware-instance")) is None


@pytest.mark.parametrize("value", ["true", 1, None])
def test_is_family_must_be_boolean(value: object) -> None:
    reason = problem_of(changed("malware", is_family=value))
    assert reason == f"'is_family' must be true or false, got {value!r}"


def all_but_type_and_id(name: str) -> tuple[str, ...]:
    return tuple(sorted(VALID[name].keys() - {"type", "id"}))


CONDITIONAL = [
    (changed("malware-analysis", drop=("result",)), "at least 'analysis_sco_refs' or 'result'"),
    (changed("observed-data", drop=("object_refs",)), "at least 'object_refs' or 'objects'"),
    (
        changed("observed-data", objects={"0": {"type": "ipv4-addr", "value": "198.51.100.7"}}),
        "'objects' and 'object_refs' must not both be present",
    ),
    (changed("location", drop=("latitude", "longitude", "precision")), "needs 'region'"),
    (changed("location", drop=("longitude", "precision")), "given together"),
    (changed("location-region", precision=10.0), "'precision' requires"),
    (changed("marking-statement", drop=("definition", "definition_type")), "or 'extensions'"),
    (changed("marking-statement", drop=("definition",)), "must be given together"),
    (changed("marking-statement", definition={"tlp": "red"}), "statement marking needs"),
    (changed("marking-tlp-white", definition={"tlp": "red"}), "must use its standard id"),
    (changed("marking-tlp-red", created=T0), "standard 'created'"),
    (changed("file", drop=("name", "hashes")), "at least 'hashes' or 'name'"),
    (changed("artifact", drop=("payload_bin",)), "at least 'payload_bin' or 'url'"),
    (changed("artifact", url="https://example.com/x"), "must not both be present"),
    (changed("artifact-url", drop=("hashes",)), "'hashes' is required when 'url' is present"),
    (changed("network-traffic", drop=("src_ref", "dst_ref")), "at least 'dst_ref' or 'src_ref'"),
    (changed("network-traffic", is_active=True), "'is_active' must be false when 'end'"),
    (changed("network-traffic", drop=("is_active",)), "'is_active' must be false when 'end'"),
    (changed("email-message", is_multipart=True), "'body' must not be present"),
    (changed("email-multipart", is_multipart=False), "'body_multipart' must not be present"),
    (changed("email-multipart", body_multipart=[{"content_type": "x"}]), "needs 'body' or"),
    (changed("process", drop=("pid", "created_time", "command_line")), "at least one of its own"),
    (changed("user-account", drop=all_but_type_and_id("user-account")), "own"),
    (changed("windows-registry-key", drop=("key", "modified_time", "values")), "own"),
    (changed("x509-certificate", drop=all_but_type_and_id("x509-certificate")), "own"),
]


def test_a_tlp_definition_under_an_id_of_its_own_is_stored_to_be_judged() -> None:
    """STIX 2.1 7.2.1.4 says not to mint TLP definitions, but refused, what one marks
    would be stored and judged as if unmarked: held, egress judges it at the level it
    claims (node.tlp.declared_level).  The standard ids keep their own content."""
    minted = changed("marking-tlp-red", id=same_uuid("marking-statement", "marking-definition"))
    assert object_problem(minted) is None


@pytest.mark.parametrize(("obj", "fragment"), CONDITIONAL)
def test_conditional_requirements(obj: dict[str, Any], fragment: str) -> None:
    assert fragment in problem_of(obj)


def test_sco_needing_a_property_accepts_an_extension_instead() -> None:
    process = changed("process", drop=("pid", "created_time", "command_line"))
    process["extensions"] = {"windows-process-ext": {"aslr_enabled": True}}
    assert object_problem(process) is None


# --------------------------------------------------------------------------
# References


UUID_PART = SAMPLE_UUID

REFERENCE_CASES = [
    ("indicator", "created_by_ref", f"malware--{UUID_PART}", "must reference 'identity'"),
    ("indicator", "created_by_ref", "ACME", "must be an identifier '<type>--<UUID>'"),
    ("indicator", "object_marking_refs", f"marking-definition--{UUID_PART}", "must be a list"),
    ("indicator", "object_marking_refs", [f"identity--{UUID_PART}"], "[0] must reference"),
    ("indicator", "object_marking_refs", [], "must not be an empty list"),
    ("report", "object_refs", [f"malware--{UUID_PART}", "bad"], "'object_refs'[1] must be an"),
    ("note", "object_refs", f"malware--{UUID_PART}", "must be a list"),
    ("relationship", "source_ref", f"malware--{UUID_PART[:-1]}", "must be an identifier"),
    ("relationship", "target_ref", f"marking-definition--{UUID_PART}", "cannot reference a"),
    ("relationship", "source_ref", f"sighting--{UUID_PART}", "cannot reference a 'sighting'"),
    ("sighting", "sighting_of_ref", f"ipv4-addr--{UUID_PART}", "cannot reference a 'ipv4-addr'"),
    ("sighting", "where_sighted_refs", [f"malware--{UUID_PART}"], "'identity' or 'location'"),
    ("sighting", "observed_data_refs", [f"report--{UUID_PART}"], "must reference"),
    ("language-content", "object_ref", 5, "must be an identifier"),
    ("email-message", "from_ref", f"user-account--{UUID_PART}", "must reference 'email-addr'"),
    ("domain-name", "resolves_to_refs", [f"url--{UUID_PART}"], "must reference"),
]


@pytest.mark.parametrize(("name", "prop", "value", "fragment"), REFERENCE_CASES)
def test_reference_properties(name: str, prop: str, value: object, fragment: str) -> None:
    reason = problem_of(changed(name, **{prop: value}))
    assert reason.startswith(repr(prop))
    assert fragment in reason


def test_relationship_may_point_at_custom_objects_and_scos() -> None:
    assert object_problem(valid("relationship-to-sco")) is None
    custom = changed("relationship", target_ref=f"x-mitre-asset--{UUID_PART}")
    assert object_problem(custom) is None


# --------------------------------------------------------------------------
# Common property types


@pytest.mark.parametrize("value", [0, 50, 100])
def test_confidence_in_range_is_accepted(value: int) -> None:
    assert object_problem(changed("indicator", confidence=value)) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "must be at least 0 and at most 100, got -1"),
        (101, "got 101"),
        (50.0, "must be an integer, got 50.0"),
        (True, "must be an integer, got True"),
        ("50", "must be an integer, got '50'"),
    ],
)
def test_confidence_out_of_range_or_not_integer(value: object, fragment: str) -> None:
    reason = problem_of(changed("indicator", confidence=value))
    assert reason.startswith("'confidence' ")
    assert fragment in reason


@pytest.mark.parametrize(
    ("prop", "value", "fragment"),
    [
        ("labels", "malicious", "'labels' must be a list, got 'malicious'"),
        ("labels", ["ok", 3], "'labels'[1] must be a string, got 3"),
        ("labels", [], "'labels' must not be an empty list"),
        ("external_references", {"source_name": "x"}, "'external_references' must be a list"),
        ("external_references", [{"url": "https://x"}], "missing required property 'source_name'"),
        ("external_references", [{"source_name": "x"}], "[0] needs at least one of"),
        ("external_references", [{"source_name": "x", "url": 1}], "'external_references'[0].url"),
        ("granular_markings", {"selectors": ["name"]}, "'granular_markings' must be a list"),
        ("granular_markings", [{"selectors": ["name"]}], "exactly one of 'marking_ref' and"),
        ("granular_markings", [{"selectors": "name", "lang": "en"}], "[0].selectors must be a"),
        ("granular_markings", [{"selectors": ["nope"], "lang": "en"}], "'nope' does not match"),
        ("granular_markings", [{"selectors": ["labels.[1]"], "lang": "en"}], "'labels.[1]'"),
        ("granular_markings", [{"selectors": ["name.x"], "lang": "en"}], "does not match"),
        ("kill_chain_phases", [{"phase_name": "x"}], "missing required property 'kill_chain_name'"),
        ("revoked", "false", "'revoked' must be true or false, got 'false'"),
        ("revoked", 0, "'revoked' must be true or false, got 0"),
        ("lang", 5, "'lang' must be a string, got 5"),
        ("name", ["Bad file"], "'name' must be a string, got ['Bad file']"),
        ("extensions", [], "'extensions' must be a non-empty JSON object"),
        ("extensions", {"extension-definition--1": {}}, "not an extension-definition id"),
        ("extensions", {"ntfs-ext": "x"}, "'extensions'['ntfs-ext'] must be a JSON object"),
    ],
)
def test_common_property_types(prop: str, value: object, fragment: str) -> None:
    assert fragment in problem_of(changed("indicator", **{prop: value}))


@pytest.mark.parametrize(
    ("name", "prop", "value", "fragment"),
    [
        ("opinion", "opinion", "meh", "'opinion' must be 'agree', 'disagree'"),
        ("relationship", "relationship_type", "", "'relationship_type' must be 1-250 characters"),
        ("relationship", "relationship_type", "Uses", "of a-z, 0-9 and '-', got 'Uses'"),
        ("observed-data", "number_observed", 0, "at least 1"),
        ("sighting", "count", -1, "'count' must be at least 0"),
        ("network-traffic", "dst_port", 70000, "'dst_port' must be at least 0 and at most 65535"),
        ("location", "latitude", 91.5, "'latitude' must be between -90 and 90, got 91.5"),
        ("location", "longitude", "2.35", "'longitude' must be a number"),
        ("file", "hashes", {}, "'hashes' must not be an empty object"),
        ("file", "hashes", {"SHA 256": SHA256}, "'hashes' has an invalid dictionary key 'SHA 256'"),
        ("file", "hashes", {"SHA-256": 5}, "'hashes'['SHA-256'] must be a string, got 5"),
        ("file", "size", -5, "'size' must be at least 0"),
        ("file", "magic_number_hex", "xyz", "'magic_number_hex' must be a string of hex octets"),
        ("artifact", "payload_bin", "not base64!", "'payload_bin' must be a base64 string"),
        ("extension-definition", "extension_types", ["new-thing"], "'extension_types'[0] must be"),
        ("language-content", "contents", {"de": "x"}, "'contents'['de'] must be a JSON object"),
        ("windows-registry-key", "values", ["Run"], "'values'[0] must be a JSON object"),
    ],
)
def test_type_specific_property_types(name: str, prop: str, value: object, fragment: str) -> None:
    assert fragment in problem_of(changed(name, **{prop: value}))


# --------------------------------------------------------------------------
# Property names


@pytest.mark.parametrize("key", ["Name", "ab", "1abc", "_abc", "x-acme", "x_é", "a" * 251, ""])
def test_bad_property_names_are_rejected(key: str) -> None:
    reason = problem_of(changed("indicator", **{key: 1}))
    assert reason.startswith("property name ")
    assert repr(key)[:30] in reason


@pytest.mark.parametrize("key", ["x_acme", "abc", "x_" + "a" * 248, "acme_2_score"])
def test_good_custom_property_names_are_accepted(key: str) -> None:
    assert object_problem(changed("indicator", **{key: {"any": ["thing"]}})) is None


@pytest.mark.parametrize("key", [1, None, ("a", "b")])
def test_non_string_keys_are_rejected(key: object) -> None:
    obj = valid("indicator")
    obj[key] = "x"  # type: ignore[index]
    assert problem_of(obj).startswith("property names must be strings, got ")


# --------------------------------------------------------------------------
# Custom (unknown) types get only the generic checks


def test_custom_type_properties_are_not_type_checked() -> None:
    obj = changed("custom-object", name=5, pattern=[], value={"a": 1}, is_family="maybe")
    assert object_problem(obj) is None


@pytest.mark.parametrize(
    ("prop", "value", "fragment"),
    [
        ("created", "now", "'created' is not an RFC 3339"),
        ("created_by_ref", "ACME", "'created_by_ref' must be an identifier"),
        ("object_marking_refs", ["x"], "'object_marking_refs'[0]"),
        ("labels", "x", "'labels' must be a list"),
        ("confidence", 1000, "'confidence' must be at least 0"),
        ("Bad", 1, "property name 'Bad'"),
    ],
)
def test_custom_type_still_gets_generic_checks(prop: str, value: object, fragment: str) -> None:
    assert fragment in problem_of(changed("custom-object", **{prop: value}))


def test_custom_type_needs_an_id_only() -> None:
    minimal = {"type": "x-acme-thing", "id": f"x-acme-thing--{uuid.uuid4()}"}
    assert object_problem(minimal) is None
    reason = problem_of({"type": "x-acme-thing"})
    assert reason == "missing required property 'id' for type 'x-acme-thing'"


# --------------------------------------------------------------------------
# Reasons stay short


@pytest.mark.parametrize("prop", ["created", "created_by_ref", "name", "id"])
def test_long_values_are_truncated_in_reasons(prop: str) -> None:
    reason = problem_of(changed("indicator", **{prop: ["x" * 10_000] * 1000}))
    assert len(reason) < 250
    assert repr(prop) in reason


def test_huge_integers_do_not_break_reasons() -> None:
    reason = problem_of(changed("indicator", confidence=10**5000))
    assert reason == "'confidence' must be at least 0 and at most 100, got <int too large to show>"
    assert "too large to show" in problem_of(changed("indicator", name=10**5000))


def test_long_string_values_keep_their_start() -> None:
    reason = problem_of(changed("indicator", created="tomorrow" + "!" * 10_000))
    assert "'tomorrow" in reason
    assert reason.endswith("...")
    assert len(reason) < 150


# --------------------------------------------------------------------------
# version_key and validate_all


def test_version_key_uses_modified_then_created_then_zero() -> None:
    indicator = valid("indicator")
    assert version_key(indicator) == to_micros(indicator["modified"])
    marking = valid("marking-statement")
    assert version_key(marking) == to_micros(marking["created"])
    assert version_key(valid("ipv4-addr")) == 0


def test_version_key_orders_mixed_precision() -> None:
    a = changed("indicator", modified="2024-01-01T00:00:00.5Z")
    b = changed("indicator", modified="2024-01-01T00:00:01Z")
    c = changed("indicator", modified="2024-01-01T00:00:00.500000Z")
    assert version_key(a) < version_key(b)
    assert version_key(a) == version_key(c) == 1_704_067_200_500_000


def test_version_micros_keys_unvalidated_objects_as_the_store_does() -> None:
    """Ingress looks held versions up by this key before validating what a peer sent."""
    indicator = valid("indicator")
    assert version_micros(indicator) == version_key(indicator) == to_micros(indicator["modified"])
    marking = valid("marking-statement")
    assert version_micros(marking) == to_micros(marking["created"])
    assert version_micros(valid("ipv4-addr")) == 0
    assert version_micros({"modified": "", "created": T1}) == to_micros(T1)
    assert version_micros({"modified": None}) == 0
    # Set but not a timestamp: no stored version may match, not even the created one.
    assert version_micros({"modified": "yesterday"}) is None
    assert version_micros({"modified": 1_704_067_200, "created": T1}) is None
    assert version_micros({"created": ["2024"]}) is None


def test_validate_all_splits_and_keeps_order() -> None:
    good_1, good_2 = valid("indicator"), valid("malware")
    bad_1, bad_2 = changed("indicator", created="nope"), "not an object"
    accepted, rejected = validate_all(iter([bad_1, good_1, bad_2, good_2]))
    assert accepted == [good_1, good_2]
    assert [obj for obj, _ in rejected] == [bad_1, bad_2]
    assert rejected[0][1].startswith("'created' is not an RFC 3339")
    assert "must be a JSON object" in rejected[1][1]
    assert validate_all([]) == ([], [])


# --------------------------------------------------------------------------
# Real corpora


def _corpus(file_name: str) -> list[dict[str, Any]]:
    path = SHARED_DATA / file_name
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is not present")
    return json.loads(path.read_text(encoding="utf-8"))["objects"]


@pytest.mark.parametrize("file_name", CORPORA)
def test_real_corpus_validates_without_problems(file_name: str) -> None:
    objects = _corpus(file_name)
    assert objects
    accepted, rejected = validate_all(objects)
    assert rejected == []
    assert len(accepted) == len(objects)
    assert all(version_key(obj) > 0 for obj in objects)


# --------------------------------------------------------------------------
# Fuzzing: never raises


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Values that look like STIX values, so fuzzing reaches the deeper checks.
STIX_LIKE = st.one_of(
    JSON_VALUES,
    st.sampled_from([T0, T1, T2, "2024-02-30T00:00:00Z", "", "2.1", "2.0"]),
    st.builds(
        "{}--{}".format,
        st.sampled_from(["identity", "marking-definition", "malware", "ipv4-addr", "x-foo"]),
        st.uuids(),
    ),
    st.lists(st.sampled_from([f"identity--{UUID_PART}", f"marking-definition--{UUID_PART}"])),
)
PROPERTY_NAMES = st.one_of(
    st.sampled_from(sorted({key for obj in VALID.values() for key in obj})),
    st.text(max_size=12),
    st.integers(),
)


@st.composite
def mutated_fixtures(draw: st.DrawFn, keep: frozenset[str] = frozenset()) -> dict[Any, Any]:
    """A valid fixture with a few properties removed or set to arbitrary values.

    Properties in ``keep`` may be removed but are never given a new value.
    """
    obj = valid(draw(st.sampled_from(VALID_NAMES)))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(PROPERTY_NAMES)
        if draw(st.booleans()) and key in obj:
            del obj[key]
        elif key not in keep:
            obj[key] = draw(STIX_LIKE)
    return obj


@given(JSON_VALUES)
def test_object_problem_never_raises_on_json(value: object) -> None:
    result = object_problem(value)
    assert result is None or (isinstance(result, str) and result)


@given(st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), STIX_LIKE, max_size=8))
def test_object_problem_never_raises_on_dicts(value: dict[Any, Any]) -> None:
    result = object_problem(value)
    assert result is None or (isinstance(result, str) and result)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_fixtures())
def test_object_problem_never_raises_on_mutated_objects(obj: dict[Any, Any]) -> None:
    result = object_problem(obj)
    assert result is None or (isinstance(result, str) and result)
    if result is None:
        version_key(obj)  # an accepted object always has a usable version key


@given(
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z\Z",
        fullmatch=True,
    )
)
def test_timestamp_acceptance_agrees_with_to_micros(stamp: str) -> None:
    obj = changed("custom-object", created=stamp, drop=("modified",))
    try:
        to_micros(stamp)
    except ValueError:
        assert object_problem(obj) is not None
    else:
        assert object_problem(obj) is None
        assert version_key(obj) == to_micros(stamp)


# --------------------------------------------------------------------------
# Agreement with stix2: whatever object_problem accepts, stix2.parse accepts


# Where the two differ on purpose (see node.validation's docstring): the STIX
# pattern grammar, hash value formats, the contents of predefined extensions
# and embedded observables, and custom marking types (open vocabulary in STIX
# 2.1, but stix2 only parses registered ones) are not checked here; stix2 also
# refuses granular-marking selectors that point at false, 0 or empty values.
NOT_CROSS_CHECKED = frozenset(
    {
        "pattern",
        "hashes",
        "granular_markings",
        "extensions",
        "objects",
        "definition",
        "definition_type",
    }
)
JUNK_VALUES: tuple[object, ...] = (
    "junk",
    "",
    -1,
    0,
    True,
    1.5,
    [],
    {},
    ["junk"],
    {"junk": "junk"},
    None,
    T0,
    f"identity--{UUID_PART}",
)


def _stix2_accepts(obj: dict[str, Any]) -> str | None:
    """None when stix2.parse accepts obj, else its error."""
    try:
        stix2.parse(copy.deepcopy(obj), allow_custom=True)
    except (stix2.exceptions.STIXError, ValueError, TypeError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _property_mutants() -> list[tuple[str, str, object]]:
    cases = []
    for name, obj in VALID.items():
        registered = stix2.registry.class_for_type(obj["type"], "2.1")
        known = set(getattr(registered, "_properties", {})) | set(obj)
        for prop in sorted(known - NOT_CROSS_CHECKED - {"type"}):
            cases.extend((name, prop, junk) for junk in JUNK_VALUES)
    return cases


def test_agreement_on_every_property_set_to_junk() -> None:
    disagreements = []
    for name, prop, junk in _property_mutants():
        obj = changed(name, **{prop: junk})
        if object_problem(obj) is None:
            error = _stix2_accepts(obj)
            if error is not None:
                disagreements.append((name, prop, junk, error))
    assert disagreements == []


def test_agreement_on_every_property_removed() -> None:
    disagreements = []
    for name, obj in VALID.items():
        for prop in sorted(set(obj) - {"type"}):
            mutant = changed(name, drop=(prop,))
            if object_problem(mutant) is None and (error := _stix2_accepts(mutant)) is not None:
                disagreements.append((name, prop, error))
    assert disagreements == []


def test_agreement_on_corpus_sample() -> None:
    sample = [obj for file_name in CORPORA for obj in _corpus(file_name)[::25]]
    assert all(object_problem(obj) is None for obj in sample)
    errors = {obj["id"]: _stix2_accepts(obj) for obj in sample}
    assert {id_: error for id_, error in errors.items() if error is not None} == {}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_fixtures(keep=NOT_CROSS_CHECKED))
def test_agreement_on_mutated_objects(obj: dict[Any, Any]) -> None:
    if object_problem(obj) is None:
        assert _stix2_accepts(obj) is None


def test_an_overlong_identifier_is_refused_and_not_remembered() -> None:
    """A type name has at most 250 characters (STIX 2.1 section 2.9): the 250-character
    type is an identifier, a longer one is not, and the longer string is not kept in
    the identifier check's cache (a client could fill it with 10 MB strings)."""
    from node.validation import _type_of_identifier

    uuid_part = "00000000-0000-4000-8000-000000000001"
    kind = "x-" + "a" * 248
    longest = {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid_part}",
               "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert object_problem(longest) is None
    over = "x-" + "a" * 249
    refs = {**longest, "created_by_ref": f"{over}--{uuid_part}"}
    _type_of_identifier.cache_clear()
    assert "must be an identifier" in (object_problem(refs) or "")
    assert _type_of_identifier.cache_info().currsize == 1  # the object's own id only
