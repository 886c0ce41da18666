"""A partner learns nothing that policy withholds, through any path (issue 8).

Each test is one path, on both stores, through the partner's sync account
(in-process Flask client) and, where the worker is involved, its push round
against a recording peer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from node import jsoncodec
from node.client import ObjectPage, Throttled
from node.config import load_config
from node.errors import RemoteError
from node.operations import sync as sync_operations
from node.recall import EXTENSION_ID, recall_version
from node.sharing import Agreement, Agreements, ingress
from node.store import audit, objects, provenance, syncstate
from node.store.audit import Action, AuditQueue, AuditRecord, Direction
from node.sync import pull as pull_module
from node.sync import push as push_module
from node.sync.worker import MappingSync, SyncWorker
from node.timestamps import from_micros, just_before, to_micros
from node.validation import SCO_ID_NAMESPACE
from tests.nodes import COLLECTIONS
from tests.sharing_node import ALPHA, PEER, SharingNode
from tests.sharing_objects import (
    AMBER,
    GREEN,
    GREEN1,
    RED,
    RED1,
    T0,
    at,
    granular,
    identity,
    indicator,
    malware,
    relationship,
    report,
    sdo,
    version,
)


class RecordingPeer:
    """The partner's TAXII API as the push round sees it: records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def collection_id(self, name: str) -> str:
        return "remote-alpha"

    def max_content_length(self) -> int:
        return 10_000_000

    @property
    def last_answer(self) -> float:
        return time.monotonic()  # (it always just answered: no probe)

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        objs = [jsoncodec.loads(text) for text in texts]
        self.sent.extend(objs)
        return complete_status(objs)


def complete_status(objs: list[dict], failures: list[dict] = ()) -> dict:  # type: ignore[assignment]
    """A complete status (TAXII 2.1 section 4.3.1): ``failures``, and every other object
    of ``objs`` a success."""
    refused = {failure["id"] for failure in failures}
    successes = [{"id": obj["id"], "version": obj.get("modified") or obj.get("created")}
                 for obj in objs if obj["id"] not in refused]  # fmt: skip
    return {"status": "complete", "total_count": len(objs), "success_count": len(successes),
            "failure_count": len(failures), "pending_count": 0,
            "successes": successes, "failures": list(failures)}  # fmt: skip


@pytest.fixture
def make_node(tmp_path: Path, store_url):
    made: list[SharingNode] = []

    def make(name: str = "a", **policies) -> SharingNode:
        url = store_url if not made else None  # a second node of one test lives on SQLite
        node = SharingNode(tmp_path / name, url, **policies)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def served(node: SharingNode, **params) -> list[dict]:
    """Every object the peer account receives from objects/, all pages."""
    found: list[dict] = []
    params = {"match[version]": "all", "limit": 2, **params}
    while True:
        answer = node.get("objects/", params=params)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        found.extend(answer.json.get("objects", []))
        if not answer.json["more"]:
            return found
        params = {**params, "next": answer.json["next"]}


def pushed(node: SharingNode) -> list[dict]:
    peer = RecordingPeer()
    result = MappingSync(node.store, node.agreement, peer).push()  # type: ignore[arg-type]
    assert result.ok, result.error
    return peer.sent


def ids(objs: list[dict]) -> set[str]:
    return {obj["id"] for obj in objs}


# ---------------------------------------------------------------- 1. partner-made versions


def test_partner_versions_do_not_reopen_references(make_node) -> None:
    node = make_node(ingress={"accept_foreign_versions": True})
    source = indicator(GREEN)
    target_v1 = malware(GREEN)
    target_v2 = version(target_v1, at(1), object_marking_refs=[RED])
    link = relationship(GREEN, source, target_v1)
    listing = report(GREEN, [source, target_v1])
    node.add([source, target_v1, target_v2, link, listing])
    # The partner posts the target's GREEN content again, as a later version.  Its
    # current version (RED) is withheld from the partner: the partner's version is
    # answered as stored but not stored, so it cannot become the latest analysts see.
    status = node.post([version(target_v1, at(5))], account=PEER)
    assert status["success_count"] == 1, status
    latest = node.get(f"objects/{target_v1['id']}/", account="admin").json["objects"]
    assert latest[0]["modified"] == target_v2["modified"]
    # One stored all the same (pulled before this rule, say) reopens nothing either.
    node.add([version(target_v1, at(6))], origin=PEER)
    for objs in (served(node), pushed(node)):
        assert link["id"] not in ids(objs)
        assert target_v1["id"] not in ids(objs)
        (sent_report,) = [obj for obj in objs if obj["id"] == listing["id"]]
        assert sent_report["object_refs"] == [source["id"]]


# ---------------------------------------------------------------- 2. only the creator


def test_only_the_creator_versions_an_object(make_node) -> None:
    node = make_node()
    ours = indicator(GREEN)
    node.add([ours])
    revoked = version(ours, at(3), revoked=True)
    status = node.post([revoked], account=PEER)
    assert status["failure_count"] == 1
    assert status["failures"][0]["message"] == ingress.CREATOR_ONLY
    latest = node.get(f"objects/{ours['id']}/", account="alice").json["objects"]
    assert latest == [ours]
    # The partner's own objects it may version.
    theirs = indicator(GREEN, 2)
    assert node.post([theirs], account=PEER)["success_count"] == 1
    assert node.post([version(theirs, at(4))], account=PEER)["success_count"] == 1
    # ... but not under another author.
    other = version(theirs, at(6), created_by_ref=identity()["id"])
    assert node.post([other], account=PEER)["failure_count"] == 1
    refusals = [r for r in node.audit_rows() if r["rule"] == "versions.creator-only"]
    assert {r["object_id"] for r in refusals} == {ours["id"], theirs["id"]}


def test_creator_rule_is_relaxed_per_mapping(make_node) -> None:
    node = make_node(ingress={"accept_foreign_versions": True})
    ours = indicator(GREEN)
    node.add([ours])
    status = node.post([version(ours, at(3), revoked=True)], account=PEER)
    assert status["success_count"] == 1


def test_creator_rule_applies_to_pulled_versions(make_node) -> None:
    node = make_node()
    ours = indicator(GREEN)
    node.add([ours])
    with node.store.read() as connection:
        admission = ingress.admit(
            connection, node.agreement, [version(ours, at(3), revoked=True)], to_peer=False
        )
    assert admission.accepted == []
    assert [d.rule for d in admission.decisions] == ["versions.creator-only"]


def _shape(status: dict) -> dict:
    """A status as a partner could compare two: in order, without its own id and
    timestamp, the object ids it chose, and the date_added labels of SCOs by their
    form only (whole milliseconds or not: each POST's last date_added is on one)."""
    entries = {key: [(entry.get("message", ""), _label(entry.get("version")))
                     for entry in status.get(key, [])]
               for key in ("successes", "failures", "pendings")}  # fmt: skip
    counts = {key: status[key] for key in status if key.endswith("_count")}
    return {"status": status["status"], **counts, **entries}


def _label(version: str | None) -> str | None:
    if version is None or version.startswith("2026-01-01T00:00:"):  # at(n): chosen here
        return version
    return f"date_added label, whole ms: {version.endswith('000Z')}"


def _ipv4(value: str, marking: str) -> dict:
    key = json.dumps({"value": value}, separators=(",", ":"))
    namespace = SCO_ID_NAMESPACE  # STIX 2.1 section 2.9
    return {"type": "ipv4-addr", "spec_version": "2.1", "value": value,
            "id": f"ipv4-addr--{uuid.uuid5(namespace, key)}",
            "object_marking_refs": [marking]}  # fmt: skip


def test_two_contents_under_one_version_in_one_post_audit_the_first_as_received(
    make_node,
) -> None:
    """The store keeps the first of two contents posted under one id and version and
    refuses the second: the audit says so (one received, one dead letter), not two
    dead letters for a version it stored."""
    node = make_node()
    first = indicator(GREEN, 5)
    second = {**first, "name": "other content, same id and modified"}
    node.post([first, second], account=PEER)
    stored = node.get(f"objects/{first['id']}/", account="admin").json["objects"]
    assert stored == [first]
    actions = [r["action"] for r in node.audit_rows()
               if r["object_id"] == first["id"] and r["action"] != "published"]  # fmt: skip
    assert sorted(actions) == ["dead-letter", "received"], actions


def test_a_partner_cannot_take_the_id_of_a_value_it_does_not_post(make_node) -> None:
    """An SCO's UUIDv5 id names its value (STIX 2.1 section 2.9): a partner posting
    another value under it, or a ``modified`` that would version it past ours, is
    refused with the reason, and our own publication of the value is stored as ours."""
    node = make_node()
    ours = _ipv4("203.0.113.7", GREEN)
    squatting = {**ours, "value": "192.0.2.66"}
    shadowing = {**ours, "modified": "2099-01-01T00:00:00.000Z", "x_note": "benign"}
    for posted, reason in ((squatting, "not the one of value '192.0.2.66'"),
                           (shadowing, "has no modified")):  # fmt: skip
        (outcome,) = _answers(node.post([posted], account=PEER))
        assert outcome[0] == "failures" and reason in outcome[2], outcome
    assert node.rows() == []
    assert node.post([ours])["success_count"] == 1
    stored = node.get(f"objects/{ours['id']}/", account="admin").json["objects"]
    assert stored == [ours]


def test_a_partners_recall_of_a_value_leaves_our_own_publication_of_it_shared(make_node) -> None:
    """A partner that posted an address and then recalled it does not keep our own
    publication of that address (same id: it names the value) from leaving."""
    node = make_node()
    address = _ipv4("203.0.113.8", GREEN)
    node.post([address], account=PEER)
    recalled = node.post([recall_version(address, "withdrawn", at(30))], account=PEER)
    assert [s["message"] for s in recalled["successes"]] == ["recall purged"]
    node.post([address])
    listing = report(GREEN, [address])
    node.add([listing])
    for objs in (served(node), pushed(node)):
        leaving = {obj["id"]: obj for obj in objs}
        assert address["id"] in leaving
        assert leaving[listing["id"]]["object_refs"] == [address["id"]]


