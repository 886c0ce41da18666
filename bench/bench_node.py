"""Throughput, latency and memory of a taxii-node server, and of medallion 3.0.0 for comparison.

Run with ``make bench``, or ``.venv/bin/python bench/bench_node.py [--quick] [--sizes N,N]``.

What is measured
----------------
For each workload a fresh node is initialised with a SQLite store (the
``tests.nodes`` harness: ``taxii-node init``, an ``admin`` account, gunicorn
with 2 gthread workers x 4 threads on a free 127.0.0.1 port), and then, over
HTTP with ``requests`` sessions (keep-alive, HTTP Basic, versioned TAXII 2.1
Accept header):

* **POST objects/s**: every object of the workload posted to one collection
  in envelopes of 100 (serialised before the clock starts) by 4 client
  threads, each with its own session, warmed by one GET first (so the
  password check, deliberately slow scrypt, is paid before the clock starts);
  wall time from the first POST to the last 202.  The status resources must
  account for every object; failures (e.g. the 70 ATT&CK for ICS 18.0 objects
  that differ from 17.1 under the same id and ``modified``) are shown.
* **paged GET objects/s**: the whole collection read back with
  ``GET .../objects/?limit=100``, following ``next`` until ``more`` is false,
  one request at a time (paging is sequential); objects returned / wall time.
* **GET by id, ms**: ``GET .../objects/<id>/`` for 500 ids drawn at random
  from the workload, one at a time; mean and 95th percentile of the latency
  seen by the client (so they include HTTP and JSON decoding on the client).
* **peak RSS, MB**: VmRSS from ``/proc/<pid>/status`` summed over the server
  process and all its descendants (gunicorn master and workers), sampled every
  0.2 s during the whole workload; the largest sum.  Pages shared by the
  master and its forked workers are counted once per process.
* **server CPU**: user + system time of the same processes (``/proc/<pid>/stat``)
  per object posted, per object paged and per GET by id.  The wall-clock rates
  depend on what else runs on the machine (client and server share its CPUs);
  these depend much less on it.  The load average is printed at both ends.

Workloads: synthetic collections of 10,000 and 100,000 objects (``--sizes``;
``--quick``: 2,000) and, when ``../shared/data/*.json`` exists next to the
repository, the real MITRE corpora there (CAPEC and two ATT&CK for ICS
releases, loaded in name order, so that ICS 18.0 adds newer versions of the
17.1 objects).  Synthetic objects are generated here with random UUIDs, in a
realistic mix: per malware family 1 malware, 7 indicators (pattern on an IPv4
address, TLP:GREEN, created by one identity), 5 ipv4-addr SCOs and 7
``indicates`` relationships: 5% malware, 35% indicators, 25% ipv4-addr, 35%
relationships.

Targets (printed next to the figures, each marked ok or MISSED): POST >= 5,000
objects/s, paged GET >= 10,000 objects/s, GET by id <= 5 ms (mean and p95),
each figure at the largest size within 2x of the same figure at the smallest,
peak RSS < 300 MB.  The exit status is 0 whether targets are met or not.

Comparison with medallion 3.0.0
-------------------------------
The OASIS reference server (memory backend, ``tests/medallion_peer.py``,
served by one gunicorn gthread worker x 4 threads so that both servers get
keep-alive) runs a bounded version of the same workload: 2,000 synthetic
objects and (not with ``--quick``) the shared corpora; the node runs the same
workloads, and the table gives node/medallion for each figure.  medallion's
memory backend deep-copies the whole collection on every request and matches
the first page of a GET against the manifest in O(n^2) ``strptime`` calls
(tens of seconds for 2,000 objects here, hours for 100,000), so its runs are
capped: GET by id at 100 ids or 30 s, paging at 90 s; a paging run stopped by
its cap is shown as an upper bound (``< N``: all its objects / 90 s).  The
client works around its defects: versioned Accept header, bytes bodies with
Content-Length, ``limit`` repeated with every ``next``, and a ``next`` token
lifetime raised from 30 s to 600 s (``session_timeout``).

Only 127.0.0.1 is used.  Every loop is bounded in count, every request has a
timeout, the whole run has a deadline (``--time-limit``), and every server
started is stopped on exit, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from node.config import ServerConfig  # noqa: E402
from node.mediatypes import TAXII_21 as MEDIA_TYPE  # noqa: E402
from tests.medallion_peer import start_medallion  # noqa: E402
from tests.nodes import ADMIN_PASSWORD, new_node  # noqa: E402

# Benchmarked nodes run as deployed (the config's default worker processes),
# not as the test harness starts them (one worker, to save the tests' CPU).
NODE_WORKERS = ServerConfig().workers

SHARED_DATA = REPO.parent / "shared" / "data"
ENVELOPE_SIZE = 100
PAGE_SIZE = 100
POST_THREADS = 4
GET_IDS = 500
SEED = 20240501

MEDALLION_SIZE = 2_000  # its first page costs O(n^2): ~50 s at 2,000 objects on 2 slow cores
MEDALLION_GET_IDS = 100
MEDALLION_GET_SECONDS = 30.0
MEDALLION_PAGE_SECONDS = 90.0
MEDALLION_SESSION_TIMEOUT = 600

NODE_TIMEOUT = 120.0  # seconds, one request
MEDALLION_TIMEOUT = 300.0  # its first page of a large collection is slow

TARGET_POST = 5_000.0
TARGET_PAGED = 10_000.0
TARGET_GET_MS = 5.0
TARGET_RSS_MB = 300.0
TARGET_SCALING = 2.0

COLLECTION_ALIAS = "alpha"
MEDALLION_COLLECTION = "8a3f2f53-8c1b-4a7a-9f0a-5e7f1c2d3b4a"

TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"


class BenchTimeout(RuntimeError):
    """The run passed its --time-limit."""


# -- synthetic objects ---------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def synthetic_objects(count: int, seed: int = SEED) -> list[dict]:
    """``count`` valid STIX 2.1 objects: malware, indicators, ipv4-addr, relationships."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    identity_id = f"identity--{_uuid(rng)}"
    created = _timestamp(start)
    result: list[dict] = [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": identity_id,
            "created": created,
            "modified": created,
            "name": "Benchmark CERT",
            "identity_class": "organization",
            "sectors": ["technology"],
        }
    ]
    family = 0
    while len(result) < count:
        family += 1
        moment = start + timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
        when = _timestamp(moment)
        malware_id = f"malware--{_uuid(rng)}"
        common = {
            "spec_version": "2.1",
            "created_by_ref": identity_id,
            "object_marking_refs": [TLP_GREEN],
        }
        result.append(
            {
                "type": "malware",
                "id": malware_id,
                "created": when,
                "modified": when,
                "name": f"Family {family:05d}",
                "description": f"Loader family {family} seen in phishing campaigns.",
                "malware_types": [rng.choice(["trojan", "ransomware", "backdoor", "dropper"])],
                "is_family": True,
                **common,
            }
        )
        for _ in range(5):
            address = f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            result.append(
                {
                    "type": "ipv4-addr",
                    "spec_version": "2.1",
                    "id": f"ipv4-addr--{_uuid(rng)}",
                    "value": address,
                }
            )
        for number in range(7):
            seen = moment + timedelta(minutes=rng.randrange(1, 60 * 24 * 30))
            seen_text = _timestamp(seen)
            address = f"203.0.{rng.randrange(113, 114)}.{rng.randrange(1, 255)}"
            indicator_id = f"indicator--{_uuid(rng)}"
            result.append(
                {
                    "type": "indicator",
                    "id": indicator_id,
                    "created": seen_text,
                    "modified": seen_text,
                    "name": f"C2 address {number} of family {family:05d}",
                    "description": "Command-and-control server contacted after infection.",
                    "indicator_types": ["malicious-activity"],
                    "pattern": f"[ipv4-addr:value = '{address}']",
                    "pattern_type": "stix",
                    "pattern_version": "2.1",
                    "valid_from": seen_text,
                    "confidence": rng.randrange(30, 100),
                    "labels": ["c2"],
                    **common,
                }
            )
            result.append(
                {
                    "type": "relationship",
                    "id": f"relationship--{_uuid(rng)}",
                    "created": seen_text,
                    "modified": seen_text,
                    "relationship_type": "indicates",
                    "source_ref": indicator_id,
                    "target_ref": malware_id,
                    **common,
                }
            )
    return result[:count]


