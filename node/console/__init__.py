"""The web console: pages for analysts, release officers and operators, under ``/ui/``.

Server-rendered with Jinja2 (autoescaping on, no JavaScript), so every string
from a STIX object is shown as text; a Content-Security-Policy without
``unsafe-inline`` backs that up.  The console reads and writes through the
store's modules and ``node.operations``, like the CLI.
"""

from __future__ import annotations

from flask import Flask, redirect, url_for

from node.config import Config
from node.store import Store

from . import audit, objects, publish, releases, sharing, signin  # noqa: F401  (routes)
from .blueprint import blueprint
from .session import configure_sessions


def register_console(app: Flask, config: Config, store: Store) -> None:
    """Mount the console at ``/ui/``; ``/`` redirects there."""
    configure_sessions(app, store, tls=config.server.tls)
    app.register_blueprint(blueprint)
    app.add_url_rule("/", "root", lambda: redirect(url_for("console.home")))
