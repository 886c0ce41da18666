"""The TAXII 2.1 client: the CLI's against any server, the sync worker's against the peer.

It exposes what general clients hide and both users need: the
``X-TAXII-Date-Added-Last`` header (a poller's and the worker's cursor), the
API root's ``max_content_length`` (to size envelopes), status polling (4.3.1),
and a clear line between errors worth retrying (network, timeouts, 5xx, 408,
429) and answers that will not change (other 4xx), as ``RemoteError.transient``.

There is one envelope splitter (``split_envelopes``), with the size rule of the
body that ``post_serialized`` sends, and one page iterator (``pages``), which
follows ``next`` (3.5) with the request's own filters, and ``added_after`` where a
server pages without ``next``.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import errno
import html
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.auth import HTTPBasicAuth

from node import jsoncodec
from node.errors import ConfigError, RemoteError
from node.mediatypes import TAXII_21
from node.timestamps import from_micros, is_timestamp, just_before, micros_or_none, to_micros
from node.watchdog import Watch, Watchdog

if TYPE_CHECKING:
    from node.config import Config

log = logging.getLogger(__name__)

DEFAULT_MAX_CONTENT_LENGTH = 10 * 1024 * 1024
# The envelope around the objects' texts in a POST body (``envelope_body``); each
# object adds its text and one comma (one byte more than needed for the last).
ENVELOPE_OVERHEAD = len(b'{"objects":[]}')
# At most this many objects per POST, whatever their size: servers cap the count
# too (this node's max_objects_per_envelope), and a status of 1,000 stays small.
MAX_OBJECTS_PER_ENVELOPE = 1000
# A server's answer must arrive whole within this many seconds and bytes: ``timeout``
# bounds each read only, so a server sending a byte now and then (or without end)
# would otherwise hold the caller (the sync worker, every lane of it) for ever.
ANSWER_DEADLINE_SECONDS = 300.0
MAX_ANSWER_BYTES = 256 * 1024 * 1024
CONNECT_SECONDS = 10.0
_READ_BYTES = 64 * 1024

Envelope = list[tuple[dict, str]]


# Paging a server that gives no ``next`` (by added_after), a page of versions all added
# at one instant is asked for again with twice the limit, up to this many.
PAGES_LIMIT_MAX = 10_000
# A Retry-After longer than this is read as this long: a peer's header must not park a
# lane for days (RFC 9110 section 10.2.3 sets no bound).
MAX_RETRY_AFTER_SECONDS = 3600.0


class Throttled(RemoteError):
    """A 429 or 503 with a Retry-After (RFC 9110 section 10.2.3): transient, and not to
    be tried again for ``retry_after`` seconds (at most ``MAX_RETRY_AFTER_SECONDS``)."""

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, transient=True, status=status, retry_now=False)
        self.retry_after = retry_after


def retry_after(response: requests.Response) -> float | None:
    """The seconds a Retry-After header asks to wait, between 0 and the maximum, or None
    when there is none or it is neither a number of seconds nor an HTTP-date."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # (RFC 9110 10.2.3: 1*DIGIT; not "²")
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # (-0000: RFC 5322 for "UTC, zone unknown")
            moment = moment.replace(tzinfo=datetime.UTC)
        seconds = (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def unaccounted_objects(sent: list[dict], status: dict) -> list[dict]:
    """The objects of ``sent`` (one envelope) that ``status`` does not account for (TAXII 2.1
    section 4.3.1): named neither by a success (stored, or held already) nor by a
    failure.  ``pendings`` do not count: a complete status with pendings has not
    said what became of them.

    ``successes`` are optional in 4.3.1, and a status may give counts alone: it
    then accounts for every object not named by a failure only when it is
    complete and its counts add up to exactly what was sent, with every failure
    it counts listed.  Entries name an object by id and, when they give one, a
    version, in any precision (STIX 2.1 section 3.2); an entry without a version,
    or an object without one (an SCO, which the receiver labels by its date_added),
    is matched by id.
    """
    successes, failures = status.get("successes") or [], status.get("failures") or []
    named: dict[Any, list[dict]] = {}  # by id: an envelope of 1,000 meets 1,000 entries
    for entry in (*successes, *failures):
        if isinstance(entry, dict):
            named.setdefault(entry.get("id"), []).append(entry)
    left_over = [obj for obj in sent if not _named(obj, named.get(obj.get("id"), ()))]
    if left_over and not successes and _counts_account_for(len(sent), status):
        return []
    return left_over


def _named(obj: dict, entries: Iterable[dict]) -> bool:
    """Whether one of ``entries`` (the status entries under ``obj``'s id) names it."""
    from node.validation import version_stamp  # (a status's check: not at start-up)

    version = version_stamp(obj)
    for entry in entries:
        given = entry.get("version")
        if not given or not version or given == version:
            return True
        at = micros_or_none(str(given))
        if at is not None and at == micros_or_none(version):
            return True
    return False


def _counts_account_for(sent: int, status: dict) -> bool:
    """Whether a complete status's counts alone say what became of all ``sent``."""
    counts = [status.get(key) for key in ("total_count", "success_count", "failure_count")]
    numbers = [n for n in counts if isinstance(n, int) and not isinstance(n, bool)]
    if len(numbers) != len(counts):
        return False
    total, succeeded, failed = numbers
    return (
        status.get("status") == "complete"
        and total == sent
        and succeeded + failed == sent
        and failed == len(status.get("failures") or [])
    )


# The page size of the check whether refused versions are held by the server after
# all: every version of 50 ids in one page (the check reads one page per 50 ids).
SUSPECTS_LIMIT = 1000


def _version_text(obj: dict) -> str:
    from node.validation import version_stamp  # (a status's check: not at start-up)

    return version_stamp(obj) or ""


def as_sent(sent: list[dict], failures: list[dict]) -> list[dict]:
    """The peer's failures, each naming a version as we sent it.

    A peer may write the version of a refused object in another form (the same
    instant without milliseconds: STIX 2.1 section 3.2 allows any precision) or
    leave it out; its failure then names every version of that id we sent.  A
    failure naming nothing we sent is the peer's noise: it is logged, and no dead
    letter is made of it.
    """
    versions: dict[str, list[tuple[str, int | None]]] = {}
    for obj in sent:
        text = _version_text(obj)
        versions.setdefault(str(obj.get("id")), []).append((text, micros_or_none(text)))
    named: list[dict] = []
    for failure in failures:
        ours = versions.get(str(failure.get("id")), [])
        given = failure.get("version")
        if given:
            micros = micros_or_none(str(given))
            ours = [(text, at) for text, at in ours if text == given or (at and at == micros)]
        if not ours:
            log.warning("the server refused something not sent: %.200s", failure)
        # (one failure per version: an envelope of ``taxii-node publish`` may hold a
        # version twice, one copy the server holds and another it refuses)
        named.extend({**failure, "version": text or None} for text, _at in dict.fromkeys(ours))
    return named


def not_already_held(
    client: TaxiiClient,
    collection_id: str,
    sent: list[dict],
    failures: list[dict],
    *,
    call: Callable[[Callable[[], ObjectPage]], ObjectPage] | None = None,
) -> tuple[list[dict], set[tuple[str, str]]]:
    """The failures, less versions the server turns out to hold exactly as we sent them
    (returned apart: already present); ``failures`` name versions as sent (``as_sent``).

    Some servers answer a re-posted (id, version) with a failure instead of success
    (medallion 3.0.0: "Unable to process object"): a dependency sent again in a later
    round, a batch sent again after a crash, a bundle published twice.  Those are
    delivered, not refused.  Each read of the server goes through ``call`` (the push
    round's retries); when one fails nothing can be told and every failure is kept.
    """
    # Every copy sent under a version (an envelope of ``taxii-node publish`` may hold
    # two): a version is held as sent only when the server holds each copy's content.
    by_key: dict[tuple[Any, str], list[dict]] = {}
    for obj in sent:
        by_key.setdefault((obj.get("id"), _version_text(obj)), []).append(obj)
    failed = [(f.get("id"), f.get("version")) for f in failures]
    suspects = sorted({str(key[0]) for key in failed if key in by_key})
    held: set[tuple] = set()
    for start in range(0, len(suspects), 50):
        params = {
            "match[id]": ",".join(suspects[start : start + 50]),
            "match[version]": "all",
            "limit": SUSPECTS_LIMIT,
        }
        try:
            read = lambda params=params: client.page(collection_id, params)  # noqa: E731
            page = call(read) if call is not None else read()
        except RemoteError:
            return failures, set()  # cannot tell: keep every failure
        for obj in page.objects:
            if isinstance(obj, dict):
                key = (obj.get("id"), _version_text(obj))
                copies = by_key.get(key)
                if copies and all(copy == obj for copy in copies):
                    held.add(key)
    kept = [f for f in failures if (f.get("id"), f.get("version")) not in held]
    return kept, {(str(i), str(v)) for i, v in held}


@dataclass(frozen=True)
class ObjectPage:
    objects: list[dict]
    more: bool
    next: str | None
    date_added_last: str | None
    date_added_first: str | None = None
    # The ids (or "" where none could be read) of versions on the page nested too
    # deeply to read: left out of ``objects``, so the rest of the page is still read.
    unreadable: list[str] = field(default_factory=list)
    # X-TAXII-Date-Added-Last as sent, when it was sent but is not a timestamp.
    unreadable_date_added_last: str | None = None


def envelope_body(texts: Iterable[str]) -> bytes:
    """The POST body of an envelope of objects already serialised (5.4)."""
    return ('{"objects":[' + ",".join(texts) + "]}").encode()


def split_envelopes(
    objects: Iterable[dict],
    max_bytes: int,
    *,
    on_oversized: Callable[[dict, int], object],
    serialize: Callable[[dict], str] = jsoncodec.dumps,
    max_objects: int = MAX_OBJECTS_PER_ENVELOPE,
) -> Iterator[Envelope]:
    """Group a stream of objects into envelopes of (object, JSON text) whose bodies fit
    ``max_bytes``, in order, serialising each object once.

    An object too large for any envelope is handed to ``on_oversized`` with its size
    and left out: posting it would only earn a 413 (and stop the envelope with it).
    """
    current: Envelope = []
    size = ENVELOPE_OVERHEAD
    for obj in objects:
        text = serialize(obj)
        length = len(text.encode()) + 1  # and a comma
        if ENVELOPE_OVERHEAD + length > max_bytes:
            on_oversized(obj, length - 1)
            continue
        if current and (size + length > max_bytes or len(current) >= max_objects):
            yield current
            current, size = [], ENVELOPE_OVERHEAD
        current.append((obj, text))
        size += length
    if current:
        yield current


class TaxiiClient:
    """A TAXII 2.1 client; over https it always verifies the server's certificate.

    Authenticates with HTTP Basic (``user``, ``password``) or an API token sent as
    ``Authorization: Bearer`` (``token``).  ``ca_bundle`` names the CA
    certificates the server's certificate must chain to (without it, the
    system's trust store, or ``REQUESTS_CA_BUNDLE``); ``client_cert`` and
    ``client_key`` are the certificate presented for mutual TLS (``client_key``
    may be omitted when ``client_cert`` holds both).
    """

    def __init__(
        self,
        api_root: str,
        user: str | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        answer_deadline: float = ANSWER_DEADLINE_SECONDS,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        stop: threading.Event | None = None,
    ) -> None:
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self._timeout = timeout
        # Connecting cannot be cut by the watchdog (the socket is its own only once
        # connected): a short bound, so that a peer that does not accept, or a stop,
        # waits at most this long (name resolution is bounded by the system's resolver).
        self._connect_timeout = min(timeout, answer_deadline, CONNECT_SECONDS)
        self._answer_deadline = answer_deadline
        self._max_answer_bytes = max_answer_bytes
        self._info: dict | None = None
        self._last_answer: float | None = None
        # Passed with every request, not set on the session: requests lets the
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE environment variables override a
        # session's ``verify`` (psf/requests#3829), but never a per-request one.
        self._verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        self._cert: str | tuple[str, str] | None = None
        if client_cert is not None:
            cert = str(client_cert)
            self._cert = (cert, str(client_key)) if client_key is not None else cert
        self._session = session or requests.Session()
        if token is not None:
            self._session.headers["Authorization"] = f"Bearer {token}"
        elif user is not None:
            # As UTF-8 bytes: requests would send text as ISO-8859-1 (RFC 7617 asks
            # for UTF-8), and fails on characters outside it.
            self._session.auth = HTTPBasicAuth(user.encode(), (password or "").encode())
        # The versioned media type: medallion 3.0.0 refuses the versionless one.
        self._session.headers["Accept"] = TAXII_21
        # Every exchange, headers and TLS handshake included, ends by its deadline, or
        # at once when ``stop`` is set (a worker told to stop).
        self._stop = stop or threading.Event()  # (one never set: nothing stops it)
        self._watchdog = Watchdog(self._session, self._stop)

    def close(self) -> None:
        self._session.close()

    # -- transport ------------------------------------------------------------------

    @property
    def last_answer(self) -> float | None:
        """``time.monotonic()`` of the server's last HTTP answer (any status), or None."""
        return self._last_answer

    def probe(self) -> None:
        """Ask the server for the API root now (not the cached copy): RemoteError if it
        cannot be reached or refuses us.  A worker with nothing to send uses it to know
        whether the peer is up before saying so."""
        self._json(self._request("GET", self.api_root))

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        with self._watchdog.watching(self._answer_deadline) as watch:
            try:
                response = self._session.request(
                    method, url, timeout=(self._connect_timeout, self._timeout),
                    verify=self._verify, cert=self._cert, stream=True, allow_redirects=False,
                    **kwargs,
                )  # fmt: skip
                self._read_answer(response, f"{method} {url}", watch)
                if watch.cut is not None:  # (a cut socket can also read as the answer's end)
                    raise self._cut(method, url, watch.cut)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                    RemoteError) as exc:  # fmt: skip
                if watch.cut is not None:
                    raise self._cut(method, url, watch.cut) from None
                if isinstance(exc, RemoteError):
                    raise
                if not isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError):
                    # requests: an unreadable ca_bundle or client_cert
                    raise RemoteError(f"{method} {url}: {exc}", transient=False) from None
                # (urllib3's own errors: a timeout or a cut connection while reading the body)
                reason = describe_transport_error(exc, self._timeout)
                raise RemoteError(f"{method} {url}: {reason}", transient=True) from None
        self._last_answer = time.monotonic()
        if 300 <= response.status_code < 400:
            # Never followed: a peer's redirect would send our envelopes (and offer our
            # client certificate) to any address it names, https down to http included.
            where = response.headers.get("Location", "nowhere")
            raise RemoteError(
                f"{method} {url}: HTTP {response.status_code}: redirected to {where:.200}, "
                "not followed (configure the address it names if it is the peer's)",
                transient=False,
                status=response.status_code,
            )
        if response.status_code >= 400:
            text = f"{method} {url}: HTTP {response.status_code}: {_error_text(response)}"
            wait = retry_after(response) if response.status_code in (429, 503) else None
            if wait is not None:
                raise Throttled(f"{text} (the server asks to wait {wait:g} s: Retry-After)",
                                status=response.status_code, retry_after=wait)  # fmt: skip
            raise RemoteError(
                text,
                transient=response.status_code >= 500 or response.status_code in (408, 429),
                status=response.status_code,
            )
        return response

    def _cut(self, method: str, url: str, why: str) -> RemoteError:
        """The error of an exchange the watchdog cut (not retried at once: see RemoteError)."""
        if why == "stop":
            return RemoteError(f"{method} {url}: stopped", transient=True, retry_now=False)
        return RemoteError(
            f"{method} {url}: the answer took longer than {self._answer_deadline:g} s",
            transient=True,
            retry_now=False,
        )

    def _read_answer(self, response: requests.Response, request: str, watch: Watch) -> None:
        """Read the body of ``response`` (streamed) within the answer deadline and size.

        Read as it arrives (``read1``: one read of what the socket has, never a wait
        for a full buffer); the watchdog cuts it past the exchange's deadline, however
        slowly the bytes come.  The body is then the response's content, as without
        streaming.  ``watch`` ends before the connection goes back to the pool (where
        another request may take it up).
        """
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.raw.read1(_READ_BYTES, decode_content=True):
                size += len(chunk)
                if size > self._max_answer_bytes:
                    raise RemoteError(
                        f"{request}: the answer is larger than {self._max_answer_bytes} bytes",
                        transient=False,
                        too_much=True,
                    )
                chunks.append(chunk)
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)  # what requests' own read would have kept
        response._content_consumed = True
        watch.finish()
        response.raw.release_conn()

    def _json(
        self,
        response: requests.Response,
        text: bytes | None = None,
        constants: list[str] | None = None,
    ) -> dict:
        """The answer's JSON object (``text`` instead of the body when given), parsed by
        the standard library, which reads NaN and Infinity (not JSON, but some servers
        write them); with ``constants``, each of those is read as ``NON_FINITE`` and its
        name added there, for the page reader to set apart the objects holding one
        (stored, a NaN would become null: the object changed)."""

        def non_finite(name: str) -> _NonFinite:
            assert constants is not None
            constants.append(name)
            return NON_FINITE

        hook = non_finite if constants is not None else None
        try:
            # (not response.json(): requests parses with simplejson where it is installed,
            # as stix2 installs it, and simplejson refuses NaN: the whole page unreadable)
            document = json.loads(response.content if text is None else text,
                                  parse_constant=hook)  # fmt: skip
        except ValueError:
            raise RemoteError(
                f"{response.request.method} {response.url}: the answer is not JSON",
                transient=True,
            ) from None
        except RecursionError:
            raise RemoteError(
                f"{response.request.method} {response.url}: the answer nests too deeply to read",
                transient=False,
                too_much=True,
            ) from None
        if not isinstance(document, dict):
            raise RemoteError(f"{response.url}: unexpected answer {document!r:.80}", transient=True)
        return document

    # -- discovery and the API root ---------------------------------------------------

    def use_default_api_root(self) -> str:
        """Accept the server's base URL or its discovery URL as well as an API root.

        A URL with no path is the server's: its discovery resource is at
        ``/taxii2/`` (4.1).  A discovery resource names the ``default`` API root
        (or lists exactly one); that becomes this client's API root.  Anything
        else is taken as an API root, and its information is kept for
        ``max_content_length``.  Returns the API root.
        """
        url = self.api_root
        if urlsplit(url).path in ("", "/"):
            url = urljoin(url, "/taxii2/")
        document = self._json(self._request("GET", url))
        if "api_roots" not in document:
            self.api_root, self._info = url, document
            return url
        self.api_root = _default_api_root(url, document)
        self._info = None
        return self.api_root

    def api_root_information(self) -> dict:
        """The API root resource (4.2), fetched once."""
        if self._info is None:
            self._info = self._json(self._request("GET", self.api_root))
        return self._info

    def max_content_length(self) -> int:
        """The API root's ``max_content_length`` (4.2), or the default when it is absent
        or not a positive integer (logged: ``true`` is no size, though Python counts a
        bool as an integer)."""
        value = self.api_root_information().get("max_content_length")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if value is not None:
            log.warning(
                "%s: max_content_length %.40r is not a positive integer (TAXII 2.1 section "
                "4.2): envelopes are sized for %d bytes", self.api_root, value,
                DEFAULT_MAX_CONTENT_LENGTH,
            )  # fmt: skip
        return DEFAULT_MAX_CONTENT_LENGTH

    # -- collections ----------------------------------------------------------------

    def collection_id(self, name: str) -> str:
        """Resolve a collection named by id or alias on the server."""
        for collection in self.collections():
            if not isinstance(collection, dict) or not isinstance(collection.get("id"), str):
                continue  # (not a collection resource, 5.2: nothing to resolve to)
            if name in (collection["id"], collection.get("alias")):
                return str(collection["id"])
        raise RemoteError(
            f"the server has no collection {name!r} visible to this account", transient=False
        )

    def collections(self) -> list[dict]:
        listing = self._json(self._request("GET", self.api_root + "collections/"))
        found = listing.get("collections", [])
        return found if isinstance(found, list) else []

    # -- reading --------------------------------------------------------------------

    def objects_page(
        self, collection_id: str, *, added_after: str | None, next_token: str | None, limit: int
    ) -> ObjectPage:
        """A page of every version added after ``added_after`` (the sync worker's view)."""
        params: dict[str, str | int] = {"limit": limit, "match[version]": "all"}
        if added_after:
            params["added_after"] = added_after
        if next_token:
            params["next"] = next_token
        return self.page(collection_id, params)

    def page(self, collection_id: str, params: dict, endpoint: str = "objects") -> ObjectPage:
        """One page of ``objects`` or ``manifest`` with the given TAXII filters."""
        url = f"{self.api_root}collections/{collection_id}/{endpoint}/"
        response = self._request("GET", url, params=params)
        envelope, unreadable = self._page_json(response)
        objects, more = envelope.get("objects", []), envelope.get("more", False)
        token = envelope.get("next")
        if objects is None:
            objects = []
        if not isinstance(objects, list) or not isinstance(more, bool | None):
            # (read as a page, such an answer would move a cursor past what it held)
            raise RemoteError(
                f"GET {response.url}: an envelope whose objects are {type(objects).__name__} "
                f"and more is {more!r:.20}: not a TAXII envelope (5.3)",
                transient=False,
            )
        return ObjectPage(
            objects=objects,
            more=more is True,
            next=token if isinstance(token, str) and token else None,
            date_added_last=_timestamp_header(response, "X-TAXII-Date-Added-Last"),
            date_added_first=_timestamp_header(response, "X-TAXII-Date-Added-First"),
            unreadable=unreadable,
            unreadable_date_added_last=unreadable_date_header(response, "X-TAXII-Date-Added-Last"),
        )

    def _page_json(self, response: requests.Response) -> tuple[dict, list[str]]:
        """A page's envelope, and the ids of its versions nested too deeply to read.

        Parsers stop at about 1,000 levels, and one such version would otherwise make
        the whole page unreadable, down to a page of that one version (which no limit
        could get past).  Those versions are cut out of the text first
        (``jsoncodec.cut_deep_items``: a bracket scan, no recursion) when that is
        what stops the parse.
        """
        seen: list[str] = []
        try:
            envelope = self._json(response, constants=seen)
            return _set_apart_non_finite(envelope, []) if seen else (envelope, [])
        except RemoteError as exc:
            if not exc.too_much:
                raise
            cut, markers = jsoncodec.cut_deep_items(response.content, jsoncodec.MAX_DEPTH)
            if not markers:
                raise
        envelope = self._json(response, cut, constants=seen)
        objects = envelope.get("objects")
        if isinstance(objects, list):
            envelope["objects"] = [o for o in objects if not (isinstance(o, str) and o in markers)]
        if seen:
            return _set_apart_non_finite(envelope, list(markers.values()))
        return envelope, list(markers.values())

    def pages(
        self, collection_id: str, params: dict, endpoint: str = "objects"
    ) -> Iterator[ObjectPage]:
        """Every page of one request, in order, following ``next`` (3.5).

        Each follow-up repeats the first request's filters, ``limit`` included
        (medallion 3.0.0 answers 500 to a ``next`` without ``limit``).  A server may
        say ``more`` without a ``next`` (3.4.3: it pages by ``added_after``): the
        next page is then asked for by ``added_after`` just before the page's
        X-TAXII-Date-Added-Last, so that versions added at that instant and not yet
        served are not skipped, and those served already are left out of the page
        that repeats them.  RemoteError, never a silent partial answer, when the
        server gives no date to go on from or the paging does not move.
        """
        query = dict(params)
        served: set[tuple[str, str]] = set()  # paging by date: what a page may repeat
        while True:
            page = self.page(collection_id, query, endpoint)
            yield _without(page, served) if served else page
            if not page.more:
                return
            if page.next is not None:
                query, served = {**params, "next": page.next}, set()
                continue
            after = _added_after_following(page, self.api_root)
            if after != query.get("added_after"):
                query, served = {**params, "added_after": after}, _version_keys(page.objects)
            else:  # one instant fills the page: asked again with twice the limit
                query = {**query, "limit": _doubled_limit(query, page, self.api_root)}
                served |= _version_keys(page.objects)

    # -- writing --------------------------------------------------------------------

    def post_objects(self, collection_id: str, objects: list[dict], poll_seconds: float = 60.0):
        """POST one envelope and follow its status resource until complete (4.3.1)."""
        texts = [jsoncodec.dumps(obj) for obj in objects]
        return self.post_serialized(collection_id, texts, poll_seconds)

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        """As ``post_objects``, for objects already serialised (by ``split_envelopes``)."""
        url = f"{self.api_root}collections/{collection_id}/objects/"
        body = envelope_body(texts)
        response = self._request("POST", url, data=body, headers={"Content-Type": TAXII_21})
        status = _status(self._json(response), url)
        deadline = time.monotonic() + poll_seconds
        delay = 0.2
        # Until the status says complete, whatever its pending_count: a pending status
        # with pending_count 0 and its objects in ``pendings`` has not said what became
        # of them (4.3.1).
        while status["status"] != "complete":
            if time.monotonic() > deadline:
                raise RemoteError(
                    f"status {status.get('id')} still pending after {poll_seconds:g} s",
                    transient=True,
                    retry_now=False,
                )
            if self._stop.wait(delay):
                raise RemoteError(f"status {status.get('id')}: stopped", transient=True,
                                  retry_now=False)  # fmt: skip
            delay = min(delay * 2, 5.0)
            status_url = f"{self.api_root}status/{status.get('id')}/"
            status = _status(self._json(self._request("GET", status_url)), status_url)
        return status


