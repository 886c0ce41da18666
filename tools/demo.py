"""``make pair``, ``make pair-up`` and ``make demo``: the example bilateral pair, for real.

``pair``  initialises both nodes of config/node-a.toml and config/node-b.toml,
          generates the passwords each node uses at the other (var/secrets/,
          mode 0600) and creates the accounts: a sync account for the partner
          on each node, and an ``admin`` account for people.
``up``    does ``pair``, then runs both servers and both sync workers of the
          example pair until Ctrl-C (or SIGTERM), which stops all four.
``run``   the demo: a pair of its own (configs, stores, secrets and logs under
          var/demo/, ports 6101 and 6102), never the example pair's; publishes
          examples/bundle.json on A and examples/partner-bundle.json on B,
          runs sync rounds both ways and reports what went where and why.

Both servers' ports must be free: a demo that found a node already listening
would write into a node it did not start, so it refuses in one line instead.
Tooling, not the product: this file is not part of the installed package.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from node.client import TaxiiClient
from node.config import Config, load_config
from node.errors import NodeError
from node.operations import accounts as operations
from node.operations.nodes import initialise
from node.store import Store, audit
from node.sync.worker import RoundResult, SyncWorker
from node.tlp import tlp_of

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIGS = {
    "node-a": ROOT / "config" / "node-a.toml",
    "node-b": ROOT / "config" / "node-b.toml",
}
EXAMPLE_PORTS = {"node-a": 6001, "node-b": 6002}
EXAMPLE_BUNDLES = {"node-a": ROOT / "examples" / "bundle.json",
                   "node-b": ROOT / "examples" / "partner-bundle.json"}  # fmt: skip
DEMO_PORTS = {"node-a": 6101, "node-b": 6102}
SHARED = "c5a4f0de-6b7e-4d3c-9a41-2f1b8e7d6a10"  # collections/shared.toml
ACTOR = "demo"


class DemoError(Exception):
    """Why the demo cannot go on, in one line."""


@dataclass(frozen=True)
class Pair:
    """Two node configs and where their generated secrets live."""

    configs: dict[str, Path]
    secrets_dir: Path

    def secret(self, name: str) -> str:
        """A password kept in SECRETS/NAME, generated on first use (mode 0600)."""
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        path = self.secrets_dir / name
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(18) + "\n")
        return path.read_text().strip()

    def has_secret(self, name: str) -> bool:
        """Whether SECRETS/NAME exists: a password generated (and kept) before."""
        return (self.secrets_dir / name).exists()

    def config(self, name: str) -> Config:
        return load_config(self.configs[name])


EXAMPLE_PAIR = Pair(EXAMPLE_CONFIGS, ROOT / "var" / "secrets")


# -- pair: stores and accounts -------------------------------------------------------


def pair(chosen: Pair = EXAMPLE_PAIR) -> None:
    """Initialise both nodes and create their accounts (idempotent)."""
    for name in chosen.configs:
        config = chosen.config(name)
        store = Store(config.store_url)
        try:
            initialise(config, store)
            with store.write() as connection:
                for line in _add_accounts(connection, chosen, name, config):
                    print(line)
        finally:
            store.close()
    print(f"pair ready: admin passwords in {chosen.secrets_dir}/admin-node-a and admin-node-b")


def _add_accounts(connection, chosen: Pair, name: str, config: Config) -> list[str]:
    """Create the node's accounts; return a line for each password reset."""
    existing = {view.name for view in operations.list_accounts(connection)}
    admin = operations.NewAccount("admin", "", is_admin=True)
    done = [_ensure_account(connection, chosen, existing, admin, f"admin-{name}", name)]
    for peer in config.peers:
        if peer.account:
            # The partner logs in here with the password its own config names, with
            # the rights to carry what our worker does not (one delivery per object).
            account = operations.NewAccount(
                peer.account,
                "",
                peer=peer.name,
                read=tuple(m.local for m in peer.mappings if m.pushes and not m.worker_pushes),
                write=tuple(m.local for m in peer.mappings if m.pulls and not m.worker_pulls),
            )
            secret = f"{peer.account}-at-{name}"
            done.append(_ensure_account(connection, chosen, existing, account, secret, name))
    return [line for line in done if line]


def _ensure_account(
    connection,
    chosen: Pair,
    existing: set[str],
    new: operations.NewAccount,
    secret_name: str,
    node: str,
) -> str | None:
    """Create ``new`` with the password kept in SECRETS/``secret_name``.  An account
    that exists already keeps its password while that file does; the file gone,
    nobody knows the password (it was generated), so a new one is set and kept
    there, and ``pair`` says so rather than pointing at a file that is not there."""
    known = chosen.has_secret(secret_name)
    password = chosen.secret(secret_name)
    if new.name not in existing:
        operations.add_account(connection, replace(new, password=password), actor=ACTOR)
        return None
    if known:
        return None
    operations.set_password(connection, new.name, password, actor=ACTOR)
    return (
        f"{node}: {new.name}'s password was reset, as {chosen.secrets_dir / secret_name} "
        "was missing (it is kept there now)"
    )


