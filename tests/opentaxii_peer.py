"""OpenTAXII 0.10.0b1 (PyPI ``opentaxii``), a third-party TAXII 2.1 server, as a test peer.

OpenTAXII pins SQLAlchemy 1.4 and the node needs 2.x, so it lives in a
virtualenv of its own, ``.venv-opentaxii`` at the top of the repository
(``make opentaxii`` makes it; ``make test`` depends on that target, and
``ensure_opentaxii()`` makes it too when the tests run without make).
``start_opentaxii(directory, ["alpha"])`` starts ``tests/opentaxii_launcher.py``
in that virtualenv on a free loopback port, with SQLite persistence in
``directory``, one API root and the collections named, and waits until it
answers::

    peer = start_opentaxii(tmp_path, ["alpha"])
    try:
        requests.get(peer.collection_url("alpha"), auth=(peer.user, peer.password),
                     headers={"Accept": MEDIA_TYPE})
    finally:
        peer.stop()

Known defects of OpenTAXII 0.10.0b1 that a client meets
--------------------------------------------------------
* A valid STIX timestamp without fractional seconds (``2026-11-30T10:00:01Z``)
  in a posted object is answered with HTTP 500 (HTML body), for the whole
  envelope.
* Discovery advertises API roots as paths (``/taxii2/<id>/``), without scheme
  and host, whatever ``domain`` is set to.
* Its development server (werkzeug, as ``opentaxii-run-dev``) closes the
  connection after every response.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nodes import REQUIRE_PG_ENV, free_port
from tests.peer_process import PeerProcess

VERSION = "0.10.0b1"
USER = "opentaxii-user"
PASSWORD = "opentaxii-password-1"
REPOSITORY = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("TAXII_NODE_OPENTAXII_VENV", REPOSITORY / ".venv-opentaxii"))
LAUNCHER = Path(__file__).with_name("opentaxii_launcher.py")
_STAMP = f".opentaxii-{VERSION}"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def required() -> bool:
    """Under CI a missing OpenTAXII fails the tests instead of skipping them."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(REQUIRE_PG_ENV) == "1"


def ensure_opentaxii() -> Path:
    """OpenTAXII's virtualenv, made when missing (once, under a lock, for parallel workers).

    Skips the calling test, with the reason printed, when it cannot be made
    (no network to PyPI); fails instead under CI (``required``).
    """
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".venv-opentaxii.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / _STAMP).exists():
            problem = _install()
            if problem is not None:
                message = f"OpenTAXII {VERSION} is not installed in {VENV}: {problem}"
                if required():
                    pytest.fail(message + " (required under CI)")
                pytest.skip(message)
    return venv_python()


def _install() -> str | None:
    """Make the virtualenv and install OpenTAXII; the reason it failed, or None."""
    commands = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(venv_python()), "-m", "pip", "install", "--quiet", f"opentaxii=={VERSION}"],
    ]
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command[:4])}: {exc}"
        if result.returncode != 0:
            return f"{' '.join(command[:4])} failed: {result.stderr.strip()[-500:]}"
    (VENV / _STAMP).touch()
    return None


@dataclass(kw_only=True)
class OpenTaxiiPeer(PeerProcess):
    aliases: list[str]
    user: str = USER
    password: str = PASSWORD
    api_root_id: str = ""

    name = "OpenTAXII"
    log_name = "opentaxii.log"

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/taxii2/{self.api_root_id}/"

    def start(self, timeout: float = 60.0) -> OpenTaxiiPeer:
        python = ensure_opentaxii()
        arguments = [str(self.directory), str(self.port), "--user", self.user]
        arguments += ["--password", self.password]
        for alias in self.aliases:
            arguments += ["--collection", alias]
        self.spawn([str(python), str(LAUNCHER), *arguments], timeout, self._ready)
        return self

    def _ready(self) -> bool:
        """Answering, with the ids of its API root and collections written out."""
        state = self.directory / "opentaxii-state.json"
        if not (state.exists() and self.answers_discovery()):
            return False
        ids = json.loads(state.read_text())
        self.api_root_id, self.collections = ids["api_root_id"], ids["collections"]
        return True


def start_opentaxii(
    directory: Path, aliases: list[str] | None = None, *, timeout: float = 60.0
) -> OpenTaxiiPeer:
    """A running OpenTAXII with one API root and a collection per alias (default "alpha")."""
    peer = OpenTaxiiPeer(
        directory=Path(directory), port=free_port(), aliases=list(aliases or ["alpha"])
    )
    return peer.start(timeout=timeout)