def _added_after_following(page: ObjectPage, where: str) -> str:
    """``added_after`` for the page after ``page``, which said ``more`` without ``next``:
    a microsecond before its X-TAXII-Date-Added-Last (3.4.1 keeps what was added
    strictly after), so that versions added at that instant and not yet served are
    served (some servers give a whole POST one date_added)."""
    last = page.date_added_last
    if last is None:
        raise RemoteError(
            f"{where}: the server answered more: true without a next token or "
            f"{date_header_said(page)} (TAXII 2.1 section 3.4.3): it cannot be "
            "paged further, and what was read is not all",
            transient=False,
        )
    return just_before(last)


def date_header_said(page: ObjectPage) -> str:
    """What a page without a usable X-TAXII-Date-Added-Last had instead, in words."""
    given = page.unreadable_date_added_last
    if given is None:
        return "an X-TAXII-Date-Added-Last header"
    return f"a readable X-TAXII-Date-Added-Last (it sent {given!r:.60}, not an RFC 3339 timestamp)"


def _doubled_limit(query: dict, page: ObjectPage, where: str) -> int:
    """Twice the request's limit, for a page of versions all added at one instant (the
    sync worker does the same, up to the same bound)."""
    try:
        limit = int(query.get("limit") or 0)
    except (TypeError, ValueError):
        limit = 0
    if not 0 < limit < PAGES_LIMIT_MAX:
        raise RemoteError(
            f"{where}: the server pages by added_after without next tokens, and more "
            f"versions than a page of {limit or 'its default'} holds were added at "
            f"{page.date_added_last}: it cannot be paged past that instant",
            transient=False,
        )
    return min(PAGES_LIMIT_MAX, limit * 2)


