"""Pull rounds: the peer's versions added after the cursor, under ingress policy.

Each page is committed with the cursor it makes safe; cursors are the peer's
``date_added`` values, never this machine's clock (TAXII 2.1 sections 3.4.2 and 3.5).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from node import jsoncodec
from node.client import PAGES_LIMIT_MAX, ObjectPage, RemoteError, date_header_said, served_key
from node.policy import DEPENDENCY_TYPES
from node.sharing import admit, settle
from node.sharing.records import undecided_dead_letters
from node.store import audit, objects, syncstate
from node.store.audit import Direction
from node.timestamps import (
    is_timestamp,
    just_before,
    micros_or_none,
    now_micros,
    to_micros,
)

from .rounds import (
    CursorMoved,
    MappingRounds,
    RoundResult,
    commit_progress,
    count_in_state,
)

log = logging.getLogger(__name__)

# A pull round reads at most this many pages (100,000 versions at the default
# ``batch``) or for this many seconds, then ends with its cursor saved: a peer
# whose paging never ends (``more`` true with a fresh ``next`` on every page), or
# that answers slowly, cannot keep the worker from every other lane; the next
# round goes on where this one stopped.
PULL_PAGES_PER_ROUND = 100
PULL_SECONDS_PER_ROUND = 15.0
# Paging by ``added_after`` alone (a peer that says ``more`` without a ``next``), a
# page of versions all added at one instant is asked for again with twice the limit,
# up to this many, to get past that instant (the client's ``pages()`` does the same).
PULL_LIMIT_MAX = PAGES_LIMIT_MAX
# A page may hold this many versions beyond its limit, and identities, markings and
# extension definitions travelling with its objects up to this many per object asked
# for, before the peer is taken not to keep to limits.
PAGE_SLACK = 100
DEPENDENCIES_PER_ROW = 10
# A peer's X-TAXII-Date-Added-Last this far ahead of our clock is no cursor: a lying
# or broken header would move the cursor past everything the peer adds until then.
FUTURE_SKEW_MICROS = 5 * 60 * 1_000_000


class Pulling(MappingRounds):
    """The pull direction of a mapping."""

    def pull(self) -> RoundResult:
        """Fetch the peer's versions added after the pull cursor, under ingress policy.

        Each page is committed with the cursor it makes safe (``_commit_point``).  A
        round stops after ``PULL_PAGES_PER_ROUND`` pages or ``PULL_SECONDS_PER_ROUND``;
        the next round, of this worker or of another run (the position is kept with
        the pull state), goes on from where it stopped with the same ``next`` token,
        so that progress does not rest on the peer's date headers; a round that failed
        also goes on at the page that failed.  From the committed cursor when the peer
        no longer takes that token, or failed it twice running.
        """
        result = RoundResult(self.peer, self.key, Direction.PULL)
        with self.store.read() as connection:
            state = syncstate.load(connection, self.peer, self.key, Direction.PULL)
        resume, state.pull_resume = _PullPosition.resuming(state), None
        fresh = _PullPosition(_usable(state.remote_cursor), None, self.agreement.peer.batch)
        position: _PullPosition | None = resume or fresh
        resume_failed = False
        progress = _RoundProgress()
        try:
            remote_id = self.remote_collection()
            started = time.monotonic()
            for _ in range(PULL_PAGES_PER_ROUND):
                if position is None or self.stop.is_set():
                    break
                try:
                    page = self._fetch(remote_id, position)
                except RemoteError as exc:
                    if position is not resume:
                        raise
                    if exc.transient:
                        resume_failed = True  # twice running: from the cursor next time
                        raise
                    # The peer no longer takes the kept token (expired, or its paging
                    # changed): from the cursor, which every stored page moved.
                    log.info("%s %s: paging again from the cursor: %s", self.peer, self.key, exc)
                    position = resume = fresh
                    page = self._fetch(remote_id, position)
                cursor_before = state.remote_cursor
                self._store_page(state, page, _commit_point(page, state.remote_cursor), result)
                asked = position
                position = self._next_position(page, position)
                progress.check(page, asked, position, state.remote_cursor != cursor_before)
                if time.monotonic() - started > PULL_SECONDS_PER_ROUND:
                    break
            if position is not None and not self.stop.is_set():
                result.error = progress.stalled()
        except _Repeating as exc:
            result.error = str(exc)
            position = None  # (its token leads nowhere: from the cursor next round)
        except RemoteError as exc:
            self._fail(result, exc)
        except CursorMoved:
            log.info("%s %s pull: the cursor was moved; the next round starts there",
                     self.peer, self.key)  # fmt: skip
            position = None
        if position is not None and not resume_failed:
            # Also after a failure: the next round asks for the page that failed, with
            # its token, rather than from the cursor (which moved only as far as the
            # date headers showed it safe to); unless that page was already asked for
            # again, so that a token the peer answers 5xx to for good is dropped.
            state.pull_resume = position.resume_text(state.remote_cursor)
        self.record_attempt(state, result)
        return result

    def _fetch(self, remote_id: str, position: _PullPosition) -> ObjectPage:
        """The page at ``position``; asked for again with half the limit, down to one
        version, while the peer's answer is too large or too deep to read."""
        limit = position.limit
        while True:
            try:
                return self._within_limit(
                    limit,
                    self._call(
                        lambda limit=limit: self.client.objects_page(
                            remote_id,
                            added_after=position.added_after,
                            next_token=position.next_token,
                            limit=limit,
                        )
                    ),
                )
            except RemoteError as exc:
                if not exc.too_much or limit == 1:
                    raise
                limit //= 2

    def _within_limit(self, limit: int, page: ObjectPage) -> ObjectPage:
        """``page``, unless it holds far more than ``limit`` versions: a peer that ignores
        the limit (3.4.3: a server returns at most that many) would have one round ingest
        a whole page of up to 256 MB in one transaction, for hours.  Some more are
        expected: a taxii-node sends the identities, markings and extension definitions
        a page needs with it, which are counted apart."""
        kinds = (obj.get("type") if isinstance(obj, dict) else None for obj in page.objects)
        needed = sum(1 for kind in kinds if isinstance(kind, str) and kind in DEPENDENCY_TYPES)
        rows = len(page.objects) - needed
        if rows > limit + PAGE_SLACK or needed > DEPENDENCIES_PER_ROW * limit + PAGE_SLACK:
            raise RemoteError(
                f"the peer answered {len(page.objects)} versions to limit={limit}: "
                "it does not keep to the limit",
                transient=False,
            )
        return page

    def _next_position(self, page: ObjectPage, position: _PullPosition) -> _PullPosition | None:
        """Where the page after ``page`` is, or None at the end of the collection.

        The peer's ``next`` token when it gives one (TAXII 2.1 section 3.4.3); else
        (``next`` is optional) ``added_after`` just before the page's
        ``X-TAXII-Date-Added-Last``, so that versions added at that instant and not
        yet served are not skipped (those served are served again and stored once).
        """
        if not page.more:
            return None
        batch = self.agreement.peer.batch
        if page.next is not None:
            return _PullPosition(position.added_after, page.next, batch)
        if page.date_added_last is None:
            raise RemoteError(
                f"the peer answers more: true without a next token or "
                f"{date_header_said(page)}: it cannot be paged further",
                transient=False,
            )
        basis = just_before(page.date_added_last)
        asked = micros_or_none(position.added_after)
        first = page.date_added_first or page.date_added_last
        if asked is not None and to_micros(first) <= asked:
            raise RemoteError(
                f"the peer answered added_after={position.added_after} with versions added "
                f"from {first}, and gives no next token: it cannot be paged further",
                transient=False,
            )
        if basis != position.added_after or position.next_token is not None:
            return _PullPosition(basis, None, batch)
        served = len(page.objects) + len(page.unreadable)  # (unreadable ones were served)
        if position.limit >= PULL_LIMIT_MAX or served < position.limit:
            # (asked for more than it served: the peer caps its pages, max_page_size)
            raise RemoteError(
                f"the peer pages without next tokens, serves at most {served} versions a "
                f"page (asked for {position.limit}) and added more than that at "
                f"{page.date_added_last}: they cannot be paged past",
                transient=False,
            )
        return _PullPosition(basis, None, min(PULL_LIMIT_MAX, position.limit * 2))

    def refetch(self, object_id: str, version: str | None) -> RoundResult:
        """Pull one version again now, under ingress policy, without moving the cursor
        (a dead letter retried by an operator).  Refusals become dead letters again."""
        result = RoundResult(self.peer, self.key, Direction.PULL)
        params = {"match[id]": object_id, "match[version]": version or "last"}
        try:
            remote_id = self.remote_collection()
            page = self._call(lambda: self.client.page(remote_id, params))
        except RemoteError as exc:
            self._fail(result, exc)
            return result
        with self.store.write() as connection:
            counts = self._ingest(connection, page)
            state = syncstate.load(connection, self.peer, self.key, Direction.PULL)
            count_in_state(state, counts)
            syncstate.save(connection, state)
        result.add(counts)
        return result

    def _store_page(self, state, page: ObjectPage, date_added_last: str | None, result) -> None:
        with self.store.write() as connection:
            counts = self._ingest(connection, page)
            if date_added_last:
                state.remote_cursor = date_added_last
            going_on = commit_progress(connection, state, counts)
        result.add(counts)
        if not going_on:
            raise CursorMoved  # (the page is stored: it passed ingress like any other)

    def _ingest(self, connection, page: ObjectPage) -> RoundResult:
        """Store what the one ingress decision accepts of the page's objects, audit every
        decision and dead-letter what the store refuses and what could not be read; the
        counts, for the caller to add once the transaction commits."""
        collection_id = self.agreement.collection_id
        admission = admit(connection, self.agreement, page.objects, to_peer=False)
        outcome = objects.add_objects(
            connection, collection_id, admission.accepted, origin=self.peer, valid=admission.valid
        )
        records = settle(
            connection,
            self.agreement,
            admission,
            outcome,
            Direction.PULL,
            to_peer=False,
            agreements=self.agreements,
        )
        failures = outcome.failures + [_unreadable(object_id) for object_id in page.unreadable]
        records += undecided_dead_letters(
            self.peer, collection_id, Direction.PULL, records, failures
        )
        audit.record(connection, records)
        syncstate.add_dead_letters(connection, self.peer, self.key, Direction.PULL, failures)
        counts = RoundResult.of_records(records, Direction.PULL)
        counts.already_present += len(admission.echoes)  # ours served back, built-in TLP
        return counts


