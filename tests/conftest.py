"""Fixtures: real nodes on SQLite and, when reachable, PostgreSQL.

The PostgreSQL variants are skipped only when no server is reachable at
``TAXII_NODE_TEST_PG``; with ``TAXII_NODE_REQUIRE_PG=1`` (set by .ci/run) an
unreachable server is an error instead of a skip.
"""

from __future__ import annotations

import compileall
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store import Store, catalog
from node.store.catalog import Collection
from tests.nodes import (
    PG_ENV,
    REQUIRE_PG_ENV,
    PgStorePool,
    pg_available,
    tearing_down,
)
from tests.passwords import hash_cheaply

ROOT = Path(__file__).resolve().parent.parent

hash_cheaply()


def pytest_configure(config: pytest.Config) -> None:
    """Once a run (not in each pytest-xdist worker): the node's bytecode, for the
    hundreds of ``taxii-node`` processes the tests start (servers, workers, CLI).

    With ``PYTHONDONTWRITEBYTECODE`` set (as on the CI machine) no process writes
    ``__pycache__``, so every one of them compiled ``node/`` from source again, a
    quarter of a second of CPU each.  Compiled here, they only read it; a source
    file changed later is compiled afresh by whoever imports it (the cached
    file's timestamp no longer matches).
    """
    if sys.flags.dont_write_bytecode and not hasattr(config, "workerinput"):
        compileall.compile_dir(ROOT / "node", quiet=1)


def _pg_base_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if pg_available(url):
        return url
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_PG_ENV}=1) but {PG_ENV}={url!r} is "
                    "not reachable")  # fmt: skip
    pytest.skip(f"no PostgreSQL reachable at {PG_ENV}={url!r}")
    return None


def migrated_store(store_url: str | None, directory: Path, *collections: Collection) -> Store:
    """A migrated store holding ``collections``: at ``store_url`` (a PostgreSQL store of
    the ``store_url`` fixtures), or a SQLite file in ``directory`` when that is None."""
    store = Store(store_url or f"sqlite:///{directory / 'node.db'}")
    store.migrate()
    with store.write() as connection:
        for collection in collections:
            catalog.upsert(connection, collection)
    return store


@pytest.fixture
def stopper() -> Iterator[list]:
    """Things with a ``stop()`` (servers, peers, stores) to stop at teardown, newest
    first, even when the test fails."""
    started: list = []
    yield started
    for thing in reversed(started):
        thing.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> Iterator[str | None]:
    """None for a SQLite file chosen by the harness, else the URL of an empty,
    migrated PostgreSQL store (a schema of its own: tests.nodes.PgStorePool)."""
    urls = _store_urls(request, request.param)
    try:
        yield urls.new()
    finally:
        urls.drop_all()


class StoreUrls:
    """Fresh stores of one kind for a module: ``new()`` gives None (a SQLite file the
    harness picks) or the URL of an empty, migrated PostgreSQL store of ``pool``,
    given back to it at teardown."""

    def __init__(self, pool: PgStorePool | None = None) -> None:
        self._taken: list[str] = []
        self._pool = pool

    def new(self) -> str | None:
        if self._pool is None:
            return None
        url = self._pool.take()
        self._taken.append(url)
        return url

    def drop_all(self) -> None:
        for url in self._taken:
            assert self._pool is not None
            self._pool.give_back(url)


@pytest.fixture(scope="session")
def pg_store_pool() -> Iterator[PgStorePool]:
    """This test process's migrated PostgreSQL stores (tests.nodes.PgStorePool)."""
    pool = PgStorePool(_pg_base_url() or "")
    try:
        yield pool
    finally:
        pool.close()


def _store_urls(request: pytest.FixtureRequest, kind: str) -> StoreUrls:
    if kind != "postgresql":
        return StoreUrls()
    return StoreUrls(request.getfixturevalue("pg_store_pool"))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_store_urls(request) -> Iterator[StoreUrls]:
    """For modules that run more than one node per store kind."""
    urls = _store_urls(request, request.param)
    try:
        yield urls
    finally:
        urls.drop_all()


@pytest.fixture(scope="module")
def module_store_url(module_store_urls: StoreUrls) -> str | None:
    return module_store_urls.new()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Fixtures torn down (a module's too, after its last test) kill their servers
    rather than stop them gracefully: tests.nodes.tearing_down."""
    with tearing_down():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.report_call`` ...), so that
    fixtures can act on failures: the browser tests keep a screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# The modules that hold the longest tests (SIGKILL and resume against OpenTAXII,
# property runs, the browser's analyst day, stalled TLS handshakes, three-node
# rounds, the demo as a process), longest test first (a fresh-clone CI run of
# 2026-12-02, load 4-9: 42 s down to 5 s).  They are started first so that
# pytest-xdist's workers do not all wait at the end for one of them; the rest
# follow in their usual order.  This pays only
# when tests are handed out one at a time (``make test``: ``--maxschedchunk 1``);
# in xdist's default chunks the first worker gets all of these.  Measured with
# ``--durations`` (CONTRIBUTING.md); a module missing here only starts later.
LONGEST_FIRST = (
    "test_opentaxii_peer",
    "test_sharing_properties",
    "test_console_browser",
    "test_sync",
    "test_serving",
    "test_hostile",
    "test_worker_topologies",
    "test_three_nodes",
    "test_cli",
    "test_multi_server",
    "test_worker_peers",
    "test_first_run",
    "test_recall",
    "test_tls",
    "test_sharing_paths",
    "test_release",
    "test_console",
    "test_release_console",
    "test_taxii_clients",
    "test_concurrency",
    "test_quarantine",
    "test_store_versions",
    "test_operations",
    "test_dead_letters",
    "test_validation",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules of ``LONGEST_FIRST`` first, in that order; within a module, and for
    the other modules, the collected order (so module-scoped fixtures stay set up
    for a module's run of tests).  Every worker sorts the same collection the same
    way, as pytest-xdist requires."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    position = {id(item): index for index, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int]:
        return rank.get(Path(str(item.path)).stem, len(rank)), position[id(item)]

    items.sort(key=key)
