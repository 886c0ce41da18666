"""In-process nodes for the sharing tests: a store, an app and its Flask test client.

A node here has one peer, ``node-b``, whose sync account ``node-b`` reads and
writes collection ``alpha`` under the mapping's egress and ingress tables; an
``admin`` account and an analyst ``alice``.  Setting up takes a fraction of a
second (no subprocess), so property tests can build many stores.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select, text

from node.app import create_app
from node.collection_files import load_collection_files
from node.config import load_config
from node.sharing import Agreements
from node.store import Store, accounts, catalog, objects, releases
from node.store.schema import (
    MARKER_EXPRESSIONS,
    audit_table,
    dead_letters,
    objects_table,
    peer_dependencies,
    settings,
    statuses_table,
    sync_state,
)
from tests.nodes import COLLECTIONS, free_port, write_collections

TAXII = "application/taxii+json;version=2.1"
PASSWORDS = {"admin": "admin-password-1", "node-b": "peer-password-1", "alice": "alice-password"}
ALPHA = COLLECTIONS["alpha"]
PEER = "node-b"


def toml_table(values: dict) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


@dataclass
class SharingNode:
    directory: Path
    store_url: str | None
    egress: dict = field(default_factory=dict)
    ingress: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        url = self.store_url or f"sqlite:///{self.directory / 'node.db'}"
        collections_dir = write_collections(self.directory / "collections")
        self.config_path = self.directory / "node-a.toml"
        self.config_path.write_text(
            f'[node]\nname = "node-a"\n\n[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
            f'insecure_http = true\n\n[store]\nurl = "{url}"\n\n'
            f'[taxii]\napi_root = "api"\ncollections_dir = "{collections_dir}"\n\n'
            f'[[peers]]\nname = "{PEER}"\napi_root = "http://127.0.0.1:9/api/"\n'
            f'user = "node-a"\npassword_env = "UNUSED"\naccount = "{PEER}"\n\n'
            f'[[peers.mappings]]\nlocal = "alpha"\nremote = "alpha"\n\n'
            f"[peers.mappings.egress]\n{toml_table(self.egress)}\n"
            f"[peers.mappings.ingress]\n{toml_table(self.ingress)}\n"
        )
        self.config = load_config(self.config_path)
        self.store = Store(self.config.store_url)
        self.store.migrate()
        with self.store.write() as connection:
            for collection in load_collection_files(collections_dir):
                catalog.upsert(connection, collection)
            accounts.add_user(connection, "admin", PASSWORDS["admin"], is_admin=True)
            accounts.add_user(connection, PEER, PASSWORDS[PEER], peer=PEER)
            accounts.add_user(connection, "alice", PASSWORDS["alice"])
            for name in (PEER, "alice"):
                for alias in ("alpha", "beta"):
                    accounts.grant(connection, name, COLLECTIONS[alias], read=True, write=True)
        self._start()

    def _start(self) -> None:
        self.app = create_app(self.config, self.store)
        self.client = self.app.test_client()
        self.agreement = next(iter(Agreements(self.config, self.store)))

    def use_key_of(self, other: SharingNode) -> None:
        """Sign ``next`` tokens with ``other``'s key (so two nodes' tokens compare)."""
        key = other.store.setting("pagination_key")
        with self.store.write() as connection:
            connection.execute(
                settings.update().where(settings.c.key == "pagination_key").values(value=key)
            )
        self._start()

    # ----------------------------------------------------------------- HTTP

    def headers(self, account: str, **extra) -> dict:
        token = base64.b64encode(f"{account}:{PASSWORDS[account]}".encode()).decode()
        return {"Authorization": f"Basic {token}", "Accept": TAXII, **extra}

    def url(self, tail: str = "", collection: str = ALPHA) -> str:
        return f"/api/collections/{collection}/{tail}"

    def get(self, tail: str, account: str = PEER, params: dict | None = None):
        return self.client.get(self.url(tail), headers=self.headers(account), query_string=params)

    def post(self, objs: list[dict], account: str = "admin") -> dict:
        response = self.client.post(
            self.url("objects/"),
            data=json.dumps({"objects": objs}),
            headers=self.headers(account, **{"Content-Type": TAXII}),
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.json

    # ----------------------------------------------------------------- store

    def add(self, objs: list[dict], origin: str | None = None) -> None:
        """Store ``objs`` as published here (or as received from ``origin``)."""
        with self.store.write() as connection:
            outcome = objects.add_objects(connection, ALPHA, objs, origin=origin)
        assert not outcome.failures, outcome.failures

    def rows(self) -> list[dict]:
        with self.store.read() as connection:
            result = connection.execute(
                select(objects_table).where(objects_table.c.collection_id == ALPHA)
            )
            return [dict(row._mapping) for row in result]

    def copy_rows(self, rows: list[dict]) -> None:
        """Store exactly these rows (same date_added): a store that held only them."""
        with self.store.write() as connection:
            if rows:
                connection.execute(
                    insert(objects_table), [{k: v for k, v in r.items() if k != "pk"} for r in rows]
                )
                # The newest/oldest markers of a subset are not those of the whole.
                markers = ", ".join(f"{name} = ({sql})" for name, sql in MARKER_EXPRESSIONS.items())
                connection.execute(text(f"UPDATE objects SET {markers}"))

    def reset(self) -> None:
        with self.store.write() as connection:
            tables = (objects_table, statuses_table, audit_table, sync_state, dead_letters,
                      peer_dependencies, releases.release_queue,
                      releases.release_cursors)  # fmt: skip
            for table in tables:
                connection.execute(delete(table))
            connection.execute(delete(settings).where(settings.c.key == "audit_head"))

    def audit_rows(self) -> list[dict]:
        self.app.extensions["taxii_node"].read_audit.flush()
        with self.store.read() as connection:
            return [dict(r._mapping) for r in connection.execute(select(audit_table))]

    def close(self) -> None:
        self.app.extensions["taxii_node"].read_audit.flush()
        self.store.close()
