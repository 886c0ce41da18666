"""Run OpenTAXII 0.10.0b1 (EclecticIQ's TAXII server) as a TAXII 2.1 peer on a loopback port.

    OPENTAXII_VENV/bin/python tests/opentaxii_launcher.py DIRECTORY PORT \\
        --user U --password P --collection ALIAS...

Runs in OpenTAXII's own virtualenv (``tests/opentaxii_peer.py`` makes it):
OpenTAXII pins SQLAlchemy 1.4, the node needs 2.x, so this file imports
nothing from the node or the tests.

OpenTAXII reads its configuration from ``defaults.yml`` with a YAML file
named by ``OPENTAXII_CONFIG`` merged on top.  The defaults point its
databases at ``/tmp/auth.db`` and ``/tmp/data.db`` and enable TAXII 1; the
file written here puts both SQLite databases in DIRECTORY, switches TAXII 1
off (``taxii1: null``, "taxii2-only mode"), sets ``domain`` to the loopback
address and port (OpenTAXII writes it into discovery), and a random JWT
secret.  On the first start it creates one API root (the default), one
collection per ``--collection`` alias and an admin account (OpenTAXII's
per-collection permissions are a TAXII 1 notion); it writes their ids to
DIRECTORY/opentaxii-state.json, which later starts reuse, so a restart
keeps the data.  The app is OpenTAXII's own (``opentaxii.middleware.create_app``)
on werkzeug's threaded server, as ``opentaxii-run-dev`` serves it, without
debug mode; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
from pathlib import Path

STATE_FILE = "opentaxii-state.json"
CONFIG_FILE = "opentaxii.yml"


def write_config(directory: Path, port: int) -> Path:
    """OpenTAXII's YAML config (JSON is YAML): SQLite files in ``directory``."""
    path = directory / CONFIG_FILE
    if path.exists():
        return path
    config = {
        "domain": f"127.0.0.1:{port}",
        "support_basic_auth": True,
        "return_server_error_details": True,
        "auth_api": {
            "class": "opentaxii.auth.sqldb.SQLDatabaseAPI",
            "parameters": {
                "db_connection": f"sqlite:///{directory / 'auth.db'}",
                "create_tables": True,
                "secret": secrets.token_hex(32),
                "token_ttl_secs": 3600,
            },
        },
        "taxii1": None,
        "taxii2": {
            "persistence_api": {
                "class": "opentaxii.persistence.sqldb.Taxii2SQLDatabaseAPI",
                "parameters": {
                    "db_connection": f"sqlite:///{directory / 'data.db'}",
                    "create_tables": True,
                },
            },
            "title": "OpenTAXII peer",
            "public_discovery": False,
            "max_content_length": 10 * 1024 * 1024,
        },
        "logging": {"opentaxii": "warning", "root": "warning"},
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def build_app(config_path: Path):
    os.environ["OPENTAXII_CONFIG"] = str(config_path)
    from opentaxii.config import ServerConfig
    from opentaxii.middleware import create_app
    from opentaxii.server import TAXIIServer
    from opentaxii.utils import configure_logging

    config = ServerConfig()
    configure_logging(config["logging"], plain=True)
    return create_app(TAXIIServer(config))


def set_up(app, directory: Path, user: str, password: str, aliases: list[str]) -> dict:
    """The API root, collections and account, made once; their ids."""
    state_path = directory / STATE_FILE
    if state_path.exists():
        return json.loads(state_path.read_text())
    with app.app_context():
        api = app.taxii_server.servers.taxii2.persistence.api
        api_root = api.add_api_root(
            title="Trust group", description="OpenTAXII test API root", default=True
        )
        collections = {}
        for alias in aliases:
            collection = api.add_collection(
                api_root_id=str(api_root.id), title=f"Collection {alias}", alias=alias
            )
            collections[alias] = str(collection.id)
        app.taxii_server.auth.api.create_account(username=user, password=password, is_admin=True)
    state = {"api_root_id": str(api_root.id), "collections": collections}
    state_path.write_text(json.dumps(state, indent=2))
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--collection", action="append", default=[])
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    app = build_app(write_config(args.directory, args.port))
    set_up(app, args.directory, args.user, args.password, args.collection)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def _stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
