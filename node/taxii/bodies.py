"""Request bodies of POST objects (TAXII 2.1 5.4): reading them and taking the envelope apart.

Beside ``filters.py`` (the query string), this module turns the body into the
objects to validate and the per-object failures found on the way:

* the body is read with a bound on its size (``max_content_length``, chunked
  bodies included) and on each wait for more bytes (``[server] timeout``);
* an object nested deeper than the store can serve again, or repeating a
  property name, fails on its own and its siblings are stored;
* the envelope itself (not JSON, not ``{"objects": [...]}``, too many
  objects, a repeated name at its own level) is refused with a 4xx.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field

from flask import request

from node import jsoncodec
from node.errors import BodyTimeout

from .errors import TaxiiError, bad_request

try:
    from gunicorn.http.errors import ParseException as _MalformedBody
except ImportError:  # served by another WSGI server
    _MalformedBody = ValueError


@dataclass
class Envelope:
    """The objects of a POST to validate, the failures found while parsing,
    and the objects' JSON texts (None where they cannot be reused)."""

    items: list
    failures: list[dict] = field(default_factory=list)
    texts: list[str] | None = None


def read_body(limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 past ``limit`` (max_content_length).

    The limit is enforced while reading, so a chunked body without
    Content-Length (which medallion 3.0.0 refuses with 400) is accepted up to
    the limit and cut off beyond it.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    connection = request.environ.get("gunicorn.socket")
    # Not on HTTP/2, where the connection is shared between requests.
    http_1 = request.environ.get("SERVER_PROTOCOL", "").startswith("HTTP/1.")
    if not (http_1 and hasattr(connection, "settimeout")):
        connection = None
    # gunicorn's threads block on the socket without a timeout while an
    # application reads: a client that stops sending its body mid-way would
    # hold a thread forever.  ``timeout`` bounds each wait for more bytes (as
    # nginx's client_body_timeout does), the worker's request deadline
    # (node.server) bounds the whole body, and gunicorn closes the connection
    # of a body whose read failed.
    prior = connection.gettimeout() if connection is not None else None
    try:
        if connection is not None:
            connection.settimeout(timeout)
        body = request.stream.read(limit + 1)
    except BodyTimeout as exc:  # the server's socket says which limit was reached
        raise TaxiiError(408, "Request Timeout", str(exc)) from None
    except TimeoutError:
        raise TaxiiError(
            408, "Request Timeout", f"the body stopped arriving (nothing for {timeout:g} s)"
        ) from None
    except (OSError, ValueError, _MalformedBody) as exc:
        raise bad_request(f"the body could not be read: {str(exc)[:200]}") from None
    finally:
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.settimeout(prior)
    if len(body) > limit:
        raise _too_large(limit)
    return body


def _too_large(limit: int) -> TaxiiError:
    return TaxiiError(
        413, "Payload Too Large", f"the body exceeds this API root's max_content_length ({limit})"
    )


def envelope_objects(body: bytes, max_objects: int) -> Envelope:
    """The ``objects`` of a TAXII envelope (3.7), or of a STIX bundle, with the
    failures of objects that cannot be taken as they are.

    stix2's TAXIICollectionSink posts a bundle rather than an envelope; the
    two share the ``objects`` list, so both are accepted.
    """
    if not body:
        raise bad_request("the request body is empty; send a TAXII envelope")
    parsed = _parse_bounded(body, max_objects)
    items, texts = parsed.items, parsed.texts
    repeating: dict[int, dict] = {}
    if jsoncodec.repeats_names(parsed.body, parsed.document, texts):
        repeating, texts = _repeats(parsed.body, items), None
    failures = {**parsed.deep_failures(), **parsed.overlong, **repeating}
    if not failures:
        return Envelope(items, [], texts)
    kept = [index for index in range(len(items)) if index not in failures]
    return Envelope(
        [items[index] for index in kept],
        [failures[index] for index in sorted(failures)],
        [texts[index] for index in kept] if texts is not None else None,
    )


@dataclass
class _Parsed:
    """A parsed envelope; objects nested too deeply were replaced by marker strings
    (in ``body`` and in ``document``) before parsing."""

    body: bytes
    document: dict
    texts: list[str] | None
    markers: dict[str, str] = field(default_factory=dict)  # marker -> the object's id
    overlong: dict[int, dict] = field(default_factory=dict)  # index -> its failure

    @property
    def items(self) -> list:
        return self.document["objects"]

    def deep_failures(self) -> dict[int, dict]:
        if not self.markers:
            return {}
        return {
            index: _failure(
                self.markers[item],
                f"the object is nested deeper than {jsoncodec.MAX_DEPTH} levels of JSON, "
                "more than this node can store and serve again",
            )
            for index, item in enumerate(self.items)
            if isinstance(item, str) and item in self.markers
        }


def _parse_bounded(body: bytes, max_objects: int) -> _Parsed:
    """``body`` parsed and its objects serialised (``jsoncodec.dumps_each``), with
    each object nested deeper than ``jsoncodec.MAX_DEPTH`` cut out first when
    that is what stops the parse or the serialising.

    orjson parses 1024 levels and serialises 254, the standard library
    recurses about 1000 deep: without the cut, one deep object would refuse
    the whole envelope.  The cut is a bracket scan (``jsoncodec.cut_deep_items``)
    that runs only after a parse or a serialising failed.
    """
    overlong: list[jsoncodec.OverlongInteger] = []
    try:
        document = jsoncodec.loads(body, overlong=overlong)
    except (ValueError, RecursionError) as exc:
        if not jsoncodec.is_depth_error(exc):
            raise bad_request(f"the body is not valid JSON: {str(exc)[:200]}") from None
        return _parse_cut(body, max_objects, exc)
    items = _objects_of(document, max_objects)
    failures = _take_out_overlong(overlong, document, items)
    texts = jsoncodec.dumps_each(items)
    if texts is None:
        return _parse_cut(body, max_objects, None)
    return _Parsed(body, document, texts, overlong=failures)


def _parse_cut(body: bytes, max_objects: int, error: Exception | None) -> _Parsed:
    cut, markers = jsoncodec.cut_deep_items(body, jsoncodec.MAX_DEPTH)
    overlong: list[jsoncodec.OverlongInteger] = []
    try:
        document = jsoncodec.loads(cut, overlong=overlong)
    except (ValueError, RecursionError) as exc:
        reason = error or exc
        raise bad_request(f"the body is not valid JSON: {str(reason)[:200]}") from None
    items = _objects_of(document, max_objects)
    failures = _take_out_overlong(overlong, document, items)
    return _Parsed(cut, document, jsoncodec.dumps_each(items), markers, failures)


def _take_out_overlong(
    found: list[jsoncodec.OverlongInteger], document: dict, items: list
) -> dict[int, dict]:
    """The failures, by index, of the objects holding an integer longer than
    the node converts exactly; each such item becomes None (it fails on its
    own, and nothing of it is serialised).  One outside the objects refuses
    the envelope.  ``found``: what the parse replaced (nothing to walk when empty)."""
    if not found:
        return {}
    outside = jsoncodec.overlong_integer_in([v for k, v in document.items() if k != "objects"])
    if outside is not None:
        raise bad_request(
            f"the envelope holds an integer of {outside.digits} digits outside its objects; "
            f"this node converts integers of up to {sys.get_int_max_str_digits()} digits"
        )
    failures = {}
    for index, item in enumerate(items):
        overlong = jsoncodec.overlong_integer_in(item)
        if overlong is None:
            continue
        failures[index] = _failure(
            item.get("id") if isinstance(item, dict) else None,
            f"the object holds an integer of {overlong.digits} digits; this node keeps "
            f"integers exactly up to {sys.get_int_max_str_digits()} digits and would "
            "otherwise have to change the value",
        )
        items[index] = None
    return failures


def _objects_of(document: object, max_objects: int) -> list:
    """The envelope's ``objects``, checked for shape and count before any serialising."""
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise bad_request('the body must be a TAXII envelope: {"objects": [...]}')
    _check_object_count(len(document["objects"]), max_objects)
    return document["objects"]


def _check_object_count(count: int, limit: int) -> None:
    """A body of a million "{}" fits in a few MB but would cost a million failure
    records: the number of objects is bounded as well as the bytes."""
    if count > limit:
        raise TaxiiError(
            413,
            "Payload Too Large",
            f"the envelope holds {count} objects; this server accepts at most "
            f"{limit} per request: split it into several envelopes",
        )


def _repeats(body: bytes, items: list) -> dict[int, dict]:
    """The failures, by index, of the objects that repeat a property name.

    The names within a JSON object should be unique (RFC 8259, 4); parsers
    differ on which of repeated ones counts (orjson and json keep the last,
    others the first or refuse), so such an object could mean one thing to its
    producer and another here: it is a failure.  An envelope that repeats a
    name itself is refused.
    """
    try:
        marked = jsoncodec.mark_repeats(body)
    except (ValueError, RecursionError):
        raise bad_request("the body nests JSON too deeply to check for repeated names") from None
    if isinstance(marked, jsoncodec.Repeats) and marked.own:
        raise bad_request(f"the envelope repeats the name {marked.repeated[:60]!r}")
    failures = {}
    for index, (item, checked) in enumerate(zip(items, marked["objects"], strict=True)):
        if isinstance(checked, jsoncodec.Repeats):
            object_id = item.get("id") if isinstance(item, dict) else None
            failures[index] = _failure(
                object_id,
                f"the property name {checked.repeated[:60]!r} is repeated in the "
                "object (or in a JSON object within it): which value counts is ambiguous",
            )
    return failures


def _failure(object_id: object, message: str) -> dict:
    """A status failure (4.3.1) for an object that never reached validation."""
    return {"id": object_id if isinstance(object_id, str) else "", "message": message}