@pytest.mark.parametrize("foreign", [False, True], ids=["creator-only", "foreign-versions"])
def test_a_partner_posting_under_a_withheld_id_is_answered_as_for_an_unknown_one(
    make_node, foreign
) -> None:
    """Whatever a partner posts under the id of an object withheld from it (a new
    version, the same one again, other content under it, repeats within one envelope,
    an SCO whose id it derived from a value), the answers are those an id we never
    held gets: they do not tell it that we hold the object.  Nothing of it is stored,
    ``accept_foreign_versions`` or not; the audit says why."""
    node = make_node(ingress={"accept_foreign_versions": foreign})
    secret, secret_address = indicator(RED), _ipv4("198.51.100.3", RED)
    node.add([secret, secret_address])
    unknown = indicator(GREEN, 7)

    def probes(base: dict, address: dict) -> list[list[dict]]:
        newer = version(base, at(3), object_marking_refs=[GREEN])
        return [
            [newer],
            [newer],  # the same again
            [{**newer, "name": "other content"}],  # another content, same version
            [version(base, at(4), object_marking_refs=[GREEN])],  # a newer one still
            [{**base, "object_marking_refs": [GREEN], "name": "a guess"}],  # base version
            [address],
            [address],
            [{**address, "x_note": "other content"}],
            [version(base, at(5)), version(base, at(5))],  # repeated in one envelope
            [version(base, at(6)), version(base, at(6), name="other")],
            [address, address],
        ]

    guessed, other = _ipv4("198.51.100.3", GREEN), _ipv4("198.51.100.9", GREEN)
    held = [node.post(batch, account=PEER) for batch in probes(secret, guessed)]
    absent = [node.post(batch, account=PEER) for batch in probes(unknown, other)]
    assert [_shape(status) for status in held] == [_shape(status) for status in absent]
    assert [message for message, _ in _shape(held[0])["successes"]] == ["added"]
    assert [message for message, _ in _shape(held[1])["successes"]] == ["already present"]
    # Nothing of the probes was stored over what we hold, and the audit has the truth.
    versions = node.get(f"objects/{secret['id']}/versions/", account="admin").json["versions"]
    assert versions == [secret["modified"]]
    refused = [r for r in node.audit_rows() if r["object_id"] == secret["id"]]
    assert refused and all(r["action"] == "withheld" for r in refused), refused
    held_address = node.get(f"objects/{secret_address['id']}/", account="admin").json
    assert held_address["objects"] == [secret_address]
    kept = node.client.get(f"/api/status/{held[0]['id']}/", headers=node.headers(PEER)).json
    assert _shape(kept) == _shape(held[0])  # the status resource answers the same


# ---------------------------------------------------------------- 3. letter case


@pytest.mark.parametrize(
    "marking",
    [
        {"object_marking_refs": [RED.upper().replace("MARKING-DEFINITION", "marking-definition")]},
        {"object_marking_refs": [RED1.replace("5e57c739", "5E57C739")]},
        granular(RED.replace("e828b379", "E828B379")),
    ],
    ids=["tlp2-upper", "tlp1-mixed", "granular-upper"],
)
def test_red_in_any_letter_case_never_leaves(make_node, marking) -> None:
    node = make_node(egress={"unmarked": "share"})
    red = indicator(None, 3, **marking)
    green = indicator(GREEN1)
    node.add([red, green])
    for objs in (served(node), pushed(node)):
        assert red["id"] not in ids(objs)
        assert green["id"] in ids(objs)
    assert node.get(f"objects/{red['id']}/").status_code == 404


def test_an_id_spelt_in_upper_case_is_refused_not_a_second_object(make_node) -> None:
    """The upper-case spelling of an id we hold names the same UUID (RFC 4122): stored,
    it would be a second object beside ours, versioned past the creator rule, and the
    answer would differ from one under a withheld id.  Validation refuses it, the
    same way whatever we hold."""
    node = make_node()
    ours, secret, unknown = indicator(GREEN), indicator(RED), indicator(GREEN)
    node.add([ours, secret])

    def upper(obj: dict) -> dict:
        kind, _, uuid_text = obj["id"].partition("--")
        return version(obj, at(9), id=f"{kind}--{uuid_text.upper()}", revoked=True)

    for obj in (ours, secret, unknown):
        status = node.post([upper(obj)], account=PEER)
        (outcome,) = _answers(status)
        assert outcome[0] == "failures" and "hex digits in lower case" in outcome[2], status
    assert sorted(row["object_id"] for row in node.rows()) == sorted([ours["id"], secret["id"]])
    assert len(node.rows()) == 2  # no version added to ours either


def _upper(obj: dict) -> str:
    """``obj``'s id with its UUID in upper case: the same object (RFC 4122 section 3)."""
    kind, _, uuid_text = obj["id"].partition("--")
    return f"{kind}--{uuid_text.upper()}"


def test_a_reference_spelt_in_upper_case_is_judged_as_the_object_it_names(make_node) -> None:
    """An author, a marking, a link or a report's reference spelt in upper case names the
    object we hold in lower case: when that object is withheld, what names it is withheld
    (or trimmed) exactly as for the lower-case spelling, pushed and served alike."""
    node = make_node(egress={"unresolved_refs": "share"})
    informant = identity(RED)
    secret = sdo("marking-definition", RED, definition_type="statement",
                 definition={"statement": "Source: informant 7"})  # fmt: skip
    secret.pop("modified")
    target, shared = malware(RED), indicator(GREEN, 1)
    authored = indicator(GREEN, 2, created_by_ref=_upper(informant))
    marked = indicator(GREEN, 3)
    marked["object_marking_refs"] = [GREEN, _upper(secret)]
    linked = relationship(GREEN, shared, {"id": _upper(target)})
    listing = report(GREEN, [shared, {"id": _upper(target)}])
    node.add([informant, secret, target, shared, authored, marked, linked, listing])
    for objs in (served(node), pushed(node)):
        leaving = {obj["id"]: obj for obj in objs}
        assert shared["id"] in leaving
        for withheld in (informant, secret, target, authored, marked, linked):
            assert withheld["id"] not in leaving
        assert leaving[listing["id"]]["object_refs"] == [shared["id"]]


def test_a_recall_repeats_no_more_than_the_peer_received(make_node) -> None:
    """A recall (after a DELETE, or when the current version turns RED) repeats the
    version the peer holds as it was sent: without the redacted properties and their
    translations, a report's references in any letter case matched to what it holds."""
    node = make_node(egress={"redact": ["x_secret"]})
    shared = indicator(GREEN, 1, x_secret="informant: J. Doe")
    translated = sdo("language-content", GREEN, object_ref=shared["id"],
                     object_modified=shared["modified"],
                     contents={"fr": {"x_secret": "informateur : J. Doe", "name": "IP"},
                               "de": {"x_secret": "Informant: J. Doe"}})  # fmt: skip
    listing = report(GREEN, [shared])
    listing["object_refs"] = [_upper(shared)]
    node.add([shared, translated, listing])
    first = {obj["id"]: obj for obj in pushed(node)}
    assert first[translated["id"]]["contents"] == {"fr": {"name": "IP"}}
    deleted = node.client.delete(node.url(f"objects/{translated['id']}/"),
                                 headers=node.headers("admin"))  # fmt: skip
    assert deleted.status_code == 200
    node.add([version(listing, at(5), object_marking_refs=[RED])])
    recalls = {obj["id"]: obj for obj in pushed(node)}
    assert recalls[translated["id"]]["revoked"] is True
    assert "J. Doe" not in json.dumps(recalls[translated["id"]])
    assert recalls[listing["id"]]["revoked"] is True
    assert recalls[listing["id"]]["object_refs"] == [_upper(shared)]


def test_objects_posted_before_their_marking_definition_still_leave(make_node) -> None:
    """MITRE's bundles carry their marking definition last, and a publish of 1,000 a
    time posts what it marks first: judged before the definition is held, those
    objects leave (each version is decided once, behind the push cursor), and the
    definition travels with the next object that names it."""
    node = make_node()
    statement = sdo("marking-definition", None, definition_type="statement",
                    definition={"statement": "Copyright Example Org"})  # fmt: skip
    statement.pop("modified")
    marked = indicator(GREEN, 1)
    marked["object_marking_refs"] = [GREEN, statement["id"]]
    node.add([marked])
    assert marked["id"] in ids(pushed(node))
    node.add([statement])
    later = indicator(GREEN, 2)
    later["object_marking_refs"] = [GREEN, statement["id"]]
    node.add([later])
    assert {statement["id"], later["id"]} <= ids(pushed(node))


@pytest.mark.parametrize("unresolved_refs", ["withhold", "share"])
def test_what_another_collection_withholds_withholds_what_names_it(
    make_node, unresolved_refs: str
) -> None:
    """An author or a link target the node holds only in another collection is still
    ours: withheld there by policy (TLP:RED), it withholds what names it here; allowed,
    it stays a reference the partner cannot resolve (``unresolved_refs``), and it never
    travels with this collection's objects."""
    node = make_node(egress={"unresolved_refs": unresolved_refs})
    informant, unit, target, other = identity(RED), identity(GREEN), malware(RED), malware(GREEN)
    with node.store.write() as connection:
        stored = objects.add_objects(
            connection, COLLECTIONS["beta"], [informant, unit, target, other]
        )
    assert not stored.failures
    shared = indicator(GREEN, 1)
    by_informant = indicator(GREEN, 2, created_by_ref=informant["id"])
    by_unit = indicator(GREEN, 3, created_by_ref=unit["id"])
    to_target = relationship(GREEN, shared, target)
    to_other = relationship(GREEN, shared, other)
    node.add([shared, by_informant, by_unit, to_target, to_other])
    for objs in (served(node), pushed(node)):
        leaving = ids(objs)
        assert {shared["id"], by_unit["id"]} <= leaving
        assert not leaving & {by_informant["id"], to_target["id"]}
        assert (to_other["id"] in leaving) == (unresolved_refs == "share")
        assert not leaving & {informant["id"], unit["id"], target["id"], other["id"]}


def test_references_spelt_all_in_upper_case_are_references_too(make_node) -> None:
    """``MALWARE--<UUID>`` in a nested custom ``*_ref`` or an extension's ``*_refs``
    names the malware as its lower-case spelling does: withheld, it withholds them."""
    node = make_node(egress={"unresolved_refs": "share"})
    target = malware(RED)
    upper = target["id"].upper()
    nested = indicator(GREEN, 1, x_context={"deep_ref": upper})
    listed = indicator(GREEN, 2, x_related=[{"target_refs": [upper]}])
    node.add([target, nested, listed])
    for objs in (served(node), pushed(node)):
        assert not ids(objs) & {target["id"], nested["id"], listed["id"]}


