"""Where a request spends its time in the node's own process: a POST of an envelope of 100
objects (the default), a page of objects, or one object by id.

Run with ``.venv/bin/python bench/profile_ingest.py [--request post|page|object]
[--limit N] [--envelopes N] [--size N] [--as-peer] [--store sqlite|postgresql]``.
``--as-peer`` posts as a partner's sync account (the receiving side of a push:
ingress admission, one audit record per received version), ``--size`` sets the
objects per envelope (a sync push sends up to 1,000).
The app is built in-process (``create_app``) and driven by Flask's test
client, so gunicorn and the socket are left out; what remains is split by
where its CPU time went (cProfile on the process CPU clock: on a shared,
loaded machine a wall-clock sampler such as pyinstrument or py-spy mostly
measures waiting for a core), as the self time of each function grouped by
file: validation, JSON, the database driver, SQLAlchemy, Flask and Werkzeug,
the node's ingest and paging code, the status resource and the audit trail.
The self time of built-in functions (``dict.get``, ``isinstance``, a
driver's C methods called from Python) counts for the code that called them,
so validation's dictionary lookups are validation's.  cProfile's own
overhead inflates the Python-heavy parts somewhat; the ms per request is the
CPU time without the profiler.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from werkzeug.test import EnvironBuilder

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_node import synthetic_objects  # noqa: E402
from bench.bench_platform import pg_database  # noqa: E402
from node.app import create_app  # noqa: E402
from node.config import load_config  # noqa: E402
from node.mediatypes import TAXII_21 as MEDIA_TYPE  # noqa: E402
from node.taxii.state import EXTENSION  # noqa: E402
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, PG_ENV, new_node  # noqa: E402

# (label, substring of the file path); the first match wins.
CATEGORIES = (
    ("validation (node/validation.py, patterns)", ("node/validation", "stix2patterns", "antlr")),
    ("JSON (orjson, jsoncodec, request body checks)", ("jsoncodec", "orjson", "json/", "bodies")),
    ("status resource", ("store/statuses",)),
    ("policy rules (node/policy.py, tlp)", ("node/policy", "node/tlp")),
    ("audit trail and publishers", ("store/audit", "store/publishers", "sharing")),
    ("store: ingest and pages (node/store/objects.py)", ("store/objects", "timestamps")),
    ("database driver (sqlite3 / psycopg)", ("sqlite3", "psycopg")),
    ("SQLAlchemy Python layer", ("sqlalchemy", "store/engine", "node/store/__init__")),
    ("Flask, Werkzeug, the node's HTTP layer", ("flask", "werkzeug", "node/taxii", "metrics")),
)
_OTHER = "other (Python interpreter, stdlib, node glue)"
_BUILTIN = "~"  # the file pstats gives built-in functions


def _category(path: str, name: str) -> str:
    where = f"{path} {name}"
    return next(
        (label for label, parts in CATEGORIES if any(part in where for part in parts)), _OTHER
    )


def categorise(profile: cProfile.Profile) -> Counter[str]:
    """CPU seconds of self time by category (``CATEGORIES``, else "other").

    A built-in function's self time is split among its callers (pstats keeps
    the time per caller) and counted in each caller's category; a driver's C
    methods (``sqlite3.Cursor.execute``) keep their own category.
    """
    totals: Counter[str] = Counter()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (path, _line, name), (_calls, _primitive, self_time, _cumulative, callers) in stats.items():
        own = _category(path, name)
        if path != _BUILTIN or own != _OTHER or not callers:
            totals[own] += self_time
            continue
        for (caller_path, _caller_line, caller_name), timing in callers.items():
            totals[_category(caller_path, caller_name)] += timing[2]
    return totals


Environ = dict[str, Any]


PEER = "partner"
PEER_PASSWORD = "partner-password"
PEER_TOML = f"""
[[peers]]
name = "{PEER}"
api_root = "http://127.0.0.1:9/api/"
user = "profiled"
password_env = "PROFILE_INGEST_UNUSED"
account = "{PEER}"

