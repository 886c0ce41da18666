"""Publishers first: reads wait to start while a POST of objects runs in the server.

The gate itself (``node.taxii.priority``) is tested with threads, and across
processes with a second process that publishes; its use by the views on an
in-process node, where a publication is held open by the
test so that what waits and what does not is observable.  The rates it buys
are a benchmark's (``bench/bench_platform.py`` part 3), not a test's.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node.app import _publishers_first
from node.metrics import MULTIPROCESS_ENV
from node.store import objects
from node.taxii.priority import (
    ACROSS_PROCESSES,
    PUBLICATIONS_FILE,
    READ_WAIT_LIMIT,
    OtherProcesses,
    PublishersFirst,
)
from node.taxii.state import EXTENSION, NodeState
from tests.inprocess import new_inprocess_node
from tests.test_serving import TAXII_21, AdminClient, admin_headers, indicator, objects_of

PROMPT = 10.0  # seconds within which what does not wait has certainly finished
SETTLE = 0.3  # seconds in which what waits would have finished had it not waited


def in_thread(work: Callable[[], object]) -> tuple[threading.Event, list[object]]:
    """Run ``work`` in a daemon thread: (set when it returned, [its result])."""
    done, result = threading.Event(), []

    def run() -> None:
        result.append(work())
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, result


# --------------------------------------------------------------------------- the gate


def test_a_read_starts_at_once_when_nothing_is_published():
    gate = PublishersFirst(max_wait=3_600)
    done, _ = in_thread(gate.wait_to_read)
    assert done.wait(PROMPT)
    assert gate.running == 0


def test_a_read_waits_until_the_publication_ends():
    gate = PublishersFirst(max_wait=3_600)
    with gate.publishing():
        assert gate.running == 1
        done, _ = in_thread(gate.wait_to_read)
        assert not done.wait(SETTLE)
    assert done.wait(PROMPT)
    assert gate.running == 0


def test_a_read_waits_for_every_overlapping_publication():
    gate = PublishersFirst(max_wait=3_600)
    first, second = gate.publishing(), gate.publishing()
    first.__enter__()
    second.__enter__()
    done, _ = in_thread(gate.wait_to_read)
    first.__exit__(None, None, None)
    assert gate.running == 1
    assert not done.wait(SETTLE)
    second.__exit__(None, None, None)
    assert done.wait(PROMPT)


def test_a_read_is_delayed_at_most_max_wait_never_refused():
    gate = PublishersFirst(max_wait=0.05)
    with gate.publishing():
        done, _ = in_thread(gate.wait_to_read)
        assert done.wait(PROMPT)  # while the publication still runs
        assert gate.running == 1


def test_a_failed_publication_releases_the_reads():
    gate = PublishersFirst(max_wait=3_600)
    with pytest.raises(RuntimeError), gate.publishing():
        done, _ = in_thread(gate.wait_to_read)
        raise RuntimeError("the store failed")
    assert done.wait(PROMPT)
    assert gate.running == 0


def test_the_default_bound_is_a_fraction_of_a_second():
    assert PublishersFirst().max_wait == READ_WAIT_LIMIT
    assert 0 < READ_WAIT_LIMIT <= 1


# --------------------------------------------------------------------------- across processes

linux_only = pytest.mark.skipif(
    not ACROSS_PROCESSES, reason="record locks are read with Linux's struct flock"
)


def publish_in_this_process(path: str, started, release) -> None:
    """A second worker process of the server: publishes until ``release`` has a message."""
    gate = PublishersFirst(others=OtherProcesses(Path(path)))
    with gate.publishing():
        started.send("publishing")
        release.poll(PROMPT * 6)


@contextmanager
def publisher_process(path: Path) -> Iterator[tuple[multiprocessing.Process, Callable[[], None]]]:
    """(the process, what ends its publication), once its publication has begun.

    Pipes rather than multiprocessing Events: setting an Event that a killed
    process was waiting on blocks for ever.
    """
    context = multiprocessing.get_context("spawn")
    started_there, started = context.Pipe()
    release, release_there = context.Pipe()
    process = context.Process(
        target=publish_in_this_process, args=(str(path), started_there, release_there)
    )
    process.start()
    try:
        assert started.poll(PROMPT * 3), "the publishing process did not start"
        yield process, lambda: release.send("done")
    finally:
        if process.is_alive():
            release.send("done")
        process.join(PROMPT)
        if process.is_alive():
            process.kill()


@linux_only
def test_a_read_waits_for_a_publication_in_another_process(tmp_path):
    path = tmp_path / PUBLICATIONS_FILE
    gate = PublishersFirst(max_wait=3_600, others=OtherProcesses(path))
    with publisher_process(path) as (_process, release):
        assert gate.others is not None and gate.others.publishing()
        assert gate.running == 0  # nothing of this process's own
        done, _ = in_thread(gate.wait_to_read)
        assert not done.wait(SETTLE)
        release()
        assert done.wait(PROMPT)
    assert not gate.others.publishing()


@linux_only
def test_a_publisher_killed_halfway_delays_no_read(tmp_path):
    """The kernel drops a dead process's locks: nothing is left announced."""
    path = tmp_path / PUBLICATIONS_FILE
    gate = PublishersFirst(max_wait=3_600, others=OtherProcesses(path))
    with publisher_process(path) as (process, _release):
        done, _ = in_thread(gate.wait_to_read)
        assert not done.wait(SETTLE)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        assert done.wait(PROMPT)
        assert gate.others is not None and not gate.others.publishing()


