"""One object never blocks the others; push and pull back off apart.

The halving of refused envelopes (node/sync/delivery.py) and the per-direction
schedule (node/sync/schedule.py) are decided without HTTP, so they are tested
here against scripted peers: what the peer answers is the test's to choose,
and the counts of posts are exact.  The same behaviour between real servers
(a taxii-node peer behind a proxy that answers 500 to one object, OpenTAXII's
500) is in tests/test_worker_peers.py and tests/test_opentaxii_peer.py.
"""

from __future__ import annotations

import json

import pytest

from node.client import Throttled
from node.errors import RemoteError
from node.sync.delivery import EnvelopePoster
from node.sync.rounds import with_retries
from node.sync.schedule import Backoff, Lane, Schedule


def _objects(count: int) -> list[tuple[dict, str]]:
    objs = [{"id": f"indicator--{n:04d}", "modified": "2026-01-01T00:00:00.000Z"}
            for n in range(count)]  # fmt: skip
    return [(obj, json.dumps(obj)) for obj in objs]


class ScriptedPeer:
    """Answers a POST of texts: 500 when it holds a ``bad`` id (or when ``down``), 400 for
    a ``malformed`` id, else a status with every object a success."""

    def __init__(self, bad=(), malformed=(), down_after: int | None = None) -> None:
        self.bad = set(bad)
        self.malformed = set(malformed)
        self.down_after = down_after
        self.posts: list[list[str]] = []
        self.stored: set[str] = set()

    def post(self, texts: list[str], attempts: int) -> dict:
        ids = [json.loads(text)["id"] for text in texts]
        self.posts.append(ids)
        if self.down_after is not None and len(self.posts) > self.down_after:
            raise RemoteError("POST x: HTTP 500: database is down", transient=True, status=500)
        if self.bad & set(ids):
            raise RemoteError("POST x: HTTP 500: Internal Server Error", transient=True, status=500)
        if self.malformed & set(ids):
            raise RemoteError("POST x: HTTP 400: bad timestamp", transient=False, status=400)
        new = [i for i in ids if i not in self.stored]
        self.stored.update(ids)
        return {
            "status": "complete",
            "successes": [
                {"id": i, "version": "2026-01-01T00:00:00.000Z"}
                | ({} if i in new else {"message": "already present"})
                for i in ids
            ],
            "failures": [],
        }


@pytest.mark.parametrize("position", [0, 1, 17, 63])
def test_an_object_answered_500_is_refused_alone_and_the_rest_delivered(position):
    envelope = _objects(64)
    bad = envelope[position][0]["id"]
    peer = ScriptedPeer(bad={bad})
    delivery = EnvelopePoster(peer.post, attempts=4).deliver([envelope])
    assert [f["id"] for f in delivery.failures] == [bad]
    assert delivery.failures[0]["message"] == "HTTP 500: Internal Server Error"
    assert peer.stored == {obj["id"] for obj, _ in envelope} - {bad}
    # Halving: two posts per level (64 -> 1 is six levels), the first post and one probe.
    assert len(peer.posts) == 1 + 2 * 6 + 1


def test_several_bad_objects_are_each_refused():
    envelope = _objects(40)
    bad = {envelope[i][0]["id"] for i in (0, 1, 2, 3, 20, 39)}
    peer = ScriptedPeer(bad=bad)
    delivery = EnvelopePoster(peer.post, attempts=4).deliver([envelope])
    assert {f["id"] for f in delivery.failures} == bad
    assert peer.stored == {obj["id"] for obj, _ in envelope} - bad


def test_a_peer_that_answers_500_to_everything_refuses_no_object():
    peer = ScriptedPeer(down_after=0)
    poster = EnvelopePoster(peer.post, attempts=4, probe_after=16)
    with pytest.raises(RemoteError, match="database is down"):
        poster.deliver([_objects(1000)])
    # Nothing was ever accepted, so no probe can show the peer works: bounded halving.
    assert len(peer.posts) <= 16


