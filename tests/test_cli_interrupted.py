"""The client commands when a poll, a page or a POST does not go through to the end.

``watch --state`` must resume where a restart misses nothing (killed with
SIGKILL in the middle of a poll of a stock medallion 3.0.0, which gives every
object of one POST the same date_added; a server that answers 503 in the middle
of its pages), ``get`` and ``collections`` must not report the first pages of
a collection as all of it, and ``publish`` must not report as posted what the
server's status does not account for, nor as failed what the server already holds.

The servers are real, on loopback ports: stock medallion 3.0.0
(``tests.medallion_peer``) and ``PagingServer``, a TAXII 2.1 server of one
collection whose pages and failures each test scripts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from node.timestamps import just_before
from tests import medallion_peer
from tests.medallion_peer import start_medallion
from tests.nodes import cli_in_process, taxii_node_command

ROOT = Path(__file__).resolve().parent.parent
TAXII_21 = "application/taxii+json;version=2.1"
COLLECTION = "5d0f3a5e-7b7c-4c1e-9f51-6a1c2b3d4e5f"
USER = "watcher"
PASSWORD = "watcher-password-1"
T1 = "2024-01-01T00:00:01.000000Z"
T2 = "2024-01-01T00:00:02.000000Z"


# --------------------------------------------------------------------------- helpers


def indicator(number: int) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=number, version=4)}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "name": f"interrupted poll indicator {number}",
        "pattern": f"[ipv4-addr:value = '198.51.100.{number % 250}']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
    }


def ids_of(lines: str) -> list[str]:
    return [json.loads(line)["id"] for line in lines.splitlines() if line.strip()]


def client_env(user: str, password: str) -> dict[str, str | None]:
    """The environment of a client command: these credentials, no other TAXII_NODE_."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TAXII_NODE_")}
    env.update(TAXII_NODE_USER=user, TAXII_NODE_PASSWORD=password)
    return env


def run(url: str, *args: str, user: str = USER, password: str = PASSWORD):
    """``taxii-node ARGS --url URL`` in this process (``cli_in_process``)."""
    return cli_in_process(*args, "--url", url, env=client_env(user, password))


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- a scripted server


@dataclass
class Stored:
    """One object of ``PagingServer``'s collection and the date_added it was added at."""

    obj: dict
    date_added: str


