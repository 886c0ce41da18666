"""Four-eyes release (mapping egress ``release = "approval"``), in process on both stores.

The queue, the gate egress applies, approval and rejection by a releaser who
is not the publisher, selections by entry, report and filter, the audit
trail, and approval moving the version to the end of the collection so that
push and pull cursors reach it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from node.cli import cli
from node.config import MappingConfig, PeerConfig
from node.errors import Conflict, InvalidValue, NotFound
from node.operations import accounts as account_operations
from node.operations import releases as operations
from node.operations.releases import Selection
from node.policy import Rules
from node.sharing import Agreement, Position, egress
from node.sharing.egress import visible
from node.sharing.gates import AWAITING_RULE, REJECTED_RULE
from node.store import Store, accounts, audit, objects, releases
from node.store.objects import ObjectQuery
from node.store.releases import Queued, ReleaseState
from node.timestamps import to_micros
from node.tlp import TLP, TLP2_MARKING_IDS, tlp_marking_definitions
from node.validation import version_key
from tests.exchange_fixtures import (
    COLLECTION,
    add_account,
    indicator,
    open_store,
    publish,
    report,
)
from tests.nodes import ADMIN_PASSWORD
from tests.pair import Pair, make_pair, run_cli
from tests.sharing_node import SharingNode
from tests.sharing_objects import GREEN
from tests.sharing_objects import indicator as shared_indicator
from tests.triangle import TAXII

PEER = "node-b"
T0 = "2026-01-01T00:00:00.000Z"
ACTOR = "test:operator"


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path)
    add_account(opened, "alice")  # publishes
    add_account(opened, "carol")  # releases
    with opened.write() as connection:
        for name in ("alice", "carol"):  # (a releaser decides what it may read)
            accounts.grant(connection, name, COLLECTION, read=True, write=True)
        account_operations.set_role(connection, "carol", "releaser", granted=True, actor=ACTOR)
        account_operations.set_role(connection, "alice", "releaser", granted=True, actor=ACTOR)
    yield opened
    opened.close()


def _queued(obj: dict) -> Queued:
    return Queued(obj["id"], obj["type"], version_key(obj), obj["modified"])


def agreement(release: str = "approval", max_tlp: str = "amber") -> Agreement:
    """node-b's mapping of the collection, as the config would give it."""
    egress = {"max_tlp": max_tlp, "release": release}
    mapping = MappingConfig(local=COLLECTION, remote="shared", egress=egress)
    peer = PeerConfig(name=PEER, api_root="http://127.0.0.1:9/api/", user="node-a",
                      mappings=(mapping,))  # fmt: skip
    return Agreement(peer=peer, mapping=mapping, collection_id=COLLECTION,
                     egress=Rules.from_config(egress, direction="egress", where="test"),
                     ingress=Rules.from_config({}, direction="ingress", where="test"))  # fmt: skip


def _offer(store: Store, items: list[dict]) -> tuple[set, dict]:
    """What the egress pipeline sends and withholds of ``items``' versions for the peer;
    the release queue is refreshed as ``release list`` does."""
    wanted = {_queued(obj).key for obj in items}
    with store.write() as connection:
        operations.refresh(connection, [agreement()])
        page = egress(connection, agreement(), Position())
    sent = {(d.object_id, to_micros(d.version)) for d in page.served_decisions}
    withheld = {(d.object_id, to_micros(d.version)): str(d.rule)
                for d in page.decisions if not d.allowed}  # fmt: skip
    return sent & wanted, {k: v for k, v in withheld.items() if k in wanted}


def _date_added(store: Store, obj: dict) -> int:
    query = ObjectQuery(collection_id=COLLECTION, limit=10, ids=(obj["id"],), versions=("all",))
    with store.read() as connection:
        rows, _ = objects.page(connection, query)
    [row] = [r for r in rows if r.version_text == obj["modified"]]
    return row.date_added