def test_a_partners_own_version_may_spell_its_author_in_another_case(make_node) -> None:
    """The creator-only rule compares authors as ids: the partner's next version of its
    own object, its ``created_by_ref`` in upper case, is the same author's."""
    node = make_node()
    author = identity(GREEN)
    first = indicator(GREEN, 3, created_by_ref=author["id"])
    node.post([author, first], account=PEER)
    respelt = version(first, at(9), created_by_ref=_upper(author))
    (outcome,) = _answers(node.post([respelt], account=PEER))
    assert outcome[0] == "successes", outcome


def test_what_a_minted_tlp_red_definition_marks_never_leaves(make_node) -> None:
    """A ``tlp`` definition under an id of its own (not STIX 2.1's), claiming RED, posted
    with what it marks: the definition is held, and what it marks is withheld with it,
    even beside a standard GREEN marking and with unmarked = "share"."""
    node = make_node(egress={"unmarked": "share"})
    minted = sdo("marking-definition", None, definition_type="tlp", definition={"tlp": "red"})
    minted.pop("modified")
    alone, beside = indicator(None, 1), indicator(GREEN, 2)
    alone["object_marking_refs"] = [minted["id"]]
    beside["object_marking_refs"] = [GREEN, minted["id"]]
    node.post([minted, alone, beside])
    for objs in (served(node), pushed(node)):
        assert not ids(objs) & {minted["id"], alone["id"], beside["id"]}


def test_ids_deny_ignores_letter_case(make_node) -> None:
    denied = indicator(GREEN)
    node = make_node(egress={"ids_deny": [denied["id"].upper().replace("INDICATOR", "indicator")]})
    node.add([denied])
    assert denied["id"] not in ids(served(node))


# ---------------------------------------------------------------- 4. existence oracle


def _served_versions(node: SharingNode, obj: dict, **params) -> list[str | None]:
    """The versions of ``obj`` the peer gets from objects/{id}/ under ``params``."""
    answer = node.get(f"objects/{obj['id']}/", params=params)
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [o["modified"] for o in answer.json.get("objects", []) if o["id"] == obj["id"]]


def test_date_added_spacing_does_not_count_red_versions_posted_alongside(make_node) -> None:
    """Versions of one commit are a microsecond apart: stored in posted order, the gap
    between two GREEN versions a partner receives counted the TLP:RED ones posted
    between them.  A commit stores its versions in order of TLP level."""
    node = make_node()
    posted = [indicator(GREEN, 1), indicator(RED, 2), indicator(RED, 3), indicator(GREEN, 4),
              indicator(AMBER, 5), indicator(None, 6), indicator(GREEN, 7)]  # fmt: skip
    node.post(posted)  # one envelope, as admin
    shared = node.get("manifest/").json["objects"]
    added = [to_micros(entry["date_added"]) for entry in shared if entry["id"] in ids(posted)]
    assert len(added) == 3 and [b - a for a, b in itertools.pairwise(added)] == [1, 1]
    everything = node.get("manifest/", account="admin").json["objects"]
    order = [entry["id"] for entry in everything]
    assert order == [posted[i]["id"] for i in (5, 0, 3, 6, 4, 1, 2)]  # unmarked .. RED


def test_an_older_version_goes_with_its_objects_newest_in_the_commit(make_node) -> None:
    """An older GREEN version of an object whose newest version in the same envelope is
    RED is withheld with it (the current version decides): it is dated with the RED
    versions, not between the GREEN ones the partner receives."""
    node = make_node()
    changed = indicator(GREEN, 2)
    posted = [indicator(GREEN, 1), changed, version(changed, at(5), object_marking_refs=[RED]),
              indicator(GREEN, 3)]  # fmt: skip
    node.post(posted)
    shared = node.get("manifest/").json["objects"]
    assert [entry["id"] for entry in shared] == [posted[0]["id"], posted[3]["id"]]
    added = [to_micros(entry["date_added"]) for entry in shared]
    assert added[1] - added[0] == 1


def test_first_is_the_oldest_version_the_peer_may_see(make_node) -> None:
    """An older version that came from a third peer (not passed on) is not the peer's
    "first": the first it may see is, as versions/ shows it."""
    node = make_node()
    theirs = indicator(GREEN, 3)
    ours = version(theirs, at(6), name="ours")
    node.add([theirs], origin="node-c")
    node.add([ours])
    listed = node.get(f"objects/{theirs['id']}/versions/").json["versions"]
    assert listed == [ours["modified"]]
    for filters in ("first", "last", "all", "first,last"):
        assert _served_versions(node, theirs, **{"match[version]": filters}) == listed, filters
    manifest = node.get("manifest/", params={"match[version]": "first"}).json["objects"]
    assert [(m["id"], m["version"]) for m in manifest if m["id"] == ours["id"]] == [
        (ours["id"], ours["modified"])
    ]


def test_last_is_the_newest_version_the_peer_may_see(make_node) -> None:
    """A newer version from a third peer (accepted over ours, not passed on) does not hide
    ours: "last" is ours, as ``all`` and versions/ show it."""
    node = make_node(ingress={"accept_foreign_versions": True})
    ours = indicator(GREEN, 3)
    theirs = version(ours, at(6), name="from node-c")
    node.add([ours])
    node.add([theirs], origin="node-c")
    listed = node.get(f"objects/{ours['id']}/versions/").json["versions"]
    assert listed == [ours["modified"]]
    for filters in ("last", "all", "first", "first,last"):
        assert _served_versions(node, ours, **{"match[version]": filters}) == listed, filters
    assert ours["id"] in ids(served(node, **{"match[version]": "last"}))


def _twin_without(make_node, node: SharingNode, withheld: set[str]) -> SharingNode:
    """A node whose store holds ``node``'s versions except those of ``withheld``."""
    twin = make_node("twin")
    twin.copy_rows([row for row in node.rows() if row["object_id"] not in withheld])
    twin.use_key_of(node)
    return twin


def _answer(node: SharingNode, tail: str, params: dict) -> tuple:
    response = node.get(tail, params=params)
    headers = {k: v for k, v in response.headers.items() if k.startswith("X-TAXII")}
    return response.status_code, response.get_data(as_text=True), headers


def test_reads_do_not_tell_withheld_objects_from_absent_ones(make_node) -> None:
    node = make_node()
    red = malware(RED)
    kept = indicator(GREEN)
    changed_v1 = indicator(GREEN, 7)
    changed_v2 = version(changed_v1, at(2), object_marking_refs=[RED])
    later_red = indicator(RED, 9)
    node.add([kept])
    node.add([red, changed_v1])
    node.add([changed_v2])
    node.add([later_red])
    twin = _twin_without(make_node, node, {red["id"], changed_v1["id"], later_red["id"]})
    rows = node.rows()
    probes = [
        ("objects/", {}),
        ("objects/", {"match[id]": red["id"]}),
        ("objects/", {"match[id]": f"{red['id']},{kept['id']}"}),
        ("manifest/", {"match[id]": red["id"]}),
        ("objects/", {"match[type]": "malware"}),
        ("manifest/", {"match[type]": "malware"}),
        ("objects/", {"match[version]": "all", "limit": 1}),
        ("manifest/", {"limit": 1}),
        (f"objects/{changed_v1['id']}/versions/", {}),
        (f"objects/{changed_v1['id']}/", {"match[version]": "first"}),
        (f"objects/{red['id']}/", {}),
    ]
    probes += [("objects/", {"added_after": _micros_text(r["date_added"])}) for r in rows]
    probes += [("manifest/", {"added_after": _micros_text(r["date_added"]), "limit": 1})
               for r in rows]  # fmt: skip
    for tail, params in probes:
        assert _answer(node, tail, params) == _answer(twin, tail, params), (tail, params)


def _micros_text(micros: int) -> str:
    from node.timestamps import from_micros

    return from_micros(micros)


def test_paging_past_withheld_versions_never_stalls(make_node) -> None:
    node = make_node()
    objs = [indicator(GREEN if i % 3 == 0 else RED, i) for i in range(12)]
    for obj in objs:
        node.add([obj])
    params: dict = {"limit": 1}
    seen = []
    for _ in range(10):
        answer = node.get("objects/", params=params).json
        seen += [obj["id"] for obj in answer.get("objects", []) if obj["id"] != GREEN]
        if not answer["more"]:
            break
        params = {"limit": 1, "next": answer["next"]}
    assert seen == [obj["id"] for obj in objs[::3]]
    assert not answer["more"]


# ---------------------------------------------------------------- 5. status resources


def test_status_resources_belong_to_their_creator(make_node) -> None:
    node = make_node()
    status = node.post([indicator(GREEN)], account="alice")
    path = f"/api/status/{status['id']}/"
    for account, code in (("alice", 200), ("admin", 200), (PEER, 404)):
        answer = node.client.get(path, headers=node.headers(account))
        assert answer.status_code == code, account
    unknown = node.client.get("/api/status/00000000-0000-4000-8000-000000000000/",
                              headers=node.headers(PEER))  # fmt: skip
    other = node.client.get(path, headers=node.headers(PEER))
    assert other.get_data(as_text=True).replace(status["id"], "X") == unknown.get_data(
        as_text=True
    ).replace("00000000-0000-4000-8000-000000000000", "X")


# ---------------------------------------------------------------- 6. withheld authors


def test_objects_by_a_withheld_author_are_withheld(make_node) -> None:
    node = make_node()
    informant = identity(RED)
    ours = identity()
    by_informant = indicator(GREEN, 4, created_by_ref=informant["id"])
    by_us = indicator(GREEN, 5, created_by_ref=ours["id"])
    node.add([informant, ours, by_informant, by_us])
    for objs in (served(node), pushed(node)):
        assert ids(objs) == {by_us["id"], ours["id"], GREEN}
        assert informant["id"] not in json.dumps(objs)
    assert node.get(f"objects/{by_informant['id']}/").status_code == 404