def served_key(obj: object) -> tuple[str, str]:
    """(id, version) of a served object or manifest record, what a page repeating an
    earlier one holds again (of anything but a JSON object, its text)."""
    if not isinstance(obj, dict):
        return ("", repr(obj)[:200])
    version = obj.get("modified") or obj.get("created") or obj.get("version") or ""
    return (str(obj.get("id")), str(version))


def _version_keys(objects: list) -> set[tuple[str, str]]:
    """(id, version) of a page's objects or manifest records."""
    return {served_key(obj) for obj in objects if isinstance(obj, dict)}


def _without(page: ObjectPage, served: set[tuple[str, str]]) -> ObjectPage:
    """``page`` less the versions of ``served`` (paging by date serves them again)."""
    kept = [obj for obj in page.objects if served_key(obj) not in served]
    if len(kept) == len(page.objects):
        return page
    return dataclasses.replace(page, objects=kept)


class _NonFinite:
    """NaN, Infinity or -Infinity as a page holds it (``TaxiiClient._json``)."""


NON_FINITE = _NonFinite()


def _set_apart_non_finite(envelope: dict, unreadable: list[str]) -> tuple[dict, list[str]]:
    """The envelope without the objects that hold NaN or Infinity anywhere, their ids added
    to ``unreadable`` (walked only when the parser met one: nearly no page holds one)."""
    objects = envelope.get("objects")
    if not isinstance(objects, list):
        return envelope, unreadable
    kept = []
    for obj in objects:
        if _holds_non_finite(obj):
            object_id = obj.get("id") if isinstance(obj, dict) else None
            unreadable.append(object_id if isinstance(object_id, str) else "")
        else:
            kept.append(obj)
    return {**envelope, "objects": kept}, unreadable