def test_nothing_passes_the_gate_until_a_releaser_approves(store: Store) -> None:
    first = indicator()
    publish(store, [first], "alice")
    released, withheld = _offer(store, [first])
    assert released == set() and withheld == {_queued(first).key: AWAITING_RULE}
    released, withheld = _offer(store, [first])  # queued once, still waiting
    with store.read() as connection:
        [item] = operations.list_queue(connection, Selection())
    assert item.entry.object_id == first["id"] and item.publisher == "alice"
    assert item.tlp == "GREEN" and item.name == "bad host"
    before = _date_added(store, first)
    with store.write() as connection:
        operations.approve(connection, Selection(pks=(item.entry.pk,)), "carol", actor=ACTOR)
    released, withheld = _offer(store, [first])
    assert released == {_queued(first).key} and withheld == {}
    assert _date_added(store, first) > before  # re-dated: cursors past it reach it again
    with store.read() as connection:
        assert operations.list_queue(connection, Selection()) == []
        records = [r for r in audit.entries(connection, limit=None)
                   if r["action"] == "release-approved"]  # fmt: skip
    assert [(r["object_id"], r["actor"], r["peer"]) for r in records] == [
        (first["id"], "carol", PEER)
    ]


def test_the_publisher_cannot_release_its_own_version(store: Store) -> None:
    own = indicator()
    publish(store, [own], "alice")
    _offer(store, [own])
    with store.write() as connection, pytest.raises(Conflict, match="four eyes"):
        operations.approve(connection, Selection(everything=True), "alice", actor=ACTOR)
    with store.read() as connection:
        [item] = operations.list_queue(connection, Selection())
    assert item.entry.state is ReleaseState.PENDING


