"""OpenTAXII 0.10.0b1, a third-party TAXII 2.1 server, as the node's sync peer.

OpenTAXII runs as a real process on a loopback port from its own virtualenv
(``tests/opentaxii_peer.py``), with SQLite persistence; the node is a real
gunicorn server, and its worker runs in this process (``SyncWorker.run_once``)
or as ``taxii-node sync`` in a subprocess.  Every assertion is about what the
other side holds, read back over TAXII.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from node.config import Config, load_config
from node.store import Store, objects, syncstate
from node.sync.worker import SyncWorker
from node.timestamps import to_micros
from tests.nodes import COLLECTIONS, RunningNode, kill_when_partly_moved, start_sync_worker
from tests.opentaxii_peer import OpenTaxiiPeer, start_opentaxii
from tests.pair import node_syncing_with
from tests.peer_process import MEDIA_TYPE
from tests.test_sync import (
    ADMIN,
    MARKINGS,
    T0,
    TLP2,
    by_version,
    get_all,
    holdings,
    identity,
    indicator,
    new_version,
    publish,
    versions,
)

T1 = "2026-02-02T00:00:00.000Z"
GREEN_ONLY = {"max_tlp": "green"}
PEER = "opentaxii"


@dataclass
class NodeAndPeer:
    node: RunningNode
    peer: OpenTaxiiPeer
    config: Config
    store: Store

    @property
    def peer_auth(self) -> tuple[str, str]:
        return (self.peer.user, self.peer.password)

    def sync_round(self) -> dict:
        """One round of the worker in this process; the results by direction, all ok."""
        worker = SyncWorker(self.config, self.store)
        try:
            results = worker.run_once()
        finally:
            worker.close()
        assert all(result.ok for result in results), results
        return {result.direction: result for result in results}

    def on_peer(self) -> dict:
        return by_version(get_all(self.peer.collection_url("alpha"), self.peer_auth))

    def on_node(self) -> dict:
        return holdings(self.node)

    def node_count(self) -> int:
        with self.store.read() as connection:
            return objects.count(connection, COLLECTIONS["alpha"])

    def dead_letters(self) -> list[dict]:
        with self.store.read() as connection:
            return syncstate.list_dead_letters(connection)

    def finish_once(self) -> None:
        finish = self.node.cli("sync", "--once", "--peer", PEER)
        assert "FAILED" not in finish.stdout, finish.stdout


# The node's push batch and pull page at OpenTAXII (``[[peers]] batch``): OpenTAXII
# takes about a second per 200 objects, so the tests that must span several batches
# (SIGKILL mid-transfer) move a few hundred objects, not a few thousand.
BATCH = 100


def node_with_opentaxii(tmp_path: Path, stopper: list, direction: str = "both") -> NodeAndPeer:
    peer = start_opentaxii(tmp_path / "opentaxii", ["alpha"])
    stopper.append(peer)
    node = node_syncing_with(
        tmp_path,
        peer,
        name=PEER,
        mappings={"alpha": {"direction": direction, "egress": GREEN_ONLY}},
        remote_names={"alpha": peer.collections["alpha"]},
        timeout=60.0,
        batch=BATCH,
    )
    stopper.append(node)
    config = load_config(node.config_path)
    store = Store(config.store_url)
    both = NodeAndPeer(node, peer, config, store)
    stopper.append(_Closing(store))
    return both


@dataclass
class _Closing:
    store: Store

    def stop(self) -> None:
        self.store.close()


def green_indicators(author: dict, count: int, network: int = 10) -> list[dict]:
    return [
        indicator(author, TLP2["green"], f"{network}.{i // 65536}.{i // 256 % 256}.{i % 256}")
        for i in range(count)
    ]


def assert_holds(holding: dict, expected: list[dict]) -> None:
    """Every version of ``expected`` is in ``holding`` (a ``by_version`` map), as it is."""
    missing = [key for key, obj in by_version(expected).items() if holding.get(key) != obj]
    assert not missing, f"{len(missing)} of {len(expected)} versions missing: {missing[:5]}"


def green_marking() -> dict:
    return MARKINGS[TLP2["green"]]


# --------------------------------------------------------------------------- both ways


def test_push_to_and_pull_from_opentaxii_with_versions(tmp_path, stopper):
    both = node_with_opentaxii(tmp_path, stopper)
    author = identity("Node A unit", TLP2["green"])
    shared = [author, *green_indicators(author, 3)]
    red = indicator(author, TLP2["red"], "192.0.2.66")
    publish(both.node.collection_url("alpha"), ADMIN, [*shared, red])
    their_author = identity("OpenTAXII unit", TLP2["green"])
    theirs = [their_author, *green_indicators(their_author, 2, network=11)]
    publish(both.peer.collection_url("alpha"), both.peer_auth, theirs)

    first = both.sync_round()
    assert set(first) == {"push", "pull"}
    # OpenTAXII got what egress shares (and the marking it needs); the node got OpenTAXII's.
    expected_on_peer = by_version([*shared, green_marking(), *theirs])
    assert both.on_peer() == expected_on_peer
    expected_on_node = by_version([*shared, red, *theirs])
    on_node = both.on_node()
    assert {key: on_node[key] for key in expected_on_node} == expected_on_node
    assert set(on_node) - set(expected_on_node) <= set(by_version([green_marking()]))

    # Nothing new: nothing is duplicated on either side.
    both.sync_round()
    assert both.on_peer() == expected_on_peer
    assert both.on_node() == on_node

    # A new version goes over, a new OpenTAXII object comes back.
    updated = new_version(shared[1], T1, name="confirmed")
    publish(both.node.collection_url("alpha"), ADMIN, [updated])
    newer = indicator(their_author, TLP2["clear"], "11.9.9.9")
    publish(both.peer.collection_url("alpha"), both.peer_auth, [newer])
    both.sync_round()
    listed = versions(both.peer.collection_url("alpha"), both.peer_auth, updated["id"])
    assert sorted(to_micros(v) for v in listed) == [to_micros(T0), to_micros(T1)]
    assert both.on_peer() == {**expected_on_peer, **by_version([updated, newer])}
    assert_holds(both.on_node(), [updated, newer])
    assert both.dead_letters() == []


# --------------------------------------------------------------------------- SIGKILL


def peer_has_any(both: NodeAndPeer) -> int:
    response = requests.get(
        both.peer.collection_url("alpha") + "objects/",
        params={"limit": "1"},
        auth=both.peer_auth,
        headers={"Accept": MEDIA_TYPE},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return len(response.json().get("objects", []))


def test_push_to_opentaxii_resumes_after_sigkill(tmp_path, stopper):
    both = node_with_opentaxii(tmp_path, stopper, direction="push")
    author = identity("Bulk producer", TLP2["green"])
    # Three batches: the kill lands once the first has, while the second is on its way.
    shared = [author, *green_indicators(author, 3 * BATCH)]
    publish(both.node.collection_url("alpha"), ADMIN, shared)

    worker = start_sync_worker(both.node)
    kill_when_partly_moved(worker, lambda: peer_has_any(both), len(shared))
    assert len(both.on_peer()) < len(shared) + 1  # killed before the end

    both.finish_once()
    # Everything arrived once: by_version refuses a version held twice.
    assert both.on_peer() == by_version([*shared, green_marking()])
    assert both.dead_letters() == []


def test_pull_from_opentaxii_resumes_after_sigkill(tmp_path, stopper):
    both = node_with_opentaxii(tmp_path, stopper, direction="pull")
    author = identity("OpenTAXII producer", TLP2["green"])
    # Three pages: the kill lands once the first is stored, while the second is read.
    theirs = [author, *green_indicators(author, 3 * BATCH, network=12)]
    publish(both.peer.collection_url("alpha"), both.peer_auth, theirs)

    worker = start_sync_worker(both.node)
    kill_when_partly_moved(worker, both.node_count, len(theirs))

    both.finish_once()
    assert both.on_node() == by_version(theirs)
    assert both.node_count() == len(theirs)


# --------------------------------------------------------------------------- a 5xx object


def test_an_object_opentaxii_answers_500_does_not_block_the_objects_behind_it(tmp_path, stopper):
    both = node_with_opentaxii(tmp_path, stopper, direction="push")
    author = identity("Node A unit", TLP2["green"])
    # Valid STIX 2.1 (3.2: fractional seconds are optional), and OpenTAXII's 500.
    whole_seconds = {
        **indicator(author, TLP2["green"], "192.0.2.10"),
        "created": "2026-11-30T10:00:01Z",
        "modified": "2026-11-30T10:00:01Z",
    }
    publish(both.node.collection_url("alpha"), ADMIN, [author, whole_seconds])
    behind = green_indicators(author, 3, network=13)
    publish(both.node.collection_url("alpha"), ADMIN, behind)

    for _ in range(2):
        worker = SyncWorker(both.config, both.store, retries=2)
        try:
            worker.run_once()
        finally:
            worker.close()

    on_peer = both.on_peer()
    assert_holds(on_peer, [author, *behind])
    assert (whole_seconds["id"], whole_seconds["modified"]) not in on_peer
    (dead,) = both.dead_letters()
    assert dead["object_id"] == whole_seconds["id"]


# --------------------------------------------------------------------------- the harness


@pytest.mark.parametrize("ci", [False, True])
def test_a_missing_opentaxii_skips_with_its_reason_and_fails_under_ci(tmp_path, monkeypatch, ci):
    import tests.opentaxii_peer as harness

    monkeypatch.setattr(harness, "VENV", tmp_path / "no-venv")
    monkeypatch.setattr(harness, "_install", lambda: "pip install failed: no network")
    monkeypatch.setenv("CI", "true" if ci else "false")
    monkeypatch.delenv("TAXII_NODE_REQUIRE_PG", raising=False)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="no network"):
        harness.ensure_opentaxii()
