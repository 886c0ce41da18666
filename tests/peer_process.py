"""A third-party TAXII server run as a real process for the tests: what
medallion's and OpenTAXII's harnesses (tests/medallion_peer.py,
tests/opentaxii_peer.py) share.

A peer runs in its own session (process group), so that stopping it also
stops what it started; its output goes to a log file that errors quote.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.nodes import stop_process_group

MEDIA_TYPE = "application/taxii+json;version=2.1"


@dataclass(kw_only=True)
class PeerProcess:
    """A TAXII server process on a loopback port, with one HTTP Basic account."""

    directory: Path
    port: int
    user: str
    password: str
    collections: dict[str, str] = field(default_factory=dict)  # alias -> id
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    name = "the peer"  # for error messages
    log_name = "peer.log"

    def __post_init__(self) -> None:
        self.log_path = self.directory / self.log_name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_root(self) -> str:
        raise NotImplementedError

    def collection_url(self, alias: str) -> str:
        return f"{self.api_root}collections/{self.collections[alias]}/"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self, command: list[str], timeout: float, ready: Callable[[], bool]) -> None:
        """Start ``command`` and wait until ``ready()``; stop it and raise if it
        exits or is not ready within ``timeout`` seconds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Its own interpreter and packages: nothing from the node's path.
                env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
            )
        try:
            self._wait_until(ready, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def answers_discovery(self) -> bool:
        try:
            response = requests.get(
                f"{self.base_url}/taxii2/",
                auth=(self.user, self.password),
                headers={"Accept": MEDIA_TYPE},
                timeout=2,
            )
        except requests.RequestException:
            return False
        return response.status_code == 200

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s."""
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, grace=10)

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