def test_an_author_recalled_from_the_peer_never_travels_again(make_node) -> None:
    """Once the peer was sent a recall of an identity (a DELETE of the version it
    received), no older version of it follows a new object it authored: a revoked
    object stays revoked (STIX 2.1 section 3.6)."""
    node = make_node()
    author = identity(GREEN)
    renamed = version(author, at(5), name="Unit (renamed)")
    node.add([author, renamed])
    seen = {(o["id"], o.get("modified")) for o in served(node)}
    assert (author["id"], renamed["modified"]) in seen
    node.app.extensions["taxii_node"].read_audit.flush()  # what the peer was served
    deleted = node.client.delete(
        node.url(f"objects/{author['id']}/"), headers=node.headers("admin"),
        query_string={"match[version]": renamed["modified"]},
    )  # fmt: skip
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    recalled = [o for o in served(node) if o["id"] == author["id"]]
    assert [o.get("revoked") for o in recalled] == [True]

    later = indicator(GREEN, 9, created_by_ref=author["id"])
    node.add([later])
    for objs in (served(node, **{"match[type]": "indicator"}), pushed(node)):
        assert later["id"] in ids(objs)
        assert not [o for o in objs if o["id"] == author["id"] and not o.get("revoked")]


def _statement(**extra) -> dict:
    return {"type": "marking-definition", "spec_version": "2.1", "created": T0,
            "id": f"marking-definition--{uuid.uuid4()}", "definition_type": "statement",
            "definition": {"statement": "Copyright"}, **extra}  # fmt: skip


@pytest.mark.parametrize("middle_kind", ["identity", "marking"])
@pytest.mark.parametrize("named_by", ["created_by_ref", "x_source_ref"])
def test_a_dependency_naming_a_withheld_object_never_travels(
    make_node, middle_kind, named_by
) -> None:
    """An unmarked identity or statement marking (withheld on its own, travelling as a
    dependency) that names a TLP:RED identity, as author or in any reference property,
    would name it: it stays back, and so do the objects that need it."""
    node = make_node()  # unmarked = "withhold", the default
    informant = identity(RED)
    if middle_kind == "identity":
        middle = identity(None, **{named_by: informant["id"]})
        shared = indicator(GREEN, 4, created_by_ref=middle["id"])
    else:
        middle = _statement(**{named_by: informant["id"]})
        shared = {**indicator(GREEN, 4), "object_marking_refs": [GREEN, middle["id"]]}
    plain = indicator(GREEN, 5)
    node.add([informant, middle, shared, plain])
    for objs in (served(node), pushed(node)):
        assert ids(objs) == {plain["id"], GREEN}
        assert informant["id"] not in json.dumps(objs)
    for tail in (f"objects/{shared['id']}/", f"objects/{middle['id']}/"):
        assert node.get(tail).status_code == 404


# ---------------------------------------------------------------- 7. collisions


def test_a_collision_is_told_to_an_analyst_not_to_the_partner(make_node) -> None:
    node = make_node()
    secret = indicator(RED)
    node.add([secret])
    same_version = {**secret, "object_marking_refs": [GREEN], "name": "guess"}
    status = node.post([same_version], account=PEER)
    assert "already stored" not in json.dumps(status)
    mine = node.post([same_version], account="alice")
    assert mine["failures"][0]["message"] == ingress.COLLISION


# ---------------------------------------------------------------- partner reads and the write lock


def test_partner_reads_are_audited_without_a_write_in_the_request(make_node) -> None:
    node = make_node()
    shared = indicator(GREEN)
    node.add([shared, indicator(RED, 2)])
    node.get("")  # the login (audited once per auth cache period) is not a read
    state = node.app.extensions["taxii_node"]
    state.read_audit = AuditQueue(node.store, interval=3600)  # writes only when flushed
    with node.store.read() as connection:
        before = connection.exec_driver_sql("SELECT COUNT(*) FROM audit").scalar()
    for _ in range(2):  # the same versions read twice
        assert node.get("objects/").status_code == 200
    with node.store.read() as connection:
        during = connection.exec_driver_sql("SELECT COUNT(*) FROM audit").scalar()
    assert during == before
    served = [r for r in node.audit_rows() if r["action"] == "served"]
    requests = [r for r in served if r["object_id"] is None]
    assert len(requests) == 2
    for record in requests:
        assert record["peer"] == PEER and record["collection_id"] == ALPHA
        assert "served 2 version(s), withheld 1 (tlp:red-never-leaves: 1)" in record["detail"]
    # One record of each version of content served (what a recall must reach), once.
    delivered = [(r["object_id"], r["version"], r["peer"]) for r in served if r["object_id"]]
    assert sorted(delivered) == sorted(
        [(shared["id"], shared["modified"], PEER), (GREEN, "2022-10-01T00:00:00.000Z", PEER)]
    )


def test_partner_read_proceeds_while_a_publisher_holds_the_write_lock(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN)])
    node.get("")  # the login (audited once per auth cache period) is not a read
    with node.store.write() as connection:
        connection.exec_driver_sql("SELECT 1")
        answer = node.get("objects/")
    assert answer.status_code == 200 and len(answer.json["objects"]) == 2
    node.close()


def test_a_partners_first_read_of_a_cache_period_takes_no_write_lock(tmp_path: Path) -> None:
    """The login of a partner's first GET (no cached credentials yet) is audited
    without the request waiting for the write lock a publisher holds."""
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN)])
    with node.store.write() as connection:
        connection.exec_driver_sql("SELECT 1")
        answer = node.get("objects/")
    assert answer.status_code == 200 and len(answer.json["objects"]) == 2
    node.app.extensions["taxii_node"].read_audit.flush()
    logins = [r for r in node.audit_rows() if r["action"] == "login"]
    assert [(r["actor"], r["rule"]) for r in logins] == [(PEER, "basic")]
    node.close()


# ---------------------------------------------------------------- references in any property


def _sco(kind: str, marking: str, **properties) -> dict:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid4()}",
            "object_marking_refs": [marking], **properties}  # fmt: skip


def _targets(marking: str) -> list[dict]:
    return [_sco("directory", marking, path="/srv/operation"), _sco("file", marking, name="x.dll"),
            indicator(marking, 11)]  # fmt: skip


def _naming(directory: dict, sample: dict, target: dict) -> list[dict]:
    """GREEN objects that name the others outside a relationship, sighting or container's
    link properties: each says something about them (a translation of the indicator's
    text, a sample, where a file lies) and names their ids."""
    return [
        sdo("language-content", GREEN, object_ref=target["id"], object_modified=T0,
            contents={"de": {"name": "Bösartige IP"}}),
        malware(GREEN, sample_refs=[sample["id"]]),
        sdo("malware-analysis", GREEN, product="sandbox", result="malicious",
            sample_ref=sample["id"]),
        _sco("file", GREEN, name="dropper.exe", parent_directory_ref=directory["id"]),
        _sco("file", GREEN, name="bundle.zip",
             extensions={"archive-ext": {"contains_refs": [sample["id"]]}}),
        indicator(GREEN, 8, x_derived_from_ref=target["id"]),
    ]  # fmt: skip


def test_objects_naming_a_withheld_object_in_any_reference_property_are_withheld(
    make_node,
) -> None:
    node = make_node()
    secrets, shared = _targets(RED), _targets(GREEN)
    leaking, naming_shared = _naming(*secrets), _naming(*shared)
    node.add([*secrets, *shared, *leaking, *naming_shared])
    for objs in (served(node), pushed(node)):
        assert not [ref for ref in ids(secrets) if ref in json.dumps(objs)]
        assert ids(objs) == ids(shared) | ids(naming_shared) | {GREEN}
    for obj in leaking:
        assert node.get(f"objects/{obj['id']}/").status_code == 404


# ---------------------------------------------------------------- collections it cannot see


def test_a_collection_the_partner_cannot_see_answers_as_an_unknown_name(make_node) -> None:
    """An unmapped collection named by its alias (a word a partner can guess) or its id
    answers as a name nobody uses: the 404 never names the collection's id."""
    node = make_node()
    unknown_id = "6f1f0a9a-9999-4c3e-9a41-000000000009"
    hidden_id = COLLECTIONS["beta"]
    for tail in ("", "objects/", "manifest/", f"objects/{indicator(GREEN)['id']}/versions/"):
        for hidden, unknown in (("beta", "no-such-alias"), (hidden_id, unknown_id)):
            answers = []
            for name in (hidden, unknown):
                response = node.client.get(node.url(tail, name), headers=node.headers(PEER))
                answers.append((response.status_code, response.get_data(as_text=True)))
            assert answers[0][0] == 404, (tail, hidden)
            assert answers[0][1].replace(hidden, unknown) == answers[1][1], (tail, hidden)


# ---------------------------------------------------------------- extension definitions


def _extension_definition(marking: str, author: dict) -> dict:
    return sdo("extension-definition", marking, author=author, name="x-ops-notes",
               schema="https://example.org", version="1.0",
               extension_types=["property-extension"])  # fmt: skip


def _using(definition: dict, value: int) -> dict:
    return indicator(GREEN, value, extensions={
        definition["id"]: {"extension_type": "property-extension", "x_case": "42/26"}})  # fmt: skip


def test_an_object_using_a_withheld_extension_definition_is_withheld(make_node) -> None:
    """An extension's definition is named by a key of ``extensions`` (STIX 2.1 section
    7.3), not by a ``*_ref``: an object using a RED definition never leaves (it would
    name the RED id); one using a GREEN definition travels with it, as an author does;
    one using a definition not stored here travels alone."""
    node = make_node()
    author = identity(GREEN)
    secret, shared = _extension_definition(RED, author), _extension_definition(GREEN, author)
    unknown = _extension_definition(GREEN, author)  # never stored
    leaking, fine, alone = _using(secret, 1), _using(shared, 2), _using(unknown, 3)
    node.add([author, secret, shared, leaking, fine, alone])
    for objs in (served(node), pushed(node)):
        assert secret["id"] not in json.dumps(objs)
        assert ids(objs) == {author["id"], fine["id"], shared["id"], alone["id"], GREEN}
    assert node.get(f"objects/{leaking['id']}/").status_code == 404


# ---------------------------------------------------------------- [[peers]] batch


