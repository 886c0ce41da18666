"""Recalls (in process, both stores): the recall version, queueing it for the peers
that received the object, and honouring it only from the object's origin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from node import recall as recall_module
from node.config import MappingConfig, PeerConfig
from node.operations import recalls as operations
from node.policy import Rules
from node.recall import EXTENSION_ID, RecallMode, RecallOutcome, recall_version
from node.sharing import Agreement
from node.sharing.gates import divert
from node.sharing.ingress import Admission
from node.store import Store, audit, objects, recalls
from node.store.audit import AuditRecord, Direction
from node.store.objects import AddOutcome, ObjectQuery
from node.timestamps import to_micros
from node.tlp import TLP, TLP2_MARKING_IDS
from node.validation import object_problem
from tests.exchange_fixtures import COLLECTION, indicator, open_store, publish, report
from tests.nodes import ADMIN_PASSWORD
from tests.pair import Pair, make_pair, sync_password
from tests.triangle import ALPHA, TAXII, Triangle, make_triangle


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path)
    yield opened
    opened.close()


def _versions(store: Store, object_id: str) -> list[str]:
    query = ObjectQuery(collection_id=COLLECTION, limit=100, ids=(object_id,), versions=("all",))
    with store.read() as connection:
        rows, _ = objects.page(connection, query)
    return [row.version_text for row in rows]


def _sent(store: Store, peer: str, obj: dict) -> None:
    with store.write() as connection:
        audit.record(connection, [AuditRecord(action="sent", direction="push",
                     object_id=obj["id"], version=obj["modified"], peer=peer,
                     collection_id=COLLECTION, rule="allowed")])  # fmt: skip


def test_the_shipped_extension_and_a_recall_are_valid_stix() -> None:
    identity, definition = recall_module.extension_objects()
    assert definition["id"] == EXTENSION_ID and definition["created_by_ref"] == identity["id"]
    assert object_problem(identity) is None and object_problem(definition) is None
    last = indicator()
    recall = recall_version(last, "raised to RED")
    assert object_problem(recall) is None
    assert recall["revoked"] is True and recall["modified"] > last["modified"]
    assert recall["extensions"][EXTENSION_ID]["reason"] == "raised to RED"
    assert recall_module.is_recall(recall) and not recall_module.is_recall(last)


def test_withdraw_queues_a_recall_for_each_peer_that_received_it(store: Store) -> None:
    shared, private = indicator(), indicator()
    publish(store, [shared, private], "alice")
    _sent(store, "node-b", shared)
    _sent(store, "node-c", shared)
    with store.write() as connection:
        peers = {"node-b": frozenset(), "node-c": frozenset()}
        queued = operations.withdraw(connection, COLLECTION, [shared["id"], private["id"]],
                                     "deleted on node-a", peers)  # fmt: skip
        again = operations.withdraw(connection, COLLECTION, [shared["id"]], "x", peers)
    assert queued == 2
    with store.read() as connection:
        pending = recalls.listed(connection)
    assert {(p.peer, p.object_id) for p in pending} == {
        ("node-b", shared["id"]),
        ("node-c", shared["id"]),
    }
    assert again == 0  # one recall per object waits for each peer


def test_deleting_some_versions_recalls_from_the_peers_that_received_one(store: Store) -> None:
    first = indicator(modified="2026-01-01T00:00:00.000Z")
    second = {**first, "modified": "2026-02-01T00:00:00.000Z", "name": "corrected"}
    publish(store, [first, second], "alice")
    _sent(store, "node-b", first)  # B received the first version only
    _sent(store, "node-c", first)
    _sent(store, "node-c", second)  # C received both
    peers = {"node-b": frozenset(), "node-c": frozenset(), "node-d": frozenset()}
    with store.write() as connection:
        query = ObjectQuery(collection_id=COLLECTION, limit=1, ids=(first["id"],),
                            versions=(to_micros(second["modified"]),))  # fmt: skip
        deleting = objects.matching_versions(connection, query)
        queued = operations.withdraw_deleted(connection, COLLECTION, first["id"], deleting,
                                             "deleted", peers)  # fmt: skip
    assert deleting == {to_micros(second["modified"])}
    assert queued == 1  # B holds nothing that was deleted; D received nothing
    with store.read() as connection:
        [pending] = recalls.listed(connection)
    recall = json.loads(pending.body)
    # C's recall is a new version of what C holds (the deleted second version), revoked.
    assert (pending.peer, recall["name"], recall["revoked"]) == ("node-c", "corrected", True)
    assert recall["modified"] > second["modified"]


def test_a_recall_from_the_origin_purges(store: Store) -> None:
    received = indicator()
    publish(store, [received], "-", origin="node-a")
    recall = recall_version(received, "raised to RED")
    with store.write() as connection:
        done = operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.PURGE,
                                 "pull", {})  # fmt: skip
    assert done.done and done.action == "purged"
    assert _versions(store, received["id"]) == []
    with store.read() as connection:
        assert recalls.recalled_ids(connection, COLLECTION, [received["id"]]) == {received["id"]}
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"].startswith("recall")]  # fmt: skip
    assert record["action"] == "recall-purged" and "raised to RED" in record["detail"]


def test_revoke_mode_keeps_the_revoked_version(store: Store) -> None:
    received = indicator()
    publish(store, [received], "-", origin="node-a")
    recall = recall_version(received, "withdrawn")
    with store.write() as connection:
        operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.REVOKE, "pull", {})
    assert _versions(store, received["id"]) == [received["modified"], recall["modified"]]
    # The same recall received again (a page read again, a batch resent): revoked already.
    with store.write() as connection:
        again = operations.honour(connection, "node-a", COLLECTION, recall, RecallMode.REVOKE,
                                  "pull", {})  # fmt: skip
    assert again.action is RecallOutcome.REVOKED and again.detail.startswith("already revoked")
    assert _versions(store, received["id"]) == [received["modified"], recall["modified"]]


@pytest.mark.parametrize("origin", ["node-a", None])
def test_a_recall_from_anyone_but_the_origin_changes_nothing(store: Store, origin) -> None:
    held = indicator()
    publish(store, [held], "alice", origin=origin)
    forged = recall_version(held, "forged")
    with store.write() as connection:
        done = operations.honour(connection, "node-c", COLLECTION, forged, RecallMode.PURGE,
                                 "receive", {})  # fmt: skip
    assert not done.done and done.action == "refused"
    assert _versions(store, held["id"]) == [held["modified"]]
    with store.read() as connection:
        assert recalls.recalled_ids(connection, COLLECTION, [held["id"]]) == set()
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"].startswith("recall")]  # fmt: skip
    assert record["action"] == "recall-refused" and record["peer"] == "node-c"


def test_a_recall_repeats_only_what_the_peer_received(store: Store) -> None:
    sent_ref, unsent_ref = indicator(), indicator()
    container = report([sent_ref["id"], unsent_ref["id"]])
    container["x_internal"] = "case 4711"
    publish(store, [sent_ref, unsent_ref, container], "alice")
    _sent(store, "node-b", sent_ref)
    _sent(store, "node-b", container)
    with store.read() as connection:
        recall = recalls.recall_for(connection, "node-b", COLLECTION, container["id"], "gone",
                                    frozenset({"x_internal"}))  # fmt: skip
        never = recalls.recall_for(connection, "node-b", COLLECTION, unsent_ref["id"], "gone",
                                   frozenset())  # fmt: skip
    assert recall is not None and never is None
    assert recall["object_refs"] == [sent_ref["id"]] and "x_internal" not in recall
    assert recall["revoked"] is True and object_problem(recall) is None


def _agreement_with(peer: str, recalls_mode: str) -> Agreement:
    """The peer's mapping of the collection, honouring its recalls in ``recalls_mode``."""
    ingress = {"recalls": recalls_mode}
    mapping = MappingConfig(local=COLLECTION, remote="shared", ingress=ingress)
    config = PeerConfig(name=peer, api_root="http://127.0.0.1:9/api/", user="node-x",
                        mappings=(mapping,))  # fmt: skip
    rules = Rules.from_config(ingress, direction="ingress", where="test")
    return Agreement(peer=config, mapping=mapping, collection_id=COLLECTION, ingress=rules,
                     egress=Rules.from_config({}, direction="egress", where="test"))  # fmt: skip


