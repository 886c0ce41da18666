"""The sync worker: pushes to and pulls from each peer, mapping by mapping.

Guarantees, and how they are kept:

* nothing lost: cursors advance only in the transaction that commits what
  they cover (pull: the stored objects; push: the audit of what the peer
  acknowledged), so a worker killed at any instant resumes from its last
  commit; a peer that is down leaves the cursor where it was;
* nothing duplicated: versions are idempotent on both ends (id + modified),
  and a version that came from a peer is never pushed back to it (origin);
* nothing leaked: egress policy runs on every object before it is sent.

Cursors are the server's ``date_added`` values, never this machine's clock
(TAXII 2.1 section 3.4.2 and 3.5).

Each direction has its module: ``push.py`` and ``pull.py`` hold their rounds,
``rounds.py`` what both share (a round's result and counts, retries, the record
of each attempt), ``delivery.py`` how an envelope the peer refuses is halved
until the objects at fault stand alone.  This module schedules the lanes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from node.client import TaxiiClient
from node.config import Config, PeerConfig
from node.sharing import Agreements
from node.store import Store, syncstate
from node.store.audit import Direction

from .pull import Pulling
from .push import Pushing
from .rounds import RoundResult
from .schedule import Lane, Schedule

log = logging.getLogger(__name__)

# A peer's answer must arrive whole within this many seconds (the CLI's client allows
# more): a peer that trickles its answers holds the worker's other lanes meanwhile.
ANSWER_SECONDS = 60.0


class MappingSync(Pushing, Pulling):
    """Push and pull for one mapping of one peer (one remote collection id, looked up once)."""


def _guarded(
    mapping: MappingSync, direction: Direction, run: Callable[[], RoundResult]
) -> Callable[[], RoundResult]:
    """``run``, with any error it did not expect (a store that is down, a defect)
    turned into a failed round: logged with its traceback, recorded as the
    direction's last error where the store allows, and backed off like a peer's
    failure, so that one mapping's trouble never stops the others or the worker.
    Nothing of the failed batch was committed (each batch commits with its cursor),
    so the next round starts again from the cursor."""

    def guarded() -> RoundResult:
        try:
            return run()
        except Exception as exc:
            log.exception("%s %s %s: round failed", mapping.peer, mapping.key, direction)
            result = RoundResult(mapping.peer, mapping.key, direction)
            result.error = f"internal error: {type(exc).__name__}: {exc}"[:500]
            try:
                with mapping.store.read() as connection:
                    state = syncstate.load(connection, mapping.peer, mapping.key, direction)
                mapping.record_attempt(state, result)
            except Exception:
                log.exception("could not record the failed round")
            return result

    return guarded


class SyncWorker:
    """Runs every mapping of every (or one) peer: once, or until stopped."""

    def __init__(
        self, config: Config, store: Store, *, peer: str | None = None, retries: int = 4
    ) -> None:
        self.config = config
        self.store = store
        self.stop = threading.Event()
        agreements = Agreements(config, store)
        self._peers: list[PeerConfig] = [config.peer(peer)] if peer else list(config.peers)
        self._clients: dict[str, TaxiiClient] = {}
        self.mappings: list[MappingSync] = []
        for agreement in agreements:
            if peer and agreement.peer.name != peer:
                continue
            client = self._client(agreement.peer)
            self.mappings.append(
                MappingSync(
                    store,
                    agreement,
                    client,
                    retries=retries,
                    stop=self.stop,
                    agreements=list(agreements),
                )
            )

    def _client(self, peer: PeerConfig) -> TaxiiClient:
        if peer.name not in self._clients:
            self._clients[peer.name] = TaxiiClient(
                peer.api_root,
                peer.user,
                peer.password(),
                timeout=peer.timeout,
                ca_bundle=peer.ca_bundle,
                client_cert=peer.client_cert,
                client_key=peer.client_key,
                answer_deadline=ANSWER_SECONDS,
                stop=self.stop,
            )
        return self._clients[peer.name]

    def run_once(self) -> list[RoundResult]:
        """One push and one pull round for each mapping, as its ``worker`` key says."""
        return [run() for _, run in self._rounds()]

    def _rounds(self) -> list[tuple[Lane, Callable[[], RoundResult]]]:
        """Each direction our worker carries, as a lane of the schedule and its round."""
        rounds: list[tuple[Lane, Callable[[], RoundResult]]] = []
        for mapping in self.mappings:
            config = mapping.agreement.mapping
            carried = ((Direction.PUSH, config.worker_pushes, mapping.push),
                       (Direction.PULL, config.worker_pulls, mapping.pull))  # fmt: skip
            for direction, carries, run in carried:
                if carries:
                    name = f"{mapping.peer} {mapping.key} {direction}"
                    rounds.append((Lane(name, config.interval), _guarded(mapping, direction, run)))
        return rounds

    def run_forever(self, on_result: Callable[[RoundResult, bool], None] | None = None) -> None:
        """Run each direction of each mapping at its interval until ``stop`` is set,
        backing off each on its own failures.  ``on_result`` gets every round's result
        and whether that direction was failing before it."""
        rounds = self._rounds()
        schedule = Schedule(lane for lane, _ in rounds)
        runs = {id(lane): run for lane, run in rounds}
        while not self.stop.is_set():
            for lane in schedule.due():
                if self.stop.is_set():
                    break
                was_failing = lane.failing
                result = runs[id(lane)]()
                schedule.finished(lane, result.ok, result.retry_after)
                if on_result:
                    on_result(result, was_failing)
            self.stop.wait(max(0.05, schedule.seconds_to_next()))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
