"""HTTP Basic authentication against accounts kept in the store.

Password hashes are deliberately slow (scrypt), so a verified (user, password)
pair is remembered for a short time; the cache key is an HMAC of the password
under a per-process random key, so no password is kept in memory.  Account
rights are cached with it: a change of rights applies within ``ttl`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

from node.store import Store, accounts
from node.store.accounts import Account

from .errors import TaxiiError

REALM = "taxii-node"


def unauthorized(description: str) -> TaxiiError:
    return TaxiiError(
        401, "Unauthorized", description, {"WWW-Authenticate": f'Basic realm="{REALM}"'}
    )


class Authenticator:
    def __init__(self, store: Store, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], tuple[float, Account]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Account:
        """The account named by an ``Authorization`` header; 401 otherwise."""
        name, password = _basic_credentials(authorization)
        cache_key = (name, hmac.new(self._key, password.encode(), hashlib.sha256).digest())
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached and cached[0] > now:
            return cached[1]
        account = self._verify(name, password)
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[cache_key] = (now + self._ttl, account)
        return account

    def _verify(self, name: str, password: str) -> Account:
        with self._store.read() as connection:
            stored_hash = accounts.password_hash_of(connection, name)
        if not accounts.password_matches(password, stored_hash):
            raise unauthorized("wrong user name or password")
        with self._store.read() as connection:
            account = accounts.load_account(connection, name)
        if account is None:
            raise unauthorized("wrong user name or password")
        return account


def _basic_credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization:
        raise unauthorized("authentication required (HTTP Basic)")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise unauthorized("use HTTP Basic authentication")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials") from None
    name, separator, password = decoded.partition(":")
    # No account name holds NUL, which PostgreSQL refuses in a query (a 500).
    if not separator or not name or "\x00" in name:
        raise unauthorized("malformed Basic credentials")
    return name, password
