"""The ``taxii-node`` command line, driven as a user drives it.

Every test runs a ``taxii-node`` command through its entry point (``run``:
the CLI's ``run_guarded`` in this process, as ``tests.nodes.cli_in_process``)
against a node (one in-process node for the module, a stock medallion 3.0.0
for the interoperability tests) and checks what it prints and its exit code:
0 all done, 1 some objects failed, 2 a usage or connection error in one line.
What is about the process itself runs ``python -m node`` (``run_process``):
``--help`` in a real process, the memory bound of ``publish``, ``watch``
against a real gunicorn server until Ctrl-C, and the demo.

The module's node has a small ``max_content_length`` (publish must split its
envelopes) and a small ``max_page_size`` (get, collections and watch must
follow pages).  Tests share it, so each works on fresh object ids or on a
collection of its own:

* alpha: publish tests (they look their objects up by id);
* beta: the ``get`` data set (``get_data``), read-only for account ``partial``;
* gamma: ``watch --once --state``; write-only for ``partial``;
* counted: object counts of ``collections``; live: the long-running ``watch``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import click
import pytest
import requests
import stix2
from click.testing import CliRunner

from node.cli import cli
from tests import medallion_peer
from tests.inprocess import InProcessNode, new_inprocess_node
from tests.medallion_peer import start_medallion
from tests.nodes import (
    NodeFiles,
    RunningNode,
    cli_in_process,
    free_port,
    new_node,
    random_id,
    serving,
    taxii_node_command,
)

NodeT = TypeVar("NodeT", bound=NodeFiles)

ROOT = Path(__file__).resolve().parent.parent
MAX_CONTENT_LENGTH = 20_000
MAX_PAGE_SIZE = 50
ALICE_PASSWORD = "alice-password-1"
PARTIAL_PASSWORD = "partial-password-1"
EXTRA_COLLECTIONS = {
    "counted": "6f1f0a9a-4444-4c3e-9a41-000000000004",
    "live": "6f1f0a9a-5555-4c3e-9a41-000000000005",
}
T1 = "2024-01-01T00:00:00.000Z"
T2 = "2024-02-01T00:00:00.000Z"
TAXII_21 = "application/taxii+json;version=2.1"


# --------------------------------------------------------------------------- helpers


def indicator(object_id: str | None = None, modified: str = T1, **extra) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id or random_id("indicator"),
        "created": T1,
        "modified": modified,
        "name": "cli test indicator",
        "pattern": "[ipv4-addr:value = '198.51.100.1']",
        "pattern_type": "stix",
        "valid_from": T1,
        **extra,
    }


def malware() -> dict:
    return {
        "type": "malware",
        "spec_version": "2.1",
        "id": random_id("malware"),
        "created": T1,
        "modified": T1,
        "name": "cli test malware",
        "is_family": True,
    }


def bundle(objects: list) -> dict:
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def run(*args: str, password: str | None = None, user: str | None = None, input=None):
    """``taxii-node ARGS`` in this process, the password in TAXII_NODE_PASSWORD (and no
    other TAXII_NODE_ variable than it and TAXII_NODE_USER)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TAXII_NODE_")}
    env.update(TAXII_NODE_PASSWORD=password, TAXII_NODE_USER=user)
    return cli_in_process(*args, input=input, env=env)


def run_process(*args: str, password: str | None = None, user: str | None = None, input=None):
    """``python -m node ARGS`` with the password in TAXII_NODE_PASSWORD."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
    if password is not None:
        env["TAXII_NODE_PASSWORD"] = password
    if user is not None:
        env["TAXII_NODE_USER"] = user
    return subprocess.run(
        [*taxii_node_command(), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def as_alice(node: NodeFiles, *args: str, input=None, password: str = ALICE_PASSWORD):
    return run("--config", str(node.config_path), *args, "--user", "alice",
               password=password, input=input)  # fmt: skip


def summary_of(result: subprocess.CompletedProcess) -> dict:
    """The --json summary of publish (its last line of output)."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def fetch(node: NodeFiles, collection: str, *args: str) -> list[dict]:
    """Objects that ``get`` returns (as alice, on stdout)."""
    result = as_alice(node, "get", "--collection", collection, *args)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["type"] == "bundle"
    return document["objects"]


