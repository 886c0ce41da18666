"""How audit records are chained and stored: the hash of a record is the SHA-256 of the
JSON list [previous hash, at, actor, peer, direction, collection, object, version,
action, rule, detail], so a chain written by any release verifies under any other (and
an export can be checked without the node); migration 12 drops an index no query
reads, and a chain written before it still verifies.  Records are appended in one
statement with the head's update (a POST's few) or by COPY (a sync batch's many, on
PostgreSQL): both give the same chain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import inspect, text

from node.store import Store, audit
from node.store.audit import GENESIS, Action, AuditRecord, Direction
from tests.conftest import migrated_store

RECEIVED = AuditRecord(
    action=Action.RECEIVED,
    direction=Direction.RECEIVE,
    object_id="indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    version="2026-12-02T10:00:00.000Z",
    peer="node-a",
    collection_id="alpha",
    rule="allowed",
    detail="passes the ingress policy: ünïcode kept",
)
LOGIN = AuditRecord(action=Action.LOGIN, direction=Direction.AUTH, actor="alice")


def _rows(store: Store) -> list[dict]:
    with store.read() as connection:
        return audit.entries(connection, limit=None)


def _expected_hash(previous: str, row: dict) -> str:
    fields = ["at", "actor", "peer", "direction", "collection_id", "object_id", "version",
              "action", "rule", "detail"]  # fmt: skip
    payload = json.dumps([previous, *(row[name] for name in fields)], ensure_ascii=False,
                         separators=(",", ":"))  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()


def test_each_record_hashes_the_previous_hash_and_its_fields(
    store_url: str | None, tmp_path: Path
) -> None:
    store = migrated_store(store_url, tmp_path)
    try:
        with store.write() as connection:
            audit.record(connection, [RECEIVED, LOGIN], at=1_764_669_600_000_000)
        with store.write() as connection:
            audit.record(connection, [RECEIVED])
        with store.write() as connection:  # a sync batch's size (PostgreSQL: by COPY)
            audit.record(connection, [LOGIN] * 12)
        rows = _rows(store)
        assert [row["action"] for row in rows] == ["received", "login", "received"] + ["login"] * 12
        previous = GENESIS
        for row in rows:
            assert row["prev_hash"] == previous
            assert row["hash"] == _expected_hash(previous, row)
            previous = row["hash"]
        assert rows[1]["actor"] == "alice" and rows[1]["object_id"] is None
        assert rows[0]["detail"] == RECEIVED.detail
        with store.read() as connection:
            assert audit.head(connection) == previous
            assert audit.verify(connection).ok
    finally:
        store.close()


def _downgrade_to_version_11(store: Store) -> None:
    """Make ``store`` what schema version 11 was: the audit indexed by actor."""
    with store.write() as connection:
        connection.execute(text("CREATE INDEX ix_audit_actor ON audit (actor, action, at)"))
        connection.execute(text("DELETE FROM schema_version WHERE version = 12"))


def _audit_indexes(store: Store) -> set[str]:
    return {index["name"] for index in inspect(store.engine).get_indexes("audit")}


def test_migration_12_drops_the_audit_actor_index_and_the_chain_still_verifies(
    store_url: str | None, tmp_path: Path
) -> None:
    store = migrated_store(store_url, tmp_path)
    try:
        assert "ix_audit_actor" not in _audit_indexes(store)
        _downgrade_to_version_11(store)
        with store.write() as connection:
            audit.record(connection, [LOGIN, RECEIVED])
        assert "ix_audit_actor" in _audit_indexes(store)
        assert not store.is_current()
        applied = store.migrate()
        assert [step.split(":")[0] for step in applied] == ["12"]
        assert store.is_current()
        assert "ix_audit_actor" not in _audit_indexes(store)
        assert {"ix_audit_at", "ix_audit_object"} <= _audit_indexes(store)
        with store.write() as connection:
            audit.record(connection, [RECEIVED])
        with store.read() as connection:
            verification = audit.verify(connection)
        assert verification.ok and verification.records == 3
        assert store.migrate() == []  # idempotent
    finally:
        store.close()
