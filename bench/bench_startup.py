"""Start-up time of CLI commands: what a person waits for before anything happens.

Each command runs as ``python -m node ...`` in a fresh process, several times;
the median wall time is printed.  The client commands and ``--help`` import
neither SQLAlchemy, Flask nor the policy engine (target: under 0.3 s on the
2-core bench machine); the operator commands load the store.  Figures only:
timings are never asserted in tests.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
COMMANDS = {
    "taxii-node --help": ["--help"],
    "publish --help": ["publish", "--help"],
    "publish --dry-run (example bundle)": ["publish", "-c", "x", "--dry-run",
                                           str(ROOT / "examples" / "bundle.json")],
    "get --help": ["get", "--help"],
    "collections (no credentials: error)": ["collections", "--url", "http://127.0.0.1:9/"],
    "watch --help": ["watch", "--help"],
    "user --help (operator)": ["user", "--help"],
    "check (operator, example config)": ["--config", str(ROOT / "config" / "node-a.toml"),
                                         "check"],
}  # fmt: skip


def main() -> None:
    baseline = median_seconds([sys.executable, "-c", "pass"])
    print(f"start-up, median of {RUNS} runs (python itself: {baseline:.3f} s)")
    for label, args in COMMANDS.items():
        seconds = median_seconds([sys.executable, "-m", "node", *args])
        print(f"  {label:<40} {seconds:.3f} s")


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