# -- processes -------------------------------------------------------------------------


def refuse_taken_ports(ports: dict[str, int]) -> None:
    for name, port in ports.items():
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise DemoError(
                    f"port {port} (for {name}) is in use: something already listens there, and "
                    "the demo starts its own nodes only; stop it and run again"
                )


def _start(config_path: Path, command: str, log_path: Path) -> subprocess.Popen:
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "node", "--config", str(config_path), command],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until_serving(config: Config, process: subprocess.Popen, log_path: Path) -> None:
    """Until the node answers discovery with its own title (not some other server's)."""
    import requests

    url = f"http://127.0.0.1:{config.server.port}/taxii2/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"{config.name} failed to start; see {log_path}")
        try:
            answer = requests.get(url, timeout=1)
        except requests.RequestException:
            time.sleep(0.1)
            continue
        if answer.status_code == 401:  # ours: discovery needs an account
            return
        raise DemoError(f"{url} is not the node the demo started; see {log_path}")
    raise DemoError(f"{config.name} did not start in 30 s; see {log_path}")


@contextmanager
def servers(chosen: Pair, log_dir: Path) -> Iterator[None]:
    """Both nodes' servers, stopped on leaving (also on errors and Ctrl-C)."""
    with ExitStack() as stack:
        for name, config_path in chosen.configs.items():
            log_path = log_dir / f"{name}.log"
            process = _start(config_path, "serve", log_path)
            stack.callback(_stop, process)
            _wait_until_serving(chosen.config(name), process, log_path)
        yield


# -- up: the example pair, staying up ----------------------------------------------------


def up(chosen: Pair = EXAMPLE_PAIR, log_dir: Path = ROOT / "var" / "log") -> None:
    """Both servers and both workers of a pair, until Ctrl-C or SIGTERM stops all four."""
    configs = {name: chosen.config(name) for name in chosen.configs}
    refuse_taken_ports({name: config.server.port for name, config in configs.items()})
    pair(chosen)
    log_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    with servers(chosen, log_dir), ExitStack() as workers:
        for name, config_path in chosen.configs.items():
            worker = _start(config_path, "sync", log_dir / f"{name}-sync.log")
            workers.callback(_stop, worker)
        urls = ", ".join(
            f"{name} http://127.0.0.1:{config.server.port}/" for name, config in configs.items()
        )
        print(f"pair up: {urls}; both sync workers running; logs in {log_dir}/. "
              "Ctrl-C stops all four.", flush=True)  # fmt: skip
        while not stopping.wait(0.5):
            pass
    print("pair stopped: both servers and both workers", flush=True)


# -- run: the demo ---------------------------------------------------------------------


def demo_pair(directory: Path, ports: dict[str, int]) -> Pair:
    """Configs of the example pair rewritten for the demo's own ports, stores and secrets."""
    configs = {}
    for name, example in EXAMPLE_CONFIGS.items():
        text = example.read_text()
        replacements = {
            f"port = {EXAMPLE_PORTS[name]}": f"port = {ports[name]}",
            f'path = "../var/{name}/node.db"': f'path = "{name}.db"',
            '"../var/secrets/': '"secrets/',
            '"../collections"': json.dumps(str(ROOT / "collections")),
            'title = "Node': 'title = "Demo node',
        }
        for other, port in EXAMPLE_PORTS.items():
            if other != name:  # the partner's api_root
                replacements[f"127.0.0.1:{port}/"] = f"127.0.0.1:{ports[other]}/"
        for old, new in replacements.items():
            if old not in text:
                raise DemoError(f"{example}: expected {old!r}; the demo cannot adapt this config")
            text = text.replace(old, new)
        configs[name] = directory / example.name
        configs[name].write_text(text)
    return Pair(configs, directory / "secrets")


def run(directory: Path, ports: dict[str, int]) -> None:
    """A fresh pair of the demo's own: publish, sync both ways, report, stop."""
    refuse_taken_ports(ports)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    chosen = demo_pair(directory, ports)
    print(f"== setting up node A (127.0.0.1:{ports['node-a']}) and node B "
          f"(127.0.0.1:{ports['node-b']}) under {directory}/")  # fmt: skip
    pair(chosen)
    bundles = {name: json.loads(path.read_text())["objects"]
               for name, path in EXAMPLE_BUNDLES.items()}  # fmt: skip
    with servers(chosen, directory):
        for name, objects in bundles.items():
            status = _client(chosen, name).post_objects(SHARED, objects)
            print(f"== published {status['success_count']} objects of "
                  f"{EXAMPLE_BUNDLES[name].relative_to(ROOT)} on {name}")  # fmt: skip
        for number, title in ((1, "each node pushes its own objects"),
                              (2, "nothing new: no echo, no duplicates")):  # fmt: skip
            print(f"== sync round {number} ({title})")
            for name in chosen.configs:
                for result in _sync_once(chosen.config(name)):
                    print("   " + describe_round(name, result))
        report(chosen, bundles)
    print("== both nodes stopped")


