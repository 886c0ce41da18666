"""Run stock medallion 3.0.0 on a loopback port.

    python tests/medallion_launcher.py CONFIG_PATH PORT [--server werkzeug|gunicorn]

medallion's own launcher (``medallion`` / ``medallion.scripts.run``) loads a
JSON config into its module-level Flask app (``set_config`` for users, taxii
and backend, then ``register_blueprints``) and calls ``app.run()``: werkzeug's
threaded development server.  That works unchanged with Flask 3.1 and
Werkzeug 3.1, and ``--server werkzeug`` (the default) does exactly the same,
but binds 127.0.0.1 only and exits cleanly on SIGTERM.

The werkzeug server answers every request with ``Connection: close`` (no
keep-alive), so ``--server gunicorn`` serves the same app with gunicorn's
gthread worker instead, as the node is served: one worker process (the memory
backend lives in that process), ``--threads`` threads, keep-alive.  The app is
built in the worker, after the fork, so the backend's session-expiry thread
runs where the data is.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal


def load_medallion(config_path: str):
    """medallion's module-level app, configured as ``medallion.scripts.run`` does."""
    from medallion import application_instance, register_blueprints, set_config

    logging.getLogger("medallion").setLevel(logging.WARNING)
    with open(config_path, encoding="utf-8") as handle:
        configuration = json.load(handle)
    for part in ("users", "taxii", "backend"):
        set_config(application_instance, part, configuration)
    register_blueprints(application_instance)
    return application_instance


def serve_werkzeug(config_path: str, port: int) -> None:
    from werkzeug.serving import run_simple

    app = load_medallion(config_path)

    def _stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False)


def serve_gunicorn(config_path: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class MedallionServer(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"127.0.0.1:{port}",
                "workers": 1,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": 600,
                "graceful_timeout": 5,
                "accesslog": "-",
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "medallion-peer",
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            return load_medallion(config_path)

    MedallionServer().run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config_path")
    parser.add_argument("port", type=int)
    parser.add_argument("--server", choices=("werkzeug", "gunicorn"), default="werkzeug")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if args.server == "gunicorn":
        serve_gunicorn(args.config_path, args.port, args.threads)
    else:
        serve_werkzeug(args.config_path, args.port)


if __name__ == "__main__":
    main()
