"""Migrations 13 to 16 on a store made before them (both stores): the table of
versions a partner posted that were answered as stored, the pull position kept
between runs, the count of operators' cursor moves and the console sessions
ended; sync state already recorded is kept."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from node.store import Store, syncstate
from node.store.audit import Direction
from tests.conftest import migrated_store


def _downgrade_to_version_12(store: Store) -> None:
    with store.write() as connection:
        connection.execute(text("DROP TABLE concealed_versions"))
        connection.execute(text("ALTER TABLE sync_state DROP COLUMN pull_resume"))
        connection.execute(text("ALTER TABLE sync_state DROP COLUMN cursor_moves"))
        connection.execute(text("DROP TABLE console_sessions_ended"))
        connection.execute(text("DELETE FROM schema_version WHERE version IN (13, 14, 15, 16)"))


def test_migrations_13_to_16_add_their_tables_and_columns(
    store_url: str | None, tmp_path: Path
) -> None:
    store = migrated_store(store_url, tmp_path)
    try:
        _downgrade_to_version_12(store)
        with store.write() as connection:
            connection.execute(text(
                "INSERT INTO sync_state (peer, mapping, direction, cursor, remote_cursor, sent, "
                "received, withheld, dead_lettered, already_present) VALUES ('node-b', 'a<->a', "
                "'pull', 0, '2026-01-01T00:00:00.000Z', 0, 7, 0, 0, 0)"
            ))  # fmt: skip
        assert not store.is_current()
        applied = store.migrate()
        assert [step.split(":")[0] for step in applied] == ["13", "14", "15", "16"]
        tables = inspect(store.engine).get_table_names()
        assert {"concealed_versions", "console_sessions_ended"} <= set(tables)
        with store.read() as connection:
            state = syncstate.load(connection, "node-b", "a<->a", Direction.PULL)
        assert (state.remote_cursor, state.received, state.pull_resume, state.cursor_moves) == (
            "2026-01-01T00:00:00.000Z", 7, None, 0,
        )  # fmt: skip
        state.pull_resume = '{"cursor": null}'
        with store.write() as connection:
            syncstate.save(connection, state)
        assert store.migrate() == []  # idempotent
    finally:
        store.close()