class EnvelopeCounter(RecordingPeer):
    """A partner that records how many indicators each envelope it is posted holds."""

    def __init__(self) -> None:
        super().__init__()
        self.indicators_per_envelope: list[int] = []

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        objs = [jsoncodec.loads(text) for text in texts]
        self.indicators_per_envelope.append(sum(obj["type"] == "indicator" for obj in objs))
        return super().post_serialized(collection_id, texts, poll_seconds)


class PagingPeer(RecordingPeer):
    """A partner whose collection holds ``objects``, served ``limit`` at a time, each
    ``limit`` the pull round asked for recorded."""

    def __init__(self, objects: list[dict]) -> None:
        super().__init__()
        self.objects = objects
        self.limits: list[int] = []

    def objects_page(
        self, collection_id: str, *, added_after: str | None, next_token: str | None, limit: int
    ) -> ObjectPage:
        self.limits.append(limit)
        start = int(next_token or 0)
        end = min(start + limit, len(self.objects))
        more = end < len(self.objects)
        return ObjectPage(self.objects[start:end], more, str(end) if more else None, at(end))


def with_batch(node: SharingNode, batch: int) -> Agreement:
    """The node's agreement with its peer, with ``[[peers]] batch = batch``."""
    return replace(node.agreement, peer=replace(node.agreement.peer, batch=batch))


def test_a_push_round_decides_and_sends_batch_versions_at_a_time(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN, value) for value in range(7)])
    peer = EnvelopeCounter()
    result = MappingSync(node.store, with_batch(node, 3), peer).push()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert peer.indicators_per_envelope == [3, 3, 1]
    assert len({obj["id"] for obj in peer.sent if obj["type"] == "indicator"}) == 7
    node.close()


def test_a_pull_round_asks_for_pages_of_batch_versions(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(5)]
    peer = PagingPeer(theirs)
    result = MappingSync(node.store, with_batch(node, 2), peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert peer.limits == [2, 2, 2]
    stored = {row["object_id"] for row in node.rows() if row["origin"] == PEER}
    assert stored == {obj["id"] for obj in theirs}
    node.close()


@pytest.mark.parametrize("bound", ["batches", "seconds"])
def test_a_push_round_is_bounded_and_the_next_goes_on_from_its_cursor(
    tmp_path: Path, monkeypatch, bound: str
) -> None:
    """A push backlog is sent over several rounds, each of at most
    PUSH_BATCHES_PER_ROUND batches (or PUSH_SECONDS_PER_ROUND: 0 here, one batch a
    round), every version once and in order."""
    if bound == "batches":
        monkeypatch.setattr(push_module, "PUSH_BATCHES_PER_ROUND", 2)
    else:
        monkeypatch.setattr(push_module, "PUSH_SECONDS_PER_ROUND", 0.0)
    per_round = 2 if bound == "batches" else 1
    node = SharingNode(tmp_path / "a", None)
    backlog = [indicator(GREEN, value) for value in range(5)]
    node.add(backlog)
    peer = EnvelopeCounter()
    mapping = MappingSync(node.store, with_batch(node, 1), peer)  # type: ignore[arg-type]
    rounds = []
    for _ in range(10):
        result = mapping.push()
        assert result.ok, result.error
        rounds.append(len(peer.indicators_per_envelope))
        if result.sent == 0:
            break
    posts = [b - a for a, b in itertools.pairwise([0, *rounds])]
    assert posts == ([2, 2, 1, 0] if per_round == 2 else [1, 1, 1, 1, 1, 0])
    sent = [obj["id"] for obj in peer.sent if obj["type"] == "indicator"]
    assert sent == [obj["id"] for obj in backlog]  # each once, in order
    node.close()


def test_a_push_backlog_does_not_keep_the_worker_from_its_pull_lane(
    tmp_path: Path, monkeypatch
) -> None:
    """The running worker pulls from a peer while a push backlog to it is being sent: the
    pull lane's first round comes after at most one bounded push round."""
    monkeypatch.setattr(push_module, "PUSH_BATCHES_PER_ROUND", 2)
    monkeypatch.setenv("UNUSED", "a password never sent")
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN, value) for value in range(20)])
    worker = SyncWorker(node.config, node.store)
    (mapping,) = worker.mappings
    mapping.agreement = with_batch(node, 1)
    peer = _PullStops(worker.stop)
    _run_until_stopped(worker, mapping, peer)
    assert peer.posts_before_pull is not None and peer.posts_before_pull <= 2
    worker.close()
    node.close()


