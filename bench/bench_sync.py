"""End-to-end sync between two nodes: objects/s, publish-to-visible lag, worker memory.

Run with ``make bench``, or ``.venv/bin/python bench/bench_sync.py [--count N]``.

Two nodes run as separate gunicorn servers with separate SQLite stores on
127.0.0.1.  Node A pushes collection ``alpha`` to node B (one mapping,
interval 1 s, egress policy admitting the synthetic objects) with a real sync
worker process (``taxii-node sync``).  A publisher thread posts ``--count``
synthetic objects (bench_node.synthetic_objects) to A in envelopes of 1,000;
a poller thread pages B's collection with ``added_after`` from the previous
``X-TAXII-Date-Added-Last`` and notes when each object becomes visible.

Printed figures:

* A's solo POST rate: the same publisher posting as many other objects to
  A's collection ``beta`` (not synced) before the worker starts;
* end-to-end objects/s: objects / (last object visible on B - first publish),
  and its ratio to A's solo POST rate (issue 14: >= 0.6);
* lag p50 / p99: for each object, visible on B minus the moment A acknowledged
  the envelope that carried it;
* worker peak RSS: VmHWM of the worker process (its high-water mark).

Targets: >= 3,000 objects/s end to end and >= 0.6 of A's solo POST rate;
worker RSS < 200 MB whatever the count
(the worker streams pages, it never loads a collection).  Bounded: the run
stops at ``--time-limit`` seconds and stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_node import NODE_WORKERS, synthetic_objects  # noqa: E402

from node.mediatypes import TAXII_21 as MEDIA_TYPE  # noqa: E402
from tests.nodes import (  # noqa: E402
    ADMIN_PASSWORD,
    COLLECTIONS,
    RunningNode,
    free_port,
    taxii_node_command,
)

ENVELOPE = 1000
TARGET_RATE = 3_000.0
TARGET_SHARE = 0.6  # of A's solo POST rate
TARGET_RSS_MB = 200.0
PEER_PASSWORD = "bench-peer-password"
SOLO_SEED = 4_242  # other objects than the synced ones (synthetic_objects' default seed)


def _peer_toml(peer: str, api_root: str, password_file: Path, direction: str) -> str:
    return f"""
[[peers]]
name = "{peer}"
api_root = "{api_root}"
user = "{"node-a" if peer == "node-b" else "node-b"}"
password_file = "{password_file}"
account = "{peer}"

[[peers.mappings]]
local = "alpha"
remote = "alpha"
direction = "{direction}"
interval = 1

