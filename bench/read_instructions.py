"""Instructions per read request, in-process, for the node and the baseline server: a
figure that does not move with the machine's load.

Run with ``.venv/bin/python bench/read_instructions.py [--request object|page100|page1000]
[--requests N]`` (valgrind must be installed).  On a shared machine the CPU time of a
request moves by half with what else runs (a virtual machine's CPU time counts time
its core was taken away); ``valgrind --tool=callgrind`` counts the instructions the
process executes, which repeat to a few parts in a thousand whatever else runs.
Each app (``node.app.create_app`` on a SQLite store of 3,000 objects, and
``bench/baseline_server.py`` on the same rows) answers its requests straight
through its WSGI callable as in ``profile_ingest.py``; instrumentation is switched on
(``callgrind_control -i on``) only after start-up and 20 warm requests, and the
count is taken (``callgrind_control -d``) right after the measured ones.  gunicorn,
the socket and the client are left out; what is counted is user-space work
(system calls count as the instructions that make them).
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_node import synthetic_objects  # noqa: E402
from bench.profile_ingest import _call, _environ  # noqa: E402
from tests.nodes import COLLECTIONS, new_node  # noqa: E402

REQUESTS = ("object", "page100", "page1000")
_WARM = 20
_MARK = "measured"
_NODE_PATH = f"/api/collections/{COLLECTIONS['alpha']}/objects/"
_BASELINE_PATH = "/api/collections/c/objects/"

App = Callable[..., Iterable[bytes]]


def prepare(directory: Path) -> tuple[Path, list[str]]:
    """A node with 3,000 stored objects (posted through its app); (config, some ids)."""
    from node.app import create_app
    from node.config import load_config

    node = new_node(directory, "counted", None)
    # No scrypt check in the middle of a slow, instrumented run.
    text = node.config_path.read_text()
    node.config_path.write_text(text.replace("[server]\n", "[server]\nauth_cache_seconds = 3600\n"))
    app = create_app(load_config(node.config_path))
    items = synthetic_objects(3_000, seed=77)
    for start in range(0, len(items), 100):
        body = orjson.dumps({"objects": items[start : start + 100]})
        assert _call(app, _environ("POST", _NODE_PATH, body=body))[0].startswith("202")
    app.extensions["taxii_node"].store.close()
    return node.config_path, [obj["id"] for obj in items[::10]]


def _environs(request: str, path: str, ids: list[str]) -> list[dict[str, Any]]:
    if request == "object":
        return [_environ("GET", f"{path}{object_id}/") for object_id in ids]
    return [_environ("GET", path, f"limit={request.removeprefix('page')}")]


def _node_app(config: Path) -> App:
    from node.app import create_app
    from node.config import load_config

    return create_app(load_config(config))


def _baseline_app(config: Path, directory: Path) -> App:
    """The baseline server over the node's current versions, in date_added order."""
    from bench.baseline_server import create_app

    database = directory / "baseline.db"
    app = create_app(str(database))
    node_db = sqlite3.connect(config.parent / "node.db")
    with sqlite3.connect(database) as baseline:
        baseline.executemany(
            "INSERT INTO objects (id, date_added, body) VALUES (?, ?, ?)",
            node_db.execute(
                "SELECT object_id, date_added, body FROM objects WHERE is_latest "
                "ORDER BY date_added"
            ),
        )
    node_db.close()
    return app


def _callgrind(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments, str(os.getpid())], check=True,
                   capture_output=True)  # fmt: skip


def measure_here(which: str, config: Path, request: str, count: int, ids: list[str]) -> None:
    """The child under valgrind: warm, switch counting on, run ``count`` requests, dump."""
    if which == "node":
        app, path = _node_app(config), _NODE_PATH
    else:
        app, path = _baseline_app(config, Path(tempfile.mkdtemp())), _BASELINE_PATH
    environs = _environs(request, path, ids)
    for number in range(_WARM):
        assert _call(app, dict(environs[number % len(environs)]))[0].startswith("200")
    _callgrind("-i", "on")
    for number in range(count):
        _call(app, dict(environs[number % len(environs)]))
    _callgrind("-d", _MARK)


def count_instructions(which: str, config: Path, request: str, count: int, ids_file: Path) -> int:
    """Instructions per request of ``which`` ("node" or "baseline"), run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="taxii-node-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--child", which, str(config), request, str(count),
             str(ids_file)],
            check=True, capture_output=True,
        )  # fmt: skip
        for dump in Path(tmp).glob("callgrind.out*"):
            text = dump.read_text(errors="replace")
            if re.search(rf"^desc: Trigger: .*{_MARK}", text, re.MULTILINE):
                found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
                if found:
                    return int(found.group(1)) // count
    raise RuntimeError("callgrind wrote no dump of the measured requests")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        which, config, request, count, ids_file = sys.argv[2:7]
        ids = Path(ids_file).read_text().split()
        measure_here(which, Path(config), request, int(count), ids)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", choices=REQUESTS, action="append")
    parser.add_argument("--requests", type=int, default=200, help="measured requests of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taxii-node-instructions-") as tmp:
        config, ids = prepare(Path(tmp))
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("\n".join(ids))
        for request in args.request or REQUESTS:
            node = count_instructions("node", config, request, args.requests, ids_file)
            baseline = count_instructions("baseline", config, request, args.requests, ids_file)
            extra = (node - baseline) / 1000
            print(
                f"{request:9} node {node / 1000:8,.0f} k instructions/request   "
                f"baseline {baseline / 1000:8,.0f} k   node - baseline {extra:8,.0f} k"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
