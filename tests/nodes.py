"""Test harness: real taxii-node servers in subprocesses, on loopback ports.

Each ``RunningNode`` has its own config file, its own store (a SQLite file or
a fresh PostgreSQL database) and its own gunicorn process, exactly as an
operator would run it.  Tests talk to it over HTTP with real clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests

_CLI_LOCK = threading.Lock()

PG_ENV = "TAXII_NODE_TEST_PG"
REQUIRE_PG_ENV = "TAXII_NODE_REQUIRE_PG"
ADMIN_PASSWORD = "admin-password-1"

COLLECTIONS = {
    "alpha": "6f1f0a9a-1111-4c3e-9a41-000000000001",
    "beta": "6f1f0a9a-2222-4c3e-9a41-000000000002",
    "gamma": "6f1f0a9a-3333-4c3e-9a41-000000000003",
}


class _PortPool:
    """Loopback ports for the nodes of this test process, never one twice.

    A port is free when asked for and bound later (gunicorn) or never (an
    in-process node only names it in its URLs).  So that no two nodes of one
    run share a port, each pytest-xdist worker takes only ports that are its
    index modulo the number of workers, below the kernel's ephemeral range
    (where client connections take their source ports), and no process hands
    out a port twice (each candidate is popped once).
    """

    LOW, HIGH = 20000, 32767

    def __init__(self) -> None:
        self._lock = threading.Lock()
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")) % count
        first = self.LOW + (index - self.LOW) % count
        self._candidates = list(range(first, self.HIGH + 1, count))
        random.shuffle(self._candidates)  # other test runs on the machine pick too

    def take(self) -> int:
        with self._lock:
            while self._candidates:
                port = self._candidates.pop()
                if _bindable(port):
                    return port
        raise RuntimeError(f"no free loopback port left in {self.LOW}..{self.HIGH}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_PORTS = _PortPool()


def free_port() -> int:
    return _PORTS.take()


def taxii_node_command() -> list[str]:
    return [sys.executable, "-m", "node"]


def write_collections(directory: Path, names: dict[str, str] = COLLECTIONS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for alias, collection_id in names.items():
        (directory / f"{alias}.toml").write_text(
            f'id = "{collection_id}"\nalias = "{alias}"\ntitle = "Collection {alias}"\n'
        )
    return directory


def create_pg_database(base_url: str) -> str:
    """A new empty store on the test server: the URL of a schema of its own.

    A schema of the base database, named by the URL's ``search_path`` (and by
    its ``application_name``, so that teardown finds the sessions still in
    it), costs a catalog row where ``CREATE DATABASE`` copies a template
    database to disk: hundreds of test stores a run.  The node addresses its
    tables unqualified, so a store in a schema behaves as one in a database.
    Its sessions commit without waiting for the server's disk
    (``synchronous_commit=off``): that only risks the last commits if the
    PostgreSQL server itself crashes, which no test does (a node killed by a
    test is a client; what it committed stays).
    """
    import psycopg

    name = f"taxii_node_test_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{name}"')
    options = quote(f"-c search_path={name} -c synchronous_commit=off")
    return f"{base_url}?application_name={name}&options={options}"


def drop_pg_database(base_url: str, url: str) -> None:
    """Drop the store made by ``create_pg_database``, ending any session still in it."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as connection:
        _drop_schema(connection, _schema_name(url))