def _holds_non_finite(value: Any) -> bool:
    return jsoncodec.find_within(value, lambda item: item is NON_FINITE) is not None


def _timestamp_header(response: requests.Response, name: str) -> str | None:
    """A date header (TAXII 2.1 section 3.3.1), or None when it is absent or not a
    timestamp: what a worker may keep as a cursor and send back as ``added_after``.

    TAXII timestamps are UTC with ``Z``; one written with an RFC 3339 offset
    (``+00:00``, as Python's isoformat writes it) names an instant as well, and is
    read as that instant in UTC."""
    value = response.headers.get(name)
    if value is None or is_timestamp(value):
        return value
    return _utc_of_offset(value)


_OFFSET_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)([+-])(\d\d):(\d\d)$")


def _utc_of_offset(value: str) -> str | None:
    """An RFC 3339 timestamp with a numeric offset as the same instant in UTC (``Z``),
    or None when ``value`` is not one."""
    match = _OFFSET_TIMESTAMP.match(value.strip())
    if match is None:
        return None
    local, sign, hours, minutes = match.groups()
    if int(hours) > 23 or int(minutes) > 59:
        return None
    try:
        micros = to_micros(local + "Z")
    except ValueError:
        return None
    offset = (int(hours) * 60 + int(minutes)) * 60_000_000
    return from_micros(micros - offset if sign == "+" else micros + offset)