def test_only_a_releaser_decides(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    add_account(store, "mallory")
    with store.write() as connection, pytest.raises(Conflict, match="releaser"):
        operations.approve(connection, Selection(everything=True), "mallory", actor=ACTOR)
    with store.write() as connection, pytest.raises(NotFound):
        operations.approve(connection, Selection(everything=True), "nobody", actor=ACTOR)
    with store.read() as connection:
        with pytest.raises(Conflict, match="wrong password"):
            operations.authenticate_releaser(connection, "carol", "not-her-password")
        operations.authenticate_releaser(connection, "carol", "password-123")


def test_reject_needs_a_reason_and_keeps_the_version_back(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    with store.write() as connection, pytest.raises(InvalidValue, match="reason"):
        operations.reject(connection, Selection(everything=True), "carol", "  ", actor=ACTOR)
    with store.write() as connection:
        [done] = operations.reject(
            connection, Selection(everything=True), "carol", "source unverified", actor=ACTOR
        )
    assert done.entry.object_id == obj["id"]
    released, withheld = _offer(store, [obj])
    assert released == set() and withheld == {_queued(obj).key: REJECTED_RULE}
    with store.read() as connection:
        [record] = [r for r in audit.entries(connection, limit=None)
                    if r["action"] == "release-rejected"]  # fmt: skip
    assert record["actor"] == "carol" and "source unverified" in record["detail"]


def test_approval_is_per_version(store: Store) -> None:
    first = indicator()
    publish(store, [first], "alice")
    _offer(store, [first])
    with store.write() as connection:
        operations.approve(connection, Selection(everything=True), "carol", actor=ACTOR)
    second = {**first, "modified": "2026-02-01T00:00:00.000Z", "name": "worse host"}
    publish(store, [second], "alice")
    released, withheld = _offer(store, [first, second])
    assert released == {_queued(first).key}
    assert withheld == {_queued(second).key: AWAITING_RULE}


def _view(store: Store, filters: tuple[str | int, ...], **where) -> list[tuple[str, str]]:
    """(id, version) of the indicators the peer is served under ``match[version]``
    ``filters`` (the marking definitions travelling with them left out)."""
    with store.write() as connection:
        operations.refresh(connection, [agreement()])
        page = egress(connection, agreement(), Position(versions=filters, **where))
    return [(d.object_id, d.version) for d in page.served_decisions
            if d.object_id.startswith("indicator--")]  # fmt: skip


def test_a_version_awaiting_release_leaves_the_peers_view_as_it_was(store: Store) -> None:
    """The peer's view is the store as if what it may not see never existed: while a newer
    version awaits release, the released one is its "last" (and "first"), as ``all``
    and versions/ show it; a GET by id finds it.  Once released, the newer one is."""
    first, other = indicator(), indicator()
    publish(store, [first, other], "alice")
    _offer(store, [first, other])
    with store.write() as connection:
        operations.approve(connection, Selection(everything=True), "carol", actor=ACTOR)
    second = {**first, "modified": "2026-02-01T00:00:00.000Z", "name": "worse host"}
    publish(store, [second], "alice")
    released = [(first["id"], first["modified"])]
    for filters in (("last",), ("all",), ("first",), ("first", "last")):
        assert [k for k in _view(store, filters) if k[0] == first["id"]] == released, filters
    assert _view(store, ("last",), ids=(first["id"],)) == released
    assert (other["id"], other["modified"]) in _view(store, ("last",))
    with store.write() as connection:
        assert visible(connection, agreement(), first["id"])
        operations.approve(connection, Selection(everything=True), "carol", actor=ACTOR)
    assert _view(store, ("last",), ids=(first["id"],)) == [(first["id"], second["modified"])]
    assert _view(store, ("first",), ids=(first["id"],)) == released


@pytest.mark.parametrize("spelt", [str.lower, str.upper], ids=["lower", "upper"])
def test_a_report_is_released_with_everything_it_references(store: Store, spelt) -> None:
    inside, outside = indicator(name="inside"), indicator(name="outside")
    kind, _, uuid_text = inside["id"].partition("--")
    container = report([f"{kind}--{spelt(uuid_text)}"])  # (a reference, in either case)
    publish(store, [inside, outside, container], "alice")
    _offer(store, [inside, outside, container])
    with store.write() as connection:
        chosen = operations.approve(
            connection, Selection(report=container["id"]), "carol", actor=ACTOR
        )
    assert {item.entry.object_id for item in chosen} == {inside["id"], container["id"]}
    with store.read() as connection:
        [left] = operations.list_queue(connection, Selection())
    assert left.entry.object_id == outside["id"]


def test_filters_by_type_label_and_tlp(store: Store) -> None:
    green = indicator(labels=("phishing",))
    amber = indicator(tlp=TLP.AMBER, labels=("phishing",))
    other = indicator(labels=("malware",))
    container = report([green["id"]])
    publish(store, [green, amber, other, container], "alice")
    _offer(store, [green, amber, other, container])
    with store.read() as connection:

        def ids(selection: Selection) -> set[str]:
            return {i.entry.object_id for i in operations.list_queue(connection, selection)}

        assert ids(Selection(types=("report",))) == {container["id"]}
        assert ids(Selection(labels=("phishing",))) == {green["id"], amber["id"]}
        assert ids(Selection(tlp="amber")) == {amber["id"]}
        assert ids(Selection(labels=("phishing",), tlp="green")) == {green["id"]}
    with store.write() as connection:
        operations.approve(connection, Selection(labels=("phishing",), tlp="green"), "carol",
                           actor=ACTOR)  # fmt: skip
    with store.read() as connection:
        assert ids(Selection()) == {amber["id"], other["id"], container["id"]}


def test_an_action_must_say_what_it_covers(store: Store) -> None:
    obj = indicator()
    publish(store, [obj], "alice")
    _offer(store, [obj])
    with store.write() as connection, pytest.raises(InvalidValue, match="--all"):
        operations.approve(connection, Selection(), "carol", actor=ACTOR)
    with store.write() as connection, pytest.raises(NotFound):
        operations.approve(connection, Selection(types=("malware",)), "carol", actor=ACTOR)


def test_a_four_eyes_refusal_leaves_the_whole_selection_pending(store: Store) -> None:
    by_bob, by_alice = indicator(), indicator()
    add_account(store, "bob")
    publish(store, [by_bob], "bob")
    publish(store, [by_alice], "alice")
    _offer(store, [by_bob, by_alice])
    with store.write() as connection, pytest.raises(Conflict):
        operations.approve(connection, Selection(everything=True), "alice", actor=ACTOR)
    with store.read() as connection:
        pending = operations.list_queue(connection, Selection())
    assert {item.entry.state for item in pending} == {ReleaseState.PENDING}
    assert len(pending) == 2


# --------------------------------------------------------------------------- across HTTP

AUTHOR = "identity--0b0b0b0b-1111-4111-8111-0000000000a1"


@pytest.fixture
def pair(tmp_path: Path, store_url: str | None) -> Iterator[Pair]:
    started = make_pair(
        tmp_path,
        (store_url, None),
        a={"alpha": {"egress": {"max_tlp": "green", "release": "approval"}}},
        b={"alpha": {}},
    )
    run_cli(started.a, "user", "add", "alice", "--password-stdin", "--read", "alpha",
            "--write", "alpha", input="alice-password-1\n")  # fmt: skip
    run_cli(started.a, "user", "add", "carol", "--password-stdin", "--read", "alpha",
            input="carol-password-1\n")  # fmt: skip
    run_cli(started.a, "user", "role", "carol", "releaser")
    run_cli(started.a, "user", "role", "alice", "releaser")
    yield started
    started.stop()


def _publish_as_alice(pair: Pair, items: list[dict]) -> None:
    response = requests.post(
        f"{pair.a.collection_url('alpha')}objects/", json={"objects": items},
        auth=("alice", "alice-password-1"), headers={"Accept": TAXII, "Content-Type": TAXII},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 202 and response.json()["failure_count"] == 0


def _on_b(pair: Pair) -> set[str]:
    response = requests.get(f"{pair.b.collection_url('alpha')}objects/",
                            auth=("admin", ADMIN_PASSWORD), headers={"Accept": TAXII},
                            timeout=30)  # fmt: skip
    return {obj["id"] for obj in response.json().get("objects", [])}


def _released(author: dict, value: str) -> dict:
    obj = indicator(name=value)
    obj["created_by_ref"] = author["id"]
    return obj


def test_nothing_leaves_before_approval_by_push_or_pull(pair: Pair, monkeypatch) -> None:
    author = {"type": "identity", "spec_version": "2.1", "id": AUTHOR, "created": T0,
              "modified": T0, "name": "Unit A", "identity_class": "organization"}  # fmt: skip
    pulled, pushed = _released(author, "pulled"), _released(author, "pushed")
    _publish_as_alice(pair, [author, pulled, pushed])
    pair.run_once(pair.b)  # B pulls: A serves nothing queued
    pair.run_once(pair.a)  # A pushes: nothing queued leaves
    assert _on_b(pair) == set()
    preview = run_cli(pair.a, "policy", "preview", "--peer", "node-b", "--json")
    assert "release.awaiting" in preview
    listed = json.loads(run_cli(pair.a, "release", "list", "--json"))
    by_id = {row["id"]: row for row in listed}
    assert set(by_id) == {pulled["id"], pushed["id"]}  # the identity travels as a dependency
    assert by_id[pulled["id"]]["published_by"] == "alice"
    monkeypatch.setenv("TAXII_NODE_PASSWORD", "alice-password-1")
    result = CliRunner().invoke(cli, ["--config", str(pair.a.config_path), "release",
                                      "approve", "--as", "alice", "--all"])  # fmt: skip
    assert isinstance(result.exception, Conflict) and "four eyes" in str(result.exception)
    monkeypatch.setenv("TAXII_NODE_PASSWORD", "carol-password-1")
    run_cli(pair.a, "release", "approve", "--as", "carol", "--id", pulled["id"])
    pair.run_once(pair.b)  # the pull path reaches the approved version...
    on_b = _on_b(pair)
    assert {pulled["id"], AUTHOR} <= on_b and pushed["id"] not in on_b  # ...with its author
    run_cli(pair.a, "release", "approve", "--as", "carol", "--id", pushed["id"])
    pair.run_once(pair.a)  # ...and so does the push path
    assert {pulled["id"], pushed["id"], AUTHOR} <= _on_b(pair)
    with pair.store(pair.a).read() as connection:
        approved = [(r["object_id"], r["actor"]) for r in audit.entries(connection, limit=None)
                    if r["action"] == "release-approved"]  # fmt: skip
    assert sorted(approved) == sorted([(pulled["id"], "carol"), (pushed["id"], "carol")])


MARKING = "marking-definition--0b0b0b0b-2222-4222-8222-0000000000a2"


def test_dependencies_are_never_queued_and_travel_with_what_is_released(
    pair: Pair, monkeypatch
) -> None:
    """Identities and marking definitions posted with an indicator (the TLP definitions
    among them) are not in the queue; approving the indicator carries them along."""
    green, red = TLP2_MARKING_IDS[TLP.GREEN], TLP2_MARKING_IDS[TLP.RED]
    author = {"type": "identity", "spec_version": "2.1", "id": AUTHOR, "created": T0,
              "modified": T0, "name": "Unit A", "identity_class": "organization",
              "object_marking_refs": [green]}  # fmt: skip
    statement = {"type": "marking-definition", "spec_version": "2.1", "id": MARKING,
                 "created": T0, "name": "Copyright Unit A", "definition_type": "statement",
                 "definition": {"statement": "Copyright Unit A"}}  # fmt: skip
    definitions = [d for d in tlp_marking_definitions() if d["id"] in (green, red)]
    served = _released(author, "served")
    served["object_marking_refs"] = [green, MARKING]
    _publish_as_alice(pair, [author, statement, *definitions, served])
    listed = json.loads(run_cli(pair.a, "release", "list", "--json"))
    assert [row["id"] for row in listed] == [served["id"]]
    assert red not in run_cli(pair.a, "release", "list")
    monkeypatch.setenv("TAXII_NODE_PASSWORD", "carol-password-1")
    run_cli(pair.a, "release", "approve", "--as", "carol", "--id", served["id"])
    pair.run_once(pair.b)  # B pulls the approved indicator, with its author and marking
    on_b = _on_b(pair)
    assert {served["id"], AUTHOR, MARKING} <= on_b and red not in on_b


def _relationship(source: dict, target: dict) -> dict:
    return {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{uuid.uuid4()}",
        "created": T0,
        "modified": T0,
        "relationship_type": "related-to",
        "source_ref": source["id"],
        "target_ref": target["id"],
        "object_marking_refs": source["object_marking_refs"],
    }


def test_links_never_name_what_awaits_release(store: Store) -> None:
    """A released relationship or report must not reveal the id of an object that has
    not been released: the relationship waits for its target, the report is trimmed."""
    waiting, approved = indicator(name="waiting"), indicator(name="approved")
    link = _relationship(approved, waiting)
    container = report([approved["id"], waiting["id"]])
    everything = [waiting, approved, link, container]
    publish(store, everything, "alice")
    _offer(store, everything)
    # The link and the report are queued at once, so that one action can release
    # them with what they reference; approving them alone must not reveal the rest.
    _approve(store, {approved["id"], container["id"], link["id"]})
    with store.write() as connection:
        page = egress(connection, agreement(), Position())
    served = {d.object_id: d for d in page.served_decisions}
    assert approved["id"] in served and container["id"] in served
    assert waiting["id"] not in served and link["id"] not in served
    assert served[container["id"]].obj["object_refs"] == [approved["id"]]
    assert waiting["id"] not in " ".join(item.body for item in page.items)
    _approve(store, {waiting["id"]})  # the approved link follows its target out
    with store.write() as connection:
        page = egress(connection, agreement(), Position())
    assert {waiting["id"], link["id"]} <= {d.object_id for d in page.served_decisions}


def _approve(store: Store, ids: set[str]) -> None:
    """Approve the queued versions of ``ids`` (as carol, not the publisher)."""
    with store.read() as connection:
        queued = operations.list_queue(connection, Selection())
    pks = tuple(item.entry.pk for item in queued if item.entry.object_id in ids)
    assert pks, f"nothing of {ids} is queued"
    with store.write() as connection:
        operations.approve(connection, Selection(pks=pks), "carol", actor=ACTOR)


# --------------------------------------------------------------------------- queue upkeep


def _pending(store: Store) -> set[tuple[str, int]]:
    with store.read() as connection:
        return {entry.key for entry in releases.entries(connection, peer=PEER)}


def _refresh(store: Store, mapping: Agreement | None = None) -> None:
    with store.write() as connection:
        operations.refresh(connection, [mapping or agreement()])


@pytest.fixture
def decided(monkeypatch) -> list[str]:
    """The ids of every version (and dependency) the queue upkeep asks egress about."""
    asked: list[str] = []
    real = operations.egress

    def recording(connection, mapping, position, *args, **kwargs):
        page = real(connection, mapping, position, *args, **kwargs)
        asked.extend(decision.object_id for decision in page.decisions)
        return page

    monkeypatch.setattr(operations, "egress", recording)
    return asked


def test_queue_upkeep_decides_only_what_was_added_since_the_last(store: Store, decided) -> None:
    earlier = [indicator() for _ in range(3)]
    publish(store, earlier, "alice")
    _refresh(store)
    assert sorted(decided) == sorted(obj["id"] for obj in earlier)
    decided.clear()
    later = indicator()
    publish(store, [later], "alice")
    _refresh(store)
    assert set(decided) == {later["id"]}  # the cursor is stored: earlier ones are not rescanned
    assert _pending(store) == {_queued(obj).key for obj in [*earlier, later]}
    decided.clear()
    _refresh(store)
    assert decided == []


def test_queue_upkeep_decides_a_new_versions_object_again(store: Store) -> None:
    """An older version passes only while its object is shared: a new current version
    can make it pass, so its object's versions are decided again with it."""
    first = indicator(modified="2026-01-01T00:00:00.000Z")
    red = {**first, "modified": "2026-02-01T00:00:00.000Z",
           "object_marking_refs": [TLP2_MARKING_IDS[TLP.RED]]}  # fmt: skip
    publish(store, [first, red], "alice")
    _refresh(store)
    assert _pending(store) == set()  # its current version is RED: nothing of it is shared
    green_again = {**first, "modified": "2026-03-01T00:00:00.000Z"}
    publish(store, [green_again], "alice")
    _refresh(store)
    assert _pending(store) == {_queued(first).key, _queued(green_again).key}


def test_new_egress_rules_decide_every_version_again(store: Store, decided) -> None:
    green, amber = indicator(), indicator(tlp=TLP.AMBER)
    publish(store, [green, amber], "alice")
    _refresh(store, agreement(max_tlp="green"))
    assert _pending(store) == {_queued(green).key}
    decided.clear()
    _refresh(store, agreement(max_tlp="amber"))
    assert sorted(decided) == sorted([green["id"], amber["id"]])
    assert _pending(store) == {_queued(green).key, _queued(amber).key}


# ------------------------------------------------------------ decisions belong to content


def test_an_approval_does_not_carry_over_to_content_posted_again_under_its_version(
    tmp_path: Path,
) -> None:
    """Deleted after its approval and posted again with other content under the same id
    and version, a version waits for a decision of its own: the approval was of what
    the releaser saw (and a releaser could otherwise release its own content under a
    version another account published)."""
    node = SharingNode(tmp_path / "a", None, egress={"release": "approval"})
    try:
        with node.store.write() as connection:
            account_operations.set_role(connection, "admin", "releaser", granted=True,
                                        actor=ACTOR)  # fmt: skip
        seen = shared_indicator(GREEN, description="benign")
        node.post([seen], account="alice")
        with node.store.write() as connection:
            operations.refresh(connection, [node.agreement])
            operations.approve(connection, Selection(everything=True), "admin", actor=ACTOR)
        assert seen in node.get("objects/").json["objects"]
        deleted = node.client.delete(node.url(f"objects/{seen['id']}/"),
                                     headers=node.headers("alice"))  # fmt: skip
        assert deleted.status_code == 200
        unseen = {**seen, "description": "never seen by a releaser"}
        node.post([unseen], account="admin")
        assert "never seen" not in node.get("objects/").get_data(as_text=True)
        with node.store.write() as connection:
            operations.refresh(connection, [node.agreement])
            [waiting] = operations.list_queue(connection, Selection())
            assert (waiting.entry.object_id, waiting.publisher) == (seen["id"], "admin")
            with pytest.raises(Conflict, match="four eyes"):
                operations.approve(connection, Selection(everything=True), "admin", actor=ACTOR)
        assert "never seen" not in node.get("objects/").get_data(as_text=True)
    finally:
        node.close()
