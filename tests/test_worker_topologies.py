"""One delivery per object: the mapping key ``worker``, the shipped topologies, and
``check``'s warning when both sides could move the same stream."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import ConfigError, load_config
from tests.nodes import free_port, taxii_node_command
from tests.pair import make_pair
from tests.test_config import BASE, PEER, write_config
from tests.test_sync import (
    ADMIN,
    TLP2,
    by_version,
    holdings,
    identity,
    indicator,
    publish,
)

ROOT = Path(__file__).resolve().parent.parent
TWICE = "every object crosses twice"


def _config(tmp_path: Path, mapping_lines: str):
    text = BASE + PEER.replace('direction = "both"\n', mapping_lines)
    return load_config(write_config(tmp_path, text))


def test_worker_defaults_to_direction_and_stays_within_it(tmp_path):
    (mapping,) = _config(tmp_path, 'direction = "pull"\n').peers[0].mappings
    assert (mapping.worker_pushes, mapping.worker_pulls) == (False, True)
    (mapping,) = _config(tmp_path, 'direction = "both"\nworker = "none"\n').peers[0].mappings
    assert (mapping.pushes, mapping.pulls) == (True, True)
    assert (mapping.worker_pushes, mapping.worker_pulls) == (False, False)
    with pytest.raises(ConfigError, match="worker: 'pull' moves more than direction 'push'"):
        _config(tmp_path, 'direction = "push"\nworker = "pull"\n')
    with pytest.raises(ConfigError, match="worker: 'sometimes' is not push, pull, both or none"):
        _config(tmp_path, 'worker = "sometimes"\n')


def _check(config_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*taxii_node_command(), "--config", str(config_path), "check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_warns_when_both_workers_could_move_one_stream(tmp_path):
    # The harness grants each partner's account read and write on the mapped collection.
    pair = make_pair(tmp_path, a={"alpha": {}}, b={"alpha": {"worker": "push"}}, start=False)
    both = _check(pair.a.config_path)
    assert both.returncode == 0, both.stderr
    warnings = [line for line in both.stderr.splitlines() if TWICE in line]
    assert len(warnings) == 2, both.stderr
    assert any("our worker pushes it" in w and "may read 'alpha'" in w for w in warnings)
    assert any("our worker pulls it" in w and "may write 'alpha'" in w for w in warnings)
    pushing = _check(pair.b.config_path)
    (warning,) = [line for line in pushing.stderr.splitlines() if TWICE in line]
    assert "our worker pushes it" in warning and "may read 'alpha'" in warning


def _demo_module():
    spec = importlib.util.spec_from_file_location("taxii_demo", ROOT / "tools" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["taxii_demo"] = module
    spec.loader.exec_module(module)
    return module


def test_the_shipped_pair_moves_each_stream_once(tmp_path):
    """config/node-a.toml and node-b.toml, set up by ``make pair`` (here on the demo's
    own ports and folders): each worker pushes its own, and check warns of nothing."""
    demo = _demo_module()
    ports = {"node-a": free_port(), "node-b": free_port()}
    chosen = demo.demo_pair(tmp_path, ports)
    demo.pair(chosen)
    for name, path in chosen.configs.items():
        config = load_config(path)
        (mapping,) = config.peers[0].mappings
        assert (mapping.worker_pushes, mapping.worker_pulls) == (True, False), name
        result = _check(path)
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("directory", ["config", "config/one-side"])
def test_the_example_configs_load(directory):
    configs = {
        name: load_config(ROOT / directory / f"{name}.toml") for name in ("node-a", "node-b")
    }
    moves = {name: c.peers[0].mappings[0].worker_moves for name, c in configs.items()}
    expected = {"config": {"node-a": "push", "node-b": "push"},
                "config/one-side": {"node-a": "both", "node-b": "none"}}  # fmt: skip
    assert moves == expected[directory]


def test_one_side_moves_both_ways_and_the_other_runs_nothing(tmp_path, stopper):
    pair = make_pair(
        tmp_path,
        a={"alpha": {"worker": "both", "egress": {"max_tlp": "green"}}},
        b={"alpha": {"worker": "none", "egress": {"max_tlp": "green"}}},
    )
    stopper.append(pair)
    ours, theirs = identity("Unit A", TLP2["green"]), identity("Unit B", TLP2["green"])
    a_objects = [ours, indicator(ours, TLP2["green"], "192.0.2.1")]
    b_objects = [theirs, indicator(theirs, TLP2["green"], "203.0.113.1")]
    publish(pair.a.collection_url("alpha"), ADMIN, a_objects)
    publish(pair.b.collection_url("alpha"), ADMIN, b_objects)
    assert pair.run_once(pair.b) == []  # node-b's worker carries nothing
    results = pair.run_once(pair.a)
    assert [(r.direction, r.ok) for r in results] == [("push", True), ("pull", True)]
    # Each side holds the TLP:GREEN definition built in: counted apart both ways, never
    # stored from the partner.
    moved = [(r.sent, r.received, r.already_present) for r in results]
    assert moved == [(2, 0, 1), (0, 2, 1)]
    assert holdings(pair.b) == by_version([*b_objects, *a_objects])
    on_a = holdings(pair.a)
    assert {key: on_a[key] for key in by_version(b_objects)} == by_version(b_objects)
    again = pair.run_once(pair.a)
    assert sum(r.sent + r.received for r in again) == 0
