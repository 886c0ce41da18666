"""Serving the app with gunicorn, a production WSGI server (never Flask's dev server).

Each gunicorn worker builds its own app with ``create_app`` after the fork,
so no database connection is shared between processes.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from node.config import Config


class NodeServer(BaseApplication):
    def __init__(self, config: Config) -> None:
        self._config = config
        super().__init__()

    def load_config(self) -> None:
        server = self._config.server
        settings = {
            "bind": f"{server.host}:{server.port}",
            "workers": server.workers,
            "threads": server.threads,
            "worker_class": "gthread",
            "timeout": server.timeout,
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": f"taxii-node[{self._config.name}]",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from node.app import create_app

        return create_app(self._config)


def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
    NodeServer(config).run()
