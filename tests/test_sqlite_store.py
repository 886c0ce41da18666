"""The SQLite store shared by several engines and processes, as the node's commands share it.

A node's file is opened by the server, by each CLI command and, in one
process, by more than one ``Store`` (an in-process node and the commands a
test runs in process, for one).  SQLite's WAL mode keeps them consistent through POSIX advisory
locks, which a process loses on a file as soon as it closes *any* descriptor
of that file (https://www.sqlite.org/howtocorrupt.html, section 2.2): opening
a second store must not do that, or the next process to close its last
connection believes it is alone, checkpoints and deletes the WAL, and this
process goes on committing into a deleted file.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from node.store import Store


def _commit_from_another_process(database: Path) -> None:
    """What a CLI command does to the file: open it, commit, close its last connection."""
    script = (
        "import sqlite3, sys\n"
        "connection = sqlite3.connect(sys.argv[1])\n"
        "connection.execute(\"UPDATE settings SET value = 'other' WHERE key = 'probe'\")\n"
        "connection.commit()\n"
        "connection.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(database)], check=True, timeout=60)


def test_a_second_store_in_one_process_keeps_the_first_on_the_shared_wal(tmp_path: Path) -> None:
    database = tmp_path / "node.db"
    first = Store(f"sqlite:///{database}")
    try:
        first.migrate()
        assert first.setting("probe", default="first") == "first"  # a pooled connection stays open
        Store(f"sqlite:///{database}").close()
        _commit_from_another_process(database)
        assert first.setting("probe") == "other"
        first.setting("written-after", default="by the first store")

        with sqlite3.connect(database) as fresh:
            rows = dict(fresh.execute("SELECT key, value FROM settings").fetchall())
        assert rows["probe"] == "other"
        assert rows["written-after"] == "by the first store"
    finally:
        first.close()