def shared_corpora(directory: Path = SHARED_DATA) -> tuple[list[dict], list[str]]:
    """The objects of every bundle in ``directory`` (name order) and the file names."""
    if not directory.is_dir():
        return [], []
    objects: list[dict] = []
    names = []
    for path in sorted(directory.glob("*.json")):
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        if isinstance(document, dict) and isinstance(document.get("objects"), list):
            objects.extend(document["objects"])
            names.append(path.name)
    return objects, names


def envelopes(objects: Sequence[dict], size: int = ENVELOPE_SIZE) -> list[bytes]:
    return [
        json.dumps({"objects": list(objects[start : start + size])}).encode()
        for start in range(0, len(objects), size)
    ]


# -- servers under test --------------------------------------------------------


def tree_pids(root_pid: int) -> list[int]:
    """``root_pid`` and all its live descendants."""
    found: list[int] = []
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def tree_rss_kb(root_pid: int) -> int:
    """VmRSS of ``root_pid`` and all its descendants, in kB (0 for vanished ones)."""
    total = 0
    for pid in tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU time used so far by ``root_pid`` and its live descendants."""
    ticks = 0
    for pid in tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _leave_signals_to_main_thread() -> None:
    """Block SIGINT and SIGTERM in a helper thread.

    A signal is handled by the main thread, but the kernel may deliver it to any
    thread; delivered to a helper, it would not interrupt the main thread's
    blocking socket read (up to a request timeout) before the run stops.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