def test_a_peer_that_breaks_mid_round_refuses_no_object():
    peer = ScriptedPeer(down_after=1)
    first, second = _objects(10), _objects(1000)[10:]
    poster = EnvelopePoster(peer.post, attempts=4, probe_after=16)
    with pytest.raises(RemoteError, match="database is down"):
        poster.deliver([first, second])
    assert len(peer.posts) <= 1 + 16 + 1


def test_a_single_object_answered_500_with_nothing_accepted_fails_the_round():
    """Alone, the object cannot be told from a broken peer: the round fails, the cursor
    stays, and the next round (with more objects behind it) isolates it."""
    (only,) = _objects(1)
    peer = ScriptedPeer(bad={only[0]["id"]})
    with pytest.raises(RemoteError):
        EnvelopePoster(peer.post, attempts=2).deliver([[only]])
    envelope = [only, *_objects(3)[1:]]
    delivery = EnvelopePoster(peer.post, attempts=2).deliver([envelope])
    assert [f["id"] for f in delivery.failures] == [only[0]["id"]]


def test_4xx_objects_are_refused_without_a_probe():
    envelope = _objects(8)
    malformed = envelope[5][0]["id"]
    peer = ScriptedPeer(malformed={malformed})
    delivery = EnvelopePoster(peer.post, attempts=4).deliver([envelope])
    assert [f["id"] for f in delivery.failures] == [malformed]
    assert delivery.failures[0]["message"] == "HTTP 400: bad timestamp"
    assert len(peer.posts) == 1 + 2 * 3


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429])
def test_errors_about_the_peer_or_our_access_fail_the_round(status):
    def post(texts, attempts):
        raise RemoteError(f"POST x: HTTP {status}: no", transient=status >= 408, status=status)

    with pytest.raises(RemoteError):
        EnvelopePoster(post, attempts=1).deliver([_objects(4)])


def test_already_present_versions_are_told_apart():
    envelope = _objects(3)
    peer = ScriptedPeer()
    peer.stored.add(envelope[1][0]["id"])
    delivery = EnvelopePoster(peer.post, attempts=1).deliver([envelope])
    assert delivery.already_present == {(envelope[1][0]["id"], "2026-01-01T00:00:00.000Z")}


# --------------------------------------------------------------------------- schedule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_push_backs_off_while_the_pull_keeps_its_interval():
    clock = Clock()
    push = Lane("p m push", interval=1.0, backoff=Backoff(base=1.0, cap=300.0))
    pull = Lane("p m pull", interval=1.0)
    schedule = Schedule([push, pull], clock)
    runs = {"push": 0, "pull": 0}
    for _ in range(600):  # ten simulated minutes in steps of a second
        for lane in schedule.due():
            direction = lane.name.split()[-1]
            runs[direction] += 1
            schedule.finished(lane, ok=direction == "pull")
        clock.now += 1.0
    assert runs["pull"] >= 299  # every other second: due after 1 s, checked each second
    assert runs["push"] < 40  # backed off, up to 5 minutes between attempts
    assert push.failing and not pull.failing


def test_a_lane_is_due_again_after_its_interval_once_it_recovers():
    clock = Clock()
    lane = Lane("p m push", interval=2.0)
    schedule = Schedule([lane], clock)
    for _ in range(5):
        schedule.finished(lane, ok=False)
    assert lane.backoff.attempt == 5
    schedule.finished(lane, ok=True)
    assert lane.backoff.attempt == 0 and lane.due == clock.now + 2.0
    assert schedule.seconds_to_next() == 2.0