def test_recall_outcomes_keep_the_names_stored_and_sent(store: Store) -> None:
    """The outcomes are an enum; what the store holds (audit and ``recalled``) and the
    status the sending peer reads are the same strings as before."""
    assert [o.value for o in RecallOutcome] == ["purged", "revoked", "refused", "ignored"]
    purged, revoked, refused, ignored = (indicator() for _ in range(4))
    publish(store, [purged, revoked, refused], "-", origin="node-a")
    cases = ((purged, "node-a", "purge"), (revoked, "node-a", "revoke"),
             (refused, "node-c", "purge"), (ignored, "node-a", "purge"))  # fmt: skip
    outcome = AddOutcome()
    with store.write() as connection:
        for obj, peer, mode in cases:
            admission = Admission(recalls=[recall_version(obj, "withdrawn")])
            divert(connection, _agreement_with(peer, mode), admission, outcome,
                   Direction.RECEIVE, [])  # fmt: skip
    sent = {d["id"]: d["message"] for d in outcome.successes}
    assert sent == {purged["id"]: "recall purged", revoked["id"]: "recall revoked",
                    ignored["id"]: "recall ignored"}  # fmt: skip
    assert [(d["id"], d["message"]) for d in outcome.failures] == [
        (refused["id"], "recall refused")
    ]
    assert '"message": "recall purged"' in json.dumps(outcome.successes)
    with store.read() as connection:
        audited = connection.execute(
            text("SELECT object_id, action, direction, rule FROM audit WHERE rule = 'recall'")
        ).all()
        kept = dict(connection.execute(text("SELECT object_id, action FROM recalled")).all())
    assert {row.object_id: tuple(row[1:]) for row in audited} == {
        purged["id"]: ("recall-purged", "receive", "recall"),
        revoked["id"]: ("recall-revoked", "receive", "recall"),
        refused["id"]: ("recall-refused", "receive", "recall"),
        ignored["id"]: ("recall-ignored", "receive", "recall"),
    }
    assert kept == {purged["id"]: "purge", revoked["id"]: "revoke"}
    assert all(type(value) is str for row in audited for value in row)


