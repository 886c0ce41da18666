"""Config validation: every mistake names the file and the key, misspellings get a suggestion.

Most cases load a config in-process (``load_config``); a few run
``taxii-node check`` as an operator would, for its exit code and one-line output.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from node.config import ENV_STORE_URL, ConfigError, load_config
from tests.nodes import cli_in_process, taxii_node_command

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
[node]
name = "test-node"

[server]
host = "127.0.0.1"
port = 6101
insecure_http = true

[store]
path = "data/node.db"

[taxii]
api_root = "api"
collections_dir = "collections"
"""

PEER = """
[[peers]]
name = "partner"
api_root = "http://127.0.0.1:6102/api/"
user = "test-node"
password_env = "PARTNER_PASSWORD"

[[peers.mappings]]
local = "shared"
remote = "shared"
direction = "both"
interval = 2
"""

COLLECTION = 'id = "6f1f0a9a-1111-4c3e-9a41-000000000001"\nalias = "shared"\ntitle = "Shared"\n'


def write_config(directory: Path, text: str) -> Path:
    (directory / "collections").mkdir(exist_ok=True)
    (directory / "collections" / "shared.toml").write_text(COLLECTION)
    path = directory / "node.toml"
    path.write_text(text)
    return path


def config_error(directory: Path, text: str) -> str:
    path = write_config(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def check(path: Path, *, debug: bool = False) -> subprocess.CompletedProcess:
    """``taxii-node check`` with none of the test run's TAXII_NODE_* variables: in this
    process (``cli_in_process``), or with ``--debug`` as a process (its traceback)."""
    if not debug:
        unset = {name: None for name in os.environ if name.startswith("TAXII_NODE_")}
        return cli_in_process("--config", str(path), "check", env=unset)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
    return subprocess.run(
        [*taxii_node_command(), "--debug", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


# --------------------------------------------------------------------------- valid configs


def test_a_valid_config_resolves_paths_against_its_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_STORE_URL, raising=False)
    path = write_config(tmp_path, BASE + PEER)
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.name == "test-node"
    assert config.server.port == 6101 and config.server.workers == 2  # default
    assert config.store_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'node.db'}"
    assert config.taxii.collections_dir == (tmp_path / "collections").resolve()
    assert config.taxii.max_page_size == 1000
    (peer,) = config.peers
    assert peer.api_root == "http://127.0.0.1:6102/api/"
    assert peer.mappings[0].interval == 2.0 and peer.mappings[0].pushes
    assert config.peer("partner") is peer
    with pytest.raises(ConfigError, match="no peer named 'other' \\(peers: partner\\)"):
        config.peer("other")


def test_the_store_url_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_STORE_URL, "postgresql://node@127.0.0.1/elsewhere")
    config = load_config(write_config(tmp_path, BASE))
    assert config.store_url == "postgresql://node@127.0.0.1/elsewhere"


@pytest.mark.parametrize("name", ["node-a", "node-b"])
def test_the_example_configs_pass_check(name):
    result = check(ROOT / "config" / f"{name}.toml")
    assert result.returncode == 0, result.stderr
    assert "ok (1 peer(s))" in result.stdout


# --------------------------------------------------------------------------- misspelled keys


@pytest.mark.parametrize(
    ("old", "new", "where", "suggestion"),
    [
        ("[server]\n", "[sever]\n", "unknown key 'sever'", "server"),
        ('name = "test-node"', 'nmae = "test-node"', "[node] unknown key 'nmae'", "name"),
        ("port = 6101", "prot = 6101", "[server] unknown key 'prot'", "port"),
        ('api_root = "api"', 'api_rot = "api"', "[taxii] unknown key 'api_rot'", "api_root"),
        ('path = "data', 'pth = "data', "[store] unknown key 'pth'", "path"),
        ("password_env =", "pasword_env =", "[[peers]] #1 unknown key", "password_env"),
        ('direction = "both"', 'directon = "both"', "mappings[0] unknown key", "direction"),
    ],
)
def test_a_misspelled_key_gets_a_suggestion(tmp_path, old, new, where, suggestion):
    text = BASE + PEER
    assert old in text
    message = config_error(tmp_path, text.replace(old, new, 1))
    assert where in message
    assert f"(did you mean {suggestion!r}?)" in message
    assert "valid keys:" in message