def _client(chosen: Pair, name: str) -> TaxiiClient:
    port = chosen.config(name).server.port
    return TaxiiClient(f"http://127.0.0.1:{port}/api/", "admin", chosen.secret(f"admin-{name}"))


def _sync_once(config: Config) -> list[RoundResult]:
    store = Store(config.store_url)
    worker = SyncWorker(config, store)
    try:
        return worker.run_once()
    finally:
        worker.close()
        store.close()


def describe_round(node: str, result: RoundResult) -> str:
    """One sync round, labelled by the node that ran it: 'node-a push to node-b: ...'."""
    way = "to" if result.direction == "push" else "from"
    counts = (f"sent {result.sent}, received {result.received}, "
              f"already present {result.already_present}, withheld {result.withheld}, "
              f"dead-lettered {result.dead_lettered}")  # fmt: skip
    outcome = "ok" if result.ok else f"FAILED: {result.error}"
    return (
        f"[{node}] {result.direction} {way} {result.peer} ({result.mapping}): {counts} ({outcome})"
    )


def _describe(obj: dict) -> str:
    level = tlp_of(obj)
    marking = f"TLP:{level.label}" if level is not None else "unmarked"
    name = obj.get("name") or obj.get("relationship_type") or ""
    return f"{obj['type']:<12} {name[:40]:<40} {marking}"


def report(chosen: Pair, bundles: dict[str, list[dict]]) -> None:
    """Per direction: each published object, shared or withheld and by which rule;
    then the counts, objects apart from the dependencies that travelled with them."""
    for source, target in (("node-a", "node-b"), ("node-b", "node-a")):
        received = _held(chosen, target)
        decisions = _decisions(chosen.config(source), target)
        published = _ids(bundles[source])
        counts = {"shared": 0, "withheld": 0}
        print(f"\n== {source} -> {target}")
        for obj in bundles[source]:
            copy = received.get(obj["id"])
            rule = decisions.get(obj["id"], "?")
            if copy is None:
                counts["withheld"] += 1
                print(f"   WITHHELD  {_describe(obj)}  rule: {rule}")
            elif rule == "dependency":
                print(f"   DEPENDS   {_describe(obj)}  (withheld on its own; sent because "
                      "shared objects reference it)")  # fmt: skip
            else:
                counts["shared"] += 1
                redacted = sorted(set(obj) - set(copy))
                note = f"  (redacted: {', '.join(redacted)})" if redacted else ""
                print(f"   SHARED    {_describe(obj)}{note}")
        own = _ids(bundles[target])
        dependencies = sorted(
            obj["type"] for object_id, obj in received.items()
            if object_id not in own
            and (object_id not in published or decisions.get(object_id) == "dependency")
        )  # fmt: skip
        print(f"   objects: {counts['shared']} shared, {counts['withheld']} withheld "
              f"(of {len(published)} published); dependencies sent with them: "
              f"{len(dependencies)} ({', '.join(dependencies) or 'none'})")  # fmt: skip


def _held(chosen: Pair, name: str) -> dict[str, dict]:
    client = _client(chosen, name)
    try:
        pages = client.pages(SHARED, {"match[version]": "all", "limit": "1000"})
        return {obj["id"]: obj for page in pages for obj in page.objects}
    finally:
        client.close()


def _ids(objects: list[dict]) -> set[str]:
    return {obj["id"] for obj in objects}


def _decisions(config: Config, peer: str) -> dict[str, str]:
    """The rule of the last push decision about each object sent or withheld to ``peer``."""
    store = Store(config.store_url)
    try:
        with store.read() as connection:
            rows = audit.entries(connection, peer=peer, limit=None)
    finally:
        store.close()
    return {
        row["object_id"]: row["rule"]
        for row in rows
        if row["direction"] == "push" and row["action"] in ("sent", "withheld")
    }


def _ports(text: str) -> dict[str, int]:
    first, _, second = text.partition(",")
    try:
        return {"node-a": int(first), "node-b": int(second)}
    except ValueError:
        raise DemoError(f"--ports {text!r}: give two port numbers, e.g. 6101,6102") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/demo.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pair", help="initialise the example pair and create its accounts")
    stay = commands.add_parser("up", help="run the pair's servers and workers until Ctrl-C")
    stay.add_argument("--dir", type=Path, help="a pair of its own here (default: the example pair)")
    demo = commands.add_parser("run", help="the demo, on a pair of its own")
    demo.add_argument("--dir", type=Path, default=ROOT / "var" / "demo")
    for command in (stay, demo):
        command.add_argument("--ports", default=f"{DEMO_PORTS['node-a']},{DEMO_PORTS['node-b']}",
                             help="with --dir: the ports of node A and node B")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.command == "pair":
            pair()
        elif args.command == "up" and args.dir is None:
            up()
        elif args.command == "up":
            directory = args.dir.resolve()
            directory.mkdir(parents=True, exist_ok=True)
            up(demo_pair(directory, _ports(args.ports)), directory)
        else:
            run(args.dir.resolve(), _ports(args.ports))
    except (DemoError, NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
