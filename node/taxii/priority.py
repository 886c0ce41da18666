"""Publishers first: reads wait to start while a publication runs in the server.

A worker process runs its requests in threads that share one interpreter
lock, so a POST of an envelope (validation, JSON, the store's transaction:
tens of milliseconds of Python) shares the process with every page being
served beside it, and the server's other worker processes share the
machine's cores with it.  Pollers re-reading a collection in tight loops
would then take most of the CPU from the publisher whose objects they are
waiting for.  A POST of objects announces itself here once its caller is
authorised to write and its body has arrived; a read (GET or HEAD of a TAXII
endpoint) arriving meanwhile, in this worker process or another of the same
``serve``, waits until no publication runs, or ``READ_WAIT_LIMIT`` at most,
so that reads are delayed, never refused or starved.  Reads already under
way finish as they would.

Publications of the other worker processes are seen through a POSIX record
lock on a file of the server's own directory (``OtherProcesses``): each
process holds a shared lock on it while it publishes, and a reader asks the
kernel whether another process holds one, without taking any lock itself.
The kernel drops the locks of a process that dies, so a worker killed
halfway through a POST leaves nothing that delays reads.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

# Longer than a large envelope takes to store, short enough to bound the delay
# of a read when publishers follow each other without a pause.
READ_WAIT_LIMIT: Final = 0.25
# How often a read waiting on another process's publication looks again (no
# wake-up crosses processes); a publication lasts tens of milliseconds.
OTHER_PROCESS_POLL: Final = 0.002
# The file of the server's directory whose locks announce publications.
PUBLICATIONS_FILE: Final = "publications.lock"

# struct flock of Linux (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid.
# Other systems order its fields differently: there the gate stays per process.
_FLOCK = "hhqqi4x"
# "Would a write lock of the whole file conflict?": the question F_GETLK asks.
_WRITE_LOCK_PROBE = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
ACROSS_PROCESSES: Final = sys.platform == "linux"


class OtherProcesses:
    """Whether another process of the server publishes now (POSIX record locks).

    A record lock never conflicts with its own process's locks, so ``publishing``
    sees only the other processes; this process's own publications are counted
    by ``PublishersFirst``.  The file is opened once per process, after
    gunicorn's fork (locks are per process, and closing any descriptor of the
    file would drop them).  Should the file or a lock call fail, the gate
    falls back to this process alone: publishers first is a priority, never a
    condition of serving.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = -1
        self._descriptor = -1

    def _opened(self) -> int:
        if self._pid != os.getpid():  # OSError when it cannot be opened: tried again next time
            self._descriptor = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._descriptor

    def announce(self) -> None:
        """This process publishes (its first running publication began)."""
        # Nobody takes the exclusive lock that alone could refuse this one.
        with suppress(OSError):
            fcntl.lockf(self._opened(), fcntl.LOCK_SH | fcntl.LOCK_NB)

    def withdraw(self) -> None:
        """This process no longer publishes."""
        with suppress(OSError):
            fcntl.lockf(self._opened(), fcntl.LOCK_UN)

    def publishing(self) -> bool:
        """Whether a process other than this one holds its announcement now."""
        try:
            answer = fcntl.fcntl(self._opened(), fcntl.F_GETLK, _WRITE_LOCK_PROBE)
        except OSError:
            return False
        return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)


class PublishersFirst:
    """The publications running in this process (and, with ``others``, in the
    server's other processes), and the wait of reads on them."""

    def __init__(
        self, max_wait: float = READ_WAIT_LIMIT, others: OtherProcesses | None = None
    ) -> None:
        self.max_wait = max_wait
        self.others = others
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
            if self._running == 1 and self.others is not None:
                self.others.announce()
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                if self._running == 0:
                    if self.others is not None:
                        self.others.withdraw()
                    self._idle.notify_all()

    def _clear(self) -> bool:
        return self._running == 0 and (self.others is None or not self.others.publishing())

    def wait_to_read(self) -> None:
        """Return when no publication runs, or after ``max_wait``."""
        if self._clear():  # this process's count is read without the lock: free when idle
            return
        deadline = time.monotonic() + self.max_wait
        # This process's publications wake the wait; another's are looked at again.
        step = self.max_wait if self.others is None else OTHER_PROCESS_POLL
        with self._idle:
            while not self._clear():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._idle.wait(timeout=min(step, remaining))
