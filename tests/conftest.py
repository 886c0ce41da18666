"""Fixtures: real nodes on SQLite and, when reachable, PostgreSQL.

The PostgreSQL variants are skipped only when no server is reachable at
``TAXII_NODE_TEST_PG``; with ``TAXII_NODE_REQUIRE_PG=1`` (set by .ci/run) an
unreachable server is an error instead of a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.nodes import (
    PG_ENV,
    REQUIRE_PG_ENV,
    create_pg_database,
    drop_pg_database,
    pg_available,
)


def _pg_base_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if pg_available(url):
        return url
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_PG_ENV}=1) but {PG_ENV}={url!r} is "
                    "not reachable")  # fmt: skip
    pytest.skip(f"no PostgreSQL reachable at {PG_ENV}={url!r}")
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> Iterator[str | None]:
    """None for a SQLite file chosen by the harness, else a fresh PostgreSQL database URL."""
    yield from _store_url(request.param)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_store_url(request) -> Iterator[str | None]:
    yield from _store_url(request.param)


def _store_url(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    base = _pg_base_url()
    assert base is not None
    url = create_pg_database(base)
    try:
        yield url
    finally:
        drop_pg_database(base, url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.report_call`` ...), so that
    fixtures can act on failures: the browser tests keep a screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