def test_check_reports_a_misspelled_key_in_one_line(tmp_path):
    path = write_config(tmp_path, BASE.replace("port = 6101", "prot = 6101"))
    result = check(path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and "[server]" in line and "did you mean 'port'" in line

    debug = check(path, debug=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 6101", 'port = "6101"', "[server] port: expected an integer, got '6101'"),
        ("port = 6101", "port = 70000", "[server] port: 70000 is outside 1..65535"),
        ("port = 6101", "port = true", "[server] port: expected an integer"),
        ("insecure_http = true", 'insecure_http = "yes"', "insecure_http: expected true or false"),
        ('api_root = "api"', 'api_root = "taxii2"', "[taxii] api_root: 'taxii2'"),
        ('api_root = "api"', 'api_root = "a/b"', "must be one path segment"),
        ('api_root = "api"', 'api_root = "api"\nmax_page_size = 0', "max_page_size: 0 is outside"),
        (
            'api_root = "api"',
            'api_root = "api"\nmax_content_length = 100',
            "max_content_length: 100 is outside 1024..",
        ),
        ('name = "test-node"', 'name = ""', "[node] name: expected a non-empty string"),
        ('name = "test-node"\n', "", "[node] name: required"),
        ('path = "data/node.db"', 'path = "x.db"\nurl = "sqlite://"', "either url or path"),
        ('api_root = "http://127.0.0.1:6102', 'api_root = "ftp://x', "is not an http(s) URL"),
        ('user = "test-node"\n', "", "peer 'partner' user: required"),
        ('direction = "both"', 'direction = "sideways"', "'sideways' is not push, pull or both"),
        ("interval = 2", "interval = 0", "interval: expected a positive number"),
        ("interval = 2", 'interval = 2\negress = "amber"', "egress must be a table"),
        ('name = "partner"', 'name = "partner"\ntimeout = -1', "timeout: expected a positive"),
        ('name = "partner"', 'name = "partner"\nbatch = 0', "batch: 0 is outside 1..10000"),
        ('name = "partner"', 'name = "partner"\nbatch = 10001', "batch: 10001 is outside"),
        ('name = "partner"', 'name = "partner"\nbatch = "50"', "batch: expected an integer"),
        (
            'password_env = "PARTNER_PASSWORD"',
            'password_env = "PARTNER_PASSWORD"\npassword_file = "secret"',
            "peer 'partner' set either password_file or password_env, not both",
        ),
    ],
)
def test_a_bad_value_names_the_key(tmp_path, old, new, expected):
    text = BASE + PEER
    assert old in text
    message = config_error(tmp_path, text.replace(old, new, 1))
    assert expected in message


def test_structural_mistakes(tmp_path):
    assert "peers must be an array of tables" in config_error(
        tmp_path, BASE + '\n[peers]\nname = "x"\n'
    )
    assert "[server] must be a table" in config_error(tmp_path, 'server = 1\n[node]\nname = "n"\n')
    duplicate = config_error(tmp_path, BASE + PEER + PEER)
    assert "[[peers]] #2: duplicate peer name 'partner'" in duplicate
    assert "not valid TOML" in config_error(tmp_path, BASE + "[server\n")
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(missing)


def test_check_reports_a_config_file_that_is_not_utf8_in_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[node]\n")
    result = check(path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and "not UTF-8" in line


def test_plain_http_only_on_loopback(tmp_path):
    message = config_error(tmp_path, BASE.replace('"127.0.0.1"', '"0.0.0.0"', 1))
    assert "insecure_http" in message and "loopback" in message
    assert "insecure_http = true" in config_error(
        tmp_path, BASE.replace("insecure_http = true\n", "")
    )


# --------------------------------------------------------------------------- check: policies


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ('[peers.mappings.egress]\nmax_tlp = "purple"\n', "mappings[0].egress.max_tlp: 'purple'"),
        ("[peers.mappings.ingress]\nmin_confidence = 500\n", "mappings[0].ingress.min_confidence"),
        ('[peers.mappings.egress]\nmax_tlpp = "amber"\n', "mappings[0].egress.max_tlpp: unknown"),
    ],
)
def test_check_reports_bad_policy_values_with_the_key_path(tmp_path, policy, expected):
    path = write_config(tmp_path, BASE + PEER + policy)
    result = check(path)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and "peer 'partner'" in line and expected in line


def test_check_reports_a_bad_collection_file(tmp_path):
    path = write_config(tmp_path, BASE)
    bad = tmp_path / "collections" / "broken.toml"
    bad.write_text('id = "not-a-uuid"\ntitle = "Broken"\n')
    result = check(path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "broken.toml" in line and "id must be a UUID" in line
    bad.unlink()
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "ok (0 peer(s))" in result.stdout


# --------------------------------------------------------------------------- collection names


def _taxii_node(path: Path, command: str) -> subprocess.CompletedProcess:
    unset = {name: None for name in os.environ if name.startswith("TAXII_NODE_")}
    return cli_in_process("--config", str(path), command, env=unset)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_a_changed_collection_id_under_a_kept_alias_is_refused_by_check_and_init(tmp_path):
    path = write_config(tmp_path, BASE)
    assert _taxii_node(path, "init").returncode == 0
    old_id = "6f1f0a9a-1111-4c3e-9a41-000000000001"
    collection_file = tmp_path / "collections" / "shared.toml"
    collection_file.write_text(COLLECTION.replace(old_id, "6f1f0a9a-9999-4c3e-9a41-000000000009"))
    for command in ("check", "init"):
        line = _one_error_line(_taxii_node(path, command))
        assert str(collection_file) in line, line
        assert f"alias 'shared' already belongs to collection {old_id} in the store" in line
        assert "IntegrityError" not in line


def test_an_alias_equal_to_another_collections_id_is_refused(tmp_path):
    path = write_config(tmp_path, BASE)
    other = tmp_path / "collections" / "other.toml"
    other.write_text(
        'id = "6f1f0a9a-2222-4c3e-9a41-000000000002"\n'
        'alias = "6f1f0a9a-1111-4c3e-9a41-000000000001"\ntitle = "Other"\n'
    )
    line = _one_error_line(check(path))
    assert str(other) in line and "is the id of the collection of" in line
    assert "shared.toml" in line
