"""Posting a push round's envelopes so that one object never blocks the others.

A peer answers an envelope with a status (TAXII 2.1 section 4.3.1) that lists
the objects it refused, or it refuses the whole envelope with an HTTP error.
The whole-envelope error is about the envelope's objects when it is a 4xx other
than 401/403/404/408/429 (say 400 or 413), and may be when it is a 5xx that
persists after the retries: some servers answer 500 to one valid object (an
exception in their code) and so to every envelope holding it.  Either way the
envelope is halved, both halves are posted, and the failing halves are halved
again, until the objects at fault stand alone: those are refused (they become
dead letters) and everything else is delivered, so the cursor can move on.

A 5xx may also mean the peer is broken for every object (its database is
down).  Dead-lettering everything would then be wrong, so objects are refused
for a 5xx only when the peer, asked again right after, accepts an envelope it
accepted earlier in the round (a *probe*: one object re-posted, idempotent by
id and version); when it does not, or nothing was accepted in the round, the
5xx is the round's error and the cursor stays.  A long run of failing posts
is probed on the way too, so that a peer that breaks mid-round costs a few
posts, not two per object.

A status is believed only for what it says (``unaccounted``): an object its
successes do not name as stored and its failures do not name as refused (a
``complete`` status whose counts fall short of what was sent, lists that leave
ids out, a ``pendings`` entry in a complete status) is posted again, in an
envelope of the ones left over, and dead-lettered, saying so, when the peer
still does not account for it after ``recount_attempts`` more posts: never
audited as sent on the strength of a status that does not name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from node.client import Throttled, unaccounted_objects
from node.errors import RemoteError
from node.sharing.records import already_present_keys
from node.validation import version_stamp

# Errors that concern the peer or our access, never the objects: retried in a later round.
_NOT_ABOUT_OBJECTS = {401, 403, 404, 408, 429}

Envelope = Sequence[tuple[dict, str]]  # (object, its JSON text)
Post = Callable[[list[str], int], dict]  # (texts, attempts) -> status; raises RemoteError


@dataclass
class Delivery:
    """What the peer made of a round's envelopes."""

    failures: list[dict] = field(default_factory=list)  # status-details: id, version, message
    already_present: set[tuple[str, str]] = field(default_factory=set)  # (id, version)
    # Envelopes (each a part of one posted) of the objects the status did not account for.
    unaccounted: list[Envelope] = field(default_factory=list)

    def add_status(self, status: dict) -> None:
        """Add a status resource's answers (``client._status`` checked their shape); of a
        failure, only what names the object and the peer's words are kept."""
        for failure in status.get("failures") or ():
            kept = {key: failure[key] for key in ("id", "version") if failure.get(key)}
            kept["message"] = failure.get("message") or "no reason given"
            self.failures.append(kept)
        self.already_present |= already_present_keys(status.get("successes") or ())


def isolatable(error: RemoteError) -> bool:
    """Whether halving the envelope can tell the objects at fault from the others."""
    return (
        error.status is not None
        and error.status >= 400  # (a redirect is about the address, never the objects)
        and error.status not in _NOT_ABOUT_OBJECTS
        and not isinstance(error, Throttled)  # (a 503 asking us to wait: the peer is busy)
    )


