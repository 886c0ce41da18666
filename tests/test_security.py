"""Accounts and audit that a partner can trust: tokens, roles, throttling, the hash chain.

Nothing here depends on the server process: the nodes answer in process
(tests/inprocess.py), commands run through the CLI's entry point in this
process (``cli_in_process``), and the tests read and tamper with the SQLite
file through ``sqlite3`` meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.inprocess import InProcessNode, new_inprocess_node
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS

TAXII = "application/taxii+json;version=2.1"
PEER_TOML = """
[[peers]]
name = "node-b"
api_root = "http://127.0.0.1:9/api/"
user = "node-a"
password_env = "UNUSED_IN_THESE_TESTS"
account = "node-b"

[[peers.mappings]]
local = "alpha"
remote = "alpha"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[InProcessNode]:
    running = new_inprocess_node(
        tmp_path_factory.mktemp("security"),
        "node-a",
        None,
        server_toml="auth_cache_seconds = 0",
        extra_toml=PEER_TOML,
    )
    running.add_user("alice", "alice-password", read=("alpha",), write=("alpha",))
    running.add_user("mallory", "mallory-password", read=("beta",))
    running.add_user(
        "node-b", "peer-password-1", read=("alpha", "beta"), write=("alpha", "beta"), peer="node-b"
    )
    running.start()
    yield running
    running.stop()