class _Repeating(RemoteError):
    """The peer answered a request the round made already with nothing new."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class _RoundProgress:
    """What a pull round has read of the peer's paging, to tell a peer whose paging goes
    round in circles from one with much to send.

    A page makes progress when it holds a version not served earlier in the round, or
    moves the cursor.  Not the ``next`` token alone: medallion 3.0.0 gives every page
    of a query one token, and a peer may hand out a fresh token for the same page.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._asked: set[_PullPosition] = set()
        self.pages = 0
        self.progressed = False

    def check(
        self,
        page: ObjectPage,
        asked: _PullPosition,
        following: _PullPosition | None,
        cursor_moved: bool,
    ) -> None:
        """Record ``page`` (the answer to ``asked``); _Repeating if it made no progress and
        the page after it is one the round asked for already: the peer would only serve
        the same again (the same ``next``, or the same ``added_after``)."""
        self._asked.add(asked)
        self.pages += 1
        keys = {served_key(obj) for obj in page.objects}
        keys |= {("unreadable", object_id) for object_id in page.unreadable}
        moved = cursor_moved or not keys <= self._seen
        self._seen |= keys
        self.progressed |= moved
        if not moved and following is not None and following in self._asked:
            token = f"next {following.next_token!r:.60}" if following.next_token else "no next"
            raise _Repeating(
                "the peer repeats itself: a page saying more: true held no version it had "
                "not served in this round and no later X-TAXII-Date-Added-Last, and sends "
                f"us back to a page asked for already (added_after "
                f"{following.added_after or '-'}, {token}): its paging does not progress "
                "(TAXII 2.1 section 3.4.3); the next round starts again from the cursor"
            )

    def stalled(self) -> str | None:
        """The round's error when it read to its bound and no page made progress (pages
        saying more: true that hold nothing new, each with a fresh ``next``), else None.
        The next round goes on with the last token: a long run of versions the peer
        withholds from us pages so too, and gets past."""
        if self.progressed or self.pages < 2:
            return None
        return (
            f"the peer's paging does not progress: {self.pages} pages answered more: true "
            "with no version not served before in this round and no later "
            "X-TAXII-Date-Added-Last (TAXII 2.1 section 3.4.3); the next round goes on "
            "from the last next token"
        )