def present_ids(node: NodeFiles, collection: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the collection holds: one ``get`` of all of it (every page)."""
    return set(ids) & {obj["id"] for obj in fetch(node, collection)}


def lines_of_json(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[InProcessNode]:
    running = new_inprocess_node(
        tmp_path_factory.mktemp("cli"),
        "cli-node",
        None,
        taxii_toml=f"max_content_length = {MAX_CONTENT_LENGTH}\nmax_page_size = {MAX_PAGE_SIZE}",
    )
    yield from serving(with_cli_accounts(running))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningNode]:
    """The same node behind gunicorn, for a ``watch`` process that polls it."""
    running = new_node(tmp_path_factory.mktemp("cli-server"), "cli-server", None,
                       taxii_toml=f"max_page_size = {MAX_PAGE_SIZE}")  # fmt: skip
    yield from serving(with_cli_accounts(running))


def with_cli_accounts(running: NodeT) -> NodeT:
    """The extra collections, and accounts alice (all) and partial (some)."""
    collections_dir = running.directory / "collections"
    for alias, collection_id in EXTRA_COLLECTIONS.items():
        (collections_dir / f"{alias}.toml").write_text(
            f'id = "{collection_id}"\nalias = "{alias}"\ntitle = "Collection {alias}"\n'
        )
    running.init()  # loads the two extra collection files
    running.add_user("alice", ALICE_PASSWORD, read=("alpha", "beta", "gamma", "counted", "live"),
                     write=("alpha", "beta", "gamma", "counted", "live"))  # fmt: skip
    running.add_user("partial", PARTIAL_PASSWORD, read=("beta", "counted"),
                     write=("gamma", "counted"))  # fmt: skip
    return running


@pytest.fixture(scope="module")
def get_data(node, tmp_path_factory) -> dict:
    """Collection beta: 120 indicators, a malware and one object in two versions,
    then (after ``cut``) its second version and two more indicators."""
    directory = tmp_path_factory.mktemp("get-data")
    many = [indicator() for _ in range(120)]
    versioned = indicator()
    first = [*many, malware(), versioned]
    result = as_alice(node, "publish", "--collection", "beta",
                      str(write_json(directory / "first.json", bundle(first))))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = requests.get(
        f"{node.collection_url('beta')}manifest/",
        params={"match[id]": versioned["id"]},
        auth=("alice", ALICE_PASSWORD),
        headers={"Accept": TAXII_21},
        timeout=10,
    )
    manifest.raise_for_status()
    cut = manifest.json()["objects"][0]["date_added"]
    later = [indicator(versioned["id"], modified=T2), indicator(), indicator()]
    result = as_alice(node, "publish", "--collection", "beta",
                      str(write_json(directory / "later.json", bundle(later))))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ids = {obj["id"] for obj in first + later}
    return {"first": first, "later": later, "versioned": versioned["id"], "cut": cut, "ids": ids}


# --------------------------------------------------------------------------- publish


def test_publish_a_bundle_file(node, tmp_path):
    objects = [indicator() for _ in range(5)] + [malware()]
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    result = as_alice(node, "publish", "--collection", "alpha", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "posted 6, already present 0, failed 0" in result.stdout
    assert present_ids(node, "alpha", [o["id"] for o in objects]) == {o["id"] for o in objects}


def test_publish_a_directory_stdin_list_and_single_object(node, tmp_path):
    in_bundle, in_list = [indicator(), indicator()], [indicator(), malware(), indicator()]
    single = indicator()
    directory = tmp_path / "reports"
    write_json(directory / "a.json", bundle(in_bundle))
    write_json(directory / "nested" / "b.json", in_list)  # a bare JSON list, one level down
    (directory / "README.txt").write_text("not JSON, and not *.json: ignored")
    result = as_alice(node, "publish", "-c", "alpha", "--json", str(directory))
    assert result.returncode == 0, result.stderr
    assert summary_of(result) == {"posted": 5, "already_present": 0, "invalid": [], "failed": []}

    from_stdin = [indicator(), indicator(), indicator()]
    result = as_alice(node, "publish", "-c", "alpha", "-", input=json.dumps(bundle(from_stdin)))
    assert result.returncode == 0, result.stderr
    assert "posted 3," in result.stdout

    path = write_json(tmp_path / "one.json", single)
    result = as_alice(node, "publish", "-c", "alpha", str(path))
    assert result.returncode == 0, result.stderr
    assert "posted 1," in result.stdout

    every = [o["id"] for o in in_bundle + in_list + from_stdin + [single]]
    assert present_ids(node, "alpha", every) == set(every)


def test_dry_run_validates_and_posts_nothing(node, tmp_path):
    good = [indicator(), indicator()]
    path = write_json(tmp_path / "bundle.json", bundle(good))
    result = as_alice(node, "publish", "-c", "alpha", "--dry-run", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 valid, 0 invalid (dry run: nothing posted)" in result.stdout
    assert present_ids(node, "alpha", [o["id"] for o in good]) == set()

    broken = indicator()
    del broken["pattern"]
    path = write_json(tmp_path / "mixed.json", bundle([indicator(), broken]))
    # No server needed, no credentials needed: validation is local.
    result = run("publish", "-c", "alpha", "--dry-run", "--json", str(path))
    assert result.returncode == 1, result.stderr
    report = summary_of(result)
    assert report["valid"] == 1
    assert [item["id"] for item in report["invalid"]] == [broken["id"]]


def test_invalid_objects_are_listed_and_the_valid_ones_posted(node, tmp_path):
    valid = [indicator(), malware()]
    no_pattern = indicator()
    del no_pattern["pattern"]
    stix20 = indicator()
    del stix20["spec_version"]
    bad_time = indicator(modified="yesterday")
    objects = [valid[0], no_pattern, stix20, 42, bad_time, valid[1]]
    path = write_json(tmp_path / "mixed.json", bundle(objects))

    result = as_alice(node, "publish", "-c", "alpha", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    invalid = [line for line in result.stdout.splitlines() if line.startswith("INVALID")]
    assert len(invalid) == 4, result.stdout + result.stderr
    assert any(no_pattern["id"] in line and "'pattern'" in line for line in invalid)
    assert any(stix20["id"] in line and "spec_version" in line for line in invalid)
    assert any(bad_time["id"] in line and "yesterday" in line for line in invalid)
    assert any("(no id)" in line and "int 42" in line for line in invalid)
    assert "posted 2, already present 0, failed 4" in result.stdout
    ids = [o["id"] for o in valid] + [no_pattern["id"], stix20["id"], bad_time["id"]]
    assert present_ids(node, "alpha", ids) == {o["id"] for o in valid}

    result = as_alice(node, "publish", "-c", "alpha", "--json", str(path))
    assert result.returncode == 1
    summary = summary_of(result)
    assert set(summary) == {"posted", "already_present", "invalid", "failed"}
    assert summary["already_present"] == 2 and summary["posted"] == 0
    assert {item["id"] for item in summary["invalid"]} == {
        no_pattern["id"],
        stix20["id"],
        bad_time["id"],
        "",
    }
    assert all(item["message"] and item["source"] == str(path) for item in summary["invalid"])


def test_republish_counts_already_present(node, tmp_path):
    objects = [indicator() for _ in range(4)]
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    first = as_alice(node, "publish", "-c", "alpha", "--json", str(path))
    assert first.returncode == 0, first.stderr
    assert summary_of(first) == {"posted": 4, "already_present": 0, "invalid": [], "failed": []}
    objects.append(indicator())
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    again = as_alice(node, "publish", "-c", "alpha", "--json", str(path))
    assert again.returncode == 0, again.stderr
    assert summary_of(again) == {"posted": 1, "already_present": 4, "invalid": [], "failed": []}
    text = as_alice(node, "publish", "-c", "alpha", str(path))
    assert "posted 0, already present 5, failed 0" in text.stdout


def test_envelopes_are_split_to_fit_max_content_length(node, tmp_path):
    objects = [indicator(description=f"object {n} " + "x" * 100) for n in range(300)]
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    assert path.stat().st_size > 4 * MAX_CONTENT_LENGTH
    result = as_alice(node, "publish", "-c", "alpha", "--json", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "413" not in result.stdout + result.stderr
    assert summary_of(result) == {"posted": 300, "already_present": 0, "invalid": [], "failed": []}
    ids = [o["id"] for o in objects]
    assert present_ids(node, "alpha", ids) == set(ids)


def test_an_object_larger_than_max_content_length_fails_alone(node, tmp_path):
    huge = indicator(description="x" * MAX_CONTENT_LENGTH)
    small = [indicator(), indicator()]
    path = write_json(tmp_path / "bundle.json", [small[0], huge, small[1]])
    result = as_alice(node, "publish", "-c", "alpha", "--json", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    summary = summary_of(result)
    assert summary["posted"] == 2
    assert [item["id"] for item in summary["failed"]] == [huge["id"]]
    assert "max_content_length" in summary["failed"][0]["message"]
    ids = [huge["id"], *(o["id"] for o in small)]
    assert present_ids(node, "alpha", ids) == {o["id"] for o in small}


def test_publish_errors_are_one_line_with_exit_code_2(node, tmp_path):
    good = write_json(tmp_path / "good.json", bundle([indicator()]))
    result = as_alice(node, "publish", "-c", "alpha", str(good), password="wrong-password")
    assert_one_line_error(result, "401", "check the user name and password")

    result = as_alice(node, "publish", "-c", "no-such-collection", str(good))
    assert_one_line_error(result, "no-such-collection")

    down = f"http://127.0.0.1:{free_port()}/api/"  # bound once, now closed
    result = run("publish", "--url", down, "--user", "alice", "-c", "alpha", str(good),
                 password=ALICE_PASSWORD)  # fmt: skip
    assert_one_line_error(result, "is the server running")
    assert result.stderr.count("is the server running") == 1, result.stderr  # one hint

    result = as_alice(node, "publish", "-c", "alpha", str(tmp_path / "missing.json"))
    assert_one_line_error(result, "missing.json", "no such file")

    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"type": "bundle", "objects": [{"type": "indicator", ')
    result = as_alice(node, "publish", "-c", "alpha", str(truncated))
    assert_one_line_error(result, "truncated.json", "invalid JSON")

    not_json = tmp_path / "notes.json"
    not_json.write_text("indicator: 198.51.100.1\n")
    result = as_alice(node, "publish", "-c", "alpha", "--dry-run", str(not_json))
    message = assert_one_line_error(result, "notes.json", "not JSON")
    assert message.count("notes.json") == 1

    result = run("--config", str(node.config_path), "publish", "-c", "alpha", str(good),
                 user="alice")  # fmt: skip
    assert_one_line_error(result, "no password", "TAXII_NODE_PASSWORD")


def test_publish_streams_a_large_bundle_in_bounded_memory(tmp_path):
    """Peak RSS of ``publish --dry-run``: 20,000 objects vs 2,000 (10x the file)."""

    def write_bundle(path: Path, count: int) -> Path:
        with path.open("w") as handle:
            handle.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [')
            for n in range(count):
                handle.write(("," if n else "") + json.dumps(indicator(name=f"indicator {n}")))
            handle.write("]}")
        return path

    # A fresh wrapper per run: RUSAGE_CHILDREN then covers that one child only.
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    )

    def peak_kib(path: Path) -> tuple[int, str]:
        result = subprocess.run(
            [sys.executable, "-c", wrapper, *taxii_node_command(), "publish", "-c", "alpha",
             "--dry-run", str(path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return int(result.stderr.strip().splitlines()[-1]), result.stdout

    small = write_bundle(tmp_path / "small.json", 2_000)
    large = write_bundle(tmp_path / "large.json", 20_000)
    assert large.stat().st_size > 5_000_000
    small_peak, small_out = peak_kib(small)
    large_peak, large_out = peak_kib(large)
    assert "2000 valid, 0 invalid" in small_out
    assert "20000 valid, 0 invalid" in large_out
    assert large_peak - small_peak < 30 * 1024, (small_peak, large_peak)


# --------------------------------------------------------------------------- collections


def test_collections_show_permissions_and_counts(node, tmp_path, get_data):
    objects = [indicator(), indicator(), malware()]
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    result = run("--config", str(node.config_path), "publish", "-c", "counted", str(path),
                 "--user", "partial", password=PARTIAL_PASSWORD)  # fmt: skip
    assert result.returncode == 0, result.stderr

    args = ("--config", str(node.config_path), "collections", "--user", "partial")
    listing = run(*args, "--json", password=PARTIAL_PASSWORD)
    assert listing.returncode == 0, listing.stderr
    rows = {row["alias"]: row for row in json.loads(listing.stdout)}
    assert set(rows) == {"beta", "gamma", "counted"}  # nothing on alpha or live
    assert rows["counted"]["objects"] == 3
    assert rows["beta"]["objects"] == len(get_data["ids"])  # > max_page_size: paged
    assert rows["gamma"]["objects"] is None  # write-only: cannot be counted

    text = run(*args, password=PARTIAL_PASSWORD)
    assert text.returncode == 0, text.stderr
    table = {line.split()[1]: line.split() for line in text.stdout.splitlines()}
    assert table["counted"][2:4] == ["rw", "3"]
    assert table["beta"][2:4] == ["r-", str(len(get_data["ids"]))]
    assert table["gamma"][2:4] == ["-w", "?"]

    wrong = run(*args, password="not-the-password")
    assert_one_line_error(wrong, "401")


# --------------------------------------------------------------------------- get


def test_get_writes_a_valid_bundle_following_pages(node, tmp_path, get_data):
    output = tmp_path / "beta.json"
    result = as_alice(node, "get", "-c", "beta", "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    with output.open() as handle:
        document = json.load(handle)
    ids = [obj["id"] for obj in document["objects"]]
    assert len(ids) == len(get_data["ids"]) > 2 * MAX_PAGE_SIZE
    assert set(ids) == get_data["ids"]  # latest versions: each id once
    versioned = next(o for o in document["objects"] if o["id"] == get_data["versioned"])
    assert versioned["modified"] == T2
    parsed = stix2.parse(document, allow_custom=True)
    assert len(parsed.objects) == len(ids)


def test_get_filters(node, get_data):
    malware_only = fetch(node, "beta", "--type", "malware")
    assert [o["type"] for o in malware_only] == ["malware"]
    both_types = fetch(node, "beta", "--type", "malware", "--type", "indicator")
    assert len(both_types) == len(get_data["ids"])

    versions = fetch(node, "beta", "--id", get_data["versioned"], "--version", "all")
    assert sorted(o["modified"] for o in versions) == [T1, T2]

    after = fetch(node, "beta", "--added-after", get_data["cut"])
    assert {o["id"] for o in after} == {o["id"] for o in get_data["later"]}

    bad = as_alice(node, "get", "-c", "beta", "--added-after", "yesterday")
    assert_one_line_error(bad, "--added-after", "RFC 3339")
    unknown = as_alice(node, "get", "-c", "nope")
    assert_one_line_error(unknown, "nope")


# --------------------------------------------------------------------------- watch


def test_watch_once_with_state_prints_only_new_objects(node, tmp_path):
    state = tmp_path / "gamma.watch"
    first = [indicator() for _ in range(3)]
    path = write_json(tmp_path / "first.json", bundle(first))
    assert as_alice(node, "publish", "-c", "gamma", str(path)).returncode == 0

    watched = as_alice(node, "watch", "-c", "gamma", "--once", "--state", str(state))
    assert watched.returncode == 0, watched.stderr
    assert [o["id"] for o in lines_of_json(watched.stdout)] == [o["id"] for o in first]
    assert state.read_text().strip()

    more = [indicator() for _ in range(MAX_PAGE_SIZE + 5)]  # more than one page
    path = write_json(tmp_path / "more.json", bundle(more))
    assert as_alice(node, "publish", "-c", "gamma", str(path)).returncode == 0
    watched = as_alice(node, "watch", "-c", "gamma", "--once", "--state", str(state))
    assert watched.returncode == 0, watched.stderr
    assert [o["id"] for o in lines_of_json(watched.stdout)] == [o["id"] for o in more]

    again = as_alice(node, "watch", "-c", "gamma", "--once", "--state", str(state))
    assert again.returncode == 0 and again.stdout == ""


def test_watch_prints_objects_as_they_are_published(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
    env["TAXII_NODE_PASSWORD"] = ALICE_PASSWORD
    process = subprocess.Popen(
        [*taxii_node_command(), "--config", str(server.config_path), "watch", "-c", "live",
         "--user", "alice", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def read(count: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"watch printed only {got} (exit code {process.poll()})"
            try:
                got.append(json.loads(lines.get(timeout=remaining))["id"])
            except queue.Empty:
                continue
        return got

    try:
        for round_number in range(2):
            objects = [indicator(), malware()]
            path = write_json(tmp_path / f"round{round_number}.json", bundle(objects))
            assert as_alice(server, "publish", "-c", "live", str(path)).returncode == 0
            assert read(2) == [o["id"] for o in objects]
        time.sleep(0.6)  # three more polls: nothing is printed twice
        assert lines.empty()
        assert process.poll() is None  # still watching
        process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


# --------------------------------------------------------------------------- medallion


def test_client_commands_against_medallion(tmp_path):
    objects = [indicator() for _ in range(120)]
    path = write_json(tmp_path / "bundle.json", bundle(objects))
    # Smaller pages than medallion's 1000, so that get/collections/watch must follow `next`.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(medallion_peer, "MAX_PAGE_SIZE", MAX_PAGE_SIZE)
        peer = start_medallion(tmp_path / "medallion")
    collection = peer.collections["alpha"]
    with peer:
        server = ("--url", peer.api_root, "--user", peer.user)
        result = run("publish", *server, "-c", collection, "--json", str(path),
                     password=peer.password)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert summary_of(result)["posted"] == len(objects)

        output = tmp_path / "out.json"
        result = run("get", *server, "-c", collection, "-o", str(output), password=peer.password)
        assert result.returncode == 0, result.stderr
        document = json.loads(output.read_text())
        assert sorted(o["id"] for o in document["objects"]) == sorted(o["id"] for o in objects)
        stix2.parse(document, allow_custom=True)

        result = run("collections", *server, "--json", password=peer.password)
        assert result.returncode == 0, result.stderr
        counts = {row["id"]: row["objects"] for row in json.loads(result.stdout)}
        assert counts[collection] == len(objects)

        # All 120 share one date_added on medallion: watch must page with `next`.
        result = run("watch", *server, "-c", collection, "--once", password=peer.password)
        assert result.returncode == 0, result.stderr
        assert len({o["id"] for o in lines_of_json(result.stdout)}) == len(objects)

        result = run("publish", *server, "-c", collection, str(path), password="wrong")
        assert_one_line_error(result, "401")


# --------------------------------------------------------------------------- operator commands


def test_user_commands(node):
    def user(*args: str, input: str | None = None):
        return node.cli_in_process("user", *args, input=input, check=False)

    added = user("add", "bob", "--password-stdin", "--read", "alpha", "--write", "beta",
                 input="bob-password-1\n")  # fmt: skip
    assert added.returncode == 0 and "user bob added" in added.stdout, added.stderr

    duplicate = user("add", "bob", "--password-stdin", input="bob-password-1\n")
    assert_one_line_error(duplicate, "already exists")
    unknown = user("add", "carol", "--password-stdin", "--read", "nope", input="carol-pass-1\n")
    message = assert_one_line_error(unknown, "unknown collection 'nope'")
    for alias in ("alpha", "beta", "gamma", "counted", "live"):
        assert alias in message
    short = user("add", "dave", "--password-stdin", input="short\n")
    assert_one_line_error(short, "at least 8 characters")

    listing = user("list")
    assert listing.returncode == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in listing.stdout.splitlines()}
    assert rows["admin"][1] == "admin"
    assert rows["bob"][1] != "admin" and rows["bob"][2] == "alpha:r, beta:w"
    assert {"carol", "dave"}.isdisjoint(rows)

    granted = user("grant", "bob", "--read", "gamma", "--write", "alpha")
    assert granted.returncode == 0, granted.stderr
    assert_one_line_error(user("grant", "nobody", "--read", "alpha"), "no user 'nobody'")

    # bob has never logged in, so no server-side cache can hold the old password.
    changed = user("passwd", "bob", "--password-stdin", input="bob-password-2\n")
    assert changed.returncode == 0, changed.stderr
    login = ("--config", str(node.config_path), "collections", "--user", "bob")
    assert_one_line_error(run(*login, password="bob-password-1"), "401")
    new_login = run(*login, password="bob-password-2")
    assert new_login.returncode == 0, new_login.stderr
    # The rights granted above: rw on alpha, -w on beta, r- on gamma.
    rights = {line.split()[1]: line.split()[2] for line in new_login.stdout.splitlines()}
    assert rights == {"alpha": "rw", "beta": "-w", "gamma": "r-"}

    removed = user("remove", "bob")
    assert removed.returncode == 0 and "user bob removed" in removed.stdout
    assert_one_line_error(user("remove", "bob"), "no user 'bob'")  # gone


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("sync-admin", ("--admin", "--peer", "cli-peer"), "--admin and --peer exclude each other"),
        ("", (), "the account name is empty"),
        ("ali:ce", (), "a colon cannot be signed in with"),
        ("ali\tce", (), "holds a control character"),
        ("a" * 129, (), "the account name has 129 characters; at most 128"),
    ],
    ids=["admin-peer", "empty", "colon", "control", "long"],
)
def test_user_add_refuses_names_basic_auth_cannot_carry_and_admin_peers(node, name, options,
                                                                        expected):  # fmt: skip
    before = node.cli_in_process("user", "list").stdout
    result = node.cli_in_process("user", "add", name, "--password-stdin", *options,
                                 input="some-password-1\n", check=False)  # fmt: skip
    assert_one_line_error(result, expected)
    assert node.cli_in_process("user", "list").stdout == before


def test_user_add_takes_a_name_of_128_characters(node):
    name = "b" * 128
    node.cli_in_process("user", "add", name, "--password-stdin", input="some-password-1\n")
    assert name in node.cli_in_process("user", "list").stdout
    node.cli_in_process("user", "remove", name)


def test_init_is_idempotent(node):
    before = node.cli_in_process("user", "list").stdout
    again = node.cli_in_process("init", check=False)
    assert again.returncode == 0, again.stderr
    assert "collection updated: alpha" in again.stdout
    assert "migrated" not in again.stdout
    assert "store ready" in again.stdout
    assert node.cli_in_process("user", "list").stdout == before


HUGE = "99999999999999999999999"  # past any 64-bit store column


@pytest.fixture(scope="module")
def releaser(node) -> str:
    """rita, an account with the role releaser (password rita-password-1)."""
    node.add_user("rita", "rita-password-1")
    node.cli_in_process("user", "role", "rita", "releaser")
    return "rita"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("release", "list", "--tlp", "purple"), "'purple' is not a TLP level"),
        (("release", "approve", "--tlp", "purple", "--as", "rita"), "'purple' is not a TLP level"),
        (("release", "approve", HUGE, "--as", "rita"), f"{HUGE} is not a number from 1 to"),
        (("quarantine", "accept", HUGE), f"{HUGE} is not a number from 1 to"),
        (("sync", "retry", HUGE), f"{HUGE} is not a number from 1 to"),
        (("sync", "skip", HUGE), f"{HUGE} is not a number from 1 to"),
        (("audit", "--limit", "99999999999999999999"), "is not a number from 0 to"),
        (("audit", "--limit", "-5"), "-5 is not a number from 0 to"),
        (("token", "create", "alice", "--expires", "99999999999999999999d"), "after the year 9999"),
        (("token", "create", "alice", "--expires", "3000000d"), "after the year 9999"),
        (("token", "list", "nosuch"), "no user 'nosuch'"),
        (("release", "list", "--peer", "nosuch"), "no peer named 'nosuch'"),
        (("quarantine", "list", "--peer", "nosuch"), "no peer named 'nosuch'"),
    ],
    ids=lambda value: " ".join(value)[:40] if isinstance(value, tuple) else None,
)
def test_bad_numbers_levels_and_names_are_one_line_errors(node, releaser, args, expected):
    tokens_before = node.cli_in_process("token", "list").stdout
    result = node.cli_in_process(*args, check=False, env={"TAXII_NODE_PASSWORD": "rita-password-1"})
    assert_one_line_error(result, expected)
    assert node.cli_in_process("token", "list").stdout == tokens_before


def test_revoking_a_token_twice_says_it_was_revoked_already(node):
    created = node.cli_in_process("token", "create", "alice", "--expires", "1d")
    token_id = created.stderr.split()[1]
    first = node.cli_in_process("token", "revoke", token_id)
    assert f"token {token_id} of alice revoked" in first.stdout
    again = node.cli_in_process("token", "revoke", token_id, check=False)
    assert_one_line_error(again, f"token {token_id} of alice was already revoked at ")


def bare_config(directory: Path, store_path: str) -> Path:
    """A node config of no peers and no collections, its store at ``store_path``."""
    path = directory / "node.toml"
    path.write_text(
        f'[node]\nname = "bare"\n[server]\ninsecure_http = true\n[store]\npath = "{store_path}"\n'
    )
    return path


@pytest.mark.parametrize("command", [("user", "list"), ("token", "list"), ("release", "list")])
def test_a_read_only_command_creates_no_store_at_a_mistyped_path(tmp_path, command):
    config = bare_config(tmp_path, "typo/data/node.db")
    result = run("--config", str(config), *command)
    assert_one_line_error(result, f"the store {tmp_path / 'typo/data/node.db'} does not exist yet",
                          "init")  # fmt: skip
    assert not (tmp_path / "typo").exists()
    checked = run("--config", str(config), "check")
    assert checked.returncode == 0, checked.stderr
    assert "the store does not exist yet: run init" in checked.stderr
    assert not (tmp_path / "typo").exists()


def test_init_at_a_store_path_that_cannot_be_created_is_one_error_line(tmp_path):
    config = bare_config(tmp_path, "/proc/node.db")
    result = run("--config", str(config), "init")
    assert_one_line_error(result, "cannot create the store /proc/node.db")


def _walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
    yield path
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(click.Context(command))):
            sub = command.get_command(click.Context(command), name)
            assert sub is not None
            yield from _walk(sub, [*path, name])


COMMAND_PATHS = list(_walk(cli, []))


def test_every_command_is_covered():
    assert len(COMMAND_PATHS) >= 19
    assert ["user", "passwd"] in COMMAND_PATHS and ["watch"] in COMMAND_PATHS


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "taxii-node")
def test_help_has_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_help_exits_0_in_a_real_process():
    result = run_process("user", "add", "-h")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout and "--password-stdin" in result.stdout


# --------------------------------------------------------------------------- the demo


def test_demo_runs_end_to_end(tmp_path):
    """tools/demo.py run, on ports and a folder of its own (never the example pair's)."""
    ports = (free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
    result = subprocess.run(
        [sys.executable, "tools/demo.py", "run", "--dir", str(tmp_path / "demo"),
         "--ports", f"{ports[0]},{ports[1]}"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    red_withheld = re.findall(r"WITHHELD .*TLP:RED .*rule: tlp:red-never-leaves", output)
    assert len(red_withheld) == 4, output  # a RED indicator and malware, each way
    assert not re.search(r"SHARED .*TLP:RED\b", output), output
    assert output.count("(redacted: x_internal_note)") == 2, output
    assert "rule: ?" not in output
    assert "[node-a] push to node-b" in output and "[node-b] push to node-a" in output
    assert "pull from" not in output  # each node pushes its own (config/node-*.toml)
    assert output.count("dependencies sent with them:") == 2
    assert "both nodes stopped" in output
    assert not [port for port in ports if listening(port)]

    # The demo's stores stay behind for a look: policy preview and audit, as a person reads them.
    config = str(tmp_path / "demo" / "node-a.toml")
    preview = run("--config", config, "policy", "preview", "--peer", "node-b")
    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert any(line.startswith("WITHHOLD ") and "'Implant C2 198.51.100.66'" in line
               and "[tlp:red-never-leaves]" in line for line in lines)  # fmt: skip
    assert re.fullmatch(r"would send \d+, would withhold 5; by rule: .*tlp:red-never-leaves 2.*",
                        lines[-1]), lines[-1]  # fmt: skip
    newest = run("--config", config, "audit", "--limit", "3").stdout.splitlines()
    oldest = run("--config", config, "audit", "--limit", "3", "--oldest-first").stdout.splitlines()
    assert newest[0].split() == ["AT", "DIRECTION", "ACTION", "WHO", "OBJECT", "RULE", "DETAIL"]
    assert newest[0] == oldest[0] and len(newest) == len(oldest) == 4
    assert newest[1] > newest[3] and oldest[1] < oldest[3]  # timestamps lead each line
    assert "user-added" in oldest[1]
