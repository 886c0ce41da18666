"""A partner's view versus an admin's: objects/s through egress policy.

Run with ``make bench``, or ``.venv/bin/python bench/bench_sharing.py [--count N]``.

One node (a real gunicorn server, SQLite store, 127.0.0.1) holds ``--count``
indicators, half TLP:GREEN and half TLP:RED, interleaved.  The collection is
paged with ``limit=1000`` (following ``next``) by the admin, who gets every
object, and by the partner's sync account, whose pages pass the egress policy
(the RED half withheld, each page scanning past it).

Printed: admin objects/s, peer objects/s, and their ratio (target >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from bench.bench_node import NODE_WORKERS  # noqa: E402
from node.mediatypes import TAXII_21 as MEDIA_TYPE  # noqa: E402
from node.tlp import TLP, TLP2_MARKING_IDS  # noqa: E402
from tests.nodes import ADMIN_PASSWORD, new_node  # noqa: E402

PEER_PASSWORD = "bench-peer-password"
TARGET_RATIO = 0.5
PEER_TOML = """
[[peers]]
name = "node-b"
api_root = "http://127.0.0.1:9/api/"
user = "node-a"
password_env = "UNUSED_IN_THIS_BENCHMARK"
account = "node-b"

[[peers.mappings]]
local = "alpha"
remote = "alpha"
"""


def indicators(count: int) -> list[dict]:
    marks = (TLP2_MARKING_IDS[TLP.GREEN], TLP2_MARKING_IDS[TLP.RED])
    return [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": f"Malicious IP {number}",
            "pattern": f"[ipv4-addr:value = '198.51.{number // 250 % 250}.{number % 250}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
            "object_marking_refs": [marks[number % 2]],
        }
        for number in range(count)
    ]


def page_all(url: str, auth: tuple[str, str]) -> tuple[int, float]:
    """(objects received, seconds) paging the collection with limit=1000."""
    session = requests.Session()
    session.auth = auth
    session.headers["Accept"] = MEDIA_TYPE
    params: dict = {"limit": 1000}
    received = 0
    started = time.perf_counter()
    while True:
        response = session.get(url + "objects/", params=params, timeout=120)
        response.raise_for_status()
        body = response.json()
        received += sum(1 for obj in body.get("objects", []) if obj["type"] == "indicator")
        if not body.get("more"):
            return received, time.perf_counter() - started
        params = {"limit": 1000, "next": body["next"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sharing-") as directory:
        node = new_node(Path(directory), "node-a", None, extra_toml=PEER_TOML, workers=NODE_WORKERS)
        node.add_user("node-b", PEER_PASSWORD, read=("alpha",), write=("alpha",), peer="node-b")
        node.start()
        try:
            url = node.collection_url("alpha")
            admin = ("admin", ADMIN_PASSWORD)
            objs = indicators(args.count)
            for start in range(0, len(objs), 1000):
                response = requests.post(
                    url + "objects/",
                    data=json.dumps({"objects": objs[start : start + 1000]}),
                    auth=admin,
                    headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
                    timeout=120,
                )
                response.raise_for_status()
            best = {"admin": 0.0, "peer": 0.0}
            for _ in range(args.rounds):
                for who, auth in (("admin", admin), ("peer", ("node-b", PEER_PASSWORD))):
                    received, seconds = page_all(url, auth)
                    best[who] = max(best[who], received / seconds)
            expected_peer = (args.count + 1) // 2
        finally:
            node.stop()
    ratio = best["peer"] / best["admin"]
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"sharing, {args.count} objects (half GREEN, half RED), limit=1000, best of {args.rounds}:"
    )
    print(f"  admin paged GET   {best['admin']:>9,.0f} objects/s (all {args.count})")
    print(f"  peer paged GET    {best['peer']:>9,.0f} objects/s (the {expected_peer} GREEN)")
    print(f"  peer / admin      {ratio:>9.2f} (target >= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
