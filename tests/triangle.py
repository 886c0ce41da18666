"""Three taxii-node servers, each peered with the other two (a triangle), for the
three-node, release, quarantine and recall tests that cross HTTP.

``make_triangle(directory, urls, specs)``: ``specs[node][peer]`` is the mapping
spec of ``node``'s agreement with ``peer`` (alias -> {"egress": ..., "ingress":
..., "direction": ...}, as for ``tests.pair``); a peer left out of
``specs[node]`` is not configured there.  Each node has its own config, store
and gunicorn server, an ``admin`` account and one sync account per
configured peer with read and write on the mapped collections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from node.config import load_config
from node.store import Store
from node.sync.rounds import RoundResult
from node.sync.worker import SyncWorker
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, RunningNode, free_port
from tests.pair import (
    MappingSpec,
    _parallel,
    add_accounts,
    loopback_node,
    peer_toml,
    run_cli,
    start_node,
    sync_password,
)

NAMES = ("node-a", "node-b", "node-c")
TAXII = "application/taxii+json;version=2.1"


@dataclass
class Triangle:
    nodes: dict[str, RunningNode]
    _stores: dict[str, Store] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> RunningNode:
        return self.nodes[name]

    def store(self, name: str) -> Store:
        if name not in self._stores:
            self._stores[name] = Store(load_config(self.nodes[name].config_path).store_url)
        return self._stores[name]

    def run_once(self, name: str, **kwargs: Any) -> list[RoundResult]:
        """One round of ``name``'s sync worker, in this process."""
        worker = SyncWorker(load_config(self.nodes[name].config_path), self.store(name), **kwargs)
        try:
            results = worker.run_once()
        finally:
            worker.close()
        errors = [r.error for r in results if r.error]
        assert not errors, f"{name}: {errors}"
        return results

    def rounds(self, count: int = 2) -> None:
        """``count`` rounds of every worker, one node after the other."""
        for _ in range(count):
            for name in self.nodes:
                self.run_once(name)

    def cli(self, name: str, *args: str, input: str | None = None) -> str:
        return run_cli(self.nodes[name], *args, input=input)

    def post(self, name: str, objects: list[dict], alias: str = "alpha",
             user: str = "admin", password: str = ADMIN_PASSWORD) -> dict:  # fmt: skip
        node = self.nodes[name]
        response = requests.post(
            f"{node.collection_url(alias)}objects/",
            json={"objects": objects},
            auth=(user, password),
            headers={"Accept": TAXII, "Content-Type": TAXII},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        status: dict = response.json()
        return status

    def get(
        self,
        name: str,
        path: str = "objects/",
        alias: str = "alpha",
        user: str = "admin",
        password: str = ADMIN_PASSWORD,
        **params: Any,
    ) -> requests.Response:
        node = self.nodes[name]
        return requests.get(
            f"{node.collection_url(alias)}{path}",
            params=params,
            auth=(user, password),
            headers={"Accept": TAXII},
            timeout=30,
        )

    def objects(self, name: str, alias: str = "alpha", **params: Any) -> list[dict]:
        """Every object an analyst (the admin) reads from ``name``'s collection."""
        response = self.get(name, alias=alias, **params)
        assert response.status_code == 200, response.text
        found: list[dict] = response.json().get("objects", [])
        return found

    def stop(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        _parallel(lambda node: node.stop(), list(self.nodes.values()))


def make_triangle(
    directory: Path,
    store_urls: Mapping[str, str | None],
    specs: Mapping[str, Mapping[str, MappingSpec]],
) -> Triangle:
    """node-a, node-b and node-c, initialised, with their accounts, started."""
    ports: dict[str, int] = {}
    for name in NAMES:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    nodes: dict[str, RunningNode] = {}
    for name in NAMES:
        extra = ""
        for other, mappings in specs.get(name, {}).items():
            password_file = secrets / f"{name}-at-{other}"
            password_file.write_text(sync_password(name, other) + "\n")
            password_file.chmod(0o600)
            extra += peer_toml(name=other, api_root=f"http://127.0.0.1:{ports[other]}/api/",
                               user=name, password_file=password_file, account=other,
                               mappings=mappings) + "\n"  # fmt: skip
        node_dir = directory / name
        url = store_urls.get(name) or f"sqlite:///{node_dir / 'node.db'}"
        nodes[name] = loopback_node(directory=node_dir, name=name, store_url=url,
                                    port=ports[name], extra_toml=extra)  # fmt: skip
    _parallel(lambda node: node.init(), list(nodes.values()))
    for name, node in nodes.items():
        accounts = [
            (other, sync_password(other, name), tuple(mappings), other)
            for other, mappings in specs.get(name, {}).items()
        ]
        add_accounts(node, accounts)
    triangle = Triangle(nodes)
    try:
        _parallel(start_node, list(nodes.values()))
    except BaseException:
        triangle.stop()
        raise
    return triangle


ALPHA = COLLECTIONS["alpha"]