@dataclass(frozen=True)
class _PullPosition:
    """Where a pull's next page is: the request's ``added_after`` and the peer's
    ``next`` token within it, with the page's ``limit``."""

    added_after: str | None
    next_token: str | None
    limit: int

    def resume_text(self, cursor: str | None) -> str:
        """This position, kept with the pull state for the next round (another run of
        the worker included): valid while the committed cursor is ``cursor``."""
        return jsoncodec.dumps({"cursor": cursor, "added_after": self.added_after,
                                "next": self.next_token, "limit": self.limit})  # fmt: skip

    @classmethod
    def resuming(cls, state: syncstate.SyncState) -> _PullPosition | None:
        """Where the last round stopped, unless the cursor has moved since (or the
        text is not one ``resume_text`` wrote)."""
        try:
            kept = jsoncodec.loads(state.pull_resume or "null")
        except ValueError:
            return None
        if not isinstance(kept, dict) or kept.get("cursor") != state.remote_cursor:
            return None
        after, token, limit = kept.get("added_after"), kept.get("next"), kept.get("limit")
        if not isinstance(limit, int) or limit < 1:
            return None
        if not all(isinstance(value, str | None) for value in (after, token)):
            return None
        return cls(after, token, limit)


def _unreadable(object_id: str) -> dict[str, str]:
    """The failure of a version the peer served in a form this node does not read."""
    return {
        "id": object_id,
        "message": f"the peer served it nested deeper than {jsoncodec.MAX_DEPTH} levels "
        "of JSON, or holding NaN or Infinity (not JSON; stored, the object would change): "
        "it could not be read",
    }