def _run_until_stopped(worker: SyncWorker, mapping: MappingSync, peer: object) -> None:
    """Run ``worker`` (``peer`` the client of its one mapping) until the peer stops it."""
    mapping.client = peer  # type: ignore[assignment]
    mapping._remote_id, mapping._max_content_length = "remote-alpha", 10_000_000
    runner = threading.Thread(target=worker.run_forever, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive()


class _PullStops(PagingPeer):
    """Counts posts; the first pull records how many came before it and stops the worker."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__([])
        self.stop = stop
        self.posts = 0
        self.posts_before_pull: int | None = None

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        self.posts += 1
        return super().post_serialized(collection_id, texts, poll_seconds)

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        if self.posts_before_pull is None:
            self.posts_before_pull = self.posts
        self.stop.set()
        return super().objects_page(collection_id, **where)


class _Throttling(PagingPeer):
    """Answers every pull 429 with Retry-After: 3600; counts the push rounds with nothing
    to send (each asks when the peer last answered), and stops the worker at 50."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__([])
        self.stop, self.pulls, self.push_rounds = stop, 0, 0

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        self.pulls += 1
        raise Throttled("GET x: HTTP 429: slow down", status=429, retry_after=3600.0)

    @property
    def last_answer(self) -> float:
        self.push_rounds += 1
        if self.push_rounds >= 50:
            self.stop.set()
        return time.monotonic()


def test_the_running_worker_asks_a_lane_again_only_after_the_peers_retry_after(
    tmp_path: Path, monkeypatch
) -> None:
    """The pull lane told to wait an hour is not tried again meanwhile (its backoff alone
    would have it tried within a second or two); the push lane of the same mapping goes
    on at its interval: 50 rounds, at least 2.45 s."""
    monkeypatch.setenv("UNUSED", "a password never sent")
    node = SharingNode(tmp_path / "a", None)
    worker = SyncWorker(node.config, node.store)
    (mapping,) = worker.mappings
    quick = replace(node.agreement.mapping, interval=0.05)
    mapping.agreement = replace(node.agreement, mapping=quick)
    peer = _Throttling(worker.stop)
    _run_until_stopped(worker, mapping, peer)
    assert peer.push_rounds == 50
    assert peer.pulls == 1
    worker.close()
    node.close()


def test_the_default_batch_is_a_thousand(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    assert node.agreement.peer.batch == 1000
    node.close()


# ---------------------------------------------------------------- malformed objects

# Values of the kinds the ingress rules read (type, markings, labels) that no valid
# STIX object holds: each is refused by validation, alone, on both paths.
MALFORMED = {
    "type-list": {"type": ["indicator"]},
    "type-object": {"type": {"indicator": 1}},
    "markings-number": {"object_marking_refs": 5},
    "markings-true": {"object_marking_refs": True},
    "granular-number": {"granular_markings": 5},
    "labels-number": {"labels": 5},
    "labels-nested-list": {"labels": [["phishing"]]},
    "labels-objects": {"labels": [{"phishing": 1}]},
}


@pytest.mark.parametrize("broken", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_partners_malformed_object_is_refused_alone_when_posted(make_node, broken) -> None:
    node = make_node(ingress={"labels_deny": ["phishing"]})
    bad, good = {**indicator(GREEN, 1), **broken}, indicator(GREEN, 2)
    status = node.post([bad, good], account=PEER)
    assert status["success_count"] == 1, status
    (failure,) = status["failures"]
    assert failure["id"] == bad["id"]
    assert failure["message"] != ingress.REFUSED  # validation's own words, about its object
    assert {row["object_id"] for row in node.rows()} == {good["id"]}


@pytest.mark.parametrize("broken", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_partners_malformed_object_is_dead_lettered_alone_when_pulled(make_node, broken) -> None:
    node = make_node(ingress={"labels_deny": ["phishing"]})
    bad, good = {**indicator(GREEN, 1), **broken}, indicator(GREEN, 2)
    peer = PagingPeer([bad, good])
    result = MappingSync(node.store, node.agreement, peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert {row["object_id"] for row in node.rows()} == {good["id"]}
    with node.store.read() as connection:
        letters = syncstate.list_dead_letters(connection)
    assert [letter["object_id"] for letter in letters] == [bad["id"]]
    assert result.dead_lettered == 1  # counted, and audited with validation's reason
    (record,) = [r for r in node.audit_rows() if r["object_id"] == bad["id"]]
    assert record["action"] == "dead-letter" and record["detail"] == letters[0]["reason"]
    # The cursor moved past the page: the next round does not stall on it.
    with node.store.read() as connection:
        state = syncstate.load(connection, PEER, node.agreement.mapping.key, Direction.PULL)
    assert state.remote_cursor == at(2)


class BrokenPeer(PagingPeer):
    """A peer client that fails as no peer should make it fail (a defect on our side)."""

    def objects_page(self, *args, **kwargs) -> ObjectPage:
        raise RuntimeError("an error no round expects")

    def post_serialized(self, *args, **kwargs):
        raise RuntimeError("an error no round expects")


def test_an_unexpected_error_fails_its_round_not_the_worker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNUSED", "a password never sent")
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN)])
    worker = SyncWorker(node.config, node.store)
    (mapping,) = worker.mappings
    mapping.client = BrokenPeer([])  # type: ignore[assignment]
    mapping._remote_id, mapping._max_content_length = "remote-alpha", 10_000_000
    results = worker.run_once()
    assert {result.direction for result in results} == {Direction.PUSH, Direction.PULL}
    for result in results:
        assert result.error == "internal error: RuntimeError: an error no round expects"
        with node.store.read() as connection:
            state = syncstate.load(connection, PEER, mapping.key, result.direction)
        assert state.last_error == result.error  # what `taxii-node sync status` shows
        assert state.cursor == 0 and state.remote_cursor is None  # nothing skipped
    worker.close()
    node.close()


# ---------------------------------------------------------------- recalls among rows


def _delivered(node: SharingNode, objs: list[dict]) -> None:
    """Audit ``objs`` as pushed to the peer (what a DELETE recalls from it)."""
    records = [AuditRecord(action=Action.SENT, direction=Direction.PUSH, object_id=obj["id"],
                           version=obj["modified"], peer=PEER, collection_id=ALPHA,
                           rule="allowed") for obj in objs]  # fmt: skip
    with node.store.write() as connection:
        audit.record(connection, records)


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_queued_recalls_and_rows_are_paged_in_order_whatever_the_limit(make_node, limit) -> None:
    node = make_node()
    first, gone_1, middle, gone_2 = (indicator(GREEN, n) for n in range(4))
    node.add([first, gone_1, middle, gone_2])
    _delivered(node, [gone_1, gone_2])
    for gone in (gone_1, gone_2):
        answer = node.client.delete(
            node.url(f"objects/{gone['id']}/"), headers=node.headers("admin")
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
    last = indicator(GREEN, 9)
    node.add([last])
    pages: list[list[dict]] = []
    params = {"limit": limit}
    while True:
        answer = node.get("objects/", params=params).json
        # (the TLP marking definition travels with its objects, beyond the limit)
        pages.append([obj for obj in answer.get("objects", []) if obj["type"] == "indicator"])
        if not answer["more"]:
            break
        params = {"limit": limit, "next": answer["next"]}
    got = [obj for page in pages for obj in page]
    assert all(len(page) <= limit for page in pages)
    # Stored order: first, middle, the two recalls (queued at the DELETEs), last.
    assert [(obj["id"], obj.get("revoked", False)) for obj in got] == [
        (first["id"], False), (middle["id"], False),
        (gone_1["id"], True), (gone_2["id"], True), (last["id"], False),
    ]  # fmt: skip


class RefusingPeer(RecordingPeer):
    """Refuses the objects ``refuse`` names, writing each failure as ``write`` says."""

    def __init__(self, refuse: dict[str, Any]) -> None:
        super().__init__()
        self.refuse = refuse  # id -> the version its failure gives (None: no version)

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        super().post_serialized(collection_id, texts, poll_seconds)
        failures = [{"id": object_id, "message": "no"} | ({"version": v} if v else {})
                    for object_id, v in self.refuse.items()]  # fmt: skip
        return complete_status([jsoncodec.loads(text) for text in texts], failures)

    def page(self, collection_id: str, params: dict) -> ObjectPage:
        return ObjectPage([], False, None, None)  # it holds none of them


def test_a_refusal_naming_the_version_in_another_form_is_a_dead_letter(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    seconds, unversioned, fine = indicator(GREEN, 1), indicator(GREEN, 2), indicator(GREEN, 3)
    node.add([seconds, unversioned, fine])
    peer = RefusingPeer({seconds["id"]: "2026-01-01T00:00:00Z", unversioned["id"]: None,
                         "indicator--0e0c0d7e-3c8e-4ab0-9c55-7a4a4c5b1e42": T0})  # fmt: skip
    result = MappingSync(node.store, node.agreement, peer).push()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert (result.sent, result.dead_lettered) == (2, 2)  # fine and the GREEN definition
    with node.store.read() as connection:
        letters = syncstate.list_dead_letters(connection)
    assert sorted((r["object_id"], r["version"]) for r in letters) == sorted(
        [(seconds["id"], seconds["modified"]), (unversioned["id"], unversioned["modified"])]
    )  # as stored here, so that `sync retry` finds them; nothing for what was not sent
    actions = {r["object_id"]: r["action"] for r in node.audit_rows() if r["object_id"]}
    assert actions[seconds["id"]] == actions[unversioned["id"]] == "dead-letter"
    assert actions[fine["id"]] == "sent"
    node.close()


# ---------------------------------------------------------------- how a peer pages


class DatedPeer(RecordingPeer):
    """A partner's collection of ``objects`` added at ``added`` (their date_added), served
    in date_added order after ``added_after``: with ``next`` tokens or without (TAXII
    2.1 makes them optional), with the date headers or without."""

    def __init__(self, objects: list[dict], added: list[str], *, tokens: bool,
                 headers: bool = True, too_large_above: int | None = None,
                 page_cap: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.page_cap = page_cap  # its max_page_size: never more a page, whatever is asked
        self.unreadable: set[str] = set()  # ids of versions the client cannot read (too deep)
        self.rows = sorted(zip(added, objects, strict=True), key=lambda row: row[0])
        self.tokens, self.headers = tokens, headers
        self.too_large_above = too_large_above  # a limit above which the answer is too large
        self.requests: list[tuple[str | None, str | None, int]] = []

    def objects_page(
        self, collection_id: str, *, added_after: str | None, next_token: str | None, limit: int
    ) -> ObjectPage:
        self.requests.append((added_after, next_token, limit))
        if self.too_large_above is not None and limit > self.too_large_above:
            raise RemoteError("the answer is larger than 268435456 bytes", transient=False,
                              too_much=True)  # fmt: skip
        after = [row for row in self.rows if added_after is None or row[0] > added_after]
        start = int(next_token or 0)
        limit = min(limit, self.page_cap or limit)
        page = after[start : start + limit]
        more = start + limit < len(after)
        token = str(start + limit) if more and self.tokens else None
        first, last = (page[0][0], page[-1][0]) if page and self.headers else (None, None)
        read = [obj for _, obj in page if obj["id"] not in self.unreadable]
        unread = [obj["id"] for _, obj in page if obj["id"] in self.unreadable]
        return ObjectPage(read, more, token, last, first, unreadable=unread)


def _stored_from_peer(node: SharingNode) -> set[str]:
    return {row["object_id"] for row in node.rows() if row["origin"] == PEER}


def _pull_rounds(node: SharingNode, peer: RecordingPeer, rounds: int, batch: int) -> MappingSync:
    mapping = MappingSync(node.store, with_batch(node, batch), peer)  # type: ignore[arg-type]
    for _ in range(rounds):
        result = mapping.pull()
        assert result.ok, result.error
    return mapping


@pytest.mark.parametrize("tokens", [True, False], ids=["next-tokens", "added-after-only"])
def test_a_pull_loses_nothing_of_versions_added_at_one_instant(tmp_path: Path, tokens) -> None:
    """Pages of 2 over 7 versions, 4 added at one instant: whether the peer gives next
    tokens or pages by added_after alone, every version is stored."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(7)]
    added = [at(1), at(2), at(3), at(3), at(3), at(3), at(4)]
    peer = DatedPeer(theirs, added, tokens=tokens)
    _pull_rounds(node, peer, 1, batch=2)
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    with node.store.read() as connection:
        state = syncstate.load(connection, PEER, node.agreement.mapping.key, Direction.PULL)
    assert state.remote_cursor == at(4)
    node.close()


def test_a_peer_adding_more_than_a_page_at_one_instant_is_paged_past_it(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(6)]
    peer = DatedPeer(theirs, [at(1)] * 5 + [at(2)], tokens=False)
    _pull_rounds(node, peer, 1, batch=2)
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    assert max(limit for _, _, limit in peer.requests) == 8  # doubled until past at(1)
    node.close()


def test_a_peer_capping_its_pages_below_one_instant_is_reported_as_such(tmp_path: Path) -> None:
    """Without next tokens, a peer that serves at most 2 versions a page and added 5 at
    one instant cannot be paged past it: the round says so, with the numbers."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(6)]
    peer = DatedPeer(theirs, [at(1)] * 5 + [at(2)], tokens=False, page_cap=2)
    result = MappingSync(node.store, with_batch(node, 2), peer).pull()  # type: ignore[arg-type]
    assert not result.ok
    assert "serves at most 2 versions a page (asked for 4)" in str(result.error), result.error
    node.close()


def test_an_unreadable_version_at_one_instant_is_no_page_cap(tmp_path: Path) -> None:
    """A version too deeply nested to read was served all the same: a page of one
    instant holding one is paged past (the limit doubled), not taken for a peer that
    caps its pages."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(6)]
    peer = DatedPeer(theirs, [at(1)] * 5 + [at(2)], tokens=False)
    peer.unreadable = {theirs[1]["id"]}
    result = MappingSync(node.store, with_batch(node, 2), peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs} - {theirs[1]["id"]}
    node.close()


@pytest.mark.parametrize("same_instant", [False, True], ids=["no-date-headers", "one-instant"])
def test_a_pull_that_stops_early_goes_on_in_the_next_run(
    tmp_path: Path, monkeypatch, same_instant
) -> None:
    """A round stops after its pages; the next one, in a new worker (``sync --once``
    runs), goes on with the same next token, whether the peer sends no date headers or
    gives every version one date_added (no cursor could move past them)."""
    monkeypatch.setattr(pull_module, "PULL_PAGES_PER_ROUND", 3)
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(8)]
    added = [at(1)] * 8 if same_instant else [at(n) for n in range(8)]
    peer = DatedPeer(theirs, added, tokens=True, headers=same_instant)
    for expected in (3, 6, 8):
        _pull_rounds(node, peer, 1, batch=1)  # a new MappingSync each time
        assert len(_stored_from_peer(node)) == expected
    assert [token for _, token, _ in peer.requests[2:4]] == ["2", "3"]
    node.close()


def test_a_slow_peer_gives_way_to_the_other_lanes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pull_module, "PULL_SECONDS_PER_ROUND", 0.0)
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(3)]
    peer = DatedPeer(theirs, [at(n) for n in range(3)], tokens=True)
    mapping = _pull_rounds(node, peer, 1, batch=1)
    assert len(peer.requests) == 1  # the round's time was up after one page
    for _ in range(2):
        mapping.pull()
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    assert [token for _, token, _ in peer.requests] == [None, "1", "2"]
    node.close()


def test_a_page_too_large_to_read_is_asked_for_in_halves(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(5)]
    peer = DatedPeer(theirs, [at(n) for n in range(5)], tokens=True, too_large_above=2)
    _pull_rounds(node, peer, 1, batch=8)
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    assert [limit for _, _, limit in peer.requests[:3]] == [8, 4, 2]
    node.close()


class FailingPeer(DatedPeer):
    """Answers its requests numbered in ``failing`` (from 1) with a transient error."""

    def __init__(self, *args, failing: set[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failing = failing

    def objects_page(self, collection_id: str, *, added_after, next_token, limit) -> ObjectPage:
        if len(self.requests) + 1 in self.failing:
            self.requests.append((added_after, next_token, limit))
            raise RemoteError("HTTP 503: busy", transient=True, status=503)
        return super().objects_page(
            collection_id, added_after=added_after, next_token=next_token, limit=limit
        )


def _pulls(node: SharingNode, peer: DatedPeer, rounds: int) -> list[bool]:
    """Whether each of ``rounds`` pull rounds (pages of 2, no retries) succeeded."""
    mapping = MappingSync(node.store, with_batch(node, 2), peer, retries=1)  # type: ignore[arg-type]
    return [mapping.pull().ok for _ in range(rounds)]


def test_a_round_that_failed_goes_on_at_the_page_that_failed(tmp_path: Path) -> None:
    """The next round asks again for the page that failed, with its token, not from
    the cursor: a peer serving versions out of date_added order (here the second page
    holds versions added before the first page's Last) loses nothing to a failure."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(4)]
    peer = FailingPeer(theirs, [at(5), at(6), at(1), at(2)], tokens=True, failing={2})
    peer.rows = peer.rows[2:] + peer.rows[:2]  # served: at(5), at(6), at(1), at(2)
    assert _pulls(node, peer, 2) == [False, True]
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    assert [token for _, token, _ in peer.requests] == [None, "2", "2"]
    node.close()


def test_a_token_that_fails_twice_running_is_dropped_for_the_cursor(tmp_path: Path) -> None:
    """A peer that answers 5xx to a token for good does not hold the pull on it."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(4)]
    peer = FailingPeer(theirs, [at(n) for n in range(4)], tokens=True, failing={2, 3})
    assert _pulls(node, peer, 3) == [False, False, True]
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    cursor = just_before(at(1))  # after the first page
    assert [(after, token) for after, token, _ in peer.requests] == [
        (None, None), (None, "2"), (None, "2"), (cursor, None), (cursor, "2")
    ]  # fmt: skip
    node.close()


class DeepPeer(DatedPeer):
    """Serves, with its versions, one it wrote nested too deeply to read."""

    deep_id = "indicator--0e0c0d7e-3c8e-4ab0-9c55-7a4a4c5b1e42"

    def objects_page(self, collection_id: str, *, added_after, next_token, limit) -> ObjectPage:
        page = super().objects_page(
            collection_id, added_after=added_after, next_token=next_token, limit=limit
        )
        return replace(page, unreadable=[self.deep_id] if next_token is None else [])


def test_a_version_too_deep_to_read_is_a_dead_letter_and_the_pull_goes_on(
    tmp_path: Path,
) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(3)]
    peer = DeepPeer(theirs, [at(n) for n in range(3)], tokens=True)
    result = MappingSync(node.store, with_batch(node, 2), peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert (result.received, result.dead_lettered) == (3, 1)
    assert _stored_from_peer(node) == {obj["id"] for obj in theirs}
    with node.store.read() as connection:
        letters = syncstate.list_dead_letters(connection)
        state = syncstate.load(connection, PEER, node.agreement.mapping.key, Direction.PULL)
    assert [(r["object_id"], r["direction"]) for r in letters] == [(DeepPeer.deep_id, "pull")]
    assert "nested deeper than 254 levels" in letters[0]["reason"]
    assert state.remote_cursor == at(2)  # past it
    audited = [r for r in node.audit_rows() if r["object_id"] == DeepPeer.deep_id]
    assert [r["action"] for r in audited] == ["dead-letter"]
    node.close()


def test_a_cursor_a_bad_date_header_left_is_replaced(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    key = node.agreement.mapping.key
    with node.store.write() as connection:
        state = syncstate.load(connection, PEER, key, Direction.PULL)
        state.remote_cursor = "Tue, 01 Dec 2026 00:00:00 GMT"  # (kept before the client checked)
        syncstate.save(connection, state)
    theirs = [indicator(GREEN, 1)]
    mapping = MappingSync(node.store, node.agreement, DatedPeer(theirs, [at(1)], tokens=True))  # type: ignore[arg-type]
    assert mapping.pull().ok
    with node.store.read() as connection:
        assert syncstate.load(connection, PEER, key, Direction.PULL).remote_cursor == at(1)
    node.close()


@pytest.mark.parametrize("unresolved", ["share", "withhold"])
def test_a_partners_link_to_a_withheld_object_reads_as_one_to_an_unknown_object(
    make_node, unresolved
) -> None:
    node = make_node(ingress={"unresolved_refs": unresolved})
    secret = indicator(RED)
    node.add([secret])
    theirs = malware(GREEN)
    node.post([theirs], account=PEER)
    to_secret = relationship(GREEN, theirs, secret)
    to_unknown = relationship(GREEN, theirs, indicator(GREEN, 8))
    answers = [_shape(node.post([link], account=PEER)) for link in (to_secret, to_unknown)]
    assert answers[0] == answers[1]
    assert answers[0]["successes" if unresolved == "share" else "failures"]
    stored = {row["object_id"] for row in node.rows()}
    assert (to_unknown["id"] in stored) == (to_secret["id"] in stored) == (unresolved == "share")


class IgnoringPeer(DatedPeer):
    """Pages without next tokens and ignores added_after and limit: the first two
    versions, always, and more."""

    def objects_page(self, collection_id: str, *, added_after, next_token, limit) -> ObjectPage:
        page = super().objects_page(collection_id, added_after=None, next_token=None, limit=2)
        self.requests[-1] = (added_after, next_token, limit)
        return page


def test_a_peer_ignoring_added_after_fails_the_round_saying_so(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(3)]
    peer = IgnoringPeer(theirs, [at(n) for n in range(3)], tokens=False)
    result = MappingSync(node.store, with_batch(node, 2), peer).pull()  # type: ignore[arg-type]
    assert result.error is not None and "cannot be paged further" in result.error
    assert len(peer.requests) == 2  # no loop: the second answer showed it
    assert len(_stored_from_peer(node)) == 2  # what it served is stored
    node.close()


# ---------------------------------------------------------------- an operator moves a cursor


class CursorMovingPeer(PagingPeer):
    """A partner that answers a round's first request only after ``move`` ran (an
    operator's ``sync set-cursor`` while the worker's round is in flight), and records
    where each page was asked for."""

    def __init__(self, objects: list[dict], move) -> None:
        super().__init__(objects)
        self.move = move
        self.asked: list[tuple[str | None, str | None]] = []

    def _moved_once(self) -> None:
        move, self.move = self.move, None
        if move is not None:
            move()

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        self._moved_once()
        self.asked.append((where["added_after"], where["next_token"]))
        return super().objects_page(collection_id, **where)

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        self._moved_once()
        return super().post_serialized(collection_id, texts, poll_seconds)


def _move_cursor(node: SharingNode, direction: Direction, to: str | None):
    return lambda: sync_operations.set_cursor(
        node.config, node.store, PEER, "alpha", direction, to, "cli:operator"
    )


def _lane(node: SharingNode, direction: Direction) -> syncstate.SyncState:
    with node.store.read() as connection:
        return syncstate.load(connection, PEER, node.agreement.mapping.key, direction)


def test_a_pull_cursor_moved_during_a_round_is_not_overwritten(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(6)]
    operators = from_micros(to_micros(at(4)))
    peer = CursorMovingPeer(theirs, _move_cursor(node, Direction.PULL, operators))
    sync = MappingSync(node.store, with_batch(node, 2), peer)  # type: ignore[arg-type]

    result = sync.pull()
    assert result.ok, result.error
    assert peer.asked == [(None, None)]  # the round stopped at its first commit
    state = _lane(node, Direction.PULL)
    assert (state.remote_cursor, state.pull_resume, state.cursor_moves) == (operators, None, 1)
    # The page that was in flight passed ingress and is stored and counted.
    assert result.received == 2 and state.received == 2
    stored = {row["object_id"] for row in node.rows() if row["origin"] == PEER}
    assert stored == {obj["id"] for obj in theirs[:2]}

    again = sync.pull()  # the next round starts at the operator's cursor
    assert again.ok and peer.asked[1] == (operators, None)
    assert _lane(node, Direction.PULL).cursor_moves == 1
    node.close()


def test_a_push_cursor_moved_during_a_round_is_not_overwritten(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN, value) for value in range(3)])
    before = MappingSync(node.store, with_batch(node, 1), RecordingPeer()).push()  # type: ignore[arg-type]
    assert before.ok and before.sent == 4  # with the TLP:GREEN definition
    end = _lane(node, Direction.PUSH).cursor
    assert end > 0
    node.add([indicator(GREEN, value) for value in range(3, 6)])

    peer = CursorMovingPeer([], _move_cursor(node, Direction.PUSH, None))  # back to the start
    sync = MappingSync(node.store, with_batch(node, 1), peer)  # type: ignore[arg-type]
    result = sync.push()
    assert result.ok, result.error
    state = _lane(node, Direction.PUSH)
    assert (state.cursor, state.cursor_moves) == (0, 1)
    # What crossed before the round stopped (a batch, and the one on the wire behind
    # it) is audited as sent, though the cursor stays where the operator put it.
    sent = [r for r in node.audit_rows() if r["action"] == "sent" and r["direction"] == "push"]
    crossed = {obj["id"] for obj in peer.sent}
    assert 1 <= len(crossed) <= 2 and crossed <= {r["object_id"] for r in sent}
    assert result.sent == len(crossed) and state.sent == before.sent + len(crossed)

    again = sync.push()  # from the start: everything again, and the TLP:GREEN definition
    everything = {row["object_id"] for row in node.rows()} | {GREEN}  # (set-cursor forgot it)
    assert again.ok and {o["id"] for o in peer.sent} == everything
    assert _lane(node, Direction.PUSH).cursor >= end
    node.close()


# ---------------------------------------------------------------- recalls a partner sends


def _recall_of(obj: dict, modified: str = at(30), **content) -> dict:
    """A recall of ``obj`` as a peer's node writes one (``node.recall``), with ``content``."""
    extension = {"extension_type": "property-extension", "action": "purge", "reason": "x"}
    return {**obj, **content, "modified": modified, "revoked": True,
            "extensions": {EXTENSION_ID: extension}}  # fmt: skip


def _answers(status: dict) -> list[tuple[str, str, str | None]]:
    """(outcome, id, message) of each object a status resource names."""
    return sorted((kind, d["id"], d.get("message")) for kind in ("successes", "failures")
                  for d in status.get(kind, []))  # fmt: skip


def test_a_recall_of_an_object_withheld_from_the_partner_reads_as_of_an_unknown_id(
    tmp_path: Path,
) -> None:
    node = SharingNode(tmp_path / "a", None)
    secret, ours = indicator(RED), indicator(GREEN)
    node.add([secret, ours])
    unknown = indicator(GREEN)  # never stored
    held = node.post([_recall_of(secret)], account=PEER)
    never = node.post([_recall_of(unknown)], account=PEER)
    assert _answers(held) == [("successes", secret["id"], "recall ignored")]
    assert _answers(never) == [("successes", unknown["id"], "recall ignored")]
    # An object it may see (ours) it knows we hold: refused, as before.
    seen = node.post([_recall_of(ours)], account=PEER)
    assert _answers(seen) == [("failures", ours["id"], "recall refused")]
    actions = {r["object_id"]: r["action"] for r in node.audit_rows() if r["rule"] == "recall"}
    assert actions == {secret["id"]: "recall-refused", unknown["id"]: "recall-ignored",
                       ours["id"]: "recall-refused"}  # fmt: skip
    assert {row["object_id"] for row in node.rows()} >= {secret["id"], ours["id"]}
    node.close()


def _malformed_recalls() -> dict[str, dict]:
    base = _recall_of(indicator(GREEN))
    no_id = {key: value for key, value in base.items() if key != "id"}
    return {"no id": no_id, "id a list": {**base, "id": ["x"]}, "id a number": {**base, "id": 5},
            "modified an object": {**base, "modified": {"a": 1}},
            "extension a string": {**base, "extensions": {EXTENSION_ID: "purge"}}}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_malformed_recalls()))
def test_a_malformed_recall_a_partner_posts_fails_alone(tmp_path: Path, case: str) -> None:
    node = SharingNode(tmp_path / "a", None)
    good, bad = indicator(GREEN), _malformed_recalls()[case]
    response = node.client.post(
        node.url("objects/"), data=json.dumps({"objects": [good, bad]}),
        headers=node.headers(PEER, **{"Content-Type": "application/taxii+json;version=2.1"}),
    )  # fmt: skip
    assert response.status_code == 202, response.get_data(as_text=True)
    status = response.get_json()
    assert (status["success_count"], status["failure_count"]) == (1, 1)
    assert {row["object_id"] for row in node.rows()} == {good["id"]}
    node.close()


def test_a_malformed_recall_pulled_is_dead_lettered_and_the_page_stored(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    good = [indicator(GREEN, value) for value in range(3)]
    bad = _malformed_recalls()["no id"]
    peer = PagingPeer([good[0], bad, good[1], good[2]])
    result = MappingSync(node.store, node.agreement, peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert (result.received, result.dead_lettered) == (3, 1)
    assert {row["object_id"] for row in node.rows() if row["origin"] == PEER} == {
        obj["id"] for obj in good
    }
    assert _lane(node, Direction.PULL).remote_cursor == at(4)  # not stalled on it
    node.close()


@pytest.mark.parametrize("path", ["posted", "pulled"])
def test_a_revoked_version_kept_holds_nothing_ingress_would_refuse(tmp_path: Path, path) -> None:
    """Under ``recalls = "revoke"`` the version stored is the one held, revoked: a
    recall's own content (here RED, a denied label, a redacted property) is never
    stored, as ingress policy never judged it."""
    ingress = {"recalls": "revoke", "max_tlp": "amber", "redact": ["x_secret"],
               "labels_deny": ["bad"]}  # fmt: skip
    node = SharingNode(tmp_path / "a", None, ingress=ingress)
    theirs = indicator(GREEN)
    recall = _recall_of(theirs, labels=["bad"], x_secret="s", object_marking_refs=[RED],
                        name="changed")  # fmt: skip
    if path == "posted":
        assert node.post([theirs], account=PEER)["success_count"] == 1
        assert _answers(node.post([recall], account=PEER)) == [
            ("successes", theirs["id"], "recall revoked")
        ]
    else:
        peer = PagingPeer([theirs, recall])
        assert MappingSync(node.store, node.agreement, peer).pull().ok  # type: ignore[arg-type]
    versions = sorted((json.loads(r["body"]) for r in node.rows()), key=lambda o: o["modified"])
    assert [v["modified"] for v in versions] == [theirs["modified"], at(30)]
    kept = versions[-1]
    assert kept["revoked"] is True and kept["extensions"][EXTENSION_ID]["reason"] == "x"
    assert {key: value for key, value in kept.items() if key not in ("modified", "revoked",
            "extensions")} == {key: value for key, value in theirs.items()
                               if key not in ("modified", "extensions")}  # fmt: skip
    node.close()


# ---------------------------------------------------------------- peers that break the rules


class LimitIgnoringPeer(PagingPeer):
    """Answers every page with all it holds, whatever the limit."""

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        self.limits.append(where["limit"])
        return ObjectPage(self.objects, False, None, at(59))


def test_a_taxii_node_page_with_its_dependencies_is_within_its_limit(tmp_path: Path) -> None:
    """A taxii-node serves the identities and markings its rows need with them: a row
    with its own author and statement marking is three objects, all read."""
    node = SharingNode(tmp_path / "a", None)
    page = []
    for value in range(200):
        author = identity(GREEN)
        statement = {**_statement(), "object_marking_refs": [GREEN]}
        page += [author, statement, {**indicator(GREEN, value, created_by_ref=author["id"]),
                                     "object_marking_refs": [GREEN, statement["id"]]}]  # fmt: skip
    peer = LimitIgnoringPeer(page)
    result = MappingSync(node.store, with_batch(node, 200), peer).pull()  # type: ignore[arg-type]
    assert result.ok, result.error
    assert result.received == 600
    node.close()


def test_a_page_far_beyond_its_limit_fails_the_round_unread(tmp_path: Path) -> None:
    """A peer ignoring limit held one round for minutes per million objects (one
    transaction): the page is refused unread and the cursor stays."""
    node = SharingNode(tmp_path / "a", None)
    flood = [indicator(GREEN, value) for value in range(3 + pull_module.PAGE_SLACK + 1)]
    result = MappingSync(node.store, with_batch(node, 3), LimitIgnoringPeer(flood)).pull()  # type: ignore[arg-type]
    assert not result.ok and "does not keep to the limit" in str(result.error)
    assert node.rows() == [] and _lane(node, Direction.PULL).remote_cursor is None
    node.close()


class FutureClockPeer(PagingPeer):
    """Says its last version was added in 2099."""

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        page = super().objects_page(collection_id, **where)
        return replace(page, date_added_last="2099-01-01T00:00:00.000Z")


def test_a_date_header_in_the_future_is_no_cursor(tmp_path: Path) -> None:
    """Committed, 2099 would have skipped everything the peer adds until then."""
    node = SharingNode(tmp_path / "a", None)
    theirs = [indicator(GREEN, value) for value in range(2)]
    result = MappingSync(node.store, node.agreement, FutureClockPeer(theirs)).pull()  # type: ignore[arg-type]
    assert result.ok and result.received == 2
    assert _lane(node, Direction.PULL).remote_cursor is None
    node.close()


class MovingCollectionPeer(PagingPeer):
    """Re-creates its collection under a new id after the first round."""

    def __init__(self, objects: list[dict]) -> None:
        super().__init__(objects)
        self.current = "remote-alpha"
        self.looked_up = 0

    def collection_id(self, name: str) -> str:
        self.looked_up += 1
        return self.current

    def objects_page(self, collection_id: str, **where) -> ObjectPage:
        if collection_id != self.current:
            raise RemoteError("GET objects/: HTTP 404: no such collection", transient=False,
                              status=404)  # fmt: skip
        return super().objects_page(collection_id, **where)


def test_a_collection_the_peer_recreated_is_found_again(tmp_path: Path) -> None:
    node = SharingNode(tmp_path / "a", None)
    peer = MovingCollectionPeer([indicator(GREEN, 1)])
    sync = MappingSync(node.store, node.agreement, peer)  # type: ignore[arg-type]
    assert sync.pull().ok
    peer.current = "remote-alpha-2"
    assert not sync.pull().ok  # its old id: 404
    assert sync.pull().ok and peer.looked_up == 2
    node.close()


class RedirectingPeer(RecordingPeer):
    """Answers every POST with a redirect (as ``TaxiiClient`` reports one)."""

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        raise RemoteError("POST objects/: HTTP 307: redirected to http://127.0.0.9/, not followed",
                          transient=False, status=307)  # fmt: skip


def test_a_redirect_on_post_fails_the_round_and_blames_no_object(tmp_path: Path) -> None:
    """A 3xx is about the address: halving the envelope made every object a dead letter
    and moved the cursor past them, the round reported ok."""
    node = SharingNode(tmp_path / "a", None)
    node.add([indicator(GREEN, value) for value in range(4)])
    result = MappingSync(node.store, node.agreement, RedirectingPeer()).push()  # type: ignore[arg-type]
    assert not result.ok and "HTTP 307" in str(result.error)
    assert result.dead_lettered == 0 and _lane(node, Direction.PUSH).cursor == 0
    with node.store.read() as connection:
        assert syncstate.list_dead_letters(connection) == []
    node.close()


def test_a_foreign_version_stored_keeps_last_in_the_peers_view_after_the_config_changes(
    make_node,
) -> None:
    """Versions of several origins stay stored when ``accept_foreign_versions`` is turned
    off: the store remembers that they may exist, so "last" still answers from the
    versions the peer may see."""
    node = make_node(ingress={"accept_foreign_versions": True})
    ours = indicator(GREEN, 3)
    node.add([ours])
    assert node.post([version(ours, at(6), name="node-b's")], account=PEER)["success_count"] == 1
    with node.store.read() as connection:
        assert provenance.collections_with_foreign_versions(connection) == {ALPHA}
    assert (
        Agreements(load_config(make_node("plain").config_path), node.store)
        .find(PEER, ALPHA)
        .foreign_versions
    )  # type: ignore[union-attr]
