"""Bilateral sync between two real nodes (and a stock medallion 3.0.0 peer) on loopback.

Each node is its own gunicorn server with its own store; workers run in this
process (``SyncWorker(...).run_once()``) or as the ``taxii-node sync`` CLI in a
subprocess.  Every assertion is about what the other side really holds, read
back over TAXII or from its store.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import stix2

from node.config import load_config
from node.store import Store, audit, objects, syncstate
from node.sync.worker import SyncWorker
from node.timestamps import to_micros
from node.tlp import TLP, TLP2_MARKING_IDS, tlp_marking_definitions, tlp_of
from tests.medallion_peer import MEDIA_TYPE, start_medallion
from tests.nodes import (
    ADMIN_PASSWORD,
    COLLECTIONS,
    PG_ENV,
    RunningNode,
    create_pg_database,
    drop_pg_database,
    kill_when_partly_moved,
    start_sync_worker,
)
from tests.pair import (
    Pair,
    make_pair,
    node_syncing_with,
    run_cli,
    start_node,
    sync_password,
)
from tests.sharing_objects import T0, sdo

ADMIN = ("admin", ADMIN_PASSWORD)
T1 = "2026-02-02T00:00:00.000Z"

# The ids themselves are checked against the published values in test_policy.py.
TLP2 = {level.config_name: marking for level, marking in TLP2_MARKING_IDS.items()}
TLP1 = {
    "white": stix2.TLP_WHITE.id,
    "green": stix2.TLP_GREEN.id,
    "amber": stix2.TLP_AMBER.id,
    "red": stix2.TLP_RED.id,
}
MARKINGS = {obj["id"]: obj for obj in tlp_marking_definitions()}

# The sharing agreement of the policy matrix, as both configs state it.
A_EGRESS = {"max_tlp": "amber", "unmarked": "withhold", "redact": ["x_internal_note"]}
B_INGRESS = {"max_tlp": "amber", "labels_deny": ["internal-only"], "redact": ["x_partner_secret"]}
B_EGRESS = {
    "max_tlp": "amber+strict",
    "allow_amber_strict": True,
    "unmarked": "share",
    "redact": ["x_internal_note"],
}
A_INGRESS = {"max_tlp": "amber", "redact": ["x_partner_secret"]}


# --------------------------------------------------------------------------- STIX objects


def identity(name: str, marking: str | None = None) -> dict:
    return sdo("identity", marking, name=name, identity_class="organization")


def indicator(author: dict, marking: str | None, value: str, **extra) -> dict:
    return sdo(
        "indicator",
        marking,
        author=author,
        name=f"Malicious IP {value}",
        pattern=f"[ipv4-addr:value = '{value}']",
        pattern_type="stix",
        valid_from="2026-01-01T00:00:00Z",
        **extra,
    )


def malware(author: dict, marking: str | None, name: str) -> dict:
    return sdo("malware", marking, author=author, name=name, is_family=True)


def relationship(author: dict, marking: str | None, source: dict, target: dict) -> dict:
    return sdo(
        "relationship",
        marking,
        author=author,
        relationship_type="indicates",
        source_ref=source["id"],
        target_ref=target["id"],
    )


def report(author: dict, marking: str | None, refs: list[dict]) -> dict:
    return sdo(
        "report",
        marking,
        author=author,
        name="Campaign write-up",
        published=T0,
        object_refs=[ref["id"] for ref in refs],
    )


def new_version(obj: dict, modified: str, **changes) -> dict:
    return {**obj, "modified": modified, **changes}


def without(obj: dict, *names: str) -> dict:
    return {key: value for key, value in obj.items() if key not in names}


def version_of(obj: dict) -> str:
    return obj.get("modified") or obj.get("created")


def marking_refs(objs) -> set[str]:
    return {ref for obj in objs for ref in obj.get("object_marking_refs", [])}


# --------------------------------------------------------------------------- TAXII helpers


def get_all(collection_url: str, auth: tuple[str, str], **params: str) -> list[dict]:
    """Every version in a collection, paging with ``next`` (and ``limit`` repeated)."""
    query = {"match[version]": "all", "limit": "1000", **params}
    found: list[dict] = []
    while True:
        response = requests.get(
            collection_url + "objects/",
            params=query,
            auth=auth,
            headers={"Accept": MEDIA_TYPE},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        envelope = response.json()
        found += envelope.get("objects", [])
        if not envelope.get("more"):
            return found
        query["next"] = envelope["next"]


def by_version(objs: list[dict]) -> dict[tuple[str, str], dict]:
    """(id, version) -> object, asserting that no version is there twice."""
    keyed: dict[tuple[str, str], dict] = {}
    for obj in objs:
        key = (obj["id"], version_of(obj))
        assert key not in keyed, f"{key} is stored twice"
        keyed[key] = obj
    return keyed


def holdings(node, alias: str = "alpha") -> dict[tuple[str, str], dict]:
    return by_version(get_all(node.collection_url(alias), ADMIN))


def publish(collection_url: str, auth: tuple[str, str], objs: list[dict]) -> None:
    for start in range(0, len(objs), 2000):
        response = requests.post(
            collection_url + "objects/",
            data=json.dumps({"objects": objs[start : start + 2000]}).encode(),
            auth=auth,
            headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        status = response.json()
        assert status["failure_count"] == 0, status["failures"]


def versions(collection_url: str, auth: tuple[str, str], object_id: str) -> list[str]:
    response = requests.get(
        f"{collection_url}objects/{object_id}/versions/",
        auth=auth,
        headers={"Accept": MEDIA_TYPE},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json().get("versions", [])


def peer_auth(reader: str, at: str) -> tuple[str, str]:
    """How ``reader``'s sync worker logs in at node ``at``."""
    return reader, sync_password(reader, at)