class PgStorePool:
    """Migrated PostgreSQL test stores of one test process, emptied and reused.

    Migrating a new schema costs the server a third of a second of DDL (dozens
    of tables and indexes), and dropping it again as much: over a hundred test
    stores a run.  A store given back is emptied instead (TRUNCATE of every
    table but ``schema_version``, identities restarted) and handed to the next
    test that asks for a migrated store.  A store whose tables, columns or
    indexes are no longer those of a freshly migrated one (a test of a
    migration, or one that failed halfway through such a test) is dropped, not
    reused; so is one still locked after ``_LOCK_WAIT``.
    """

    _LOCK_WAIT = "5s"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._free: list[str] = []
        self._shape: str | None = None
        self._connection = None  # kept: a new session's first catalog queries are slow

    def take(self) -> str:
        """The URL of an empty store at the latest schema version."""
        if self._free:
            return self._free.pop()
        from node.store import Store

        url = create_pg_database(self.base_url)
        store = Store(url)
        try:
            store.migrate()
        finally:
            store.close()
        if self._shape is None:
            self._shape = self._shape_of(_schema_name(url))
        return url

    def give_back(self, url: str) -> None:
        """Empty the store at ``url`` for the next test, or drop it (see the class)."""
        import psycopg

        name = _schema_name(url)
        connection = self._session()
        _end_sessions(connection, name)
        if self._shape_of(name) == self._shape:
            tables = connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                "AND tablename <> 'schema_version'",
                (name,),
            ).fetchall()
            listed = ", ".join(f'"{name}"."{table}"' for (table,) in tables)
            try:
                connection.execute(f"SET lock_timeout = '{self._LOCK_WAIT}'")
                connection.execute(f"TRUNCATE {listed} RESTART IDENTITY")
            except psycopg.errors.LockNotAvailable:
                pass
            else:
                self._free.append(url)
                return
            finally:
                connection.execute("SET lock_timeout = 0")
        _drop_schema(connection, name)

    def close(self) -> None:
        """Drop the stores waiting for reuse (at the end of the test process)."""
        while self._free:
            _drop_schema(self._session(), _schema_name(self._free.pop()))
        if self._connection is not None:
            self._connection.close()

    def _session(self):
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.base_url, autocommit=True)
        return self._connection

    def _shape_of(self, name: str) -> str:
        """The store's tables, columns, indexes and applied migrations, as one text."""
        import psycopg

        # pg_catalog rather than information_schema.columns: a tenth of the time.
        query = (
            "SELECT string_agg(replace(replace(line, %(quoted)s, ''), %(bare)s, ''),"
            " E'\\n' ORDER BY line) FROM ("
            " SELECT 'c ' || c.relname || '.' || a.attname || ' '"
            "   || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '"
            "   || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS line"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE n.nspname = %(s)s AND c.relkind = 'r' AND a.attnum > 0"
            " AND NOT a.attisdropped"
            " UNION ALL SELECT 'i ' || tablename || ' ' || indexdef"
            " FROM pg_indexes WHERE schemaname = %(s)s"
            " UNION ALL SELECT 'v ' || version FROM " + f'"{name}".schema_version' + ") AS shape"
        )
        # Names the server qualifies with the schema (sequences, index tables) are
        # compared without it: each store is a schema of another name.
        params = {"s": name, "quoted": f'"{name}".', "bare": f"{name}."}
        try:
            (shape,) = self._session().execute(query, params).fetchone()
        except psycopg.errors.UndefinedTable:  # no schema_version: not a migrated store
            return ""
        return shape or ""


def _schema_name(url: str) -> str:
    (name,) = parse_qs(urlsplit(url).query)["application_name"]
    return name


def _drop_schema(connection, name: str) -> None:
    """Drop the store in schema ``name``, ending any session still in it."""
    _end_sessions(connection, name)
    connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _end_sessions(connection, name: str) -> None:
    connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )


def pg_available(base_url: str | None) -> bool:
    if not base_url:
        return False
    try:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=3):
            return True
    except Exception:
        return False