class RssSampler:
    """Samples the RSS of a process tree in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        _leave_signals_to_main_thread()
        while True:
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


@dataclass
class Server:
    """One running server: where its collection is and how to reach it."""

    kind: str  # "node" or "medallion"
    collection_url: str
    auth: tuple[str, str]
    pid: int
    timeout: float


@contextmanager
def running_node(workdir: Path, name: str) -> Iterator[Server]:
    node = new_node(workdir, f"node-{name}", None, workers=NODE_WORKERS)
    try:
        node.start(timeout=60)
        assert node.process is not None
        yield Server(
            kind="node",
            collection_url=node.collection_url(COLLECTION_ALIAS),
            auth=("admin", ADMIN_PASSWORD),
            pid=node.process.pid,
            timeout=NODE_TIMEOUT,
        )
    finally:
        node.stop()


@contextmanager
def running_medallion(workdir: Path, name: str) -> Iterator[Server]:
    peer = start_medallion(
        workdir / f"medallion-{name}",
        {COLLECTION_ALIAS: MEDALLION_COLLECTION},
        session_timeout=MEDALLION_SESSION_TIMEOUT,
        server="gunicorn",
        threads=4,
        timeout=60,
    )
    try:
        assert peer.process is not None
        yield Server(
            kind="medallion",
            collection_url=peer.collection_url(COLLECTION_ALIAS),
            auth=(peer.user, peer.password),
            pid=peer.process.pid,
            timeout=MEDALLION_TIMEOUT,
        )
    finally:
        peer.stop()


# -- the client ----------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise BenchTimeout(f"time limit reached during {what}")


def _session(server: Server) -> requests.Session:
    session = requests.Session()
    session.auth = server.auth
    session.headers["Accept"] = MEDIA_TYPE
    return session


def _warm(session: requests.Session, server: Server) -> None:
    """Open the keep-alive connection and let its worker verify the password (scrypt) once."""
    response = session.get(server.collection_url, timeout=server.timeout)
    if response.status_code != 200:
        raise RuntimeError(f"GET collection answered {response.status_code}: {response.text[:300]}")


def post_all(server: Server, bodies: Sequence[bytes], deadline: Deadline) -> tuple[float, int, int]:
    """Post every envelope from POST_THREADS warm sessions; (seconds, successes, failures)."""
    url = server.collection_url + "objects/"
    sessions = [_session(server) for _ in range(POST_THREADS)]
    pending = iter(bodies)
    lock = threading.Lock()
    failed = threading.Event()

    def worker(session: requests.Session) -> tuple[int, int]:
        successes = failures = 0
        while not failed.is_set():
            with lock:
                body = next(pending, None)
            if body is None:
                break
            deadline.check("POST")
            try:
                response = session.post(
                    url, data=body, headers={"Content-Type": MEDIA_TYPE}, timeout=server.timeout
                )
                if response.status_code != 202:
                    raise RuntimeError(
                        f"POST answered {response.status_code}: {response.text[:300]}"
                    )
            except BaseException:
                failed.set()
                raise
            status = response.json()
            successes += int(status.get("success_count", 0))
            failures += int(status.get("failure_count", 0))
        return successes, failures

    try:
        for session in sessions:
            _warm(session, server)
        with ThreadPoolExecutor(
            max_workers=POST_THREADS,
            thread_name_prefix="post",
            initializer=_leave_signals_to_main_thread,
        ) as pool:
            started = time.perf_counter()
            futures = [pool.submit(worker, session) for session in sessions]
            try:
                outcomes = [future.result() for future in futures]
            except BaseException:
                failed.set()
                raise
            elapsed = time.perf_counter() - started
    finally:
        for session in sessions:
            session.close()
    return elapsed, sum(s for s, _ in outcomes), sum(f for _, f in outcomes)


@dataclass
class Paged:
    seconds: float
    objects: int
    capped: bool  # the budget ran out: objects/seconds is an upper bound of the rate


def page_all(
    server: Server, expected: int, deadline: Deadline, budget: float | None = None
) -> Paged:
    """Read the collection with limit=PAGE_SIZE, following next, one page at a time.

    With a ``budget`` (seconds), a request still unanswered when it runs out
    ends the run, and the result is marked ``capped``.
    """
    url = server.collection_url + "objects/"
    max_pages = expected // PAGE_SIZE + 10
    count = 0
    with _session(server) as session:
        _warm(session, server)
        params: dict[str, str | int] = {"limit": PAGE_SIZE}
        started = time.perf_counter()
        for _ in range(max_pages):
            deadline.check("paged GET")
            timeout = server.timeout
            if budget is not None:
                timeout = min(timeout, budget - (time.perf_counter() - started))
                if timeout <= 0:
                    return Paged(time.perf_counter() - started, count, capped=True)
            try:
                response = session.get(url, params=params, timeout=timeout)
            except requests.Timeout:
                if budget is None:
                    raise
                return Paged(time.perf_counter() - started, count, capped=True)
            if response.status_code != 200:
                raise RuntimeError(f"GET answered {response.status_code}: {response.text[:300]}")
            envelope = response.json()
            count += len(envelope.get("objects", []))
            if not envelope.get("more"):
                break
            # medallion 3.0.0 answers 500 to next without limit: always send both.
            params = {"limit": PAGE_SIZE, "next": envelope["next"]}
        else:
            raise RuntimeError(f"paging did not end after {max_pages} pages")
        return Paged(time.perf_counter() - started, count, capped=False)


def get_by_id(
    server: Server, ids: Sequence[str], deadline: Deadline, budget: float | None = None
) -> list[float]:
    """Latencies in ms of GET objects/<id>/, one at a time, for ids (or until budget s)."""
    latencies: list[float] = []
    with _session(server) as session:
        _warm(session, server)
        started = time.monotonic()
        for object_id in ids:
            deadline.check("GET by id")
            if budget is not None and time.monotonic() - started > budget:
                break
            url = f"{server.collection_url}objects/{object_id}/"
            begin = time.perf_counter()
            response = session.get(url, timeout=server.timeout)
            body = response.json()
            latencies.append((time.perf_counter() - begin) * 1000)
            if response.status_code != 200 or not body.get("objects"):
                raise RuntimeError(f"GET {object_id} answered {response.status_code}")
    return latencies


@dataclass
class Result:
    server: str
    workload: str
    posted: int
    post_rate: float
    failures: int
    paged: int
    page_rate: float
    page_capped: bool
    get_count: int
    get_mean_ms: float
    get_p95_ms: float
    rss_mb: float
    seconds: float
    post_cpu: float = float("nan")  # server CPU seconds (all processes) per phase
    page_cpu: float = float("nan")
    get_cpu: float = float("nan")


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def run_workload(
    start: Callable[[Path, str], AbstractContextManager[Server]],
    workdir: Path,
    label: str,
    objects: Sequence[dict],
    deadline: Deadline,
    *,
    get_ids: int = GET_IDS,
    get_budget: float | None = None,
    page_budget: float | None = None,
) -> Result:
    """Start a server, POST, page and GET by id ``objects``, stop it; the figures."""
    bodies = envelopes(objects)
    ids = sorted({obj["id"] for obj in objects})
    sample = random.Random(SEED + len(objects)).sample(ids, min(get_ids, len(ids)))
    began = time.monotonic()
    slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
    with start(workdir, slug) as server:
        print(f"  {server.kind:9} {label}: {len(objects):,} objects:", end="", flush=True)
        with RssSampler(server.pid) as sampler:
            cpu = [tree_cpu_seconds(server.pid)]
            post_seconds, successes, failures = post_all(server, bodies, deadline)
            cpu.append(tree_cpu_seconds(server.pid))
            print(f" POST {post_seconds:.1f}s", end="", flush=True)
            paged = page_all(server, len(objects), deadline, page_budget)
            cpu.append(tree_cpu_seconds(server.pid))
            capped = f" (stopped: {page_budget:.0f}s budget)" if paged.capped else ""
            print(f", paged GET {paged.seconds:.1f}s{capped}", end="", flush=True)
            latencies = get_by_id(server, sample, deadline, get_budget)
            cpu.append(tree_cpu_seconds(server.pid))
            print(f", {len(latencies)} GETs by id", flush=True)
    if successes + failures != len(objects):
        raise RuntimeError(
            f"{label}: the status resources account for {successes + failures} "
            f"of {len(objects)} objects"
        )
    return Result(
        server=server.kind,
        workload=label,
        posted=len(objects),
        post_rate=len(objects) / post_seconds,
        failures=failures,
        paged=paged.objects,
        # A run stopped by its budget would have served at most len(ids) objects (the
        # latest versions) in more than paged.seconds: the rate is below that.
        page_rate=(len(ids) if paged.capped else paged.objects) / paged.seconds,
        page_capped=paged.capped,
        get_count=len(latencies),
        get_mean_ms=statistics.fmean(latencies) if latencies else float("nan"),
        get_p95_ms=p95(latencies),
        rss_mb=sampler.peak_mb,
        seconds=time.monotonic() - began,
        post_cpu=cpu[1] - cpu[0],
        page_cpu=cpu[2] - cpu[1],
        get_cpu=cpu[3] - cpu[2],
    )


# -- the report ----------------------------------------------------------------


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_node_table(results: Sequence[Result]) -> None:
    header = (
        f"{'workload':<24} {'objects':>8} {'failed':>6} {'POST obj/s':>11} {'paged':>8} "
        f"{'paged GET obj/s':>15} {'GET id ms mean':>14} {'p95':>6} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.workload:<24} {r.posted:>8,} {r.failures:>6,} {_num(r.post_rate):>11} "
            f"{r.paged:>8,} {_num(r.page_rate):>15} {_num(r.get_mean_ms, 2):>14} "
            f"{_num(r.get_p95_ms, 2):>6} {_num(r.rss_mb, 1):>11}"
        )
    print(
        f"{'target':<24} {'':>8} {'':>6} {'>= 5,000':>11} {'':>8} {'>= 10,000':>15} "
        f"{'<= 5':>14} {'<= 5':>6} {'< 300':>11}"
    )


def print_cpu_table(results: Sequence[Result]) -> None:
    """Server CPU per unit of work: robust to other processes competing for the CPUs."""
    header = (
        f"{'server CPU (all processes)':<32} {'POST us/object':>14} {'paged GET us/object':>19} "
        f"{'GET by id ms/request':>20}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.server + ' ' + r.workload:<32} {_num(r.post_cpu / r.posted * 1e6):>14} "
            f"{'n/a' if r.page_capped else _num(r.page_cpu / max(r.paged, 1) * 1e6):>19} "
            f"{_num(r.get_cpu / max(r.get_count, 1) * 1e3, 2):>20}"
        )


def node_checks(results: Sequence[Result], synthetic: Sequence[Result]) -> list[tuple[str, bool]]:
    checks = []
    for r in results:
        checks += [
            (f"{r.workload}: POST {_num(r.post_rate)} obj/s >= 5,000", r.post_rate >= TARGET_POST),
            (
                f"{r.workload}: paged GET {_num(r.page_rate)} obj/s >= 10,000",
                r.page_rate >= TARGET_PAGED,
            ),
            (
                f"{r.workload}: GET by id mean {_num(r.get_mean_ms, 2)} ms, "
                f"p95 {_num(r.get_p95_ms, 2)} ms <= 5 ms",
                r.get_mean_ms <= TARGET_GET_MS and r.get_p95_ms <= TARGET_GET_MS,
            ),
            (f"{r.workload}: peak RSS {_num(r.rss_mb, 1)} MB < 300 MB", r.rss_mb < TARGET_RSS_MB),
        ]
    if len(synthetic) >= 2:
        small, large = synthetic[0], synthetic[-1]
        scale = f"{small.posted:,} -> {large.posted:,}"
        figures = [
            ("POST obj/s", small.post_rate / large.post_rate),
            ("paged GET obj/s", small.page_rate / large.page_rate),
            ("GET by id mean", large.get_mean_ms / small.get_mean_ms),
            ("GET by id p95", large.get_p95_ms / small.get_p95_ms),
        ]
        for name, slowdown in figures:
            checks.append(
                (
                    f"scaling {scale}: {name} {slowdown:.2f}x slower (<= {TARGET_SCALING:g}x)",
                    slowdown <= TARGET_SCALING,
                )
            )
    return checks


def print_comparison(pairs: Sequence[tuple[Result, Result]]) -> None:
    header = (
        f"{'workload':<24} {'figure':<18} {'node':>10} {'medallion':>10} "
        f"{'node/medallion':>15}  better when"
    )
    print(header)
    print("-" * len(header))
    for node, medallion in pairs:
        rows = [
            ("POST obj/s", node.post_rate, medallion.post_rate, 0, "higher"),
            ("paged GET obj/s", node.page_rate, medallion.page_rate, 0, "higher"),
            ("GET id mean ms", node.get_mean_ms, medallion.get_mean_ms, 2, "lower"),
            ("GET id p95 ms", node.get_p95_ms, medallion.get_p95_ms, 2, "lower"),
            ("peak RSS MB", node.rss_mb, medallion.rss_mb, 1, "lower"),
        ]
        label = f"{node.workload} ({node.posted:,})"
        for name, mine, theirs, digits, better in rows:
            ratio = mine / theirs if theirs else float("nan")
            theirs_text, ratio_text = _num(theirs, digits), _num(ratio, 3 if ratio < 0.1 else 2)
            if name.startswith("paged") and medallion.page_capped:
                # medallion had not finished: its rate is at most this, the ratio at least.
                theirs_text, ratio_text = "< " + theirs_text, "> " + ratio_text
            print(
                f"{label:<24} {name:<18} {_num(mine, digits):>10} {theirs_text:>10} "
                f"{ratio_text:>15}  {better}"
            )
            label = ""
        if medallion.get_count < node.get_count:
            print(f"{'':<24} (GETs by id: node {node.get_count}, medallion {medallion.get_count})")
        if medallion.page_capped:
            print(
                f"{'':<24} (medallion had sent {medallion.paged:,} objects when its "
                f"{MEDALLION_PAGE_SECONDS:.0f}s paging budget ran out)"
            )


# -- main ------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 100 or sizes[-1] > 1_000_000:
        raise argparse.ArgumentTypeError("sizes must be between 100 and 1,000,000")
    return sizes


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[10_000, 100_000],
        help="synthetic collection sizes (default: 10000,100000)",
    )
    parser.add_argument("--quick", action="store_true", help="one 2,000-object run of each kind")
    parser.add_argument("--no-medallion", action="store_true", help="skip the medallion runs")
    parser.add_argument("--no-shared", action="store_true", help="skip ../shared/data")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1200.0,
        help="abort after this many seconds (default: 1200)",
    )
    args = parser.parse_args(argv)
    sizes = [2_000] if args.quick else args.sizes
    deadline = Deadline(args.time_limit)
    # Also when started in the background by a shell, which ignores SIGINT there.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    corpora, corpus_names = ([], []) if args.no_shared else shared_corpora()
    print(
        f"taxii-node benchmark: SQLite store, gunicorn {NODE_WORKERS} workers x 4 threads; client "
        f"{POST_THREADS} POST threads, envelopes of {ENVELOPE_SIZE}, pages of {PAGE_SIZE}, "
        f"{GET_IDS} GETs by id; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    if corpus_names:
        print(f"shared corpora: {', '.join(corpus_names)} ({len(corpora):,} objects)")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load:.2f}")
    if load > 0.5:
        print(
            "  warning: other processes are using the CPUs; the rates will be low "
            "(the server CPU table is less affected)"
        )
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="taxii-node-bench-") as tmp:
            workdir = Path(tmp)
            synthetic: list[Result] = []
            for size in sizes:
                synthetic.append(
                    run_workload(
                        running_node,
                        workdir,
                        f"synthetic {size:,}",
                        synthetic_objects(size),
                        deadline,
                    )
                )
            node_results = list(synthetic)
            shared_node = None
            if corpora:
                shared_node = run_workload(
                    running_node, workdir, "shared corpora", corpora, deadline
                )
                node_results.append(shared_node)

            pairs: list[tuple[Result, Result]] = []
            if not args.no_medallion:
                label = f"synthetic {MEDALLION_SIZE:,}"
                same = next((r for r in synthetic if r.posted == MEDALLION_SIZE), None)
                objects = synthetic_objects(MEDALLION_SIZE)
                node_same = same or run_workload(running_node, workdir, label, objects, deadline)
                medallion_same = run_workload(
                    running_medallion,
                    workdir,
                    label,
                    objects,
                    deadline,
                    get_ids=MEDALLION_GET_IDS,
                    get_budget=MEDALLION_GET_SECONDS,
                    page_budget=MEDALLION_PAGE_SECONDS,
                )
                pairs.append((node_same, medallion_same))
                if shared_node is not None and not args.quick:
                    medallion_shared = run_workload(
                        running_medallion,
                        workdir,
                        "shared corpora",
                        corpora,
                        deadline,
                        get_ids=MEDALLION_GET_IDS,
                        get_budget=MEDALLION_GET_SECONDS,
                        page_budget=MEDALLION_PAGE_SECONDS,
                    )
                    pairs.append((shared_node, medallion_shared))
    except KeyboardInterrupt:
        print("\ninterrupted: every server started has been stopped", file=sys.stderr)
        return 130
    except BenchTimeout as exc:
        print(f"\naborted: {exc} (--time-limit {args.time_limit:.0f}s)", file=sys.stderr)
        return 2

    print()
    print("taxii-node (SQLite)")
    print_node_table(node_results)
    print()
    print_cpu_table(node_results + [m for _, m in pairs])
    print()
    checks = node_checks(node_results, synthetic)
    for text, ok in checks:
        print(f"  [{_verdict(ok):>6}] {text}")
    if pairs:
        print()
        print("node / medallion 3.0.0 (memory backend, gunicorn 1 worker x 4 threads)")
        print_comparison(pairs)
    print(
        f"\ntotal {time.monotonic() - started:.0f}s; "
        f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