[[peers.mappings]]
local = "alpha"
remote = "alpha"
direction = "pull"
"""
ADMIN = ("admin", ADMIN_PASSWORD)


def _environ(
    method: str, path: str, query: str = "", body: bytes = b"", who: tuple[str, str] = ADMIN
) -> Environ:
    """A WSGI environ as gunicorn would hand the app (built before the clock starts)."""
    user, password = who
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", "Accept": MEDIA_TYPE}
    if body:
        headers["Content-Type"] = MEDIA_TYPE
    builder = EnvironBuilder(
        path=path, method=method, query_string=query, data=body, headers=headers,
        base_url="http://127.0.0.1:6000",
    )  # fmt: skip
    return builder.get_environ()


def _call(app: Callable[..., Iterable[bytes]], environ: Environ) -> tuple[str, bytes]:
    """One request straight into the WSGI app: (status line, body)."""
    status: list[str] = []
    chunks = app(environ, lambda line, _headers, _exc=None: status.append(line))
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return status[0], body


def _requests(args: argparse.Namespace, app, path: str) -> tuple[str, list[Environ]]:
    """(what is measured, the environs of the requests to measure and profile)."""
    size = args.size
    who = (PEER, PEER_PASSWORD) if args.as_peer else ADMIN
    items = synthetic_objects(size * (args.envelopes + 5), seed=77)
    bodies = [orjson.dumps({"objects": items[i : i + size]}) for i in range(0, len(items), size)]
    for body in bodies[:5]:  # warm: password check, statement caches
        assert _call(app, _environ("POST", path, body=body, who=who))[0].startswith("202")
    if args.request == "post":
        by = f" by the sync account of {PEER}" if args.as_peer else ""
        return f"POST of an envelope of {size}{by}", [
            _environ("POST", path, body=b, who=who) for b in bodies[5:]
        ]
    for body in bodies[5:]:  # the collection to read from
        assert _call(app, _environ("POST", path, body=body))[0].startswith("202")
    if args.request == "object":
        ids = [obj["id"] for obj in items[:: max(1, len(items) // 600)]][:600]
        return "GET of one object by id", [_environ("GET", f"{path}{oid}/") for oid in ids]
    # Pages from the start, each request as a poller resuming would send it.
    environs, query = [], f"limit={args.limit}"
    while len(environs) < max(40, 40_000 // args.limit):
        environs.append(_environ("GET", path, query))
        page = orjson.loads(_call(app, environs[-1])[1])
        query = f"limit={args.limit}" + (f"&next={page['next']}" if page.get("more") else "")
        environs[-1] = _environ("GET", path, environs[-1]["QUERY_STRING"])
    return f"GET of a page of {args.limit}", environs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", choices=("post", "page", "object"), default="post")
    parser.add_argument("--limit", type=int, default=100, help="page size of --request page")
    parser.add_argument("--envelopes", type=int, default=60)
    parser.add_argument("--size", type=int, default=100, help="objects per POST envelope")
    parser.add_argument("--as-peer", action="store_true", help="POST as a partner's account")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="measure CPU only (to run under a sampler such as py-spy)",
    )
    parser.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    parser.add_argument("--sort", default="tottime", help="order of --top (pstats: cumulative)")
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="taxii-node-profile-"))
        url = None
        if args.store == "postgresql":
            url = stack.enter_context(pg_database(os.environ.get(PG_ENV)))
            if url is None:
                return 2
        node = new_node(Path(tmp), "profiled", url, extra_toml=PEER_TOML if args.as_peer else "")
        if args.as_peer:
            node.add_user(PEER, PEER_PASSWORD, read=("alpha",), write=("alpha",), peer=PEER)
        flask_app = create_app(load_config(node.config_path))
        # Closed before the database goes (queued audit records, a partner's logins,
        # are written at close).
        stack.callback(flask_app.extensions[EXTENSION].store.close)
        app = flask_app.wsgi_app
        label, environs = _requests(args, app, f"/api/collections/{COLLECTIONS['alpha']}/objects/")
        half = len(environs) if args.no_profile else len(environs) // 2
        measured, profiled = environs[:half], environs[half:]
        spent = 0.0
        for environ in measured:
            started = time.process_time()
            status, _ = _call(app, environ)
            spent += time.process_time() - started
            assert status[:3] in ("200", "202"), status
        cpu_ms = spent / len(measured) * 1000
        profile = cProfile.Profile(time.process_time)
        for environ in profiled:
            profile.enable()
            _call(app, environ)
            profile.disable()
    if args.no_profile:
        print(f"{label} ({args.store}), in-process: {cpu_ms:.2f} ms CPU")
        return 0
    if args.top:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    totals = categorise(profile)
    total = sum(totals.values())
    print(f"{label} ({args.store}), in-process: {cpu_ms:.2f} ms CPU")
    for name, seconds in totals.most_common():
        share = seconds / total
        print(f"  {name:48} {share:6.1%}  {cpu_ms * share:5.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
