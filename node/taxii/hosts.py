"""The request's ``Host`` (RFC 9112, 3.2): required in HTTP/1.1, and well formed.

Discovery (TAXII 2.1, 4.1) builds the API root URLs from it, so a request
without one advertised ``http:///api/``.  RFC 9112 3.2: "A server MUST
respond with a 400 (Bad Request) status code to any HTTP/1.1 request message
that lacks a Host header field and to any request message that contains more
than one Host header field line or a Host header field with an invalid
field value."
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import bad_request

# RFC 3986 3.2.2-3.2.3: an IP literal in brackets, or a name (letters, digits,
# '-', '.', '_', '~', and percent-escapes; no sub-delims in DNS names), then an
# optional port.
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9._~-]+(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~-]*)*)"
    r"(?::[0-9]{1,5})?"
)
_MAX_HOST = 300


def check_host(environ: Mapping[str, object]) -> None:
    """400 unless the request names one well-formed host (only HTTP/1.1 must name one)."""
    host = environ.get("HTTP_HOST")
    if host is None:
        if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
            return
        raise bad_request("the request has no Host header (RFC 9112, 3.2)")
    if not isinstance(host, str) or len(host) > _MAX_HOST or not _HOST.fullmatch(host):
        raise bad_request(
            f"the Host header {str(host)[:80]!r} is not a host[:port] (RFC 9112, 3.2)"
        )