# --------------------------------------------------------------------------- across HTTP

RED = TLP2_MARKING_IDS[TLP.RED]


def _pair_specs(ingress: dict | None = None) -> dict:
    both = {"alpha": {"egress": {"max_tlp": "green"}, "ingress": ingress or {}}}
    return {
        "node-a": {"node-b": both, "node-c": both},
        "node-b": {"node-a": both, "node-c": both},
        "node-c": {"node-a": both, "node-b": both},
    }


@pytest.fixture
def triangle(tmp_path: Path, store_url: str | None) -> Iterator[Triangle]:
    started = make_triangle(tmp_path, {"node-b": store_url}, _pair_specs())
    yield started
    started.stop()


def _read(triangle: Triangle, name: str, object_id: str) -> list[dict]:
    """What an analyst reading B's collection gets for the object (every version)."""
    response = triangle.get(name, path=f"objects/{object_id}/", **{"match[version]": "all"})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    found: list[dict] = response.json().get("objects", [])
    return found


def test_raised_to_red_on_a_is_recalled_and_purged_on_b(triangle: Triangle) -> None:
    shared = indicator(name="shared then raised")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    assert [o["name"] for o in _read(triangle, "node-b", shared["id"])] == ["shared then raised"]
    red = {**shared, "modified": "2026-03-01T00:00:00.000Z", "object_marking_refs": [RED]}
    triangle.post("node-a", [red])
    triangle.rounds(2)
    assert _read(triangle, "node-b", shared["id"]) == []  # purged: analysts see nothing
    with triangle.store("node-b").read() as connection:
        assert recalls.recalled_ids(connection, ALPHA, [shared["id"]]) == {shared["id"]}
        actions = [r["action"] for r in audit.entries(connection, peer="node-a", limit=None)
                   if r["object_id"] == shared["id"]]  # fmt: skip
    assert "recall-purged" in actions
    with triangle.store("node-a").read() as connection:
        sent = [r for r in audit.entries(connection, peer="node-b", limit=None)
                if r["object_id"] == shared["id"] and r["rule"] == "recall"]  # fmt: skip
    assert sent, "A's audit records the recall it sent"
    # B does not pass on what was recalled, and nothing of the RED version left A.
    assert all(
        o.get("object_marking_refs") != [RED] for o in _read(triangle, "node-c", shared["id"])
    )