@linux_only
def test_a_process_sees_only_the_other_processes_announcements(tmp_path):
    """Its own publications are its count, which wakes its reads (no polling)."""
    others = OtherProcesses(tmp_path / PUBLICATIONS_FILE)
    gate = PublishersFirst(max_wait=3_600, others=others)
    with gate.publishing():
        assert not others.publishing()
        done, _ = in_thread(gate.wait_to_read)
        assert not done.wait(SETTLE)
    assert done.wait(PROMPT)


@linux_only
def test_without_its_file_the_gate_is_this_process_alone(tmp_path):
    """A priority, never a condition of serving: a missing directory refuses nothing."""
    others = OtherProcesses(tmp_path / "gone" / PUBLICATIONS_FILE)
    gate = PublishersFirst(max_wait=3_600, others=others)
    with gate.publishing():
        assert not others.publishing()
    done, _ = in_thread(gate.wait_to_read)
    assert done.wait(PROMPT)


@linux_only
def test_the_worker_processes_of_a_serve_share_one_gate(tmp_path, monkeypatch):
    """``serve`` gives its workers a directory; an app built without one gates itself."""
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    assert _publishers_first().others is None
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    others = _publishers_first().others
    assert others is not None and others.path == tmp_path / PUBLICATIONS_FILE


# --------------------------------------------------------------------------- in the views


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[AdminClient, NodeState]]:
    node = new_inprocess_node(tmp_path_factory.mktemp("first"), "first-node", None).start()
    assert node.app is not None
    state = node.app.extensions[EXTENSION]
    state.publishers_first = PublishersFirst(max_wait=3_600)
    yield AdminClient(node.app.test_client()), state
    node.stop()


def publish(client: AdminClient, obj: dict):
    return client.post(client.collection("alpha") + "objects/", {"objects": [obj]})


@contextmanager
def publication_held(state: NodeState) -> Iterator[None]:
    """As if another thread of this process were storing an envelope."""
    with state.publishers_first.publishing():
        yield


def test_a_page_waits_while_a_publication_runs_then_is_served(served):
    client, state = served
    obj = indicator()
    assert publish(client, obj).status_code == 202
    with publication_held(state):
        done, result = in_thread(lambda: client.get(client.collection("alpha") + "objects/"))
        assert not done.wait(SETTLE)
    assert done.wait(PROMPT)
    assert obj["id"] in [found["id"] for found in objects_of(result[0])]


def test_a_read_of_one_object_and_of_the_manifest_wait_too(served):
    client, state = served
    obj = indicator()
    assert publish(client, obj).status_code == 202
    for path in (f"objects/{obj['id']}/", "manifest/"):
        with publication_held(state):
            done, result = in_thread(lambda p=path: client.get(client.collection("alpha") + p))
            assert not done.wait(SETTLE), path
        assert done.wait(PROMPT)
        assert result[0].status_code == 200, path  # type: ignore[attr-defined]


def test_a_post_does_not_wait_for_another_publication(served):
    client, state = served
    obj = indicator()
    with publication_held(state):
        done, result = in_thread(lambda: publish(client, obj))
        assert done.wait(PROMPT)
    assert result[0].status_code == 202  # type: ignore[attr-defined]


def test_a_post_counts_as_a_publication_while_its_objects_are_stored(served, monkeypatch):
    client, state = served
    seen: list[int] = []
    store_prepared = objects.store_prepared

    def watched(*args, **kwargs):
        seen.append(state.publishers_first.running)
        return store_prepared(*args, **kwargs)

    monkeypatch.setattr(objects, "store_prepared", watched)
    assert publish(client, indicator()).status_code == 202
    assert seen == [1]
    assert state.publishers_first.running == 0


def test_a_refused_post_never_counts_as_a_publication(served, monkeypatch):
    """Only an authorised POST with its body in takes the reads' turn."""
    client, state = served
    entered: list[int] = []
    publishing = state.publishers_first.publishing

    def counted():
        entered.append(1)
        return publishing()

    monkeypatch.setattr(state.publishers_first, "publishing", counted)
    path = client.collection("alpha") + "objects/"
    wrong_type = client.client.post(
        path, data="{}", headers={**admin_headers(), "Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    anonymous = client.client.post(
        path, data="{}", headers={"Accept": TAXII_21, "Content-Type": TAXII_21}
    )
    assert anonymous.status_code == 401
    unknown = client.post(client.collection("alpha", name="no-such-alias") + "objects/", "{}")
    assert unknown.status_code == 404
    assert entered == []
    assert publish(client, indicator()).status_code == 202
    assert entered == [1]
