"""What a newcomer and an analyst meet first (issue 12), driven as they drive it.

Commands run through the CLI's entry point in this process (``run``, as
``tests.nodes.cli_in_process``) against an in-process node; what is about the
process or needs a socket runs ``python -m node`` against a real gunicorn node
(a port in use, progress on a terminal, start-up imports); the demo and
``pair-up`` run as ``tools/demo.py`` on ports and folders of their own.  Each
test names the point of the walk-through it keeps.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from node.config import parse_config
from tests.inprocess import InProcessNode, new_inprocess_node
from tests.nodes import (
    NodeFiles,
    RunningNode,
    cli_in_process,
    free_port,
    new_node,
    serving,
    taxii_node_command,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "bundle.json"
ALICE = "alice-password-1"
TAXII = "application/taxii+json;version=2.1"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
T1 = "2026-01-01T00:00:00.000Z"
SHARED = "c5a4f0de-6b7e-4d3c-9a41-2f1b8e7d6a10"  # collections/shared.toml


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
    return {**env, **extra}


def run(*args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """``taxii-node ARGS`` in this process, with no TAXII_NODE_ variable but ``env``."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TAXII_NODE_")}
    return cli_in_process(*args, input=input, env={**unset, **env})


def as_alice(node: NodeFiles, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    return run(*args, "--url", url or node.base_url + "/", "--user", "alice",
               TAXII_NODE_PASSWORD=ALICE)  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def indicator(**extra) -> dict:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": T1, "modified": T1, "name": "first run", "pattern_type": "stix",
            "pattern": "[ipv4-addr:value = '198.51.100.1']", "valid_from": T1, **extra}  # fmt: skip


def write(path: Path, objects: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                "objects": objects}))  # fmt: skip
    return path


def stored(node: NodeFiles, object_id: str) -> list[dict]:
    response = requests.get(
        f"{node.collection_url('alpha')}objects/{object_id}/",
        auth=("alice", ALICE),
        headers={"Accept": TAXII},
        params={"match[version]": "all"},
        timeout=30,
    )
    return response.json().get("objects", []) if response.status_code == 200 else []


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[InProcessNode]:
    running = new_inprocess_node(tmp_path_factory.mktemp("first-run"), "first-run", None)
    running.add_user("alice", ALICE, read=("alpha", "beta"), write=("alpha", "beta"))
    yield from serving(running)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningNode]:
    """A node behind gunicorn: its port is in use, and a ``publish`` process reaches it."""
    running = new_node(tmp_path_factory.mktemp("first-run-server"), "first-run-server", None)
    running.add_user("alice", ALICE, read=("alpha",), write=("alpha",))
    yield from serving(running)


# --------------------------------------------------------------------------- URLs, tokens


def test_client_commands_take_the_base_url_the_discovery_url_or_an_api_root(node) -> None:
    listings = []
    for url in (node.base_url, node.base_url + "/", node.base_url + "/taxii2/", node.api_root):
        result = as_alice(node, "collections", "--json", url=url)
        assert result.returncode == 0, (url, result.stderr)
        listings.append(sorted(row["alias"] for row in json.loads(result.stdout)))
    assert listings == [["alpha", "beta"]] * 4
    wrong = as_alice(node, "collections", url=node.base_url + "/nothing-here/")
    one_line_error(wrong, "404", "no TAXII API root or discovery resource", "/taxii2/")


def test_client_commands_authenticate_with_an_api_token(node) -> None:
    secret = node.cli_in_process("token", "create", "alice", "--expires", "1d").stdout.strip()
    url = node.base_url + "/"
    by_variable = run("collections", "--url", url, "--token-env", "MY_TOKEN", MY_TOKEN=secret)
    assert by_variable.returncode == 0, by_variable.stderr
    assert "alpha" in by_variable.stdout
    by_default = run("collections", "--url", url, TAXII_NODE_TOKEN=secret)
    assert by_default.returncode == 0, by_default.stderr
    one_line_error(run("collections", "--url", url, "--token-env", "UNSET_TOKEN"),
                   "no token", "UNSET_TOKEN")  # fmt: skip
    one_line_error(run("collections", "--url", url, TAXII_NODE_TOKEN="tnk_000000000000.wrong"),
                   "401")  # fmt: skip
    one_line_error(run("collections", "--url", url), "no credentials", "TAXII_NODE_TOKEN")