[peers.mappings.egress]
max_tlp = "green"
unmarked = "share"
"""


def make_pair(workdir: Path) -> tuple[RunningNode, RunningNode]:
    secret = workdir / "peer-password"
    secret.write_text(PEER_PASSWORD)
    ports = {"node-a": free_port(), "node-b": free_port()}
    roots = {name: f"http://127.0.0.1:{port}/api/" for name, port in ports.items()}
    nodes = {}
    for name, other, direction in (("node-a", "node-b", "push"), ("node-b", "node-a", "pull")):
        node = RunningNode(
            directory=workdir / name,
            name=name,
            store_url=f"sqlite:///{workdir / name / 'node.db'}",
            port=ports[name],
            workers=NODE_WORKERS,
            extra_toml=_peer_toml(other, roots[other], secret, direction),
        )
        node.init()
        node.add_user("admin", ADMIN_PASSWORD, admin=True)
        node.add_user(other, PEER_PASSWORD, read=("alpha",), write=("alpha",), peer=other)
        nodes[name] = node
    return nodes["node-a"], nodes["node-b"]


class Poller(threading.Thread):
    """Pages B's collection and records when each object id first becomes visible."""

    def __init__(self, node: RunningNode, expected: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.url = node.collection_url("alpha") + "objects/"
        self.expected = expected
        self.deadline = deadline
        self.seen: dict[str, float] = {}
        self.session = requests.Session()
        self.session.auth = ("admin", ADMIN_PASSWORD)
        self.session.headers["Accept"] = MEDIA_TYPE

    def run(self) -> None:
        cursor = None
        while len(self.seen) < self.expected and time.monotonic() < self.deadline:
            params = {"limit": 1000, "match[version]": "all"}
            if cursor:
                params["added_after"] = cursor
            response = self.session.get(self.url, params=params, timeout=60)
            response.raise_for_status()
            now = time.monotonic()
            objects = response.json().get("objects", [])
            for obj in objects:
                self.seen.setdefault(obj["id"], now)
            if objects:
                cursor = response.headers["X-TAXII-Date-Added-Last"]
            else:
                time.sleep(0.2)


def publish(
    node: RunningNode, objects: list[dict], acked: dict[str, float], alias: str = "alpha"
) -> float:
    session = requests.Session()
    session.auth = ("admin", ADMIN_PASSWORD)
    session.headers.update({"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE})
    url = node.collection_url(alias) + "objects/"
    started = time.monotonic()
    for start in range(0, len(objects), ENVELOPE):
        chunk = objects[start : start + ENVELOPE]
        response = session.post(url, data=json.dumps({"objects": chunk}), timeout=120)
        response.raise_for_status()
        status = response.json()
        if status["failure_count"]:
            raise RuntimeError(f"publish failures: {status['failures'][:3]}")
        now = time.monotonic()
        for obj in chunk:
            acked[obj["id"]] = now
    return started


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and its descendants (live ones), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending, seen = 0.0, [root_pid], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(count: int, time_limit: float) -> int:
    objects = synthetic_objects(count)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        node_a, node_b = make_pair(Path(tmp))
        worker = None
        try:
            node_a.start(timeout=60)
            node_b.start(timeout=60)
            solo = solo_rate(node_a, count)
            log = (Path(tmp) / "worker.log").open("w")
            worker = subprocess.Popen(
                [*taxii_node_command(), "--config", str(node_a.config_path), "sync"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + time_limit
            poller = Poller(node_b, len(objects), deadline)
            poller.start()
            acked: dict[str, float] = {}
            started = publish(node_a, objects, acked)
            published = time.monotonic()
            poller.join(max(0.0, deadline - time.monotonic()))
            worker_rss = peak_rss_mb(worker.pid)
            cpu = {
                "node A server": tree_cpu_seconds(node_a.process.pid),
                "node B server": tree_cpu_seconds(node_b.process.pid),
                "worker": tree_cpu_seconds(worker.pid),
            }
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=30)
            node_a.stop()
            node_b.stop()
        code = report(count, started, published, acked, poller.seen, worker_rss, solo)
        print("  CPU seconds by process (2 cores shared by all, benchmark client included):")
        for name, seconds in cpu.items():
            print(f"    {name:<16} {seconds:>7.1f} s  ({seconds / count * 1e6:.0f} us/object)")
        return code


def solo_rate(node: RunningNode, count: int) -> float:
    """objects/s of the publisher posting ``count`` other objects to A's unsynced ``beta``."""
    others = synthetic_objects(count, seed=SOLO_SEED)
    started = publish(node, others, {}, alias="beta")
    return count / (time.monotonic() - started)


def report(count, started, published, acked, seen, worker_rss, solo) -> int:
    print(f"sync benchmark: {count:,} objects published on A, pushed to B (interval 1 s)")
    print(f"  A's solo POST rate: {solo:>10,.0f} objects/s   (to beta, before the worker starts)")
    during = count / (published - started)
    print(f"  publish on A:       {during:>10,.0f} objects/s   (while syncing)")
    if len(seen) < count:
        print(f"  INCOMPLETE: {len(seen):,} of {count:,} objects visible on B before the limit")
        return 1
    finished = max(seen.values())
    rate = count / (finished - started)
    lags = [seen[i] - acked[i] for i in seen if i in acked]
    ok_rate, ok_rss = rate >= TARGET_RATE, worker_rss < TARGET_RSS_MB
    ok_share = rate >= TARGET_SHARE * solo
    print(f"  end to end:         {rate:>10,.0f} objects/s   target >= {TARGET_RATE:,.0f}"
          f"   {'ok' if ok_rate else 'MISSED'}")  # fmt: skip
    print(f"  end to end / solo:  {rate / solo:>10.2f}             target >= {TARGET_SHARE}"
          f"        {'ok' if ok_share else 'MISSED'}")  # fmt: skip
    print(f"  lag p50:            {statistics.median(lags):>10.2f} s")
    print(f"  lag p99:            {percentile(lags, 0.99):>10.2f} s")
    print(f"  worker peak RSS:    {worker_rss:>10.1f} MB        target < {TARGET_RSS_MB:.0f} MB"
          f"   {'ok' if ok_rss else 'MISSED'}")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args()
    assert COLLECTIONS["alpha"]
    return run(args.count, args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
