"""SQLite's write-ahead log is checkpointed after writes, outside the writers' queue
(``engine.WalCheckpoints``).

What is observed: the database file, which in WAL mode only a checkpoint
writes, and whether the queue's lock is free while a checkpoint runs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from node.store import Store, schema
from node.store.engine import WalCheckpoints, after_writes

VALUE = "x" * 20_000  # a few pages of the log per write


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A migrated SQLite store file, its connections closed (its log checkpointed)."""
    path = tmp_path / "node.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    return path


def write_setting(store: Store, number: int) -> None:
    with store.write() as connection:
        connection.execute(schema.settings.insert().values(key=f"k{number}", value=VALUE))


def writer_turn_is_free(database: Path) -> bool:
    """Whether another writer could take the queue's turn now (the queue's flock)."""
    descriptor = os.open(f"{database}-writer", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return True
    finally:
        os.close(descriptor)


def test_the_log_reaches_the_database_file_every_EVERY_writes(database: Path) -> None:
    store = Store(f"sqlite:///{database}")
    try:
        size = database.stat().st_size
        for number in range(WalCheckpoints.EVERY - 1):
            write_setting(store, number)
        assert database.stat().st_size == size  # every write is still in the log only
        write_setting(store, WalCheckpoints.EVERY)
        assert database.stat().st_size > size + (WalCheckpoints.EVERY - 1) * len(VALUE)
    finally:
        store.close()


def test_a_checkpoint_runs_once_the_writers_turn_is_over(database: Path, monkeypatch) -> None:
    free_at_checkpoint: list[bool] = []
    checkpoint = WalCheckpoints.checkpoint

    def watched(self: WalCheckpoints) -> None:
        free_at_checkpoint.append(writer_turn_is_free(database))
        checkpoint(self)

    monkeypatch.setattr(WalCheckpoints, "checkpoint", watched)
    store = Store(f"sqlite:///{database}")
    try:
        for number in range(2 * WalCheckpoints.EVERY):
            write_setting(store, number)
    finally:
        store.close()
    assert free_at_checkpoint == [True, True]


def test_connections_checkpoint_by_themselves_only_past_a_large_log(database: Path) -> None:
    """SQLite's own checkpoint, inside a commit, stays the bound for other writes."""
    store = Store(f"sqlite:///{database}")
    try:
        with store.read() as connection:
            pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    finally:
        store.close()
    assert pages == WalCheckpoints.AUTOMATIC_PAGES > 1_000  # SQLite's default


def test_postgresql_writes_leave_checkpoints_to_the_server() -> None:
    store = Store("postgresql://nobody@127.0.0.1:1/none")  # never connected
    try:
        after = after_writes(store.engine)
        after()  # nothing to do, and nothing connects
        assert not isinstance(getattr(after, "__self__", None), WalCheckpoints)
    finally:
        store.close()