def unreadable_date_header(response: requests.Response, name: str) -> str | None:
    """The header's value when it is there but not a timestamp (for error messages)."""
    value = response.headers.get(name)
    return value if value is not None and _timestamp_header(response, name) is None else None


def _status(document: dict, url: str) -> dict:
    """A status resource (TAXII 2.1 section 4.3.1) as the worker reads it: counts that
    are integers, and success and failure entries naming an object by a string id and
    (when given) a string version.  Any other answer is the peer's error (RemoteError):
    what it stored of the envelope cannot be told, so the round fails and its cursor
    stays, and the operator sees why."""
    state = document.get("status")
    if state not in ("complete", "pending"):
        raise RemoteError(
            f"{url}: a status whose status is {state!r:.40} (4.3.1: complete or pending)",
            transient=False,
        )
    pending = document.get("pending_count")
    if pending is None and state == "complete":
        pending = 0  # (required, 4.3.1; a complete status has none pending anyway)
    if not isinstance(pending, int) or isinstance(pending, bool):
        raise RemoteError(
            f"{url}: a status whose pending_count is {pending!r:.40}", transient=False
        )
    entries: dict[str, list[dict]] = {}
    for key in ("successes", "failures", "pendings"):
        listed = document.get(key, [])
        if listed is None:
            listed = []
        if not isinstance(listed, list) or not all(_status_entry(item) for item in listed):
            raise RemoteError(f"{url}: a status whose {key} are not status details",
                              transient=False)  # fmt: skip
        entries[key] = listed
    return {**document, **entries, "pending_count": pending}