@dataclass
class NodeFiles:
    """The config and store of one node, before or without a server."""

    directory: Path
    name: str
    store_url: str
    port: int
    # gunicorn worker processes.  One unless a test is about several (metrics summed
    # across workers, races between workers, slots per worker): each worker imports
    # the app, about half a second of CPU per node on this machine.
    workers: int = 1
    extra_toml: str = ""
    taxii_toml: str = ""
    server_toml: str = ""
    # HTTPS: the server's certificate and key, and the CA bundle for client
    # certificates ([server] tls_cert, tls_key, tls_client_ca).  Without tls_cert
    # the node serves plain HTTP (``insecure_http = true``).  ``ca_bundle`` is what
    # clients, start() included, verify an HTTPS node's certificate with.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    ca_bundle: Path | None = None
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / f"{self.name}.toml"
        collections_dir = write_collections(self.directory / "collections")
        self.config_path.write_text(
            f'[node]\nname = "{self.name}"\n\n'
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f"workers = {self.workers}\nthreads = 4\n"
            f"{self._transport_toml()}"
            f"{self.server_toml}\n\n"
            f'[store]\nurl = "{self.store_url}"\n\n'
            f'[taxii]\napi_root = "api"\ntitle = "Test {self.name}"\n'
            f'collections_dir = "{collections_dir}"\n{self.taxii_toml}\n'
            f"{self.extra_toml}"
        )

    def _transport_toml(self) -> str:
        if self.tls_cert is None:
            return "" if "insecure_http" in self.server_toml else "insecure_http = true\n"
        lines = ""
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, key)
            if value is not None:
                lines += f"{key} = {json.dumps(str(value))}\n"
        return lines

    @property
    def scheme(self) -> str:
        return "http" if self.tls_cert is None else "https"

    @property
    def verify(self) -> str | bool:
        """``verify=`` for requests: the CA bundle of an HTTPS node, else True."""
        return str(self.ca_bundle) if self.ca_bundle is not None else True

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/api/"

    def collection_url(self, alias: str) -> str:
        return f"{self.api_root}collections/{COLLECTIONS[alias]}/"

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*taxii_node_command(), "--config", str(self.config_path), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"taxii-node {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_in_process(
        self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """``cli`` without the 2 s interpreter start-up (``cli_in_process`` below)."""
        result = cli_in_process("--config", str(self.config_path), *args, input=input, env=env)
        if check and result.returncode != 0:
            raise AssertionError(
                f"taxii-node {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def run_cli(self, *args: str, input: str | None = None) -> str:
        """``taxii-node --config NODE ARGS`` in this process; its output.

        The same command as ``cli`` without a 2 s interpreter start-up: for
        setting nodes up.  Tests of the command line itself use ``cli``.
        """
        from click.testing import CliRunner

        from node.cli import cli

        with _CLI_LOCK:  # CliRunner swaps the standard streams of the process
            result = CliRunner().invoke(
                cli, ["--config", str(self.config_path), *args], input=input,
                catch_exceptions=False,
            )  # fmt: skip
        assert result.exit_code == 0, f"taxii-node {' '.join(args)}: {result.output}"
        return result.output

    def init(self) -> None:
        self.run_cli("init")

    def add_user(self, name: str, password: str, **options: Any) -> None:
        """``taxii-node user add`` with ``user_add_args(name, **options)``."""
        self.run_cli(*user_add_args(name, **options), input=password + "\n")


def cli_in_process(
    *argv: str, input: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``taxii-node ARGV`` through the CLI's entry point (``run_guarded``: exit codes,
    one-line errors on stderr) in this process; the result as ``subprocess.run`` gives it.

    For tests of what a command does to the node; tests of the process itself
    (start-up imports, signals, ``--debug`` tracebacks, a server that must not
    start) run the real ``taxii-node`` process.
    """
    from click.testing import CliRunner

    from node.cli import cli
    from node.cli.common import run_guarded

    with _CLI_LOCK, CliRunner().isolation(input=input, env=env) as (stdout, stderr, _):
        code = run_guarded(cli, list(argv), prog_name="taxii-node")
        sys.stdout.flush()  # what a command wrote to sys.stdout unflushed (a process's
        sys.stderr.flush()  # exit flushes it)
        return subprocess.CompletedProcess(
            ["taxii-node", *argv], code, stdout.getvalue().decode(), stderr.getvalue().decode()
        )


def user_add_args(
    name: str,
    *,
    read: tuple[str, ...] = (),
    write: tuple[str, ...] = (),
    admin: bool = False,
    peer: str | None = None,
    cert_fingerprint: str | None = None,
    cert_subject: str | None = None,
) -> list[str]:
    """The arguments of ``taxii-node user add`` (password on stdin)."""
    args = ["user", "add", name, "--password-stdin"]
    for alias in read:
        args += ["--read", alias]
    for alias in write:
        args += ["--write", alias]
    if admin:
        args.append("--admin")
    if peer:
        args += ["--peer", peer]
    if cert_fingerprint:
        args += ["--cert-fingerprint", cert_fingerprint]
    if cert_subject:
        args += ["--cert-subject", cert_subject]
    return args


# TAXII_NODE_TEST_ZYGOTE=0: every test server a ``python -m node`` process of its own,
# instead of a fork of tests/zygote.py (which saves each one a second of imports).
ZYGOTE_ENV = "TAXII_NODE_TEST_ZYGOTE"


class ForkedProcess:
    """A server forked by the zygote: the part of ``subprocess.Popen`` the harness
    uses (``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``kill``).
    Its exit code comes from the zygote, its parent.

    A pid is used again once its process has exited, so a server is known by its
    pid and by how many servers had that pid before it (``nth``): the zygote
    reports each pid's exits in the order of its forks."""

    def __init__(self, zygote: _Zygote, pid: int, nth: int = 0) -> None:
        self._zygote, self.pid, self._nth = zygote, pid, nth
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            exits = self._zygote.exits.get(self.pid, ())
            if len(exits) > self._nth:
                self.returncode = exits[self._nth]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self._zygote.changed:
            ended = self._zygote.changed.wait_for(
                lambda: self.poll() is not None or self._zygote.gone, timeout
            )
        if not ended:
            raise subprocess.TimeoutExpired([f"forked server {self.pid}"], timeout or 0)
        if self.returncode is None:  # the zygote died: nobody will report this exit
            self.kill_orphan()
            raise AssertionError(f"the test zygote died; server {self.pid}'s exit is unknown")
        return self.returncode

    def kill_orphan(self) -> None:
        """SIGKILL the server if it still runs without its zygote (nothing else would)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Zygote:
    """This test process's tests/zygote.py, started on first use; its ``exited``
    reports kept in ``exits`` (pid -> the exit codes of the servers that had it, in
    order) by a reader thread."""

    _lock = threading.Lock()
    _instance: _Zygote | None = None

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
        self.exits: dict[int, list[int]] = {}
        self._forks: dict[int, int] = {}  # pid -> servers forked with it so far
        self.gone = False  # the zygote ended: exits not yet reported never will be
        self.changed = threading.Condition()
        self._started: list[int] = []
        self._requests = threading.Lock()
        threading.Thread(target=self._read, name="zygote reader", daemon=True).start()

    @classmethod
    def get(cls) -> _Zygote:
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def fork(self, argv: list[str], log: Path, env: dict[str, str]) -> ForkedProcess:
        request = {"argv": argv, "env": env, "cwd": os.getcwd(), "log": str(log)}
        assert self.process.stdin is not None
        with self._requests:  # one request answered at a time: the answer is its pid
            try:
                self.process.stdin.write(json.dumps(request).encode() + b"\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                raise AssertionError("the test zygote died before it forked a server") from None
            with self.changed:
                if not self.changed.wait_for(lambda: self._started or self.gone, timeout=60):
                    raise AssertionError("the test zygote did not fork a server")
                if not self._started:
                    raise AssertionError("the test zygote died before it forked a server")
                pid = self._started.pop()
                nth = self._forks.get(pid, 0)
                self._forks[pid] = nth + 1
        return ForkedProcess(self, pid, nth)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            with self.changed:
                if "started" in message:
                    self._started.append(message["started"])
                else:
                    self.exits.setdefault(message["exited"], []).append(message["returncode"])
                self.changed.notify_all()
        with self.changed:
            self.gone = True
            self.changed.notify_all()


def taxii_node_process(args: list[str], log_path: Path) -> subprocess.Popen | ForkedProcess:
    """``taxii-node ARGS`` in a new session, its output appended to ``log_path``: a
    fork of the zygote, or with TAXII_NODE_TEST_ZYGOTE=0 a ``python -m node``.

    Its temporary files (``serve``'s metrics directory) go in the log's folder,
    the test's: a server killed at teardown (``RunningNode.stop``) leaves them
    there, not in /tmp."""
    env = {**os.environ, "TMPDIR": str(log_path.parent)}
    if os.environ.get(ZYGOTE_ENV) == "0":
        return subprocess.Popen(
            [*taxii_node_command(), *args],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    log_path.touch()  # there on return, as Popen's stdout file is
    return _Zygote.get().fork(["taxii-node", *args], log_path, env)


@dataclass
class RunningNode(NodeFiles):
    process: subprocess.Popen | ForkedProcess | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 30.0) -> RunningNode:
        self.log_path = self.directory / f"{self.name}-server.log"
        self.process = taxii_node_process(
            ["--config", str(self.config_path), "serve"], self.log_path
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                requests.get(f"{self.base_url}/taxii2/", timeout=1, verify=self.verify)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """In a test, SIGTERM: the graceful stop (tests/test_serving.py), for a peer
        that goes down.  Not Ctrl-C's quick one: gunicorn's worker then hangs in
        about one stop in ten, until the arbiter kills it 10 s later
        (graceful_timeout).  At teardown (``tearing_down``), SIGKILL: nothing is
        asserted of a stop there, and a graceful one spent 1-2 s in the worker's
        and the arbiter's interpreter shutdown."""
        if self.process is not None:
            stop_process_group(
                self.process, signal.SIGKILL if _TEARDOWN.is_set() else signal.SIGTERM
            )
        self.process = None


_TEARDOWN = threading.Event()


@contextlib.contextmanager
def tearing_down() -> Iterator[None]:
    """While a test's fixtures are torn down (tests/conftest.py): servers stopped
    then are killed (``RunningNode.stop``)."""
    _TEARDOWN.set()
    try:
        yield
    finally:
        _TEARDOWN.clear()


def stop_process_group(
    process: subprocess.Popen | ForkedProcess,
    sig: signal.Signals = signal.SIGTERM,
    grace: float = 15.0,
) -> None:
    """``sig`` to the process group a server was started in (``start_new_session``),
    SIGKILL after ``grace`` seconds; nothing when it has exited already."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_sync_worker(node: NodeFiles, *args: str) -> subprocess.Popen | ForkedProcess:
    """``taxii-node sync ARGS`` for ``node`` as a process of its own (tests kill it),
    its output appended to ``sync-worker.log`` in the node's directory."""
    return taxii_node_process(
        ["--config", str(node.config_path), "sync", *args], node.directory / "sync-worker.log"
    )


def kill_when_partly_moved(
    worker: subprocess.Popen | ForkedProcess,
    moved: Callable[[], int],
    total: int,
    timeout: float = 180.0,
) -> int:
    """SIGKILL ``worker`` as soon as ``moved()`` (what reached the receiving side) is
    above 0; how much had moved, which must be less than ``total``."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            if moved() > 0:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the worker moved nothing (see sync-worker.log)")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    count = moved()
    assert 0 < count < total, f"{count} of {total}: the kill did not land mid-transfer"
    return count


def new_node(directory: Path, name: str, store_url: str | None, **kwargs) -> RunningNode:
    """An initialised node with an ``admin`` account (not yet started)."""
    url = store_url or f"sqlite:///{directory / name / 'node.db'}"
    node = RunningNode(directory=directory / name, name=name, store_url=url, port=free_port(),
                       **kwargs)  # fmt: skip
    node.init()
    node.add_user("admin", ADMIN_PASSWORD, admin=True)
    return node


def serving(node: Any) -> Iterator[Any]:
    """For module fixtures: ``node`` started, then stopped when the module is done."""
    node.start()
    try:
        yield node
    finally:
        node.stop()


def random_id(object_type: str) -> str:
    return f"{object_type}--{uuid.uuid4()}"