def all_ok(results) -> bool:
    return all(result.ok for result in results)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def pair_urls(store_url) -> Iterator[tuple[str | None, str | None]]:
    """Two stores of the parametrized kind: SQLite files, or two PostgreSQL databases."""
    if store_url is None:
        yield None, None
        return
    base = os.environ[PG_ENV]
    second = create_pg_database(base)
    try:
        yield store_url, second
    finally:
        drop_pg_database(base, second)


def both_ways_pair(tmp_path: Path, urls, stopper: list) -> Pair:
    pair = make_pair(
        tmp_path,
        urls,
        a={"alpha": {"egress": A_EGRESS, "ingress": A_INGRESS}},
        b={"alpha": {"egress": B_EGRESS, "ingress": B_INGRESS}},
    )
    stopper.append(pair)
    return pair


# --------------------------------------------------------------------------- policy matrix


class Matrix:
    """What each node publishes, and exactly what the other one must end up with."""

    def __init__(self) -> None:
        # Node A: TLP 2.0, TLP 1.0 and unmarked content of five types.
        author = identity("Unit A")  # unmarked: travels only as a dependency
        liaison = identity("Unit A liaison desk", TLP2["green"])
        clear = indicator(author, TLP2["clear"], "198.51.100.1")
        green = indicator(author, TLP2["green"], "198.51.100.2", x_partner_secret="hunch")
        amber = indicator(author, TLP2["amber"], "198.51.100.3", x_internal_note="informant 7")
        strict = indicator(author, TLP2["amber+strict"], "198.51.100.4")
        red = indicator(author, TLP2["red"], "198.51.100.5")
        unmarked = indicator(author, None, "198.51.100.6")
        white1 = indicator(author, TLP1["white"], "198.51.100.7")
        green1 = indicator(author, TLP1["green"], "198.51.100.8")
        amber1 = indicator(author, TLP1["amber"], "198.51.100.9", x_internal_note="do not share")
        red1 = indicator(author, TLP1["red"], "198.51.100.10")
        internal = indicator(author, TLP2["green"], "198.51.100.11", labels=["internal-only"])
        loader = malware(author, TLP2["green"], "loader")
        implant = malware(author, TLP2["red"], "implant")
        rel_ok = relationship(author, TLP2["green"], green, loader)
        rel_to_red = relationship(author, TLP2["green"], amber, implant)
        rel_to_unmarked = relationship(author, TLP2["clear"], clear, unmarked)
        rep = report(author, TLP2["green"], [clear, red, loader, implant, strict, rel_ok, red1])
        self.a = {
            "author": author,
            "liaison": liaison,
            "clear": clear,
            "green": green,
            "amber": amber,
            "strict": strict,
            "red": red,
            "unmarked": unmarked,
            "white1": white1,
            "green1": green1,
            "amber1": amber1,
            "red1": red1,
            "internal": internal,
            "loader": loader,
            "implant": implant,
            "rel_ok": rel_ok,
            "rel_to_red": rel_to_red,
            "rel_to_unmarked": rel_to_unmarked,
            "report": rep,
        }
        # What A's egress lets B's sync account see (before B's ingress).
        a_served = [
            author,
            liaison,
            clear,
            green,
            without(amber, "x_internal_note"),
            white1,
            green1,
            without(amber1, "x_internal_note"),
            internal,
            loader,
            rel_ok,
            {**rep, "object_refs": [clear["id"], loader["id"], rel_ok["id"]]},
        ]
        self.a_served = a_served + [MARKINGS[m] for m in sorted(marking_refs(a_served))]
        # ... and what B keeps of it: no internal-only label, no x_partner_secret, and
        # not the TLP definitions (B's own, built in, stand: "already present").
        self.on_b_from_a = [
            without(obj, "x_partner_secret")
            for obj in without_builtin_markings(self.a_served)
            if obj is not internal
        ]
        self.a_withheld = {
            strict["id"]: "tlp.max",
            red["id"]: "tlp:red-never-leaves",
            red1["id"]: "tlp:red-never-leaves",
            unmarked["id"]: "unmarked",
            implant["id"]: "tlp:red-never-leaves",
            rel_to_red["id"]: "ref.withheld-target",
            rel_to_unmarked["id"]: "ref.withheld-target",
        }
        self.a_refused_by_b = {internal["id"]}

        # Node B: shares up to AMBER+STRICT and unmarked content; A takes up to AMBER.
        b_author = identity("Unit B")
        b_green = indicator(b_author, TLP2["green"], "203.0.113.1", x_internal_note="ours")
        b_strict = indicator(b_author, TLP2["amber+strict"], "203.0.113.2")
        b_red = indicator(b_author, TLP2["red"], "203.0.113.3")
        b_unmarked = indicator(b_author, None, "203.0.113.4")
        b_amber1 = indicator(b_author, TLP1["amber"], "203.0.113.5", x_partner_secret="tip")
        b_mal = malware(b_author, TLP1["green"], "dropper")
        b_rel = relationship(b_author, TLP2["green"], b_green, b_mal)
        b_rep = report(b_author, TLP2["green"], [b_green, b_red, b_mal])
        self.b = {
            "author": b_author,
            "green": b_green,
            "strict": b_strict,
            "red": b_red,
            "unmarked": b_unmarked,
            "amber1": b_amber1,
            "malware": b_mal,
            "rel": b_rel,
            "report": b_rep,
        }
        b_served = [
            b_author,
            without(b_green, "x_internal_note"),
            b_strict,
            b_unmarked,
            b_amber1,
            b_mal,
            b_rel,
            {**b_rep, "object_refs": [b_green["id"], b_mal["id"]]},
        ]
        self.b_served = b_served + [MARKINGS[m] for m in sorted(marking_refs(b_served))]
        self.on_a_from_b = [
            without(obj, "x_partner_secret")
            for obj in without_builtin_markings(self.b_served)
            if obj is not b_strict
        ]
        self.b_refused_by_a = {b_strict["id"]}


