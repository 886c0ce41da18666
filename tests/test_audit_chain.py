"""The audit chain's first records: two writers starting it at once both succeed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node.store import Store, audit
from node.store.audit import Action, AuditRecord, Direction


def _record(action: str) -> AuditRecord:
    return AuditRecord(action=action, direction=Direction.LOCAL, detail="first writers")


def test_two_first_writers_both_append_to_a_chain_with_no_head(
    store_url: str | None, tmp_path: Path
) -> None:
    store = Store(store_url or f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.migrate()
        errors: list[BaseException] = []
        with store.write() as connection:
            audit.record(connection, [_record(Action.PUBLISHED)])

            def second_writer() -> None:
                try:
                    with store.write() as other:
                        audit.record(other, [_record(Action.DELETED)])
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)

            thread = threading.Thread(target=second_writer)
            thread.start()
            # Let the second writer look for the head while the first has not
            # committed it yet (on SQLite it waits for the write lock instead).
            time.sleep(0.5)
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert errors == []
        with store.read() as connection:
            verification = audit.verify(connection)
        assert verification.ok, verification.reason
        assert verification.records == 2
    finally:
        store.close()