@dataclass
class PagingServer:
    """A TAXII 2.1 server of one collection, as medallion pages it: objects in
    date_added order, at most ``page_size`` a page, later pages by a ``next`` token
    (the index of the page's first object), ``added_after`` keeping what was added
    strictly after (3.4.1).

    ``fail_page`` answers 503 once to the page of that number (1 is the first);
    ``without_next`` answers more: true without a next token and without date
    headers: a server whose pages cannot be followed.  ``status_of`` answers a POST
    with the status it makes of the envelope's objects (stored nowhere).
    """

    stored: list[Stored]
    page_size: int = 20
    fail_page: int | None = None
    without_next: bool = False
    status_of: Callable[[list[dict]], dict] | None = None  # a POST's status
    served_pages: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def api_root(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/api/"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        """(status, body, headers) for a GET of ``path``."""
        collection = {"id": COLLECTION, "title": "paged", "can_read": True, "can_write": True}
        if path == "/api/":
            return 200, {"title": "paging", "versions": [TAXII_21]}, {}
        if path == "/api/collections/":
            return 200, {"collections": [collection]}, {}
        if path == f"/api/collections/{COLLECTION}/":
            return 200, collection, {}
        if path in (f"/api/collections/{COLLECTION}/objects/",
                    f"/api/collections/{COLLECTION}/manifest/"):  # fmt: skip
            return self.page(query)
        return 404, {"title": "not found", "http_status": "404"}, {}

    def page(self, query: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        start = int(query.get("next", "0"))
        number = start // self.page_size + 1
        with self._lock:
            if number == self.fail_page:
                self.fail_page = None
                return 503, {"title": "busy", "http_status": "503"}, {}
            self.served_pages.append(number)
        after = query.get("added_after")
        pool = [s for s in self.stored if after is None or s.date_added > after]
        page = pool[start : start + self.page_size]
        more = start + self.page_size < len(pool)
        body: dict = {"more": more, "objects": [s.obj for s in page]}
        if self.without_next:
            return 200, body, {}
        if more:
            body["next"] = str(start + self.page_size)
        headers = {}
        if page:
            headers = {"X-TAXII-Date-Added-First": page[0].date_added,
                       "X-TAXII-Date-Added-Last": page[-1].date_added}  # fmt: skip
        return 200, body, headers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                self.send(*server.answer(url.path, query))

            def do_POST(self) -> None:
                envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert server.status_of is not None
                self.send(202, server.status_of(envelope["objects"]), {})

            def send(self, status: int, body: dict, headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": TAXII_21, **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def paging_server() -> Iterator[Callable[..., PagingServer]]:
    started: list[PagingServer] = []

    def start(stored: list[Stored], **script) -> PagingServer:
        started.append(PagingServer(stored, **script))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def two_groups() -> tuple[list[Stored], list[str], list[str]]:
    """30 objects added at T1 and 30 at T2 (two POSTs to medallion); their ids."""
    first = [Stored(indicator(n), T1) for n in range(1, 31)]
    second = [Stored(indicator(n), T2) for n in range(31, 61)]
    return first + second, [s.obj["id"] for s in first], [s.obj["id"] for s in second]


# --------------------------------------------------------------------------- watch


def test_watch_killed_mid_poll_of_medallion_resumes_without_skipping(tmp_path):
    """SIGKILL while a poll is printing one POST's objects (one date_added on medallion,
    spread over many pages): the restart prints every object the killed one did not."""
    objects = [indicator(n) for n in range(1, 601)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(medallion_peer, "MAX_PAGE_SIZE", 50)
        peer = start_medallion(tmp_path / "medallion", {"alpha": COLLECTION})
    with peer:
        posted = requests.post(
            peer.collection_url("alpha") + "objects/",
            data=json.dumps({"objects": objects}),
            auth=(peer.user, peer.password),
            headers={"Accept": TAXII_21, "Content-Type": TAXII_21},
            timeout=60,
        )
        assert posted.status_code == 202, posted.text
        state = tmp_path / "alpha.watch"
        command = ["watch", "--state", str(state), "-c", COLLECTION, "--url", peer.api_root]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAXII_NODE_")}
        env.update(TAXII_NODE_USER=peer.user, TAXII_NODE_PASSWORD=peer.password)
        process = subprocess.Popen([*taxii_node_command(), *command], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
        assert process.stdout is not None
        # The first line of page 2 is printed after page 1's position is saved; then
        # the pipe, not read, fills (600 objects are some 200 kB) and the poll blocks
        # in the middle: the kill comes mid-poll whatever the timing.
        printed = [json.loads(process.stdout.readline())["id"] for _ in range(51)]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        printed += ids_of(process.stdout.read())  # what it printed before it died
        assert len(printed) < len(objects)
        assert state.read_text().strip(), "page 1 was printed: its position was saved"

        restarted = run(peer.api_root, *command[:-2], "--once",
                        user=peer.user, password=peer.password)  # fmt: skip
        assert restarted.returncode == 0, restarted.stderr
        assert set(printed) | set(ids_of(restarted.stdout)) == {o["id"] for o in objects}


@pytest.mark.parametrize(
    ("fail_page", "repeated"),
    [
        (2, "all"),  # page 1 held only T1's objects: T1 is printed again, all of it
        (3, "second"),  # page 2 ended at T2: only T2's objects are printed again
    ],
)
def test_watch_failing_mid_poll_resumes_at_the_group_it_was_in(
    tmp_path, paging_server, fail_page, repeated
):
    """A 503 in the middle of the pages ends the watch with one line; the state it left
    takes a restart to the date_added it stopped in, not past it, and not back
    before objects of an earlier date_added."""
    stored, first, second = two_groups()
    server = paging_server(stored, page_size=20, fail_page=fail_page)
    state = tmp_path / "paged.watch"
    watch = ("watch", "-c", COLLECTION, "--once", "--state", str(state))

    failed = run(server.api_root, *watch)
    assert_one_line_error(failed, "503")
    assert ids_of(failed.stdout) == (first + second)[: 20 * (fail_page - 1)]

    restarted = run(server.api_root, *watch)
    assert restarted.returncode == 0, restarted.stderr
    assert ids_of(restarted.stdout) == (first + second if repeated == "all" else second)
    assert state.read_text().strip() == T2  # the poll ended: past everything it printed

    again = run(server.api_root, *watch)
    assert again.returncode == 0 and again.stdout == "", again.stdout + again.stderr


def test_watch_state_is_saved_just_before_the_last_date_added_of_an_unfinished_poll(
    tmp_path, paging_server
):
    stored, _, _ = two_groups()
    server = paging_server(stored, page_size=20, fail_page=3)
    state = tmp_path / "paged.watch"
    failed = run(server.api_root, "watch", "-c", COLLECTION, "--once", "--state", str(state))
    assert failed.returncode == 2
    assert state.read_text() == just_before(T2) + "\n"
    assert not Path(f"{state}.tmp").exists()


def test_watch_a_state_file_that_is_not_a_timestamp_is_named(tmp_path, paging_server):
    server = paging_server([])
    state = tmp_path / "paged.watch"
    state.write_text("yesterday\n")
    result = run(server.api_root, "watch", "-c", COLLECTION, "--once", "--state", str(state))
    assert_one_line_error(result, f"--state {state}", "'yesterday'", "not an RFC 3339")


# --------------------------------------------------------------------------- unfollowable pages


def test_get_does_not_pass_the_first_page_for_the_collection(tmp_path, paging_server):
    """more: true with no next token nor date headers: no bundle is written (exit 2),
    neither to a file nor, closed as if whole, to standard output."""
    stored, _, _ = two_groups()
    server = paging_server(stored, page_size=20, without_next=True)
    output = tmp_path / "bundle.json"

    result = run(server.api_root, "get", "-c", COLLECTION, "-o", str(output))
    assert_one_line_error(result, "more")
    assert not output.exists() and not Path(f"{output}.partial").exists()

    result = run(server.api_root, "get", "-c", COLLECTION)
    assert_one_line_error(result, "more")
    assert not result.stdout.rstrip().endswith("]}")  # not a bundle a reader takes whole


def test_collections_do_not_count_the_first_page_as_all(paging_server):
    stored, _, _ = two_groups()
    server = paging_server(stored, page_size=20, without_next=True)
    assert_one_line_error(run(server.api_root, "collections", "--json"), "more")


def test_watch_does_not_move_its_state_past_pages_it_could_not_follow(tmp_path, paging_server):
    stored, _, _ = two_groups()
    server = paging_server(stored, page_size=20, without_next=True)
    state = tmp_path / "paged.watch"
    result = run(server.api_root, "watch", "-c", COLLECTION, "--once", "--state", str(state))
    assert_one_line_error(result, "more")
    assert not state.exists()


# --------------------------------------------------------------------------- publish


def a_status(objects: list[dict], listed: list[dict], stored: int | None = None) -> dict:
    """A complete status that lists ``listed`` as successes and counts ``stored``."""
    return {"id": str(uuid.uuid4()), "status": "complete", "total_count": len(objects),
            "success_count": len(listed) if stored is None else stored, "failure_count": 0,
            "pending_count": 0,
            "successes": [{"id": o["id"], "version": o["modified"]} for o in listed]}  # fmt: skip


def publish_three(tmp_path: Path, server: PagingServer) -> tuple[subprocess.CompletedProcess, list]:
    objects = [indicator(n) for n in range(1, 4)]
    path = tmp_path / "three.json"
    path.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                "objects": objects}))  # fmt: skip
    return run(server.api_root, "publish", "-c", COLLECTION, "--json", str(path)), objects


@pytest.mark.parametrize("listed", ["the first two", "none"])
def test_publish_names_what_the_status_does_not_account_for(tmp_path, paging_server, listed):
    """The status counts 2 of 3 objects stored: the third is a failure (exit 1), named
    when the successes are listed, else each of the three may be the one."""
    server = paging_server([], status_of=lambda objects: a_status(
        objects, objects[:2] if listed == "the first two" else [], stored=2))  # fmt: skip
    result, objects = publish_three(tmp_path, server)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    failed = [item["id"] for item in summary["failed"]]
    if listed == "the first two":
        assert (summary["posted"], failed) == (2, [objects[2]["id"]])
    else:
        assert (summary["posted"], failed) == (0, [o["id"] for o in objects])
    assert all("may not be stored" in item["message"] for item in summary["failed"])


def test_publish_counts_successes_a_status_only_counts(tmp_path, paging_server):
    server = paging_server([], status_of=lambda objects: a_status(objects, [], stored=3))
    result, _ = publish_three(tmp_path, server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"posted": 3, "already_present": 0, "invalid": [],
                                         "failed": []}  # fmt: skip


def test_publishing_a_bundle_again_to_medallion_is_already_present(tmp_path):
    """medallion 3.0.0 answers "Unable to process object" for a version it holds: read
    back and found identical, it is already present (exit 0); a different object under
    the same id and version is still a failure (exit 1)."""
    bundle = ROOT / "examples" / "bundle.json"
    objects = json.loads(bundle.read_text())["objects"]
    peer = start_medallion(tmp_path / "medallion", {"alpha": COLLECTION})
    with peer:
        publish = ("publish", "-c", COLLECTION, "--json")
        first = run(peer.api_root, *publish, str(bundle), user=peer.user, password=peer.password)
        assert first.returncode == 0, first.stdout + first.stderr
        again = run(peer.api_root, *publish, str(bundle), user=peer.user, password=peer.password)
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout) == {
            "posted": 0, "already_present": len(objects), "invalid": [], "failed": []
        }  # fmt: skip

        changed = {**objects[-1], "description": "not the version medallion holds"}
        path = tmp_path / "changed.json"
        path.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                    "objects": [changed]}))  # fmt: skip
        refused = run(peer.api_root, *publish, str(path), user=peer.user, password=peer.password)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        summary = json.loads(refused.stdout)
        assert summary["already_present"] == 0
        assert [f["id"] for f in summary["failed"]] == [changed["id"]]

        # Both copies under one version in one envelope, in either order: the one
        # medallion holds does not hide the refusal of the other (medallion refuses
        # both: which copy a failure is about cannot be told, so both are reported).
        for pair in ([objects[-1], changed], [changed, objects[-1]]):
            path.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                        "objects": pair}))  # fmt: skip
            mixed = run(peer.api_root, *publish, str(path), user=peer.user,
                        password=peer.password)  # fmt: skip
            assert mixed.returncode == 1, mixed.stdout + mixed.stderr
            assert {f["id"] for f in json.loads(mixed.stdout)["failed"]} == {changed["id"]}