def expected_holdings(own: list[dict], received: list[dict]) -> dict[tuple[str, str], dict]:
    return by_version(own + received)


def assert_no_red(objs, redacted=("x_internal_note", "x_partner_secret")) -> None:
    """No TLP:RED content and no redacted property among objects that crossed over."""
    for obj in objs:
        assert tlp_of(obj) is not TLP.RED, obj["id"]
        assert not set(redacted) & set(obj), obj["id"]


def test_policy_matrix_both_ways_no_echo_versions_and_revocations(tmp_path, pair_urls, stopper):
    pair = both_ways_pair(tmp_path, pair_urls, stopper)
    m = Matrix()
    publish(pair.a.collection_url("alpha"), ADMIN, list(m.a.values()))
    publish(pair.b.collection_url("alpha"), ADMIN, list(m.b.values()))

    # Pulling cannot bypass egress: B's sync account reads A's collection directly.
    b_at_a = peer_auth("node-b", "node-a")
    served = get_all(pair.a.collection_url("alpha"), b_at_a)
    assert by_version(served) == by_version(m.a_served)
    assert_no_red(served, redacted=("x_internal_note",))
    for withheld_id in m.a_withheld:
        object_url = f"{pair.a.collection_url('alpha')}objects/{withheld_id}/"
        # A withheld object is not even admitted to exist: 404, as for an unknown id;
        # and a partner never deletes here.
        for method, url, status in (
            ("GET", object_url, 404),
            ("GET", object_url + "versions/", 404),
            ("DELETE", object_url, 403),
        ):
            answer = requests.request(
                method, url, auth=b_at_a, headers={"Accept": MEDIA_TYPE}, timeout=30
            )
            assert answer.status_code == status, (method, url)
    manifest = requests.get(
        pair.a.collection_url("alpha") + "manifest/",
        auth=b_at_a,
        params={"match[version]": "all"},
        headers={"Accept": MEDIA_TYPE},
        timeout=30,
    ).json()
    # The unmarked author travels only inside pages of the objects that name it (as a
    # dependency): it is not a version of the partner's view, so the manifest omits it.
    stored_served = {
        obj["id"]
        for obj in m.a_served
        if obj["type"] != "marking-definition" and obj is not m.a["author"]
    }
    assert {r["id"] for r in manifest["objects"]} == stored_served

    # Both workers at the same time, three rounds.
    first = pair.run_both()
    assert all_ok(first["node-a"]) and all_ok(first["node-b"]), first
    on_a = holdings(pair.a)
    on_b = holdings(pair.b)
    assert on_b == expected_holdings(list(m.b.values()), m.on_b_from_a)
    assert on_a == expected_holdings(list(m.a.values()), m.on_a_from_b)
    assert_no_red([obj for key, obj in on_b.items() if key not in by_version(list(m.b.values()))])
    assert_no_red([obj for key, obj in on_a.items() if key not in by_version(list(m.a.values()))])

    # Objects the partner's ingress refused on push are dead letters, not losses elsewhere.
    assert {d["object_id"] for d in pair.dead_letters(pair.a)} == m.a_refused_by_b
    assert {d["object_id"] for d in pair.dead_letters(pair.b)} == m.b_refused_by_a

    # Why each object was withheld, as A's audit says (push, or serve to B's account).
    with pair.store(pair.a).read() as connection:
        records = audit.entries(connection, peer="node-b", limit=100_000)
    rules = {(r["object_id"], r["rule"]) for r in records if r["action"] == "withheld"}
    for object_id, rule in m.a_withheld.items():
        assert (object_id, rule) in rules
    sent = {
        (r["object_id"], r["rule"])
        for r in records
        if r["direction"] == "push" and r["action"] == "sent"
    }
    assert (m.a["report"]["id"], "reports.trim") in sent
    assert (m.a["author"]["id"], "dependency") in sent
    assert not {r["object_id"] for r in records if r["action"] == "sent"} & set(m.a_withheld)

    # No echo: further rounds move nothing and every version stays there exactly once.
    for _ in range(2):
        again = pair.run_both()
        for results in again.values():
            assert all_ok(results)
            assert sum(r.sent + r.received for r in results) == 0, results
        assert holdings(pair.a) == on_a
        assert holdings(pair.b) == on_b

    # New versions and revocations propagate; a new version of withheld content does not.
    green_v2 = new_version(m.a["green"], T1, name="Malicious IP (confirmed)")
    clear_revoked = new_version(m.a["clear"], T1, revoked=True)
    red_v2 = new_version(m.a["red"], T1, name="still red")
    b_green_v2 = new_version(m.b["green"], T1, confidence=80)
    publish(pair.a.collection_url("alpha"), ADMIN, [green_v2, clear_revoked, red_v2])
    publish(pair.b.collection_url("alpha"), ADMIN, [b_green_v2])
    for _ in range(2):
        assert all(all_ok(results) for results in pair.run_both().values())
    b_url, a_url = pair.b.collection_url("alpha"), pair.a.collection_url("alpha")
    assert versions(b_url, ADMIN, m.a["green"]["id"]) == [T0, T1]
    assert versions(b_url, ADMIN, m.a["clear"]["id"]) == [T0, T1]
    assert versions(a_url, ADMIN, m.b["green"]["id"]) == [T0, T1]
    on_b_after = holdings(pair.b)
    assert on_b_after[(m.a["clear"]["id"], T1)]["revoked"] is True
    assert on_b_after[(m.a["green"]["id"], T1)] == without(green_v2, "x_partner_secret")
    assert not any(key[0] == m.a["red"]["id"] for key in on_b_after)
    assert set(on_b_after) - set(on_b) == {
        (m.a["green"]["id"], T1),
        (m.a["clear"]["id"], T1),
        (m.b["green"]["id"], T1),
    }
    on_a_after = holdings(pair.a)
    assert on_a_after[(m.b["green"]["id"], T1)] == without(b_green_v2, "x_internal_note")
    assert len(on_a_after) == len(on_a) + 4  # three versions published here, one received


