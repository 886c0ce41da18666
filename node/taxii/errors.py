"""TAXII error responses (section 3.6.1) for every failure, including Flask's own.

Clients parse error bodies as TAXII JSON; an HTML page from Werkzeug or a bare
500 (medallion 3.0.0's handler crashes under Flask 3) breaks them.  Every
error therefore goes through ``error_response``.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from node.mediatypes import TAXII_21
from node.store.engine import BUSY_RETRY_AFTER, is_store_busy

log = logging.getLogger(__name__)


class TaxiiError(Exception):
    """An error answered to the client with a TAXII error message."""

    def __init__(
        self,
        status: int,
        title: str,
        description: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.title = title
        self.description = description
        self.headers = headers or {}


def bad_request(description: str) -> TaxiiError:
    return TaxiiError(400, "Bad Request", description)


def not_found(description: str) -> TaxiiError:
    return TaxiiError(404, "Not Found", description)


def forbidden(description: str) -> TaxiiError:
    return TaxiiError(403, "Forbidden", description)


def error_response(
    status: int, title: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"title": title, "http_status": str(status), "description": description}
    response = Response(json.dumps(body), status=status, content_type=TAXII_21)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Methods a client repeats after a redirect without a body to resend.
_REDIRECTABLE = ("GET", "HEAD", "OPTIONS")


def _answer_redirects() -> Response | None:
    """A path that is not a resource's own (``/api//collections/...``, a missing
    trailing slash) as a TAXII answer, before Flask sends its HTML redirect.

    Reads are redirected (308, ``Location``).  A POST or DELETE gets 404: the
    router's 308 made the client resend the body while the first one was
    still unread, and the connection was dropped (requests:
    ``RemoteDisconnected``); a TAXII client has no reason to write anywhere
    but the canonical paths (4, 5).
    """
    redirect = request.routing_exception
    if not isinstance(redirect, RequestRedirect):
        return None
    canonical = "/" + redirect.new_url.split("://", 1)[-1].partition("/")[2]
    if request.method in _REDIRECTABLE:
        return error_response(
            redirect.code,
            "Permanent Redirect",
            f"the resource is at {canonical[:200]!r}",
            {"Location": redirect.new_url},
        )
    return error_response(
        404,
        "Not Found",
        f"no resource at {request.path[:200]!r}; write to the canonical path "
        f"{canonical[:200]!r} (nothing was redirected or stored)",
    )


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, with a TAXII error body."""
    # Flask answers routing redirects itself, past every error handler.
    app.before_request(_answer_redirects)

    @app.errorhandler(TaxiiError)
    def _taxii_error(error: TaxiiError) -> Response:
        return error_response(error.status, error.title, error.description, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return error_response(
            error.code or 500, error.name, error.description or error.name, headers
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if is_store_busy(error):  # busy, not broken: the client may try again (TAXII 3.6.1)
            log.warning("the store is busy: %s", error)
            return error_response(
                503, "Service Unavailable",
                "the store is busy with another process's write; nothing was changed: "
                "try again", {"Retry-After": str(BUSY_RETRY_AFTER)},
            )  # fmt: skip
        log.exception("unhandled error")
        return error_response(
            500, "Internal Server Error", "the server failed to process the request; see its log"
        )
