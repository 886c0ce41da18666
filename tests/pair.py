"""Two taxii-node servers peered both ways on loopback, for the sync tests.

``make_pair(directory, (url_a, url_b), a={...}, b={...})`` builds node-a and
node-b as an operator would: each has its own config file, store and gunicorn
server; each config has a ``[[peers]]`` entry for the other (``password_file``
under ``directory/secrets``, ``account`` naming the local sync account), and
each store has an ``admin`` account plus the partner's sync account
(``user add --peer``), with read and write on the mapped collections.

``init`` and ``user add`` run through the real CLI commands, but in this process
(``run_cli``): a ``taxii-node`` subprocess spends ~2 s importing.

The mapping specs ``a`` and ``b`` map a collection alias (the same on both
sides) to ``{"egress": {...}, "ingress": {...}, "direction": "both"}``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from node.config import Config, ServerConfig, load_config
from node.store import Store, syncstate
from node.store.syncstate import SyncState
from node.sync.rounds import RoundResult
from node.sync.worker import SyncWorker
from tests.nodes import ADMIN_PASSWORD, RunningNode, free_port

NAMES = ("node-a", "node-b")
MappingSpec = Mapping[str, Mapping[str, Any]]
Account = tuple[str, str, tuple[str, ...], str | None]  # name, password, aliases, peer


def toml_value(value: Any) -> str:
    """The TOML spelling of a policy value: string, number, boolean or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def peer_toml(
    *,
    name: str,
    api_root: str,
    user: str,
    password_file: Path,
    account: str | None,
    mappings: MappingSpec,
    remote_names: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    batch: int | None = None,
) -> str:
    """A ``[[peers]]`` table with one ``[[peers.mappings]]`` per local collection alias."""
    lines = [
        "[[peers]]",
        f"name = {toml_value(name)}",
        f"api_root = {toml_value(api_root)}",
        f"user = {toml_value(user)}",
        f"password_file = {toml_value(str(password_file))}",
        f"timeout = {timeout}",
    ]
    if batch is not None:
        lines.append(f"batch = {batch}")
    if account:
        lines.append(f"account = {toml_value(account)}")
    for alias, spec in mappings.items():
        remote = (remote_names or {}).get(alias, alias)
        lines += [
            "",
            "[[peers.mappings]]",
            f"local = {toml_value(alias)}",
            f"remote = {toml_value(remote)}",
            f"direction = {toml_value(spec.get('direction', 'both'))}",
            f"interval = {spec.get('interval', 0.2)}",
        ]
        if "worker" in spec:
            lines.append(f"worker = {toml_value(spec['worker'])}")
        for policy in ("egress", "ingress"):
            table = spec.get(policy) or {}
            lines += ["", f"[peers.mappings.{policy}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Pair:
    a: RunningNode
    b: RunningNode
    secrets: Path
    _stores: dict[str, Store] = field(default_factory=dict, repr=False)

    def node(self, name: str) -> RunningNode:
        return self.a if name == "node-a" else self.b

    def other(self, node: RunningNode) -> RunningNode:
        return self.b if node is self.a else self.a

    def config(self, node: RunningNode) -> Config:
        return load_config(node.config_path)

    def store(self, node: RunningNode) -> Store:
        """The node's store, opened once in this process (closed by ``stop``)."""
        if node.name not in self._stores:
            self._stores[node.name] = Store(self.config(node).store_url)
        return self._stores[node.name]

    def run_once(self, node: RunningNode, **kwargs: Any) -> list[RoundResult]:
        """One round of ``node``'s sync worker, in this process."""
        worker = SyncWorker(self.config(node), self.store(node), **kwargs)
        try:
            return worker.run_once()
        finally:
            worker.close()

    def run_both(self, **kwargs: Any) -> dict[str, list[RoundResult]]:
        """One round of both workers at the same time (two threads, two stores)."""
        results: dict[str, list[RoundResult]] = {}
        errors: list[BaseException] = []

        def run(node: RunningNode) -> None:
            try:
                results[node.name] = self.run_once(node, **kwargs)
            except BaseException as exc:  # reported in the calling thread
                errors.append(exc)

        _parallel(run, [self.a, self.b])
        if errors:
            raise errors[0]
        return results

    def states(self, node: RunningNode) -> dict[tuple[str, str], SyncState]:
        """(mapping, direction) -> sync state of ``node``."""
        with self.store(node).read() as connection:
            return {(s.mapping, s.direction): s for s in syncstate.all_states(connection)}

    def dead_letters(self, node: RunningNode) -> list[dict]:
        with self.store(node).read() as connection:
            return syncstate.list_dead_letters(connection)

    def start(self) -> Pair:
        _parallel(start_node, [self.a, self.b])
        return self

    def stop(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        _parallel(lambda node: node.stop(), [self.a, self.b])


def loopback_node(**fields: Any) -> RunningNode:
    """A ``RunningNode`` serving plain HTTP on 127.0.0.1.

    Configs must opt in to plain HTTP with ``[server] insecure_http = true``; add it
    unless the harness's config template already does.
    """
    node = RunningNode(**fields)
    text = node.config_path.read_text()
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    if "insecure_http" in known and "insecure_http" not in text:
        node = RunningNode(**fields, server_toml="insecure_http = true")
    return node


def start_node(node: RunningNode, timeout: float = 60.0) -> None:
    """``node.start()``, tolerating a server that accepts connections before it answers.

    The harness polls with a 1 s read timeout and gives up on the first one; on a
    loaded machine gunicorn's worker may still be importing the app by then.
    """
    try:
        node.start()
        return
    except requests.Timeout:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.process is not None and node.process.poll() is None, "server exited"
        try:
            requests.get(f"{node.base_url}/taxii2/", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.2)
    node.stop()
    raise AssertionError(f"{node.name} did not answer within {timeout} s")


def _parallel(call: Callable[[RunningNode], Any], nodes: list[RunningNode]) -> None:
    errors: list[BaseException] = []

    def guarded(node: RunningNode) -> None:
        try:
            call(node)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def run_cli(node: RunningNode, *args: str, input: str | None = None) -> str:
    """``taxii-node --config NODE ARGS`` in this process (``NodeFiles.run_cli``)."""
    return node.run_cli(*args, input=input)


def node_syncing_with(
    tmp_path: Path,
    peer: Any,
    *,
    name: str,
    mappings: MappingSpec,
    remote_names: Mapping[str, str],
    timeout: float = 10.0,
    batch: int | None = None,
) -> RunningNode:
    """Node A, initialised and serving on loopback, with a ``[[peers]]`` table
    for ``peer``: a third-party server (tests/peer_process.py) that has one
    Basic account and no sync account of its own here."""
    password_file = tmp_path / f"{name}-password"
    password_file.write_text(peer.password + "\n")
    extra = peer_toml(
        name=name,
        api_root=peer.api_root,
        user=peer.user,
        password_file=password_file,
        account=None,
        mappings=mappings,
        remote_names=remote_names,
        timeout=timeout,
        batch=batch,
    )
    node = loopback_node(
        directory=tmp_path / "node-a",
        name="node-a",
        store_url=f"sqlite:///{tmp_path / 'node-a' / 'node.db'}",
        port=free_port(),
        extra_toml=extra,
    )
    prepare_node(node)
    start_node(node)
    return node


def prepare_node(node: RunningNode, accounts: Sequence[Account] = ()) -> None:
    """``taxii-node init``, then ``add_accounts`` (both in this process)."""
    node.init()
    add_accounts(node, accounts)


def add_accounts(node: RunningNode, accounts: Sequence[Account] = ()) -> None:
    """The ``admin`` account, and (name, password, aliases, peer) accounts with read and
    write on their aliases, with ``taxii-node user add`` run in this process.
    """
    run_cli(
        node, "user", "add", "admin", "--password-stdin", "--admin", input=ADMIN_PASSWORD + "\n"
    )
    for name, password, aliases, peer in accounts:
        args = ["user", "add", name, "--password-stdin"]
        for alias in aliases:
            args += ["--read", alias, "--write", alias]
        if peer:
            args += ["--peer", peer]
        run_cli(node, *args, input=password + "\n")


def sync_password(user: str, at: str) -> str:
    return f"{user}-password-at-{at}"


def make_pair(
    directory: Path,
    store_urls: tuple[str | None, str | None] = (None, None),
    *,
    a: MappingSpec,
    b: MappingSpec,
    taxii: Mapping[str, str] | None = None,
    start: bool = True,
    batch: int | None = None,
) -> Pair:
    """node-a and node-b, initialised, with their accounts, started unless ``start`` is False.

    ``taxii`` maps a node name to extra ``[taxii]`` lines (e.g. ``max_content_length``);
    ``batch`` is each peer table's ``batch`` (the workers' push batch and pull page).
    """
    ports = {name: free_port() for name in NAMES}
    while ports["node-a"] == ports["node-b"]:
        ports["node-b"] = free_port()
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    specs = {"node-a": a, "node-b": b}
    nodes: dict[str, RunningNode] = {}
    for (name, other), url in zip((NAMES, NAMES[::-1]), store_urls, strict=True):
        # The password this node presents at the other one, as the other's account has it.
        password_file = secrets / f"{name}-at-{other}"
        password_file.write_text(sync_password(name, other) + "\n")
        password_file.chmod(0o600)
        extra = peer_toml(
            name=other,
            api_root=f"http://127.0.0.1:{ports[other]}/api/",
            user=name,
            password_file=password_file,
            account=other,
            mappings=specs[name],
            batch=batch,
        )
        node_dir = directory / name
        nodes[name] = loopback_node(
            directory=node_dir,
            name=name,
            store_url=url or f"sqlite:///{node_dir / 'node.db'}",
            port=ports[name],
            extra_toml=extra,
            taxii_toml=(taxii or {}).get(name, ""),
        )

    _parallel(lambda node: node.init(), list(nodes.values()))
    for node in nodes.values():
        other = "node-b" if node.name == "node-a" else "node-a"
        aliases = tuple(specs[node.name])
        # The partner's worker logs in here with the password of its own password_file.
        add_accounts(node, [(other, sync_password(other, node.name), aliases, other)])
    pair = Pair(nodes["node-a"], nodes["node-b"], secrets)
    if start:
        pair.start()
    return pair
