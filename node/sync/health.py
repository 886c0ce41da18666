"""What the running worker tells its operator: one timestamped log line per event.

A round that moved something is logged at INFO, an idle one at DEBUG (a
worker with a 1 s interval would otherwise fill the log with nothing); a
failure at WARNING with the peer's error on one line, and the first success
after failures at INFO, saying it recovered.
"""

from __future__ import annotations

import logging
import time

from node.sync.rounds import RoundResult

log = logging.getLogger("node.sync")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{moment}.{int(record.msecs):03d}Z"


def configure_logging(verbose: bool = False) -> None:
    """Log lines on stderr with RFC 3339 UTC timestamps; DEBUG too when ``verbose``."""
    handler = logging.StreamHandler()
    handler.setFormatter(_UtcFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "requests"):  # their retries are ours to report, in one line
        logging.getLogger(noisy).setLevel(logging.WARNING)


def describe(result: RoundResult) -> str:
    """``node-b shared<->shared push: sent 3, ... (ok)`` or ``(FAILED: ...)``."""
    counts = (
        f"sent {result.sent}, received {result.received}, "
        f"already present {result.already_present}, withheld {result.withheld}, "
        f"dead-lettered {result.dead_lettered}"
    )
    outcome = "ok" if result.ok else f"FAILED: {result.error}"
    return f"{result.peer} {result.mapping} {result.direction}: {counts} ({outcome})"


def moved(result: RoundResult) -> bool:
    return bool(
        result.sent
        or result.received
        or result.already_present
        or result.withheld
        or result.dead_lettered
    )


def log_round(result: RoundResult, was_failing: bool) -> None:
    """Log one round of the running worker at the level its outcome deserves."""
    if not result.ok:
        log.warning(describe(result))
    elif was_failing:
        log.info("%s; recovered", describe(result))
    elif moved(result):
        log.info(describe(result))
    else:
        log.debug(describe(result))