def _usable(cursor: str | None) -> str | None:
    """A pull cursor to send as ``added_after``: None (from the start: what is held
    already is stored once) for one that is not a timestamp, which a peer's bad date
    header left before the client checked them."""
    return cursor if is_timestamp(cursor) else None


def _commit_point(page: ObjectPage, cursor: str | None) -> str | None:
    """The pull cursor that may be committed with this page, or None to keep ``cursor``.

    Everything the peer added up to the cursor is stored.  The peer serves versions
    in date_added order, so once a page is stored everything added before its
    ``X-TAXII-Date-Added-Last`` is: the cursor may move to just before it.  Not to
    it: some servers give many versions one date_added (medallion 3.0.0 gives a
    whole POST one), and a page may end inside such a group; resuming at the group
    reads it again and stores nothing twice.  At the end of the collection (``more``
    false) the page's Last itself.  A cursor never moves back.
    """
    last = page.date_added_last
    if last is None:
        return None
    if to_micros(last) > now_micros() + FUTURE_SKEW_MICROS:
        log.warning("the peer's X-TAXII-Date-Added-Last %s is ahead of this clock by more "
                    "than 5 minutes: the pull cursor stays", last)  # fmt: skip
        return None
    candidate = last if not page.more else just_before(last)
    held = micros_or_none(cursor)  # (one a peer's bad header left: replaced)
    if held is not None and to_micros(candidate) <= held:
        return None
    return candidate
