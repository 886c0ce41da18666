"""Who published each local version (four-eyes release), kept in the version's row.

Migration 11 moved the publishers of migration 7's table into ``objects``;
these tests hold the store to what the table gave (a local version's account,
nothing for a peer's version), through the migration of an older store and a
version deleted and posted again, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from node.store import Store, objects, publishers
from node.store.catalog import Collection
from node.store.objects import ObjectQuery
from node.timestamps import to_micros
from tests.conftest import migrated_store

COLLECTION = "c0ffee00-0000-4000-8000-0000000000aa"
T1, T2 = "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = migrated_store(store_url, tmp_path, Collection(id=COLLECTION, title="publishers"))
    yield opened
    opened.close()


def indicator(modified: str = T1) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": T1,
        "modified": modified,
        "pattern": "[ipv4-addr:value = '192.0.2.1']",
        "pattern_type": "stix",
        "valid_from": T1,
    }


def store_objects(
    store: Store, items: list[dict], origin: str | None = None, publisher: str | None = None
) -> objects.AddOutcome:
    with store.write() as connection:
        outcome = objects.add_objects(connection, COLLECTION, items, origin, publisher)
    assert not outcome.failures, outcome.failures
    return outcome


def publishers_of(store: Store, items: list[dict]) -> dict[str, str]:
    keys = [(item["id"], to_micros(item["modified"])) for item in items]
    with store.read() as connection:
        found = publishers.publishers_of(connection, COLLECTION, keys)
    return {object_id: account for (object_id, _), account in found.items()}


def test_a_local_version_has_its_publisher_and_a_peers_has_none(store: Store) -> None:
    local, received = indicator(), indicator()
    store_objects(store, [local], publisher="alice")
    store_objects(store, [received], origin="node-b")
    assert publishers_of(store, [local, received]) == {local["id"]: "alice"}


def test_each_version_keeps_its_own_publisher(store: Store) -> None:
    first = indicator(T1)
    second = {**first, "modified": T2}
    store_objects(store, [first], publisher="alice")
    store_objects(store, [second], publisher="bob")
    keys = [(first["id"], to_micros(T1)), (first["id"], to_micros(T2))]
    with store.read() as connection:
        found = publishers.publishers_of(connection, COLLECTION, keys)
    assert found == {keys[0]: "alice", keys[1]: "bob"}


def test_a_version_deleted_and_posted_again_is_stored_with_its_new_publisher(
    store: Store,
) -> None:
    """The table of migration 7 kept the old publisher row, so the second POST failed."""
    item = indicator()
    store_objects(store, [item], publisher="alice")
    with store.write() as connection:
        query = ObjectQuery(COLLECTION, limit=10, ids=(item["id"],), versions=("all",))
        assert objects.delete(connection, query) == 1
    outcome = store_objects(store, [item], publisher="bob")
    assert [success["message"] for success in outcome.successes] == ["added"]
    assert publishers_of(store, [item]) == {item["id"]: "bob"}


def _downgrade_to_version_10(store: Store) -> None:
    """Make ``store`` what schema version 10 was: publishers in their own table."""
    with store.write() as connection:
        publishers.legacy_publishers.create(connection)
        connection.execute(text("ALTER TABLE objects DROP COLUMN publisher"))
        connection.execute(text("DELETE FROM schema_version WHERE version = 11"))


def _insert_version_10_rows(store: Store, item: dict, origin: str | None, account: str) -> None:
    with store.write() as connection:
        connection.execute(
            text(
                "INSERT INTO objects (collection_id, object_id, type, spec_version, version, "
                "version_text, date_added, body, origin, is_latest, is_first) VALUES "
                "(:c, :o, 'indicator', '2.1', :v, :vt, :d, '{}', :origin, :t, :t)"
            ),
            {"c": COLLECTION, "o": item["id"], "v": to_micros(item["modified"]),
             "vt": item["modified"], "d": len(item["id"]) + to_micros(item["modified"]),
             "origin": origin, "t": True},
        )  # fmt: skip
        connection.execute(
            publishers.legacy_publishers.insert().values(
                collection_id=COLLECTION,
                object_id=item["id"],
                version=to_micros(item["modified"]),
                account=account,
            )
        )


def test_migration_11_moves_the_publishers_into_the_objects_rows(store: Store) -> None:
    _downgrade_to_version_10(store)
    local, received = indicator(T1), indicator(T2)
    _insert_version_10_rows(store, local, None, "alice")
    # A peer's version never had a publisher row; one would not become its publisher.
    _insert_version_10_rows(store, received, "node-b", "mallory")
    assert not store.is_current()
    applied = store.migrate()
    assert [step.split(":")[0] for step in applied] == ["11"]
    assert store.is_current()
    assert not inspect(store.engine).has_table("publishers")
    assert publishers_of(store, [local, received]) == {local["id"]: "alice"}
    assert store.migrate() == []  # idempotent
