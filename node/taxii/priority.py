"""Publishers first: within one server process, reads wait to start while a publication runs.

A worker process runs its requests in threads that share one interpreter
lock, so a POST of an envelope (validation, JSON, the store's transaction:
tens of milliseconds of Python) shares the process with every page being
served beside it.  Pollers re-reading a collection in tight loops would then
take most of the process from the publisher whose objects they are waiting
for.  A POST of objects announces itself here once its caller is authorised
to write and its body has arrived; a read (GET or HEAD of a TAXII endpoint)
arriving meanwhile waits until no publication runs, or ``READ_WAIT_LIMIT``
at most, so that reads are delayed, never refused or starved.  Reads already
under way finish as they would, and other worker processes are not affected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# Longer than a large envelope takes to store, short enough to bound the delay
# of a read when publishers follow each other without a pause.
READ_WAIT_LIMIT: Final = 0.25


class PublishersFirst:
    """The count of publications running in this process, and the wait of reads on it."""

    def __init__(self, max_wait: float = READ_WAIT_LIMIT) -> None:
        self.max_wait = max_wait
        self._running = 0
        self._idle = threading.Condition(threading.Lock())

    @property
    def running(self) -> int:
        """Publications running in this process now."""
        return self._running

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Around the work of one authorised POST of objects."""
        with self._idle:
            self._running += 1
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                if self._running == 0:
                    self._idle.notify_all()

    def wait_to_read(self) -> None:
        """Return when no publication runs in this process, or after ``max_wait``."""
        if self._running == 0:  # read without the lock: the common case costs nothing
            return
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout=self.max_wait)
