"""A pre-imported ``taxii-node`` for the test servers: each server a fork of it.

A test server is ``taxii-node --config FILE serve`` in a process of its own.
Started with ``python -m node``, each one spends about a second of CPU
importing the node (gunicorn, SQLAlchemy, Flask, the app) before it serves:
two hundred servers a run, on a two-core machine, were a third of the suite's
CPU.  This process imports those modules once (``python -m tests.zygote``, one
per test process: ``tests.nodes``) and forks a child for each server, which
then runs the same command line (``node.cli.main`` with the server's argv,
environment and working directory) as ``python -m node`` runs it: gunicorn's
arbiter and its workers, signals, exit code.  Nothing of the node runs here
before the fork (new passwords are hashed cheaply, as in the test process:
tests/passwords.py); prometheus_client's multiprocess mode is chosen again by
``serve`` (node.metrics.enable_multiprocess), as it is in a fresh process.

Protocol, JSON lines: a request on stdin ``{"argv", "env", "cwd", "log"}`` is
answered ``{"started": pid}``; when a child exits, ``{"exited": pid,
"returncode": code}`` (negative for a signal, as ``subprocess`` has it).  At
EOF on stdin (its test process has gone) it exits.
"""

from __future__ import annotations

import json
import os
import select
import sys


def main() -> None:
    # What the arbiter of ``serve`` imports anyway, and its worker after the fork.
    import node.app
    import node.cli
    import node.server  # noqa: F401
    from tests.passwords import hash_cheaply

    hash_cheaply()  # as in the test process that asks for these servers

    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _start(json.loads(line))
        _reap()


def _start(request: dict) -> None:
    pid = os.fork()
    if pid == 0:
        _become_server(request)  # never returns here: the command's exit ends the child
    _send({"started": pid})


def _become_server(request: dict) -> None:
    """In the child: the process ``subprocess.Popen(argv, stdout=log, stderr=STDOUT,
    start_new_session=True)`` would have started, then its command."""
    os.setsid()
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = request["argv"]
    from node.cli import main as taxii_node

    taxii_node()  # sys.exit(code): SystemExit ends this process as it ends ``python -m node``
    raise SystemExit(0)


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _send(message: dict) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


if __name__ == "__main__":
    main()
