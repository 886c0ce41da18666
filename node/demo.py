"""``make pair`` and ``make demo``: the example bilateral pair of config/, for real.

``pair`` initialises both nodes of config/node-a.toml and config/node-b.toml,
generates the passwords each node uses at the other (var/secrets/, mode 0600)
and creates the accounts: a sync account for the partner on each node, and an
``admin`` account for people.  ``run`` does the same on fresh stores under
var/demo/, starts both servers, publishes a sample bundle on each, runs sync
rounds both ways and prints what went where and why.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import requests

from node.client import TaxiiClient
from node.config import ENV_STORE_URL, load_config
from node.store import Store, accounts
from node.tlp import TLP2_MARKING_IDS, parse_level, tlp_of

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"node-a": ROOT / "config" / "node-a.toml", "node-b": ROOT / "config" / "node-b.toml"}
SECRETS = ROOT / "var" / "secrets"
DEMO_DIR = ROOT / "var" / "demo"
SHARED = "c5a4f0de-6b7e-4d3c-9a41-2f1b8e7d6a10"  # collections/shared.toml


def secret(name: str) -> str:
    """A password kept in var/secrets/NAME, generated on first use."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    path = SECRETS / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _cli(config: Path, *args: str, env: dict | None = None, input: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "node", "--config", str(config), *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"taxii-node {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


def pair(store_urls: dict[str, str] | None = None) -> None:
    """Initialise both example nodes and create their accounts (idempotent)."""
    for name, config_path in CONFIGS.items():
        env = {ENV_STORE_URL: store_urls[name]} if store_urls else {}
        _cli(config_path, "init", env=env)
        config = load_config(config_path)
        store = Store(env.get(ENV_STORE_URL) or config.store_url)
        try:
            with store.read() as connection:
                existing = {a.name for a in accounts.list_accounts(connection)}
        finally:
            store.close()
        if "admin" not in existing:
            _cli(config_path, "user", "add", "admin", "--password-stdin", "--admin",
                 env=env, input=secret(f"admin-{name}") + "\n")  # fmt: skip
        for peer in config.peers:
            if peer.account and peer.account not in existing:
                # The partner logs in here with the password its own config names.
                password = secret(f"{peer.account}-at-{name}")
                grants = []
                for mapping in peer.mappings:
                    grants += ["--read", mapping.local, "--write", mapping.local]
                _cli(config_path, "user", "add", peer.account, "--password-stdin",
                     "--peer", peer.name, *grants, env=env, input=password + "\n")  # fmt: skip
    print(f"pair ready: admin passwords in {SECRETS}/admin-node-a and admin-node-b")


# -- the demo ------------------------------------------------------------------


def _identity(name: str) -> dict:
    now = "2026-01-01T00:00:00.000Z"
    return {"type": "identity", "spec_version": "2.1", "id": f"identity--{uuid.uuid4()}",
            "created": now, "modified": now, "name": name,
            "identity_class": "organization"}  # fmt: skip


def _sdo(kind: str, author: dict, tlp: str | None, **properties) -> dict:
    now = "2026-02-01T00:00:00.000Z"
    obj = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": now,
        "modified": now,
        "created_by_ref": author["id"],
        **properties,
    }
    if tlp:
        obj["object_marking_refs"] = [TLP2_MARKING_IDS[parse_level(tlp)]]
    return obj


def _indicator(author: dict, tlp: str | None, value: str, **extra) -> dict:
    return _sdo("indicator", author, tlp, name=f"Malicious IP {value}",
                pattern=f"[ipv4-addr:value = '{value}']", pattern_type="stix",
                valid_from="2026-02-01T00:00:00Z", **extra)  # fmt: skip


def sample_bundle(unit: str, net: int) -> list[dict]:
    """Objects with mixed TLP, types, a custom property to redact and a risky relationship."""
    author = _identity(f"{unit} cybercrime unit")
    red_malware = _sdo("malware", author, "red", name=f"{unit}-implant", is_family=True)
    amber_indicator = _indicator(
        author, "amber", f"198.51.{net}.7", x_internal_note="source: informant 7, do not share"
    )
    return [
        author,
        _indicator(author, "clear", f"198.51.{net}.1"),
        _indicator(author, "green", f"198.51.{net}.2"),
        amber_indicator,
        _indicator(author, "amber+strict", f"198.51.{net}.3"),
        _indicator(author, "red", f"198.51.{net}.4"),
        _indicator(author, None, f"198.51.{net}.5"),
        _sdo("malware", author, "green", name=f"{unit}-loader", is_family=True),
        red_malware,
        _sdo(
            "relationship",
            author,
            "green",
            relationship_type="indicates",
            source_ref=amber_indicator["id"],
            target_ref=red_malware["id"],
        ),
    ]