class _ShortStatusPeer(ScriptedPeer):
    """Answers with a status whose lists leave out the ``unlisted`` ids (or, with
    ``counts_only``, a status of counts without successes)."""

    def __init__(self, unlisted=(), counts_only=False) -> None:
        super().__init__()
        self.unlisted = set(unlisted)
        self.counts_only = counts_only

    def post(self, texts: list[str], attempts: int) -> dict:
        status = super().post(texts, attempts)
        listed = [s for s in status["successes"] if s["id"] not in self.unlisted]
        counts = {"total_count": len(texts), "success_count": len(listed), "failure_count": 0}
        return {**status, **counts, "successes": [] if self.counts_only else listed}


def test_objects_a_status_does_not_name_are_posted_again_then_refused_saying_why():
    envelope = _objects(8)
    unlisted = {envelope[2][0]["id"], envelope[5][0]["id"]}
    peer = _ShortStatusPeer(unlisted=unlisted)
    delivery = EnvelopePoster(peer.post, attempts=4, recount_attempts=2).deliver([envelope])
    assert {f["id"] for f in delivery.failures} == unlisted
    assert all("never accounted for it" in f["message"] for f in delivery.failures)
    assert all(f["version"] == "2026-01-01T00:00:00.000Z" for f in delivery.failures)
    assert peer.posts[1:] == [sorted(unlisted)] * 2  # only they, twice more


def test_a_complete_status_of_counts_that_add_up_accounts_for_every_object():
    """successes are optional (4.3.1): counts that say all of the envelope was stored do."""
    envelope = _objects(5)
    delivery = EnvelopePoster(_ShortStatusPeer(counts_only=True).post, attempts=4).deliver(
        [envelope]
    )
    assert delivery.failures == []
    # Counts one short: which object is missing cannot be told, so none is taken as
    # stored (the push then asks the peer which of them it holds: _not_already_held).
    short = _ShortStatusPeer(unlisted={envelope[0][0]["id"]}, counts_only=True)
    delivery = EnvelopePoster(short.post, attempts=4).deliver([envelope])
    assert [f["id"] for f in delivery.failures] == [obj["id"] for obj, _ in envelope]


def test_a_lane_the_peer_asks_to_wait_is_not_due_before_its_retry_after():
    """Retry-After: 3600 on the push lane: it waits the hour, the pull lane keeps its
    interval meanwhile."""
    clock = Clock()
    push, pull = Lane("p m push", interval=1.0), Lane("p m pull", interval=1.0)
    schedule = Schedule([push, pull], clock)
    schedule.finished(push, ok=False, retry_after=3600.0)
    schedule.finished(pull, ok=True)
    assert push.due == clock.now + 3600.0 and pull.due == clock.now + 1.0
    clock.now += 3599.0
    assert schedule.due() == [pull]
    clock.now += 1.0
    assert push in schedule.due()


def _throttled(seconds: float) -> Throttled:
    return Throttled(f"GET x: HTTP 429: slow down (the server asks to wait {seconds:g} s: "
                     "Retry-After)", status=429, retry_after=seconds)  # fmt: skip


def test_a_long_retry_after_ends_the_round_at_once_a_short_one_is_waited_for():
    calls: list[int] = []

    def asked_to_wait(seconds: float):
        def call():
            calls.append(1)
            if len(calls) == 1:
                raise _throttled(seconds)
            return "answer"

        return call

    with pytest.raises(Throttled, match="Retry-After"):
        with_retries(asked_to_wait(3600.0), attempts=4)
    assert len(calls) == 1  # not tried again within the round
    calls.clear()
    assert with_retries(asked_to_wait(0.0), attempts=4) == "answer" and len(calls) == 2


def test_a_peer_asking_to_wait_has_no_envelope_halved():
    """A 503 with Retry-After is the peer being busy, not about the objects."""
    posts: list[int] = []

    def post(texts: list[str], attempts: int) -> dict:
        posts.append(len(texts))
        raise Throttled("POST x: HTTP 503: busy", status=503, retry_after=600.0)

    with pytest.raises(Throttled):
        EnvelopePoster(post, attempts=4).deliver([_objects(8)])
    assert posts == [8]
