"""The test harness's zygote (tests/zygote.py): a forked server reports its exit as
``subprocess`` would, and a zygote that dies fails the wait instead of hanging it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.nodes import _Zygote, new_node


def _fork(zygote: _Zygote, tmp_path: Path, *args: str):
    return zygote.fork(["taxii-node", *args], tmp_path / "out.log", dict(os.environ))


@pytest.fixture
def zygote():
    """A zygote of this test's own, so that killing it touches no other test's servers."""
    own = _Zygote()
    yield own
    own.process.kill()
    own.process.wait()


def test_a_forked_command_reports_its_exit_code_and_output(zygote, tmp_path: Path) -> None:
    assert _fork(zygote, tmp_path, "--version").wait(timeout=30) == 0
    assert "taxii-node" in (tmp_path / "out.log").read_text()
    assert _fork(zygote, tmp_path, "no-such-command").wait(timeout=30) == 2  # click's usage


def test_a_signalled_server_reports_the_signal(zygote, tmp_path: Path) -> None:
    node = new_node(tmp_path, "node-a", None)
    server = _fork(zygote, tmp_path, "--config", str(node.config_path), "serve")
    with pytest.raises(subprocess.TimeoutExpired):
        server.wait(timeout=0.5)  # serving
    server.kill()
    assert server.wait(timeout=30) == -signal.SIGKILL


def test_a_dead_zygote_fails_the_wait_and_kills_its_orphan(zygote, tmp_path: Path) -> None:
    node = new_node(tmp_path, "node-a", None)
    server = _fork(zygote, tmp_path, "--config", str(node.config_path), "serve")
    zygote.process.kill()
    with pytest.raises(AssertionError, match="zygote died"):
        server.wait()  # no timeout: without the zygote's end noticed, this would hang
    with pytest.raises(ProcessLookupError):
        for _ in range(300):  # the orphan, SIGKILLed, is reaped by init
            os.kill(server.pid, 0)
            time.sleep(0.01)
    with pytest.raises(AssertionError, match="died before it forked"):
        _fork(zygote, tmp_path, "--version")
