"""The sync worker against real peers on loopback: one object never blocks, dead letters
are operable, dependencies cross once, counts are honest, and health is reported.

node-b is a real taxii-node server; where it must misbehave (answer 500 to one
object, as OpenTAXII 0.10.0b1 does), node-a reaches it through ``FaultyProxy``,
a real HTTP server on loopback that forwards everything else unchanged.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from node.sharing.records import ALREADY_HERE
from node.store import audit, objects, provenance
from node.sync.pull import PULL_PAGES_PER_ROUND
from node.timestamps import from_micros, now_micros, to_micros
from node.validation import SCO_ID_NAMESPACE
from tests.nodes import COLLECTIONS, start_sync_worker
from tests.pair import Pair, make_pair, run_cli
from tests.test_client import _TricklingServer
from tests.test_sync import (
    ADMIN,
    MARKINGS,
    TLP2,
    by_version,
    holdings,
    identity,
    indicator,
    peer_auth,
    publish,
)

GREEN = {"max_tlp": "green"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class FaultyProxy:
    """Forwards requests to ``upstream``; answers 500 (an HTML page, as werkzeug does) to a
    POST whose body names one of ``poison``, and the next ``endless_pages`` GETs of
    objects/ with an empty page that says ``more`` (a fresh ``next`` each time).

    A POST loses the objects named in ``swallow`` on the way (the peer never sees them,
    and its status does not name them), the next ``swallow_times`` times; with
    ``pending`` set, the status a POST is answered with is rewritten to say pending,
    pending_count 0, every object in ``pendings`` (the final one is the upstream's own
    status resource, at the same id).  With ``more_forever``, each page of objects/
    says ``more``, with the same ``next`` ("again"): the same page for ever.  With
    ``throttle``, objects/ GETs are answered 429 with that Retry-After."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.poison: set[str] = set()
        self.endless_pages = 0
        self.pages_served = 0
        self.more_forever = False
        self.throttle: str | None = None
        self.throttled = 0
        self.swallow: set[str] = set()
        self.swallow_times = 1_000_000
        self.pending = False
        self.posted_ids: list[str] = []
        self.status_reads = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if "/objects/" in self.path and proxy.throttle is not None:
                    proxy.too_many(self)
                elif "/objects/" in self.path and proxy.endless_pages > 0:
                    proxy.endless_page(self)
                else:
                    proxy.status_reads += "/status/" in self.path
                    proxy.forward(self, None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = proxy.swallowed(body)
                if any(object_id.encode() in body for object_id in proxy.poison):
                    page = b"<!doctype html>\n<title>500 Internal Server Error</title>\n<p>x</p>"
                    self.send_response(500)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                proxy.forward(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes | None) -> None:
        names = ("Authorization", "Accept", "Content-Type")
        headers = {name: handler.headers[name] for name in names if handler.headers[name]}
        path = handler.path
        if self.more_forever:  # (its own token, which the upstream never issued)
            path = path.replace("next=again&", "").replace("&next=again", "")
        answer = requests.request(
            handler.command, self.upstream + path, data=body, headers=headers,
            timeout=60, allow_redirects=False,
        )  # fmt: skip
        content = answer.content
        if body is not None and self.pending and answer.status_code == 202:
            content = _said_pending(content)
        if body is None and self.more_forever and "/objects/" in handler.path:
            content = json.dumps({**json.loads(content), "more": True, "next": "again"}).encode()
            self.pages_served += 1
        handler.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() in ("content-type", "www-authenticate") or name.startswith("X-TAXII"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def swallowed(self, body: bytes) -> bytes:
        """The POST body without the objects of ``swallow`` (while ``swallow_times`` lasts)."""
        envelope = json.loads(body)
        self.posted_ids += [obj["id"] for obj in envelope["objects"]]
        kept = [obj for obj in envelope["objects"] if obj["id"] not in self.swallow]
        if len(kept) == len(envelope["objects"]) or self.swallow_times <= 0:
            return body
        self.swallow_times -= 1
        return json.dumps({**envelope, "objects": kept}).encode()

    def too_many(self, handler: BaseHTTPRequestHandler) -> None:
        self.throttled += 1
        page = json.dumps({"title": "Too Many Requests", "http_status": "429"}).encode()
        handler.send_response(429)
        handler.send_header("Content-Type", "application/taxii+json;version=2.1")
        handler.send_header("Retry-After", str(self.throttle))
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    def endless_page(self, handler: BaseHTTPRequestHandler) -> None:
        self.endless_pages -= 1
        self.pages_served += 1
        page = json.dumps({"more": True, "next": f"page-{self.pages_served}"}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/taxii+json;version=2.1")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _said_pending(content: bytes) -> bytes:
    """A complete status rewritten as pending with pending_count 0 (4.3.1 allows
    neither reading: its objects are listed in ``pendings``)."""
    status = json.loads(content)
    listed = status.get("successes", []) + status.get("failures", [])
    return json.dumps({
        "id": status["id"], "status": "pending", "total_count": status["total_count"],
        "success_count": 0, "failure_count": 0, "pending_count": 0,
        "pendings": [{"id": entry["id"], "version": entry.get("version")} for entry in listed],
    }).encode()  # fmt: skip


def push_pair(tmp_path: Path, stopper: list, **a_spec) -> Pair:
    """node-a pushes alpha to node-b (node-b's worker moves nothing)."""
    spec = {"direction": "push", "egress": GREEN, **a_spec}
    pair = make_pair(tmp_path, a={"alpha": spec}, b={"alpha": {"direction": "pull"}})
    stopper.append(pair)
    return pair


def through_proxy(pair: Pair, stopper: list) -> FaultyProxy:
    """Point node-a's peer entry for node-b at a proxy in front of node-b."""
    proxy = FaultyProxy(pair.b.base_url)
    stopper.append(proxy)
    config = pair.a.config_path
    config.write_text(config.read_text().replace(pair.b.base_url, proxy.url))
    return proxy


def audit_rows(pair: Pair, node) -> list[dict]:
    with pair.store(node).read() as connection:
        return audit.entries(connection, limit=None)


# --------------------------------------------------------------------------- 5xx object


def test_an_object_the_peer_answers_500_is_dead_lettered_and_the_rest_delivered(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit A", TLP2["green"])
    poisoned = indicator(author, TLP2["green"], "192.0.2.66")
    behind = [indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(3)]
    publish(pair.a.collection_url("alpha"), ADMIN, [author, poisoned, *behind])
    proxy.poison = {poisoned["id"]}

    [push] = pair.run_once(pair.a, retries=2)
    assert push.ok, push
    # Sent: author and behind; the TLP:GREEN definition node-b holds already (built in).
    assert (push.sent, push.already_present, push.dead_lettered) == (1 + 3, 1, 1)
    assert holdings(pair.b) == by_version([author, *behind])
    cursor = pair.states(pair.a)[("alpha<->alpha", "push")].cursor
    assert cursor > 0
    [again] = pair.run_once(pair.a, retries=2)  # the cursor moved past it: nothing to do
    assert again.ok and (again.sent, again.dead_lettered) == (0, 0)

    listed = run_cli(pair.a, "sync", "dead-letters", "--json").splitlines()
    (letter,) = [json.loads(line) for line in listed]
    assert (letter["object_id"], letter["version"]) == (poisoned["id"], poisoned["modified"])
    assert (letter["peer"], letter["direction"], letter["attempts"]) == ("node-b", "push", 1)
    assert letter["answer"] == "HTTP 500: 500 Internal Server Error"
    assert RFC3339.match(letter["first_attempt"]) and RFC3339.match(letter["last_attempt"])
    human = run_cli(pair.a, "sync", "dead-letters", "--peer", "node-b")
    assert poisoned["id"] in human and "attempts 1" in human

    # Retried while the peer still fails it: the same dead letter, one attempt more.
    failed = _cli(pair, "sync", "retry", str(letter["pk"]))
    assert failed.exit_code == 1 and "NOT delivered" in failed.output
    (letter,) = [
        json.loads(x) for x in run_cli(pair.a, "sync", "dead-letters", "--json").splitlines()
    ]
    assert letter["attempts"] == 2

    proxy.poison = set()  # the peer fixed its bug
    retried = run_cli(pair.a, "sync", "retry", "--all")
    assert f"{poisoned['id']}: delivered: sent to node-b" in retried
    assert run_cli(pair.a, "sync", "dead-letters") == "no dead letters\n"
    assert (poisoned["id"], poisoned["modified"]) in holdings(pair.b)
    assert pair.states(pair.a)[("alpha<->alpha", "push")].cursor == cursor
    actions = [(r["action"], r["actor"]) for r in audit_rows(pair, pair.a)
               if r["object_id"] == poisoned["id"]]  # fmt: skip
    assert ("dead-letter", None) in actions
    assert [a for a, actor in actions if a == "dead-letter-retried"] == ["dead-letter-retried"] * 2
    assert all(actor and actor.startswith("cli:") for a, actor in actions if "retried" in a)


def test_a_peer_whose_paging_never_ends_does_not_hold_the_worker(tmp_path, stopper):
    """A partner's server answering ``more`` with a fresh ``next`` forever kept the pull
    round (and so every other lane of the worker) running: a round reads at most
    PULL_PAGES_PER_ROUND pages.  The next round goes on with the last token; the
    peer, fixed, refuses it (400), and the round goes on from the cursor instead."""
    pair = make_pair(tmp_path, a={"alpha": {"direction": "pull"}},
                     b={"alpha": {"direction": "push", "egress": GREEN}})  # fmt: skip
    stopper.append(pair)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit B", TLP2["green"])
    publish(pair.b.collection_url("alpha"), ADMIN, [author])
    proxy.endless_pages = 3 * PULL_PAGES_PER_ROUND

    [pull] = pair.run_once(pair.a)
    assert proxy.pages_served == PULL_PAGES_PER_ROUND
    assert not pull.ok and pull.received == 0
    assert pull.error.startswith("the peer's paging does not progress: 100 pages answered")
    state = pair.states(pair.a)[("alpha<->alpha", "pull")]
    assert state.last_error == pull.error  # what `sync status` shows
    proxy.endless_pages = 0  # the peer fixed its paging
    [again] = pair.run_once(pair.a)
    assert again.ok and again.received == 1
    assert (author["id"], author["modified"]) in holdings(pair.a)


def test_a_peer_serving_the_same_page_for_ever_is_reported_and_paged_from_the_cursor(
    tmp_path, stopper
):
    """Its objects, ``more`` true and the same ``next`` on every page: the worker read it
    100 times a round, counted it already present each time and said ok."""
    pair = make_pair(tmp_path, a={"alpha": {"direction": "pull"}},
                     b={"alpha": {"direction": "push", "egress": GREEN}})  # fmt: skip
    stopper.append(pair)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit B", TLP2["green"])
    publish(
        pair.b.collection_url("alpha"),
        ADMIN,
        [author, indicator(author, TLP2["green"], "192.0.2.5")],
    )
    proxy.more_forever = True

    [pull] = pair.run_once(pair.a)
    assert proxy.pages_served == 2  # the page, and the same page for the same request
    assert not pull.ok and pull.error.startswith("the peer repeats itself"), pull
    # TLP:GREEN is built in (already present), and the page read again is all present.
    assert (pull.received, pull.already_present) == (2, 1 + 3)
    state = pair.states(pair.a)[("alpha<->alpha", "pull")]
    assert state.last_error == pull.error and state.pull_resume is None
    status = json.loads(run_cli(pair.a, "sync", "status", "--json"))
    assert status[0]["last_error"].startswith("the peer repeats itself")

    proxy.more_forever = False
    [again] = pair.run_once(pair.a)
    assert again.ok and again.received == 0, again


def test_a_peer_asking_to_wait_is_not_asked_again_within_the_round(tmp_path, stopper):
    """429 with Retry-After: 3600: one GET (the round's retries were three more within
    seconds), the error says how long the peer asked for, and the lane waits that long."""
    pair = make_pair(tmp_path, a={"alpha": {"direction": "pull"}},
                     b={"alpha": {"direction": "push", "egress": GREEN}})  # fmt: skip
    stopper.append(pair)
    proxy = through_proxy(pair, stopper)
    proxy.throttle = "3600"
    [pull] = pair.run_once(pair.a)
    assert proxy.throttled == 1
    assert not pull.ok and pull.retry_after == 3600
    assert "HTTP 429" in pull.error and "wait 3600 s: Retry-After" in pull.error
    assert "Retry-After" in pair.states(pair.a)[("alpha<->alpha", "pull")].last_error


def test_a_skipped_dead_letter_is_gone_and_audited(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit A", TLP2["green"])
    poisoned = indicator(author, TLP2["green"], "192.0.2.66")
    publish(pair.a.collection_url("alpha"), ADMIN, [author, poisoned])
    proxy.poison = {poisoned["id"]}
    [push] = pair.run_once(pair.a, retries=1)
    assert push.ok and push.dead_lettered == 1
    (letter,) = pair.dead_letters(pair.a)
    assert f"dead letter {letter['pk']} skipped" in run_cli(
        pair.a, "sync", "skip", str(letter["pk"])
    )
    assert pair.dead_letters(pair.a) == []
    skipped = [r for r in audit_rows(pair, pair.a) if r["action"] == "dead-letter-skipped"]
    assert [r["object_id"] for r in skipped] == [poisoned["id"]]
    assert "HTTP 500" in skipped[0]["detail"]
    missing = pair.a.cli("sync", "skip", str(letter["pk"]), check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no dead letter")


def test_a_peer_answering_500_to_everything_dead_letters_nothing(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit A", TLP2["green"])
    everything = [author, *(indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(30))]
    publish(pair.a.collection_url("alpha"), ADMIN, everything)
    proxy.poison = {author["id"]}  # every object names its author: every POST fails
    [push] = pair.run_once(pair.a, retries=1)
    assert not push.ok and "HTTP 500" in push.error
    assert pair.dead_letters(pair.a) == []
    assert pair.states(pair.a)[("alpha<->alpha", "push")].cursor == 0


def _cli(pair: Pair, *args: str):
    from click.testing import CliRunner

    from node.cli import cli

    return CliRunner().invoke(cli, ["--config", str(pair.a.config_path), *args])


# --------------------------------------------------------------------------- statuses


def test_an_object_the_peers_status_never_names_is_dead_lettered_not_audited_sent(
    tmp_path, stopper
):
    """The peer loses one object of each envelope and its status (complete, counts and
    successes short by one) says nothing of it: it is posted again, then dead-lettered
    saying why; never audited as sent, and delivered once the peer takes it."""
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit A", TLP2["green"])
    kept, lost = (indicator(author, TLP2["green"], f"192.0.2.{i}") for i in (1, 2))
    publish(pair.a.collection_url("alpha"), ADMIN, [author, kept, lost])
    proxy.swallow = {lost["id"]}

    [push] = pair.run_once(pair.a)
    assert push.ok, push
    assert (push.sent, push.dead_lettered) == (2, 1)
    assert proxy.posted_ids.count(lost["id"]) == 3  # the post and two more
    assert (lost["id"], lost["modified"]) not in holdings(pair.b)
    (letter,) = pair.dead_letters(pair.a)
    assert (letter["object_id"], letter["version"]) == (lost["id"], lost["modified"])
    assert "the peer's status never accounted for it" in letter["reason"]
    actions = [r["action"] for r in audit_rows(pair, pair.a) if r["object_id"] == lost["id"]]
    assert actions == ["dead-letter"]

    proxy.swallow = set()
    assert f"{lost['id']}: delivered: sent to node-b" in run_cli(pair.a, "sync", "retry", "--all")
    assert (lost["id"], lost["modified"]) in holdings(pair.b)


def test_an_object_the_status_leaves_out_once_is_posted_again_and_sent(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    author = identity("Unit A", TLP2["green"])
    late = indicator(author, TLP2["green"], "192.0.2.3")
    publish(pair.a.collection_url("alpha"), ADMIN, [author, late])
    proxy.swallow, proxy.swallow_times = {late["id"]}, 1

    [push] = pair.run_once(pair.a)
    assert push.ok and (push.sent, push.dead_lettered) == (2, 0), push
    assert proxy.posted_ids.count(late["id"]) == 2
    assert holdings(pair.b) == by_version([author, late])
    (record,) = [r for r in audit_rows(pair, pair.a) if r["object_id"] == late["id"]]
    assert record["action"] == "sent" and record["detail"] != "already present at the peer"


def test_a_pending_status_is_followed_until_complete_whatever_its_pending_count(tmp_path, stopper):
    """A status saying pending with pending_count 0, its objects in pendings, is no final
    answer (4.3.1): the worker reads the status resource until it says complete."""
    pair = push_pair(tmp_path, stopper)
    proxy = through_proxy(pair, stopper)
    proxy.pending = True
    author = identity("Unit A", TLP2["green"])
    first = indicator(author, TLP2["green"], "192.0.2.4")
    publish(pair.a.collection_url("alpha"), ADMIN, [author, first])

    [push] = pair.run_once(pair.a)
    assert push.ok and (push.sent, push.already_present, push.dead_lettered) == (2, 1, 0), push
    assert proxy.status_reads >= 1
    assert len(proxy.posted_ids) == 3  # posted once: author, first, the TLP:GREEN definition
    assert pair.dead_letters(pair.a) == []


# --------------------------------------------------------------------------- cursors


def test_a_push_cursor_set_back_to_the_start_sends_again_without_duplicates(tmp_path, stopper):
    """After a peer restored an old backup, the operator moves the push cursor back:
    what the peer still holds is already present, what it lost is sent again."""
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    objs = [author, *(indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(3))]
    publish(pair.a.collection_url("alpha"), ADMIN, objs)
    [push] = pair.run_once(pair.a)
    assert push.ok and push.sent == 4
    lane = ("alpha<->alpha", "push")
    assert pair.states(pair.a)[lane].cursor > 0

    said = run_cli(pair.a, "sync", "set-cursor", "node-b", "alpha", "push")
    assert said == "node-b alpha<->alpha push: cursor start\n"
    assert pair.states(pair.a)[lane].cursor == 0
    [again] = pair.run_once(pair.a)
    assert again.ok and again.sent == 0 and again.already_present >= 4
    assert holdings(pair.b) == by_version(objs)
    assert pair.states(pair.a)[lane].cursor > 0

    (record,) = [r for r in audit_rows(pair, pair.a) if r["action"] == "cursor-set"]
    assert (record["peer"], record["rule"], record["direction"]) == ("node-b", "push", "admin")
    assert re.fullmatch(r"alpha<->alpha: 20\S+Z -> start", record["detail"]), record["detail"]
    assert record["actor"].startswith("cli:")


def test_a_push_cursor_set_back_sends_the_dependencies_the_peer_lost_again(tmp_path, stopper):
    """The peer lost what node-a sent it (a backup restored from before), the author's
    identity included.  The cursor set back to after the author (an object before it
    the peer still held, say) sends the indicators again, and the author with them: it
    was acknowledged once, and an acknowledged dependency otherwise never travels again."""
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    publish(pair.a.collection_url("alpha"), ADMIN, [author])
    time.sleep(0.01)
    between = from_micros(now_micros())
    time.sleep(0.01)
    later = [indicator(author, TLP2["green"], f"192.0.2.{i}") for i in range(2)]
    publish(pair.a.collection_url("alpha"), ADMIN, later)
    [push] = pair.run_once(pair.a)
    assert push.ok and push.sent == 3
    lost = tuple(obj["id"] for obj in [author, *later])
    with pair.store(pair.b).write() as connection:
        query = objects.ObjectQuery(COLLECTIONS["alpha"], limit=10, ids=lost, versions=("all",))
        assert objects.delete(connection, query) == 3
    assert holdings(pair.b) == {}

    run_cli(pair.a, "sync", "set-cursor", "node-b", "alpha", "push", "--to", between)
    [again] = pair.run_once(pair.a)
    assert again.ok and (again.sent, again.dead_lettered) == (3, 0), again
    assert holdings(pair.b) == by_version([author, *later])


def test_a_pull_cursor_moved_forward_passes_over_and_back_fetches_again(tmp_path, stopper):
    pair = make_pair(tmp_path, a={"alpha": {"direction": "pull"}},
                     b={"alpha": {"direction": "push", "egress": GREEN}})  # fmt: skip
    stopper.append(pair)
    author = identity("Unit B", TLP2["green"])
    skipped = indicator(author, TLP2["green"], "192.0.2.7")
    publish(pair.b.collection_url("alpha"), ADMIN, [author, skipped])
    time.sleep(0.01)
    after = from_micros(now_micros())

    said = run_cli(pair.a, "sync", "set-cursor", "node-b", "alpha<->alpha", "pull", "--to", after)
    assert said == f"node-b alpha<->alpha pull: cursor {after}\n"
    [pull] = pair.run_once(pair.a)
    assert pull.ok and pull.received == 0
    assert (skipped["id"], skipped["modified"]) not in holdings(pair.a)
    later = indicator(author, TLP2["green"], "192.0.2.8")
    publish(pair.b.collection_url("alpha"), ADMIN, [later])
    [pull] = pair.run_once(pair.a)
    assert pull.ok and (later["id"], later["modified"]) in holdings(pair.a)

    run_cli(pair.a, "sync", "set-cursor", "node-b", "alpha", "pull")
    [pull] = pair.run_once(pair.a)
    assert pull.ok
    assert {(o["id"], o["modified"]) for o in (author, skipped, later)} <= set(holdings(pair.a))
    details = [r["detail"] for r in audit_rows(pair, pair.a) if r["action"] == "cursor-set"]
    assert details[0] == f"alpha<->alpha: start -> {after}"
    assert details[1].endswith("-> start") and len(details) == 2


def test_set_cursor_refuses_what_it_cannot_do_and_changes_nothing(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    publish(pair.a.collection_url("alpha"), ADMIN, [identity("Unit A", TLP2["green"])])
    [push] = pair.run_once(pair.a)
    assert push.ok
    before = pair.states(pair.a)[("alpha<->alpha", "push")].cursor
    cases = [
        (("node-c", "alpha", "push"), "error: no peer 'node-c'"),
        (("node-b", "omega", "push"), "error: peer 'node-b' has no mapping 'omega'"),
        (("node-b", "alpha", "pull"), "error: the worker does not pull on node-b alpha<->alpha"),
        (("node-b", "alpha", "push", "--to", "yesterday"), "error: --to 'yesterday': "),
        (("node-b", "alpha", "push", "--to", "2999-01-01T00:00:00Z"), "is in the future"),
        (("node-b", "alpha", "sideways"), "Invalid value"),
    ]
    for args, message in cases:
        refused = pair.a.cli_in_process("sync", "set-cursor", *args, check=False)
        assert refused.returncode == 2, (args, refused)
        assert message in refused.stderr, (args, refused.stderr)
    assert pair.states(pair.a)[("alpha<->alpha", "push")].cursor == before
    assert not [r for r in audit_rows(pair, pair.a) if r["action"] == "cursor-set"]


# --------------------------------------------------------------------------- counts


def test_dependencies_cross_once_and_already_present_is_counted_apart(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    first = indicator(author, TLP2["green"], "192.0.2.1")
    publish(pair.a.collection_url("alpha"), ADMIN, [author, first])
    [push] = pair.run_once(pair.a)
    # Author and indicator are new at node-b; the TLP:GREEN definition is built in there.
    assert (push.sent, push.already_present) == (2, 1)

    # A later object by the same author, under the same marking: only it crosses.
    second = indicator(author, TLP2["green"], "192.0.2.2")
    publish(pair.a.collection_url("alpha"), ADMIN, [second])
    [push] = pair.run_once(pair.a)
    assert (push.sent, push.already_present) == (1, 0)
    sent = [r["object_id"] for r in audit_rows(pair, pair.a) if r["action"] == "sent"]
    assert sent.count(author["id"]) == 1 and sent.count(TLP2["green"]) == 1

    # A version node-b holds already (published on both sides) is counted apart.
    both = indicator(author, TLP2["green"], "192.0.2.3")
    publish(pair.b.collection_url("alpha"), ADMIN, [both])
    publish(pair.a.collection_url("alpha"), ADMIN, [both])
    [push] = pair.run_once(pair.a)
    assert (push.sent, push.already_present) == (0, 1)
    state = pair.states(pair.a)[("alpha<->alpha", "push")]
    assert (state.sent, state.already_present) == (3, 2)
    records = [r for r in audit_rows(pair, pair.a) if r["object_id"] == both["id"]]
    assert [(r["action"], r["detail"]) for r in records if r["direction"] == "push"] == [
        ("sent", "already present at the peer")
    ]


def test_builtin_tlp_definitions_are_never_stored_as_received_from_a_peer(tmp_path, stopper):
    pair = make_pair(
        tmp_path,
        a={"alpha": {"direction": "pull"}},
        b={"alpha": {"direction": "push", "egress": {"max_tlp": "green"}}},
    )
    stopper.append(pair)
    theirs = identity("Unit B", TLP2["clear"])
    shared = indicator(theirs, TLP2["clear"], "203.0.113.1")
    # node-b holds the TLP:CLEAR definition as any store may (a publisher posted it).
    publish(pair.b.collection_url("alpha"), ADMIN, [theirs, shared, MARKINGS[TLP2["clear"]]])
    [pull] = pair.run_once(pair.a)
    assert pull.ok and (pull.received, pull.already_present) == (2, 1)
    assert holdings(pair.a) == by_version([theirs, shared])
    with pair.store(pair.a).read() as connection:
        assert objects.latest(connection, COLLECTIONS["alpha"], TLP2["clear"]) is None
    received = [r["object_id"] for r in audit_rows(pair, pair.a) if r["action"] == "received"]
    assert TLP2["clear"] not in received and theirs["id"] in received


def test_builtin_tlp_definitions_a_peer_pushes_are_already_present(tmp_path, stopper):
    """node-a pushes TLP:GREEN objects with the TLP:GREEN definition (a dependency); node-b,
    receiving them as node-a's POSTs, keeps its own definition: the peer never becomes its
    origin, node-b's audit does not say it was received, and node-a counts it apart."""
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    first = indicator(author, TLP2["green"], "192.0.2.10")
    publish(pair.a.collection_url("alpha"), ADMIN, [author, first])
    [push] = pair.run_once(pair.a)
    assert push.ok and (push.sent, push.already_present) == (2, 1)

    assert holdings(pair.b) == by_version([author, first])
    with pair.store(pair.b).read() as connection:
        stored = provenance.versions_of(connection, COLLECTIONS["alpha"], list(MARKINGS), None)
        assert [(v.object_id, v.origin) for v in stored] == []
    on_b = audit_rows(pair, pair.b)
    received = [r["object_id"] for r in on_b if r["action"] == "received"]
    assert sorted(received) == sorted([author["id"], first["id"]])
    [posted] = [r for r in on_b if r["action"] == "published" and r["peer"] == "node-a"]
    assert posted["detail"].endswith(": 2 new, 1 already present, 0 failed")
    pushed = [(r["action"], r["detail"]) for r in audit_rows(pair, pair.a)
              if r["object_id"] == TLP2["green"]]  # fmt: skip
    assert pushed == [("sent", "already present at the peer")]

    # The definition was acknowledged: a later object under it crosses alone.
    second = indicator(author, TLP2["green"], "192.0.2.11")
    publish(pair.a.collection_url("alpha"), ADMIN, [second])
    [push] = pair.run_once(pair.a)
    assert (push.sent, push.already_present) == (1, 0)
    state = pair.states(pair.a)[("alpha<->alpha", "push")]
    assert (state.sent, state.already_present) == (3, 1)


def test_a_version_a_peer_posts_again_is_audited_as_already_present(tmp_path, stopper):
    """A peer re-posting what it delivered before (its worker killed before it committed
    the round) is told "already present", and node-b's audit says so: received once."""
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    # An SCO without created/modified: node-b's status labels it by its date_added.
    value = json.dumps({"value": "192.0.2.9"}, separators=(",", ":"))  # STIX 2.1 section 2.9
    address_id = f"ipv4-addr--{uuid.uuid5(SCO_ID_NAMESPACE, value)}"
    address = {"type": "ipv4-addr", "spec_version": "2.1", "id": address_id, "value": "192.0.2.9"}
    for _ in range(2):
        publish(pair.b.collection_url("alpha"), peer_auth("node-a", "node-b"), [author, address])
    on_b = audit_rows(pair, pair.b)
    for obj in (author, address):
        records = [(r["action"], r["detail"]) for r in on_b if r["object_id"] == obj["id"]]
        assert [action for action, _ in records] == ["received", "received"], obj["id"]
        assert records[0][1] != ALREADY_HERE and records[1][1] == ALREADY_HERE, obj["id"]
    posted = [r["detail"] for r in on_b if r["action"] == "published"]
    assert [detail.split(": ", 1)[1] for detail in posted] == [
        "2 new, 0 already present, 0 failed",
        "0 new, 2 already present, 0 failed",
    ]


# --------------------------------------------------------------------------- health


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")


def wait_for_line(log: Path, pattern: str, seconds: float = 120.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} in {log}:\n{log.read_text()}")


def test_the_running_worker_reports_a_peer_that_is_down(tmp_path, stopper):
    pair = push_pair(tmp_path, stopper)
    author = identity("Unit A", TLP2["green"])
    publish(pair.a.collection_url("alpha"), ADMIN, [author])
    worker = start_sync_worker(pair.a)
    stopper.append(_Terminating(worker))
    log = pair.a.directory / "sync-worker.log"
    # The author is sent; its TLP:GREEN definition is built in at node-b.
    wait_for_line(
        log, r"node-b alpha<->alpha push: sent 1, received 0, already present 1, .*\(ok\)$"
    )

    pair.b.stop()
    failed = wait_for_line(log, r"WARNING node-b alpha<->alpha push: .*FAILED")
    assert "connection refused" in failed

    status = json.loads(run_cli(pair.a, "sync", "status", "--json"))
    (push,) = [s for s in status if s["direction"] == "push"]
    assert "connection refused" in push["last_error"]
    assert RFC3339.match(push["last_attempt"]) and RFC3339.match(push["last_success"])
    assert to_micros(push["last_attempt"]) > to_micros(push["last_success"])
    assert isinstance(push["lag_seconds"], float) and push["lag_seconds"] > 0
    human = run_cli(pair.a, "sync", "status")
    assert "connection refused" in human

    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert all(LOG_LINE.match(line) for line in lines), lines
    text = "\n".join(lines)
    assert "HTTPConnectionPool" not in text and "Max retries" not in text
    # Idle rounds (nothing moved) are not logged at INFO: the worker ran every 0.2 s.
    idle = "sent 0, received 0, already present 0, withheld 0, dead-lettered 0 (ok)"
    assert not [line for line in lines if idle in line]
    failures = [line for line in lines if "FAILED" in line]
    assert all(" WARNING " in line and len(line) < 400 for line in failures)


def test_sigterm_stops_a_worker_waiting_on_a_trickling_peer(tmp_path, stopper):
    """A peer sending its headers a byte at a time held the worker (and SIGTERM) for ever:
    every exchange has a deadline, and stopping cuts the one under way."""
    pair = push_pair(tmp_path, stopper)
    trickling = _TricklingServer()
    stopper.append(trickling)
    config = pair.a.config_path
    config.write_text(config.read_text().replace(pair.b.base_url + "/api/", trickling.api_root))
    assert trickling.api_root in config.read_text()
    worker = start_sync_worker(pair.a)
    stopper.append(_Terminating(worker))
    time.sleep(3)  # the first round is waiting on the peer's headers
    assert worker.poll() is None
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert time.monotonic() - stopped < 10


class _Terminating:
    def __init__(self, process) -> None:
        self.process = process

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
