"""The queue SQLite writers wait in before BEGIN IMMEDIATE (``engine.WriterQueue``).

One writer at a time across the threads of a process and across processes,
a process forked while its parent holds a turn included (an ``flock`` is
shared through an inherited descriptor); the order is asserted through what
the holder wrote before releasing, never through timings.
"""

from __future__ import annotations

import multiprocessing
import threading
from contextlib import nullcontext
from pathlib import Path

import pytest

from node.store import Store
from node.store.engine import WriterQueue, writer_turns


def test_postgresql_writers_take_no_turn() -> None:
    store = Store("postgresql://nobody@127.0.0.1:1/none")  # never connected
    try:
        assert writer_turns(store.engine) is nullcontext
    finally:
        store.close()


def _hold_then_mark(database: str, held, release, marker: str) -> None:
    queue = WriterQueue(Path(database))
    with queue.turn():
        held.set()
        release.wait(30)
        Path(marker).write_text("released")


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_turn_waits_for_another_process_to_release_its_own(
    tmp_path: Path, start_method: str
) -> None:
    context = multiprocessing.get_context(start_method)
    database, marker = tmp_path / "node.db", tmp_path / "marker"
    queue = WriterQueue(database)
    with queue.turn():  # opened in this process before the fork
        pass
    held, release = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_then_mark, args=(str(database), held, release, str(marker))
    )
    holder.start()
    try:
        assert held.wait(30)
        seen: list[bool] = []
        waiter = threading.Thread(target=lambda: _take_turn(queue, marker, seen))
        waiter.start()
        release.set()
        waiter.join(30)
        assert seen == [True]  # the turn came only after the holder had finished
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0


def _take_turn(queue: WriterQueue, marker: Path, seen: list[bool]) -> None:
    with queue.turn():
        seen.append(marker.exists())


def test_a_forked_child_does_not_share_its_parents_turn(tmp_path: Path) -> None:
    """The parent holds a turn while it forks: the child must still wait for it."""
    context = multiprocessing.get_context("fork")
    database, marker = tmp_path / "node.db", tmp_path / "marker"
    queue = WriterQueue(database)
    entered = context.Event()
    with queue.turn():
        child = context.Process(target=_child_turn, args=(queue, entered, str(marker)))
        child.start()
        assert not entered.wait(0.5)  # cannot enter while the parent holds the turn
        marker.write_text("released")
    child.join(30)
    assert child.exitcode == 0


def _child_turn(queue: WriterQueue, entered, marker: str) -> None:
    with queue.turn():
        entered.set()
        if not Path(marker).exists():
            raise SystemExit(1)


def test_turns_nest_in_one_thread_and_exclude_other_threads(tmp_path: Path) -> None:
    queue = WriterQueue(tmp_path / "node.db")
    order: list[str] = []
    with queue.turn():
        with queue.turn():  # a writer inside a writer of the same thread
            other = threading.Thread(target=lambda: _append_in_turn(queue, order))
            other.start()
            order.append("inner")
        order.append("outer")
    other.join(30)
    assert order == ["inner", "outer", "other"]


def _append_in_turn(queue: WriterQueue, order: list[str]) -> None:
    with queue.turn():
        order.append("other")