def test_deleted_on_a_is_recalled_and_purged_on_b(triangle: Triangle) -> None:
    shared = indicator(name="shared then deleted")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    assert _read(triangle, "node-b", shared["id"])
    response = requests.delete(
        f"{triangle['node-a'].collection_url('alpha')}objects/{shared['id']}/",
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    triangle.rounds(2)
    assert _read(triangle, "node-b", shared["id"]) == []
    assert _read(triangle, "node-a", shared["id"]) == []


def test_taxii_node_delete_deletes_and_recalls_as_the_api_does(triangle: Triangle) -> None:
    """``taxii-node delete`` (the operation the API's DELETE and the console call): the
    versions go, every peer that received one is sent a recall, the audit names who."""
    shared = indicator(name="shared then deleted from the command line")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    assert _read(triangle, "node-b", shared["id"])
    with triangle.store("node-a").read() as connection:
        received = recalls.peers_delivered(connection, ALPHA, shared["id"])
    assert "node-b" in received
    node_a = triangle["node-a"]
    output = node_a.run_cli("delete", "-c", "alpha", shared["id"], "--yes")
    assert output.strip() == (
        f"deleted 1 version(s) of {shared['id']}; {len(received)} recall(s) queued for peers"
    )
    assert _read(triangle, "node-a", shared["id"]) == []
    triangle.rounds(2)
    assert _read(triangle, "node-b", shared["id"]) == []
    with triangle.store("node-a").read() as connection:
        deleted = [r for r in audit.entries(connection, limit=None)
                   if r["object_id"] == shared["id"] and r["action"] == "deleted"]  # fmt: skip
    assert [r["actor"].startswith("cli:") for r in deleted] == [True]


def test_taxii_node_delete_refuses_what_it_cannot_find_and_bad_versions(
    triangle: Triangle, capsys
) -> None:
    from click.testing import CliRunner

    from node.cli import cli
    from node.cli.common import run_guarded

    node_a = triangle["node-a"]
    kept = indicator(name="kept")
    triangle.post("node-a", [kept])
    base = ["--config", str(node_a.config_path), "delete", "-c", "alpha", "--yes"]
    cases = [
        ([kept["id"], "--version", "yesterday"], "'yesterday' is not all, first, last"),
        (["indicator--00000000-0000-4000-8000-000000000000"], "no version of indicator--"),
        ([kept["id"], "--version", "2020-01-01T00:00:00.000Z"], "no version of"),
        ([kept["id"], "-c", "nosuch"], "no collection 'nosuch'"),
    ]
    for args, expected in cases:
        code = run_guarded(cli, [*base, *args])
        error = capsys.readouterr().err
        assert code == 2 and error.startswith("error: ") and expected in error, error
    refused = CliRunner().invoke(cli, [*base[:-1], kept["id"]], input="n\n")
    assert refused.exit_code == 2 and "nothing deleted" in refused.output
    assert _read(triangle, "node-a", kept["id"])


def test_deleting_the_version_b_last_received_recalls_it_though_older_ones_remain(
    triangle: Triangle,
) -> None:
    first = indicator(name="first")
    triangle.post("node-a", [first])
    triangle.rounds(1)
    second = {**first, "modified": "2026-03-01T00:00:00.000Z", "name": "second"}
    triangle.post("node-a", [second])
    triangle.rounds(1)
    assert [o["name"] for o in _read(triangle, "node-b", first["id"])] == ["first", "second"]
    response = requests.delete(
        f"{triangle['node-a'].collection_url('alpha')}objects/{first['id']}/",
        params={"match[version]": second["modified"]},
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert [o["name"] for o in _read(triangle, "node-a", first["id"])] == ["first"]
    triangle.rounds(2)
    # B held the deleted version: the recall purges the object there...
    assert _read(triangle, "node-b", first["id"]) == []
    with triangle.store("node-b").read() as connection:
        assert recalls.recalled_ids(connection, ALPHA, [first["id"]]) == {first["id"]}
    # ...and B's reads of A offer it the recall alone, never again the version that
    # remains on A (a revoked object stays revoked).
    as_b = triangle.get("node-a", path=f"objects/{first['id']}/", user="node-b",
                        password=sync_password("node-b", "node-a"),
                        **{"match[version]": "all"})  # fmt: skip
    assert as_b.status_code == 200, as_b.text
    assert [(o["name"], o.get("revoked")) for o in as_b.json()["objects"]] == [("second", True)]
    triangle.rounds(1)
    assert _read(triangle, "node-b", first["id"]) == []


def test_a_recall_forged_by_a_peer_that_is_not_the_origin_changes_nothing(
    triangle: Triangle,
) -> None:
    shared = indicator(name="from A")
    triangle.post("node-a", [shared])
    triangle.rounds(1)
    forged = recall_version(shared, "forged by C")
    status = triangle.post("node-b", [forged], user="node-c",
                           password=sync_password("node-c", "node-b"))  # fmt: skip
    # C may not see A's object at B (onward = "never"): answered as for an id B does
    # not hold, so that a forged recall cannot ask B what it holds; audited as refused.
    assert status["failure_count"] == 0
    assert [s["message"] for s in status["successes"]] == ["recall ignored"]
    assert [o["name"] for o in _read(triangle, "node-b", shared["id"])] == ["from A"]
    with triangle.store("node-b").read() as connection:
        refused = [r for r in audit.entries(connection, peer="node-c", limit=None)
                   if r["action"] == "recall-refused"]  # fmt: skip
        assert recalls.recalled_ids(connection, ALPHA, [shared["id"]]) == set()
    assert [r["object_id"] for r in refused] == [shared["id"]]


# ------------------------------------------------------------ a partner that pulls


@pytest.fixture
def pulling(tmp_path: Path, store_url: str | None) -> Iterator[Pair]:
    """node-a and node-b, each worker pulling the other's alpha (no push at all)."""
    started = make_pair(tmp_path, (store_url, None), a={"alpha": {"worker": "pull"}},
                        b={"alpha": {"worker": "pull"}})  # fmt: skip
    yield started
    started.stop()


def _post_to_a(pair: Pair, objs: list[dict]) -> None:
    response = requests.post(
        f"{pair.a.collection_url('alpha')}objects/", data=json.dumps({"objects": objs}),
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII, "Content-Type": TAXII},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 202 and response.json()["success_count"] == len(objs)


def _on_b(pair: Pair, object_id: str) -> list[dict]:
    response = requests.get(
        f"{pair.b.collection_url('alpha')}objects/{object_id}/", params={"match[version]": "all"},
        auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII}, timeout=30,
    )  # fmt: skip
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    found: list[dict] = response.json().get("objects", [])
    return found


def _served_to_b(pair: Pair, obj: dict, timeout: float = 15.0) -> None:
    """Wait until A's audit shows B's sync account was served ``obj`` (A's server writes
    the records of partner reads in the background, within a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pair.store(pair.a).read() as connection:
            received = recalls.versions_delivered(connection, ALPHA, obj["id"])
        if to_micros(obj["modified"]) in received.get("node-b", set()):
            return
        time.sleep(0.1)
    raise AssertionError(f"A's audit never showed {obj['id']} served to node-b")


@pytest.mark.parametrize("withdrawal", ["deleted", "raised to RED"])
def test_a_withdrawal_is_recalled_from_a_partner_that_pulled_the_object(
    pulling: Pair, withdrawal: str
) -> None:
    shared = indicator(name=f"pulled then {withdrawal}")
    _post_to_a(pulling, [shared])
    pulling.run_once(pulling.b)
    assert _on_b(pulling, shared["id"])
    _served_to_b(pulling, shared)
    if withdrawal == "deleted":
        response = requests.delete(
            f"{pulling.a.collection_url('alpha')}objects/{shared['id']}/",
            auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text
    else:
        _post_to_a(pulling, [{**shared, "modified": "2026-03-01T00:00:00.000Z",
                              "object_marking_refs": [RED]}])  # fmt: skip
    pulling.run_once(pulling.b)
    assert _on_b(pulling, shared["id"]) == []  # B's worker pulled the recall and purged
