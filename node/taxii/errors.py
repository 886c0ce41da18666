"""TAXII error responses (section 3.6.1) for every failure, including Flask's own.

Clients parse error bodies as TAXII JSON; an HTML page from Werkzeug or a bare
500 (medallion 3.0.0's handler crashes under Flask 3) breaks them.  Every
error therefore goes through ``error_response``.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .negotiation import TAXII_21

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


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, with a TAXII error body."""

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
        log.exception("unhandled error")
        return error_response(
            500, "Internal Server Error", "the server failed to process the request; see its log"
        )