class EnvelopePoster:
    """Posts envelopes for one push round (see the module docstring)."""

    def __init__(
        self,
        post: Post,
        *,
        attempts: int,
        split_attempts: int = 2,
        probe_after: int = 16,
        recount_attempts: int = 2,
    ) -> None:
        self._post = post
        self._attempts = attempts
        self._split_attempts = split_attempts
        self._recount_attempts = recount_attempts
        self._probe_after = probe_after
        self._failed_in_a_row = 0
        self._known_good: str | None = None  # the text of one object the peer accepted

    def deliver(self, envelopes: Sequence[Envelope]) -> Delivery:
        """Post every envelope; raise RemoteError when the peer, not an object, failed."""
        delivery = Delivery()
        suspects: list[tuple[dict, RemoteError]] = []
        for envelope in envelopes:
            error = self._try(envelope, self._attempts, delivery)
            if error is not None:
                self._isolate(envelope, error, delivery, suspects)
        self._post_unaccounted_again(delivery, suspects)
        if suspects and not self._peer_works():
            raise suspects[0][1]  # the peer fails, not (only) these objects
        delivery.failures.extend(_refusal(obj, error) for obj, error in suspects)
        return delivery

    def _try(self, envelope: Envelope, attempts: int, delivery: Delivery) -> RemoteError | None:
        """Post one envelope: None when the peer answered with a status, else its error
        when halving may help; other errors propagate (the round fails)."""
        try:
            status = self._post([text for _, text in envelope], attempts)
        except RemoteError as error:
            if not isolatable(error):
                raise
            self._failed_in_a_row += 1
            if self._failed_in_a_row >= self._probe_after:
                if not self._peer_works():
                    raise
                self._failed_in_a_row = 0
            return error
        self._failed_in_a_row = 0
        delivery.add_status(status)
        left_over = unaccounted(envelope, status)
        if left_over:
            delivery.unaccounted.append(left_over)
        if self._known_good is None and len(left_over) < len(envelope):
            unnamed = {id(obj) for obj, _ in left_over}
            self._known_good = next(text for obj, text in envelope if id(obj) not in unnamed)
        return None

    def _post_unaccounted_again(
        self, delivery: Delivery, suspects: list[tuple[dict, RemoteError]]
    ) -> None:
        """Post again what the peer's statuses did not account for, up to
        ``recount_attempts`` times (idempotent at the peer: same id and version);
        what is still not accounted for then is refused, with the reason."""
        for _ in range(self._recount_attempts):
            left_over, delivery.unaccounted = delivery.unaccounted, []
            if not left_over:
                return
            for envelope in left_over:  # (each part of an envelope that fitted)
                error = self._try(envelope, self._split_attempts, delivery)
                if error is not None:
                    self._isolate(envelope, error, delivery, suspects)
        posts = self._recount_attempts + 1
        for envelope in delivery.unaccounted:
            delivery.failures.extend(_unaccounted_failure(obj, posts) for obj, _ in envelope)
        delivery.unaccounted = []

    def _peer_works(self) -> bool:
        """Whether the peer accepts, now, an object it accepted earlier in the round."""
        if self._known_good is None:
            return False
        try:
            self._post([self._known_good], self._split_attempts)
        except RemoteError:
            return False
        return True

    def _isolate(
        self,
        envelope: Envelope,
        error: RemoteError,
        delivery: Delivery,
        suspects: list[tuple[dict, RemoteError]],
    ) -> None:
        """Halve a refused envelope until the objects at fault stand alone."""
        if len(envelope) == 1:
            obj = envelope[0][0]
            if error.status is not None and error.status >= 500:
                suspects.append((obj, error))  # decided once the peer is seen to work
            else:
                delivery.failures.append(_refusal(obj, error))
            return
        middle = len(envelope) // 2
        halves = (envelope[:middle], envelope[middle:])
        # Both halves first, then deeper: the peer's answers to siblings come first.
        errors = [self._try(half, self._split_attempts, delivery) for half in halves]
        for half, half_error in zip(halves, errors, strict=True):
            if half_error is not None:
                self._isolate(half, half_error, delivery, suspects)


def unaccounted(envelope: Envelope, status: dict) -> Envelope:
    """The objects of ``envelope`` that ``status`` does not account for
    (``node.client.unaccounted_objects``)."""
    left_over = set(map(id, unaccounted_objects([obj for obj, _ in envelope], status)))
    return [(obj, text) for obj, text in envelope if id(obj) in left_over]


def _unaccounted_failure(obj: dict, posts: int) -> dict:
    return {
        "id": obj.get("id"),
        "version": version_stamp(obj),
        "message": f"posted {posts} times, and the peer's status never accounted for it "
        "(neither a success nor a failure named it: TAXII 2.1 section 4.3.1)",
    }


def _refusal(obj: dict, error: RemoteError) -> dict:
    return {"id": obj.get("id"), "version": version_stamp(obj), "message": _answer(error)}


def _answer(error: RemoteError) -> str:
    """The peer's answer without our request line (the dead letter names the object)."""
    text = str(error)
    marker = f"HTTP {error.status}:"
    return text[text.index(marker) :] if marker in text else text