# --------------------------------------------------------------------------- CLI reports, delete


def _cli_parallel(calls: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """Run several ``node.cli(...)`` calls at once (each CLI start costs ~2 s here)."""
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(key: str, node, args: tuple[str, ...]) -> None:
        results[key] = node.cli(*args)

    threads = [
        threading.Thread(target=run, args=(key, node, args)) for key, (node, *args) in calls.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == set(calls), "a CLI call failed; see the output above"
    return results


def test_cli_status_preview_audit_and_local_delete(tmp_path, stopper):
    pair = both_ways_pair(tmp_path, (None, None), stopper)
    m = Matrix()
    publish(pair.a.collection_url("alpha"), ADMIN, list(m.a.values()))
    publish(pair.b.collection_url("alpha"), ADMIN, list(m.b.values()))

    runs = _cli_parallel(
        {
            "a": (pair.a, "sync", "--once", "--peer", "node-b"),
            "b": (pair.b, "sync", "--once"),
        }
    )
    assert "node-b alpha<->alpha push: sent" in runs["a"].stdout
    assert "(ok)" in runs["a"].stdout and "FAILED" not in runs["a"].stdout

    # The read-only reports run through the same CLI commands, in this process.
    status = run_cli(pair.a, "sync", "status")
    status_json = run_cli(pair.a, "sync", "status", "--json")
    preview = run_cli(pair.a, "policy", "preview", "--peer", "node-b").splitlines()
    audit_lines = run_cli(pair.a, "audit", "--peer", "node-b", "--limit", "100000").splitlines()

    assert "node-b alpha<->alpha push" in status and "node-b alpha<->alpha pull" in status
    states = {s["direction"]: s for s in json.loads(status_json)}
    push, pull = states["push"], states["pull"]
    assert to_micros(push["cursor"]) > 0 and to_micros(pull["cursor"]) > 0
    assert push["last_error"] is None and push["last_success"] is not None
    assert push["dead_lettered"] == len(m.a_refused_by_b)
    assert push["withheld"] >= len(m.a_withheld)
    # B's worker pulls at the same time, so some versions are already there when A pushes.
    delivered = push["sent"] + push["already_present"]
    assert delivered >= len(m.a_served) - len(m.a_refused_by_b)
    for state in (push, pull):
        counts = (
            f"sent {state['sent']}, received {state['received']}, "
            f"withheld {state['withheld']}, dead-lettered {state['dead_lettered']}"
        )
        assert counts in status
    assert f"cursor:      {pull['cursor']}" in status
    assert "cursor:      start" not in status
    assert f"dead letters: {len(m.a_refused_by_b)}" in status

    for object_id, rule in m.a_withheld.items():
        assert any(
            line.startswith(f"WITHHOLD {object_id} ") and f"[{rule}]" in line for line in preview
        ), (object_id, rule)
    assert any(
        line.startswith(f"SEND     {m.a['report']['id']} ") and "[reports.trim]" in line
        for line in preview
    )
    assert preview[-1].startswith("would send ") and f"withhold {len(m.a_withheld)}" in preview[-1]

    for object_id, rule in m.a_withheld.items():
        assert any(
            " push " in line and " withheld " in line and object_id in line and f"[{rule}]" in line
            for line in audit_lines
        ), (object_id, rule)
    assert any(
        " push " in line
        and " sent " in line
        and m.a["loader"]["id"] in line
        and "[allowed]" in line
        for line in audit_lines
    )
    assert any(" dead-letter " in line and m.a["internal"]["id"] in line for line in audit_lines)

    # DELETE is audited on the node that deletes; what the partner received from it
    # is recalled there (issue 11), what it received from the partner stays there.
    loader, green1 = m.a["loader"]["id"], m.a["green1"]["id"]
    b_deleted = requests.delete(
        f"{pair.b.collection_url('alpha')}objects/{loader}/",
        auth=ADMIN,
        headers={"Accept": MEDIA_TYPE},
        timeout=30,
    )
    a_deleted = requests.delete(
        f"{pair.a.collection_url('alpha')}objects/{green1}/",
        auth=ADMIN,
        headers={"Accept": MEDIA_TYPE},
        timeout=30,
    )
    assert b_deleted.status_code == 200 and a_deleted.status_code == 200
    for _ in range(2):
        assert all(all_ok(results) for results in pair.run_both().values())
    on_a, on_b = holdings(pair.a), holdings(pair.b)
    assert (loader, T0) in on_a and (loader, T0) not in on_b
    assert (green1, T0) not in on_b and (green1, T0) not in on_a
    recalled = [json.loads(line) for line in run_cli(pair.b, "audit", "--json", "--limit",
                                                     "100000").splitlines()]  # fmt: skip
    assert [(r["object_id"], r["peer"]) for r in recalled if r["action"] == "recall-purged"] == [
        (green1, "node-a")
    ]

    for node, object_id in ((pair.a, green1), (pair.b, loader)):
        lines = run_cli(node, "audit", "--json", "--limit", "100000").splitlines()
        rows = [json.loads(line) for line in lines]
        deleted = [r for r in rows if r["action"] == "deleted"]
        assert [(r["object_id"], r["direction"]) for r in deleted] == [(object_id, "local")]
        assert deleted[0]["detail"].startswith("1 version(s) deleted")


# --------------------------------------------------------------------------- dead letters


def test_rejected_object_is_dead_lettered_and_does_not_block(tmp_path, stopper):
    pair = make_pair(
        tmp_path,
        a={"alpha": {"direction": "push", "egress": {"max_tlp": "green"}}},
        b={"alpha": {"direction": "pull", "ingress": {"types_deny": ["malware"]}}},
        # B also takes small envelopes only: A must split, and dead-letter what cannot fit.
        taxii={"node-b": "max_content_length = 8192"},
    )
    stopper.append(pair)
    author = identity("Unit A", TLP2["green"])
    mal = malware(author, TLP2["green"], "loader")
    big = indicator(author, TLP2["green"], "192.0.2.250", description="x" * 10_000)
    fine = [indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(40)]
    batch = [author, *fine[:20], mal, big, *fine[20:]]
    publish(pair.a.collection_url("alpha"), ADMIN, batch)

    [push] = pair.run_once(pair.a)
    assert push.ok and push.direction == "push", push
    assert push.dead_lettered == 2
    # The author and the indicators are new at B; B holds the TLP:GREEN definition built in.
    assert (push.sent, push.already_present) == (1 + len(fine), 1)
    dead = {d["object_id"]: d for d in pair.dead_letters(pair.a)}
    assert set(dead) == {mal["id"], big["id"]}
    assert "types.deny" in dead[mal["id"]]["reason"]
    assert "max_content_length" in dead[big["id"]]["reason"]
    assert holdings(pair.b) == by_version([author, *fine])

    # The dead letters are not retried and block nothing that follows.
    later = indicator(author, TLP2["green"], "192.0.2.99")
    publish(pair.a.collection_url("alpha"), ADMIN, [later])
    [push] = pair.run_once(pair.a)
    assert push.ok and push.dead_lettered == 0 and push.sent >= 1
    assert (later["id"], T0) in holdings(pair.b)
    assert len(pair.dead_letters(pair.a)) == 2
    status = run_cli(pair.a, "sync", "status")
    assert "dead-lettered 2" in status and "dead letters: 2" in status


# --------------------------------------------------------------------------- peer down


def test_peer_down_leaves_cursors_and_catches_up_without_loss(tmp_path, stopper):
    policy = {"egress": {"max_tlp": "green"}}
    pair = make_pair(tmp_path, a={"alpha": policy}, b={"alpha": policy})
    stopper.append(pair)
    author, b_author = identity("Unit A", TLP2["green"]), identity("Unit B", TLP2["green"])
    a_first = [author, *(indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(3))]
    b_first = [b_author, indicator(b_author, TLP2["clear"], "203.0.113.1")]
    publish(pair.a.collection_url("alpha"), ADMIN, a_first)
    publish(pair.b.collection_url("alpha"), ADMIN, b_first)
    assert all(all_ok(results) for results in pair.run_both().values())
    before = pair.states(pair.a)

    a_second = [indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(10, 15)]
    publish(pair.a.collection_url("alpha"), ADMIN, a_second)
    pair.b.stop()
    results = pair.run_once(pair.a, retries=2)
    assert [r.direction for r in results] == ["push", "pull"]
    assert not any(r.ok for r in results)
    assert all(f"127.0.0.1:{pair.b.port}" in r.error for r in results), results
    assert sum(r.sent + r.received for r in results) == 0
    during = pair.states(pair.a)
    for key, state in during.items():
        assert (state.cursor, state.remote_cursor) == (
            before[key].cursor,
            before[key].remote_cursor,
        )
        assert (state.sent, state.received) == (before[key].sent, before[key].received)
        assert state.last_error and state.last_success == before[key].last_success

    start_node(pair.b)
    b_second = [indicator(b_author, TLP2["green"], "203.0.113.2")]
    publish(pair.b.collection_url("alpha"), ADMIN, b_second)
    results = pair.run_once(pair.a)
    assert all_ok(results)
    push, pull = results
    assert push.sent >= len(a_second) and pull.received == len(b_second)
    after = pair.states(pair.a)
    assert all(state.last_error is None for state in after.values())
    # Neither side stores the partner's copy of a TLP definition: each keeps its own.
    on_b = holdings(pair.b)
    assert on_b == by_version(b_first + b_second + a_first + a_second)
    assert holdings(pair.a) == by_version(a_first + a_second + b_first + b_second)


# --------------------------------------------------------------------------- SIGKILL


# The pair's ``[[peers]] batch`` in the SIGKILL test: several batches in a few
# hundred objects.
SIGKILL_BATCH = 100


def big_publication(count: int) -> tuple[list[dict], list[dict]]:
    """(everything, what a max_tlp=green egress shares): one object in ten is TLP:RED."""
    author = identity("Bulk producer", TLP2["green"])
    everything = [author]
    for index in range(count):
        marking = TLP2["red"] if index % 10 == 0 else TLP2["green"]
        everything.append(
            indicator(author, marking, f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
        )
    shared = [obj for obj in everything if tlp_of(obj) is TLP.GREEN]
    return everything, [*shared, MARKINGS[TLP2["green"]]]


def without_builtin_markings(objs: list[dict]) -> list[dict]:
    """``objs`` less the node's built-in TLP definitions, which a node never stores as
    received from a peer (pulled, or posted by the peer's account)."""
    return [obj for obj in objs if obj["id"] not in MARKINGS]


def count_versions(pair: Pair, node, alias: str) -> int:
    with pair.store(node).read() as connection:
        return objects.count(connection, COLLECTIONS[alias])


def test_sigkill_mid_push_and_mid_pull_loses_and_duplicates_nothing(tmp_path, stopper):
    green_only = {"max_tlp": "green"}
    pair = make_pair(
        tmp_path,
        a={
            "alpha": {"direction": "push", "egress": green_only},
            "beta": {"direction": "push", "egress": green_only},
        },
        # Each side's direction matches its partner's: a node refuses writes to a
        # collection its own mapping does not pull (and reads it does not push).
        b={"alpha": {"direction": "pull"}, "beta": {"direction": "pull"}},
        batch=SIGKILL_BATCH,
    )
    stopper.append(pair)

    # Mid-push: node A's worker is killed while it posts batches to node B.
    _kill_mid_transfer_then_finish(pair, pair.a, "alpha")
    # Mid-pull: node B's worker is killed while it pages through node A's collection.
    _kill_mid_transfer_then_finish(pair, pair.b, "beta")


def _kill_mid_transfer_then_finish(pair: Pair, runner: RunningNode, alias: str) -> None:
    """Four push batches' (or pull pages') worth of versions published on A's ``alias``;
    ``runner``'s worker process SIGKILLed once B holds some, so before the last has
    landed (kill_when_partly_moved checks); then ``sync --once``: B holds each
    shared version once."""
    everything, shared = big_publication(4 * SIGKILL_BATCH)
    shared = without_builtin_markings(shared)  # node-b keeps its own TLP definitions
    publish(pair.a.collection_url(alias), ADMIN, everything)
    peer = pair.other(runner).name
    worker = start_sync_worker(runner, "--peer", peer)
    kill_when_partly_moved(worker, lambda: count_versions(pair, pair.b, alias), len(shared))
    finish = runner.cli("sync", "--once", "--peer", peer)
    assert "FAILED" not in finish.stdout
    assert holdings(pair.b, alias) == by_version(shared)
    assert count_versions(pair, pair.b, alias) == len(shared)


# --------------------------------------------------------------------------- medallion


def test_push_to_and_pull_from_stock_medallion(tmp_path, stopper):
    collection_id = str(uuid.uuid4())
    medallion = start_medallion(tmp_path / "medallion", {"alpha": collection_id})
    stopper.append(medallion)
    med_auth = (medallion.user, medallion.password)
    node = node_syncing_with(
        tmp_path,
        medallion,
        name="medallion",
        mappings={"alpha": {"egress": A_EGRESS, "ingress": {"max_tlp": "amber"}}},
        remote_names={"alpha": collection_id},
    )
    stopper.append(node)
    config = load_config(node.config_path)
    store = Store(config.store_url)
    stopper.append(SimpleNamespace(stop=store.close))

    def sync_round():
        worker = SyncWorker(config, store)
        try:
            results = worker.run_once()
        finally:
            worker.close()
        assert all_ok(results), results
        return {r.direction: r for r in results}

    m = Matrix()
    publish(node.collection_url("alpha"), ADMIN, list(m.a.values()))
    med_author = identity("medallion unit", TLP2["green"])
    med_green = indicator(med_author, TLP2["green"], "203.0.113.77")
    med_red = indicator(med_author, TLP2["red"], "203.0.113.78")
    publish(medallion.collection_url("alpha"), med_auth, [med_author, med_green, med_red])

    rounds = [sync_round()]
    # medallion got what A's egress shares (no receiving policy there), A got the rest.
    on_medallion = by_version(get_all(medallion.collection_url("alpha"), med_auth))
    assert on_medallion == by_version([*m.a_served, med_author, med_green, med_red])
    # The TLP definitions medallion serves back are the node's own: never stored from it.
    a_markings = without_builtin_markings(
        [obj for obj in m.a_served if obj["type"] == "marking-definition"]
    )
    expected_on_a = by_version([*list(m.a.values()), med_author, med_green, *a_markings])
    assert holdings(node) == expected_on_a
    assert rounds[0]["pull"].withheld >= 1  # the TLP:RED object

    # Nothing new: nothing moves, nothing is duplicated on either side.
    rounds.append(sync_round())
    assert rounds[1]["push"].sent == 0 and rounds[1]["pull"].received == 0
    assert holdings(node) == expected_on_a

    # A new version goes over, a new medallion object comes back.
    green_v2 = new_version(m.a["green"], T1, name="confirmed")
    publish(node.collection_url("alpha"), ADMIN, [green_v2])
    med_new = indicator(med_author, TLP2["clear"], "203.0.113.79")
    publish(medallion.collection_url("alpha"), med_auth, [med_new])
    rounds.append(sync_round())
    assert rounds[2]["pull"].received >= 1
    med_versions = versions(medallion.collection_url("alpha"), med_auth, m.a["green"]["id"])
    assert sorted(med_versions) == [T0, T1]  # medallion lists the newest first
    assert holdings(node) == {**expected_on_a, **by_version([green_v2, med_new])}
    with store.read() as connection:
        dead = syncstate.list_dead_letters(connection)
    assert dead == [], "\n".join(f"{d['direction']} {d['object_id']} {d['reason']}" for d in dead)