def _start(config_path: Path, store_url: str, log_path: Path) -> subprocess.Popen:
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "--config", str(config_path), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, ENV_STORE_URL: store_url},
        start_new_session=True,
    )
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a node failed to start; see {log_path}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"a node did not start in 30 s; see {log_path}")


def _describe(obj: dict) -> str:
    level = tlp_of(obj)
    marking = f"TLP:{level.label}" if level is not None else "unmarked"
    name = obj.get("name") or obj.get("relationship_type") or ""
    return f"{obj['type']:<12} {name[:28]:<28} {marking}"


def _collection_objects(base: str, auth: tuple[str, str]) -> dict[str, dict]:
    client = TaxiiClient(f"{base}api/", *auth)
    try:
        pages = client.pages(SHARED, {"match[version]": "all", "limit": 1000})
        return {obj["id"]: obj for page in pages for obj in page.objects}
    finally:
        client.close()


def _publish(base: str, auth: tuple[str, str], bundle: list[dict]) -> dict:
    response = requests.post(
        f"{base}api/collections/c5a4f0de-6b7e-4d3c-9a41-2f1b8e7d6a10/objects/",
        data=json.dumps({"objects": bundle}),
        auth=auth,
        headers={"Content-Type": "application/taxii+json;version=2.1"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def run() -> None:
    """Start both nodes on fresh stores, publish, sync both ways, report, stop."""
    if DEMO_DIR.exists():
        for old in DEMO_DIR.glob("*"):
            old.unlink()
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    stores = {name: f"sqlite:///{DEMO_DIR / (name + '.db')}" for name in CONFIGS}
    print("== setting up node A (127.0.0.1:6001) and node B (127.0.0.1:6002) under var/demo/")
    pair(stores)
    bases = {"node-a": "http://127.0.0.1:6001/", "node-b": "http://127.0.0.1:6002/"}
    auth = {name: ("admin", secret(f"admin-{name}")) for name in CONFIGS}
    with ExitStack() as stack:
        for name, config_path in CONFIGS.items():
            log_path = DEMO_DIR / f"{name}.log"
            process = _start(config_path, stores[name], log_path)
            stack.callback(_stop, process)
            _wait_until_up(bases[name] + "taxii2/", process, log_path)
        bundles = {"node-a": sample_bundle("Unit A", 100), "node-b": sample_bundle("Unit B", 200)}
        for name, bundle in bundles.items():
            status = _publish(bases[name], auth[name], bundle)
            print(f"== published {status['success_count']} objects on {name}")
        print("== sync round 1 (both nodes push and pull)")
        for name, config_path in CONFIGS.items():
            env = {ENV_STORE_URL: stores[name]}
            print(_indent(_cli(config_path, "sync", "--once", env=env)))
        print("== sync round 2 (nothing new: no echo, no duplicates)")
        for name, config_path in CONFIGS.items():
            env = {ENV_STORE_URL: stores[name]}
            print(_indent(_cli(config_path, "sync", "--once", env=env)))
        _report(bundles, bases, auth, stores)
    print("== both nodes stopped")


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.strip().splitlines())


def _report(bundles, bases, auth, stores) -> None:
    for source, target in (("node-a", "node-b"), ("node-b", "node-a")):
        received = _collection_objects(bases[target], auth[target])
        withheld = _withheld_rules(CONFIGS[source], stores[source], target)
        print(f"\n== {source} -> {target}")
        for obj in bundles[source]:
            copy = received.get(obj["id"])
            if copy is not None:
                redacted = sorted(set(obj) - set(copy))
                note = f"  (redacted: {', '.join(redacted)})" if redacted else ""
                print(f"   SHARED    {_describe(obj)}{note}")
            else:
                print(f"   WITHHELD  {_describe(obj)}  rule: {withheld.get(obj['id'], '?')}")


def _withheld_rules(config_path: Path, store_url: str, peer: str) -> dict[str, str]:
    output = _cli(config_path, "audit", "--peer", peer, "--json", "--limit", "100000",
                  env={ENV_STORE_URL: store_url})  # fmt: skip
    rules = {}
    for line in output.splitlines():
        row = json.loads(line)
        if row["action"] == "withheld":
            rules[row["object_id"]] = row["rule"]
    return rules


def main(argv: list[str]) -> None:
    if argv[1:] == ["pair"]:
        pair()
    elif argv[1:] == ["run"]:
        run()
    else:
        raise SystemExit("usage: python -m node.demo pair|run")


if __name__ == "__main__":
    main(sys.argv)