def _get(node: InProcessNode, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{node.base_url}{path}", headers={"Accept": TAXII}, timeout=30, **kwargs)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_token_is_printed_once_and_only_its_hash_is_stored(node: InProcessNode) -> None:
    created = node.cli_in_process(
        "token", "create", "alice", "--expires", "1d", "--label", "opencti"
    )
    token = created.stdout.strip()
    assert token.startswith("tnk_")
    response = requests.get(
        f"{node.api_root}collections/", headers={**_bearer(token), "Accept": TAXII}, timeout=30
    )
    assert response.status_code == 200
    assert [c["alias"] for c in response.json()["collections"]] == ["alpha"]
    database = Path(node.store_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT secret_hash FROM api_tokens").fetchall()
    secret = token.split(".", 1)[1]
    assert all(secret not in row[0] for row in stored)
    listing = node.cli_in_process("token", "list", "alice").stdout
    assert "opencti" in listing and "valid until" in listing and secret not in listing


def test_revoked_and_forged_tokens_are_refused(node: InProcessNode) -> None:
    token = node.cli_in_process("token", "create", "alice").stdout.strip()
    token_id = token.removeprefix("tnk_").split(".")[0]
    assert requests.get(node.api_root, headers={**_bearer(token), "Accept": TAXII}).ok
    node.cli_in_process("token", "revoke", token_id)
    refused = requests.get(node.api_root, headers={**_bearer(token), "Accept": TAXII})
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == TAXII
    assert "Bearer" in refused.headers["WWW-Authenticate"]
    forged = token[:-4] + "AAAA"
    other = node.cli_in_process("token", "create", "alice").stdout.strip()
    assert requests.get(node.api_root, headers={**_bearer(other), "Accept": TAXII}).ok
    assert (
        requests.get(node.api_root, headers={**_bearer(forged), "Accept": TAXII}).status_code == 401
    )
    assert "revoked" in node.cli_in_process("token", "list").stdout


def test_token_for_unknown_user_and_bad_expiry_are_usage_errors(node: InProcessNode) -> None:
    unknown = node.cli_in_process("token", "create", "nobody", check=False)
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr
    bad = node.cli_in_process("token", "create", "alice", "--expires", "soon", check=False)
    assert bad.returncode == 2 and "--expires" in bad.stderr


def test_failed_logins_are_throttled_per_account_and_address(node: InProcessNode) -> None:
    node.add_user("carol", "carol-password", read=("alpha",))
    for _ in range(5):
        assert _get(node, "/taxii2/", auth=("carol", "wrong")).status_code == 401
    throttled = _get(node, "/taxii2/", auth=("carol", "carol-password"))
    assert throttled.status_code == 429
    assert throttled.json()["http_status"] == "429"
    assert int(throttled.headers["Retry-After"]) > 0
    # Another account from the same address is not affected.
    assert _get(node, "/taxii2/", auth=("alice", "alice-password")).status_code == 200


def test_unknown_user_and_wrong_password_look_the_same(node: InProcessNode) -> None:
    unknown = _get(node, "/taxii2/", auth=("nobody-here", "whatever"))
    wrong = _get(node, "/taxii2/", auth=("mallory", "whatever"))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_passwords_are_hashed_at_the_node_cost_and_checked_at_their_own() -> None:
    """A node process (not the test harness, which hashes cheaply: tests/passwords.py)
    hashes at scrypt n=2**14, r=8, p=1; a hash made at another cost still checks."""
    script = (
        "from node.store import accounts\n"
        "made = accounts.hash_password('pw-1')\n"
        "print(made.rsplit('$', 2)[0])\n"
        "print(accounts.password_matches('pw-1', made), accounts.password_matches('pw-2', made))\n"
        "print(accounts._dummy_hash().rsplit('$', 2)[0])\n"
        "accounts.PASSWORD_COST = accounts.ScryptCost(n=2, r=1, p=1)\n"
        "print(accounts.password_matches('pw-1', made))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.stdout.splitlines() == [
        "scrypt$16384$8$1",
        "True False",
        "scrypt$16384$8$1",
        "True",
    ]


def test_peer_role_reaches_only_its_mapped_collections(node: InProcessNode) -> None:
    auth = ("node-b", "peer-password-1")
    listing = _get(node, "/api/collections/", auth=auth).json()
    assert [c["alias"] for c in listing["collections"]] == ["alpha"]
    # Granted, but not mapped to the peer: invisible.
    beta = _get(node, f"/api/collections/{COLLECTIONS['beta']}/objects/", auth=auth)
    assert beta.status_code == 404
    users = node.cli_in_process("user", "list").stdout
    assert "peer:node-b" in users and "admin" in users and "analyst" in users


def test_audit_covers_logins_account_changes_and_publications(node: InProcessNode) -> None:
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--5a5f5e3a-9c4b-4f5e-8a51-1b2c3d4e5f60",
        "created": "2026-03-01T00:00:00.000Z",
        "modified": "2026-03-01T00:00:00.000Z",
        "pattern": "[ipv4-addr:value = '203.0.113.9']",
        "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z",
    }
    posted = requests.post(
        f"{node.collection_url('alpha')}objects/",
        data=json.dumps({"objects": [obj]}),
        auth=("alice", "alice-password"),
        headers={"Accept": TAXII, "Content-Type": TAXII},
        timeout=30,
    )
    assert posted.status_code == 202
    deleted = requests.delete(
        f"{node.collection_url('alpha')}objects/{obj['id']}/",
        auth=("admin", ADMIN_PASSWORD),
        headers={"Accept": TAXII},
        timeout=30,
    )
    assert deleted.status_code == 200
    _get(node, "/taxii2/", auth=("mallory", "not-her-password"))
    # Successful logins reach the audit from a background writer, within a second.
    deadline = time.monotonic() + 30
    while True:
        exported = node.cli_in_process("audit", "--json", "--limit", "0").stdout
        rows = [json.loads(line) for line in exported.splitlines()]
        actions = {(row["action"], row["actor"] or "") for row in rows}
        if ("login", "alice") in actions or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ("published", "alice") in actions
    assert ("deleted", "admin") in actions
    assert ("login", "alice") in actions
    assert ("login-failed", "mallory") in actions
    assert any(action == "user-added" for action, _ in actions)
    assert all(len(row["hash"]) == 64 for row in rows)


def _tamper(node: InProcessNode, statement: str) -> None:
    database = Path(node.store_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        connection.execute(statement)


def test_audit_chain_detects_edits_and_truncation(tmp_path: Path) -> None:
    node = new_inprocess_node(tmp_path, "node-c", None)
    node.add_user("dave", "dave-password", read=("alpha",))
    node.cli_in_process("user", "passwd", "dave", "--password-stdin", input="new-password-1\n")
    intact = node.cli_in_process("audit", "verify")
    assert "intact" in intact.stdout
    rows = [json.loads(line) for line in node.cli_in_process("audit", "--json").stdout.splitlines()]
    assert len(rows) >= 3

    _tamper(node, f"UPDATE audit SET detail = 'nothing to see' WHERE pk = {rows[1]['pk']}")
    edited = node.cli_in_process("audit", "verify", check=False)
    assert edited.returncode == 1
    assert f"record {rows[1]['pk']}" in edited.stdout and "altered" in edited.stdout

    _tamper(node, f"UPDATE audit SET detail = {rows[1]['detail']!r} WHERE pk = {rows[1]['pk']}")
    assert node.cli_in_process("audit", "verify").returncode == 0
    _tamper(node, f"DELETE FROM audit WHERE pk = {rows[-1]['pk']}")
    truncated = node.cli_in_process("audit", "verify", check=False)
    assert truncated.returncode == 1 and "removed from the end" in truncated.stdout


def test_peer_rights_follow_the_direction_of_our_mapping(tmp_path: Path) -> None:
    """Our mapping pulls alpha and pushes beta: the partner may write alpha and read beta only."""
    directions = PEER_TOML.replace('remote = "alpha"\n', 'remote = "alpha"\ndirection = "pull"\n')
    directions += '\n[[peers.mappings]]\nlocal = "beta"\nremote = "beta"\ndirection = "push"\n'
    node = new_inprocess_node(tmp_path, "node-d", None, extra_toml=directions)
    node.add_user(
        "node-b", "peer-password-1", read=("alpha", "beta"), write=("alpha", "beta"), peer="node-b"
    )
    node.start()
    try:
        auth = ("node-b", "peer-password-1")
        listing = _get(node, "/api/collections/", auth=auth).json()["collections"]
        rights = {c["alias"]: (c["can_read"], c["can_write"]) for c in listing}
        assert rights == {"alpha": (False, True), "beta": (True, False)}
        assert (
            _get(node, f"/api/collections/{COLLECTIONS['alpha']}/objects/", auth=auth).status_code
            == 403
        )
        posted = requests.post(
            f"{node.collection_url('beta')}objects/",
            data=json.dumps({"objects": []}),
            auth=auth,
            headers={"Accept": TAXII, "Content-Type": TAXII},
            timeout=30,
        )
        assert posted.status_code == 403
    finally:
        node.stop()