def test_user_list_and_token_list_print_json(node) -> None:
    users = json.loads(node.cli_in_process("user", "list", "--json").stdout)
    alice = next(user for user in users if user["name"] == "alice")
    assert alice == {"name": "alice", "role": "analyst", "rights": {"alpha": "rw", "beta": "rw"},
                     "certificate": None}  # fmt: skip
    node.cli_in_process("token", "create", "alice", "--label", "listed")
    tokens = json.loads(node.cli_in_process("token", "list", "alice", "--json").stdout)
    listed = [token for token in tokens if token["label"] == "listed"]
    assert len(listed) == 1 and listed[0]["state"] == "valid" and listed[0]["user_name"] == "alice"
    assert "tnk_" not in json.dumps(tokens)


def test_a_locked_account_is_unlocked_by_an_administrator(node) -> None:
    node.add_user("locked", "locked-password-1", read=("alpha",))
    url = node.base_url + "/"
    for _ in range(5):
        run("collections", "--url", url, "--user", "locked", TAXII_NODE_PASSWORD="wrong-password")
    refused = run("collections", "--url", url, "--user", "locked",
                  TAXII_NODE_PASSWORD="locked-password-1")  # fmt: skip
    message = one_line_error(refused, "429", "taxii-node user unlock NAME")
    assert "is the server running" not in message
    unlocked = node.cli_in_process("user", "unlock", "locked")
    assert "user locked unlocked (5 recent failed login(s) forgotten)" in unlocked.stdout
    again = run("collections", "--url", url, "--user", "locked",
                TAXII_NODE_PASSWORD="locked-password-1")  # fmt: skip
    assert again.returncode == 0, again.stderr
    audit = node.cli_in_process("audit", "--json", "--limit", "0").stdout
    records = [json.loads(line) for line in audit.splitlines()]
    assert any(r["action"] == "user-unlocked" and r["object_id"] == "locked" for r in records)


# --------------------------------------------------------------------------- publish and get


def test_publish_marks_unmarked_objects_with_tlp_and_an_author(node, tmp_path) -> None:
    author = f"identity--{uuid.uuid4()}"
    unmarked, amber = indicator(), indicator(object_marking_refs=[AMBER])
    path = write(tmp_path / "mixed.json", [unmarked, amber])
    result = as_alice(node, "publish", "-c", "alpha", "--tlp", "green", "--created-by", author,
                      str(path))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [stored_unmarked] = stored(node, unmarked["id"])
    [stored_amber] = stored(node, amber["id"])
    assert stored_unmarked["object_marking_refs"] == [GREEN]
    assert stored_amber["object_marking_refs"] == [AMBER]  # marked objects keep theirs
    assert stored_unmarked["created_by_ref"] == stored_amber["created_by_ref"] == author
    one_line_error(as_alice(node, "publish", "-c", "alpha", "--tlp", "purple", str(path)),
                   "--tlp", "not a TLP level")  # fmt: skip
    one_line_error(as_alice(node, "publish", "-c", "alpha", "--created-by", "alice", str(path)),
                   "--created-by", "identity")  # fmt: skip


def test_a_failure_names_its_file_and_a_conflict_says_what_to_do(node, tmp_path) -> None:
    original = indicator()
    changed = {**original, "name": "changed without a new modified"}
    first = write(tmp_path / "release-17.json", [original])
    second = write(tmp_path / "release-18.json", [indicator(), changed])
    assert as_alice(node, "publish", "-c", "alpha", str(first)).returncode == 0
    # The same version in two files of one run: the failure names both.
    result = as_alice(node, "publish", "-c", "alpha", str(first), str(second))
    assert result.returncode == 1, result.stdout + result.stderr
    [failed] = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert f"{first} or {second}: {original['id']} {T1}" in failed
    assert "a different object with this id and version is already stored" in failed
    assert "note: 1 object(s) conflict" in result.stdout and "later 'modified'" in result.stdout
    assert "posted 1, already present 1, failed 1" in result.stdout
    summary = json.loads(as_alice(node, "publish", "-c", "alpha", "--json", str(second)).stdout)
    assert [item["source"] for item in summary["failed"]] == [str(second)]


def test_invalid_patterns_are_refused_with_the_parsers_message(node, tmp_path) -> None:
    broken = indicator(pattern="[ipv4-addr:value = ]")
    path = write(tmp_path / "broken.json", [broken])
    local = as_alice(node, "publish", "-c", "alpha", str(path))
    assert local.returncode == 1
    assert f"INVALID {path}: {broken['id']}: 'pattern' is not a valid STIX pattern" in local.stdout
    assert "mismatched input ']'" in local.stdout
    # The server refuses it too, whichever client posts it.
    response = requests.post(
        f"{node.collection_url('alpha')}objects/",
        data=json.dumps({"objects": [broken]}),
        auth=("alice", ALICE),
        headers={"Accept": TAXII, "Content-Type": TAXII},
        timeout=30,
    )
    [failure] = response.json()["failures"]
    assert "not a valid STIX pattern" in failure["message"]
    assert stored(node, broken["id"]) == []


