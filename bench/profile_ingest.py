"""Where a POST of an envelope of 100 objects spends its time, in the node's own process.

Run with ``.venv/bin/python bench/profile_ingest.py [--envelopes N] [--store sqlite|postgresql]``
The app is built in-process (``create_app``) and driven by Flask's test
client, so gunicorn and the socket are left out; what remains is split by
where its CPU time went (cProfile on the process CPU clock: on a shared,
loaded machine a wall-clock sampler such as pyinstrument or py-spy mostly
measures waiting for a core), as the self time of each function grouped by
file: validation, JSON, the database driver, SQLAlchemy, Flask and Werkzeug,
the node's ingest code, the status resource and the audit trail.  cProfile's
own overhead inflates the Python-heavy parts somewhat; the ms per envelope
is the CPU time without the profiler.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_node import synthetic_objects  # noqa: E402
from node.app import create_app  # noqa: E402
from node.config import load_config  # noqa: E402
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, PG_ENV, create_pg_database, new_node  # noqa: E402

# (label, substring of the file path); the first match wins.
CATEGORIES = (
    ("validation (node/validation.py, patterns)", ("node/validation", "stix2patterns", "antlr")),
    ("JSON (orjson, jsoncodec, request body checks)", ("jsoncodec", "orjson", "json/")),
    ("status resource", ("store/statuses",)),
    ("audit trail", ("store/audit", "sharing")),
    ("ingest: objects.prepare / store_prepared", ("store/objects",)),
    ("database driver (sqlite3 / psycopg)", ("sqlite3", "psycopg")),
    ("SQLAlchemy Python layer", ("sqlalchemy",)),
    ("Flask, Werkzeug, request parsing", ("flask", "werkzeug", "node/taxii")),
)


def categorise(profile: cProfile.Profile) -> Counter[str]:
    """CPU seconds of self time by category (``CATEGORIES``, else "other")."""
    totals: Counter[str] = Counter()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (path, _line, name), (
        _calls,
        _primitive,
        self_time,
        _cumulative,
        _callers,
    ) in stats.items():
        where = f"{path} {name}"
        label = next(
            (label for label, parts in CATEGORIES if any(part in where for part in parts)),
            "other (Python interpreter, stdlib, node glue)",
        )
        totals[label] += self_time
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=60)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taxii-node-profile-") as tmp:
        url = create_pg_database(os.environ[PG_ENV]) if args.store == "postgresql" else None
        node = new_node(Path(tmp), "profiled", url)
        app = create_app(load_config(node.config_path))
        client = app.test_client()
        credentials = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "Accept": "application/taxii+json;version=2.1",
            "Content-Type": "application/taxii+json;version=2.1",
        }
        path = f"/api/collections/{COLLECTIONS['alpha']}/objects/"
        items = synthetic_objects(100 * (args.envelopes + 5), seed=77)
        bodies = [
            json.dumps({"objects": items[i : i + 100]}).encode() for i in range(0, len(items), 100)
        ]
        for body in bodies[:5]:  # warm: password check, statement caches
            assert client.post(path, data=body, headers=headers).status_code == 202
        measured = bodies[5 : 5 + args.envelopes // 2]
        profiled = bodies[5 + args.envelopes // 2 :]
        started = time.process_time()
        for body in measured:
            assert client.post(path, data=body, headers=headers).status_code == 202
        cpu_ms = (time.process_time() - started) / len(measured) * 1000
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for body in profiled:
            client.post(path, data=body, headers=headers)
        profile.disable()
    if args.top:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    totals = categorise(profile)
    total = sum(totals.values())
    print(f"POST of an envelope of 100 ({args.store}), in-process: {cpu_ms:.1f} ms CPU")
    for label, seconds in totals.most_common():
        share = seconds / total
        print(f"  {label:48} {share:6.1%}  {cpu_ms * share:5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