def _status_entry(item: Any) -> bool:
    """Whether ``item`` is a status detail (4.3.1): an object id and maybe a version and
    a message (a null one read as none: servers write absent properties so)."""
    return (
        isinstance(item, dict)
        and isinstance(item.get("id"), str)
        and all(isinstance(item.get(key), str | None) for key in ("version", "message"))
    )


def _default_api_root(discovery_url: str, document: dict) -> str:
    """The default API root a discovery resource names (4.1.1), as an absolute URL."""
    default = document.get("default")
    roots = document.get("api_roots")
    roots = [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else []
    if not isinstance(default, str) or not default:
        if len(roots) != 1:
            listed = ", ".join(roots) or "none"
            raise RemoteError(
                f"{discovery_url}: the server names no default API root; pass one of its "
                f"API roots with --url ({listed})",
                transient=False,
            )
        default = roots[0]
    url = urljoin(discovery_url, default)
    return url if url.endswith("/") else url + "/"


def check_peer_tls(config: Config) -> None:
    """Load each peer's ca_bundle and client certificate; ConfigError if one fails."""
    for peer in config.peers:
        context = ssl.create_default_context()
        try:
            if peer.ca_bundle is not None:
                context.load_verify_locations(cafile=str(peer.ca_bundle))
            if peer.client_cert is not None:
                key = peer.client_key or peer.client_cert
                context.load_cert_chain(str(peer.client_cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.path}: peer {peer.name!r} ca_bundle, client_cert, client_key: {exc}"
            ) from None


def _error_text(response: requests.Response) -> str:
    """The server's reason for an error answer, on one line: a TAXII error's
    description (3.6.1), an HTML page's title, or the start of the text."""
    try:
        body = response.json()
        text = str(body.get("description") or body.get("title") or body)
    except (ValueError, AttributeError):
        text = response.text
        if "html" in response.headers.get("Content-Type", "").lower():
            title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
            text = html.unescape(title.group(1)) if title else ""
    return _one_line(text, 300) or response.reason or "no reason given"


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# What a person needs to know of a failed connection, by the errno underneath.
_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused (is the server running, on this port?)",
    errno.ECONNRESET: "connection reset by the server",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
    errno.EPIPE: "the server closed the connection",
}


def describe_transport_error(exc: BaseException, timeout: float) -> str:
    """One readable line for a request that got no HTTP answer.

    requests wraps urllib3, which wraps the socket error, and each layer's text
    repeats the URL and its class names; an operator reading the worker's log
    needs the cause: refused, timed out, name not resolved, TLS.
    """
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed: " + _ssl_reason(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer within {timeout:g} s"
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, OSError) and cause.errno in _ERRNO_REASONS:
            return _ERRNO_REASONS[cause.errno]
        if type(cause).__name__ == "RemoteDisconnected":
            return "the server closed the connection without answering"
    return _one_line(f"{type(exc).__name__}: {exc}", 200)


def _ssl_reason(exc: BaseException) -> str:
    """The OpenSSL reason code and, for a certificate, why it was not trusted."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError) and cause.reason:
            detail = getattr(cause, "verify_message", None) or ""
            return f"{cause.reason}: {detail}" if detail else str(cause.reason)
    return _one_line(str(exc), 200)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's ``reason`` and
    exceptions passed as arguments, each once."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped.extend(current.args)
        pending.extend(item for item in wrapped if isinstance(item, BaseException))