def test_get_to_a_file_counts_what_it_wrote_and_warns_about_unknown_types(node, tmp_path):
    objects = [indicator() for _ in range(3)]
    beta = tmp_path / "beta.json"
    write(beta, objects)
    assert as_alice(node, "publish", "-c", "beta", str(beta)).returncode == 0
    output = tmp_path / "out.json"
    result = as_alice(node, "get", "-c", "beta", "--type", "indicator", "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"wrote 3 objects to {output}"
    assert len(json.loads(output.read_text())["objects"]) == 3
    typo = as_alice(node, "get", "-c", "beta", "--type", "indicatr")
    assert typo.returncode == 0
    assert ("warning: --type 'indicatr' is not a STIX 2.1 object type (did you mean "
            "'indicator'?)") in typo.stderr  # fmt: skip
    assert json.loads(typo.stdout)["objects"] == []
    custom = as_alice(node, "get", "-c", "beta", "--type", "x-acme-widget")
    assert "warning" not in custom.stderr


def test_publish_shows_progress_on_a_terminal(server, tmp_path) -> None:
    path = write(tmp_path / "progress.json", [indicator() for _ in range(40)])
    controller, terminal = pty.openpty()
    # A terminal of 100 columns, as a person's (a new pseudo-terminal has none).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        process = subprocess.Popen(
            [*taxii_node_command(), "publish", "-c", "alpha", "--url", server.api_root,
             "--user", "alice", str(path)],
            stdout=subprocess.PIPE, stderr=terminal, text=True,
            env=_env(TAXII_NODE_PASSWORD=ALICE),
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while process.poll() is None or select.select([controller], [], [], 0.2)[0]:
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    shown += os.read(controller, 65536)
                except OSError:
                    break
        assert process.wait(timeout=60) == 0
    finally:
        os.close(controller)
    text = shown.decode(errors="replace")
    assert "100%" in text and "40/40" in text and "progress.json" in text, text
    assert "objects/s" in text, text


# --------------------------------------------------------------------------- operator errors


def test_serve_on_a_port_in_use_is_one_line(server) -> None:
    result = server.cli("serve", check=False)
    one_line_error(result, f"127.0.0.1:{server.port} is in use", str(server.config_path))
    assert "Retrying" not in result.stdout + result.stderr


def test_config_naming_a_folder_is_one_line(node, tmp_path) -> None:
    one_line_error(run("--config", str(tmp_path), "user", "list"), "is a folder")
    one_line_error(run("--config", str(tmp_path / "missing.toml"), "check"), "not found")


def test_every_expected_error_is_one_error_line(node) -> None:
    cli = node.cli_in_process
    one_line_error(cli("user", "add", "alice", "--password-stdin", input="long-enough\n",
                       check=False), "already exists")  # fmt: skip
    one_line_error(cli("user", "frobnicate", check=False), "No such command")
    one_line_error(cli("publish", check=False), "Missing argument")
    bare = run()  # no command at all: the help, not an error line
    assert bare.returncode == 2 and "Commands:" in bare.stdout and "error" not in bare.stderr
    one_line_error(cli("token", "revoke", "nope", check=False), "no token 'nope'")
    one_line_error(cli("user", "add", "x", "--password-stdin", "--cert-fingerprint", "zz",
                       input="long-enough\n", check=False), "SHA-256")  # fmt: skip


def test_store_files_are_private_and_named_for_the_node(tmp_path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    urls = set()
    for name in ("alpha-node", "beta-node"):  # two configs in one folder, no [store]
        path = configs / f"{name}.toml"
        path.write_text(f'[node]\nname = "{name}"\n[server]\ninsecure_http = true\n')
        urls.add(parse_config({"node": {"name": name}, "server": {"insecure_http": True}},
                              path).store_url)  # fmt: skip
    assert urls == {
        f"sqlite:///{tmp_path / 'var' / n / 'node.db'}" for n in ("alpha-node", "beta-node")
    }
    result = run("--config", str(configs / "alpha-node.toml"), "init")
    assert result.returncode == 0, result.stderr
    database = tmp_path / "var" / "alpha-node" / "node.db"
    assert f"sqlite:///{database}" in result.stdout
    for path in database.parent.iterdir():  # node.db and its WAL files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --------------------------------------------------------------------------- start-up


def test_the_cli_starts_without_the_server_or_the_store_loaded() -> None:
    probe = (
        "import sys, node.cli, node.cli.client\n"
        "node.cli.cli.get_command(None, 'publish')\n"
        "heavy = [m for m in ('sqlalchemy', 'stix2', 'flask', 'gunicorn', 'node.store', "
        "'requests') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert result.stdout.strip() == ""
    listing = run("--help")
    assert listing.returncode == 0
    for name in ("publish", "collections", "get", "watch", "user", "audit", "policy"):
        assert f"  {name} " in listing.stdout


def test_tlp_1_definitions_are_the_ones_stix2_ships() -> None:
    import stix2

    from node.tlp import _tlp1_definitions

    markings = (stix2.TLP_WHITE, stix2.TLP_GREEN, stix2.TLP_AMBER, stix2.TLP_RED)
    shipped = [json.loads(marking.serialize()) for marking in markings]
    assert _tlp1_definitions() == shipped


# --------------------------------------------------------------------------- examples and demo


def test_the_example_bundles_are_valid_and_marked() -> None:
    from node.tlp import tlp_of
    from node.validation import object_problem

    for path in (EXAMPLE, ROOT / "examples" / "partner-bundle.json"):
        objects = json.loads(path.read_text())["objects"]
        assert [object_problem(obj) for obj in objects] == [None] * len(objects)
        types = {obj["type"] for obj in objects}
        assert {"identity", "indicator", "malware", "relationship", "report"} <= types
        assert sum(1 for obj in objects if tlp_of(obj) is not None) >= 8


def test_the_demo_refuses_a_port_in_use_and_touches_nothing(tmp_path) -> None:
    busy, free = free_port(), free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", busy))
        listener.listen()
        result = subprocess.run(
            [sys.executable, "tools/demo.py", "run", "--dir", str(tmp_path / "demo"),
             "--ports", f"{free},{busy}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env(),
        )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"port {busy}" in line and "in use" in line
    assert not (tmp_path / "demo").exists()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_pair_up_serves_and_syncs_until_ctrl_c_then_leaves_nothing(tmp_path) -> None:
    ports = (free_port(), free_port())
    process = subprocess.Popen(
        [sys.executable, "tools/demo.py", "up", "--dir", str(tmp_path / "up"),
         "--ports", f"{ports[0]},{ports[1]}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        line = ""
        while "pair up" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "tools/demo.py up exited early"
        assert "pair up" in line and all(_listening(port) for port in ports)
        # A's worker pushes what is published on A to B.
        secrets = tmp_path / "up" / "secrets"
        obj = indicator(object_marking_refs=[GREEN])
        response = requests.post(
            f"http://127.0.0.1:{ports[0]}/api/collections/{SHARED}/objects/",
            data=json.dumps({"objects": [obj]}),
            auth=("admin", (secrets / "admin-node-a").read_text().strip()),
            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 202
        auth_b = ("admin", (secrets / "admin-node-b").read_text().strip())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = requests.get(
                f"http://127.0.0.1:{ports[1]}/api/collections/{SHARED}/objects/{obj['id']}/",
                auth=auth_b, headers={"Accept": TAXII}, timeout=30,
            )  # fmt: skip
            if found.status_code == 200:
                break
            time.sleep(0.5)
        assert found.status_code == 200, "node B never received what node A published"
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 0
        assert "pair stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not any(_listening(port) for port in ports)
    workers = subprocess.run(["pgrep", "-f", str(tmp_path / "up")], capture_output=True, text=True)
    assert workers.stdout.strip() == "", "processes left behind"


def _demo_module():
    """tools/demo.py, imported (it is tooling, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("taxii_node_demo", ROOT / "tools" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_pair_resets_a_password_whose_secret_file_was_deleted(tmp_path, monkeypatch, capsys):
    """``make pair`` again after var/secrets/admin-node-a was deleted: the admin account
    exists, so it gets a new password, kept in the file that ``pair`` points to."""
    from node.config import ENV_STORE_URL
    from node.store import Store, accounts

    monkeypatch.delenv(ENV_STORE_URL, raising=False)
    demo = _demo_module()
    chosen = demo.demo_pair(tmp_path, {"node-a": free_port(), "node-b": free_port()})
    demo.pair(chosen)
    secret = tmp_path / "secrets" / "admin-node-a"
    old = secret.read_text().strip()
    secret.unlink()
    capsys.readouterr()
    demo.pair(chosen)
    said = capsys.readouterr().out
    assert f"node-a: admin's password was reset, as {secret} was missing" in said
    assert "node-b:" not in said  # its files are all there: nothing reset
    new = secret.read_text().strip()
    store = Store(chosen.config("node-a").store_url)
    try:
        with store.read() as connection:
            stored = accounts.password_hash_of(connection, "admin")
        assert accounts.password_matches(new, stored) and not accounts.password_matches(old, stored)
    finally:
        store.close()
