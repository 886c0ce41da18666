"""Stateless, opaque ``next`` tokens (TAXII 2.1 section 3.5).

A token carries the keyset position (the last ``date_added`` served) and a
fingerprint of the request it continues, signed with the node's HMAC key from
the store.  Any server process of the node can verify it, after restarts too,
and nothing is kept in memory between pages.  A token that was tampered with,
made for another endpoint or collection, or replayed with different filters
is refused with 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable

from .errors import bad_request

_SIGNATURE_BYTES = 16


# json.dumps with separators builds an encoder per call; the text is the same.
_CANONICAL = json.JSONEncoder(separators=(",", ":"))


class RequestFingerprint:
    """A digest of the endpoint and the filters that a token is valid for.

    Computed when a token is issued or checked, not for every request: a GET
    by id or the last page of a poll issues none.
    """

    __slots__ = ("_digest", "_params", "_scope")

    def __init__(self, scope: str, params: Iterable[tuple[str, str]]) -> None:
        self._scope = scope
        self._params = list(params)
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            canonical = _CANONICAL.encode([self._scope, sorted(self._params)])
            self._digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        return self._digest


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def issue(self, position: int, request_fingerprint: RequestFingerprint) -> str:
        payload = json.dumps({"p": position, "f": request_fingerprint.digest}).encode()
        return _encode(payload) + "." + _encode(self._sign(payload))

    def position(self, token: str, request_fingerprint: RequestFingerprint) -> int:
        """The date_added after which the next page starts; 400 for a bad token."""
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload = _decode(encoded_payload)
            signature = _decode(encoded_signature)
        except ValueError:
            raise bad_request("the 'next' token is malformed") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise bad_request("the 'next' token was not issued by this server")
        data = json.loads(payload)
        if data.get("f") != request_fingerprint.digest:
            raise bad_request(
                "the 'next' token belongs to a different request: keep the endpoint and "
                "filters of the request that returned it"
            )
        return int(data["p"])


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
