"""When each round of the running worker is due: one lane per mapping and direction.

Push and pull of a mapping are separate lanes with their own backoff, so a
peer that refuses our pushes (or one object that fails every push) does not
slow the pull of the same mapping, and the other way round.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with full jitter, for retries inside and between rounds."""

    base: float = 0.5
    cap: float = 60.0
    attempt: int = 0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**self.attempt))

    def wait(self, stop: threading.Event | None = None) -> None:
        seconds = self.delay()
        self.attempt += 1
        if stop is not None:
            stop.wait(seconds)
        else:
            self.sleep(seconds)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Lane:
    """One direction of one mapping: its interval, its backoff and when it is due."""

    name: str  # "peer mapping direction", for logs
    interval: float
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=300.0))
    due: float = 0.0
    failing: bool = False


class Schedule:
    """Due times of lanes: after a success a lane waits its interval; after a failure
    at least its interval, and more with each failure in a row (up to 5 minutes), and
    at least as long as the peer asked with a Retry-After (up to an hour)."""

    def __init__(self, lanes: Iterable[Lane], clock: Callable[[], float] = time.monotonic):
        self.lanes = list(lanes)
        self._clock = clock

    def due(self) -> list[Lane]:
        now = self._clock()
        return [lane for lane in self.lanes if lane.due <= now]

    def finished(self, lane: Lane, ok: bool, retry_after: float | None = None) -> None:
        """Set when ``lane`` is due next; after a failure no sooner than the peer's
        ``retry_after`` (its Retry-After, already bounded by the client) either."""
        if ok:
            lane.backoff.reset()
            pause = lane.interval
        else:
            pause = max(lane.interval, lane.backoff.delay(), retry_after or 0.0)
            lane.backoff.attempt += 1
        lane.failing = not ok
        lane.due = self._clock() + pause

    def seconds_to_next(self, idle: float = 1.0) -> float:
        """How long nothing is due (``idle`` when there are no lanes)."""
        if not self.lanes:
            return idle
        return max(0.0, min(lane.due for lane in self.lanes) - self._clock())
