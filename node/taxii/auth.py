"""Authentication: HTTP Basic against accounts in the store, or Bearer API tokens.

Password hashes are deliberately slow (scrypt), so a verified credential is
remembered for ``ttl`` seconds; the cache key is an HMAC of the secret under a
per-process random key, so no password or token is kept in memory.  Account
rights are cached with it: a change of rights, or a revoked token, applies
within ``ttl`` seconds.

Failed logins are audited and throttled per (account, source address): after
``MAX_FAILURES`` within ``WINDOW`` seconds that pair is refused with 429 until
the window passes, even with the right password.  The count comes from the
audit trail in the store, so it holds across server processes and restarts.
An unknown user costs the same scrypt work as a wrong password.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time

from sqlalchemy import func, select

from node.store import Store, accounts, audit
from node.store.accounts import Account
from node.store.audit import AuditRecord
from node.store.schema import audit as audit_table
from node.timestamps import now_micros

from .errors import TaxiiError

REALM = "taxii-node"
MAX_FAILURES = 5
WINDOW = 300  # seconds


def unauthorized(description: str) -> TaxiiError:
    return TaxiiError(
        401,
        "Unauthorized",
        description,
        {"WWW-Authenticate": f'Basic realm="{REALM}", Bearer realm="{REALM}"'},
    )


class Authenticator:
    def __init__(self, store: Store, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], tuple[float, Account]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None, source: str = "") -> Account:
        """The account named by an ``Authorization`` header; 401 (or 429) otherwise."""
        scheme, name, secret = _credentials(authorization)
        cache_key = (f"{scheme}:{name}", hmac.new(self._key, secret.encode(), "sha256").digest())
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached and cached[0] > now:
            return cached[1]
        account = self._verify(scheme, name, secret, source)
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[cache_key] = (now + self._ttl, account)
        return account

    def _verify(self, scheme: str, name: str, secret: str, source: str) -> Account:
        with self._store.read() as connection:
            if _recent_failures(connection, name, source) >= MAX_FAILURES:
                raise TaxiiError(
                    429,
                    "Too Many Requests",
                    f"too many failed logins for {name!r} from this address; "
                    f"try again in {WINDOW // 60} minutes",
                    {"Retry-After": str(WINDOW)},
                )
            if scheme == "bearer":
                owner = accounts.token_owner(connection, secret, now_micros())
                valid = owner is not None
                name = owner or name
            else:
                valid = accounts.password_matches(
                    secret, accounts.password_hash_of(connection, name)
                )
            account = accounts.load_account(connection, name) if valid else None
        self._audit_login(name, source, scheme, account is not None)
        if account is None:
            what = "token" if scheme == "bearer" else "user name or password"
            raise unauthorized(f"wrong {what}")
        return account

    def _audit_login(self, name: str, source: str, scheme: str, ok: bool) -> None:
        with self._store.write() as connection:
            audit.record(
                connection,
                [
                    AuditRecord(
                        action="login" if ok else "login-failed",
                        direction="auth",
                        actor=name,
                        rule=scheme,
                        detail=f"from {source}",
                    )
                ],
            )


def _recent_failures(connection, name: str, source: str) -> int:
    since = now_micros() - WINDOW * 1_000_000
    return connection.execute(
        select(func.count())
        .select_from(audit_table)
        .where(
            audit_table.c.actor == name,
            audit_table.c.action == "login-failed",
            audit_table.c.at >= since,
            audit_table.c.detail == f"from {source}",
        )
    ).scalar_one()


def _credentials(authorization: str | None) -> tuple[str, str, str]:
    """(scheme, user name or token id, secret) from an Authorization header."""
    if not authorization:
        raise unauthorized("authentication required (HTTP Basic or a Bearer token)")
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        if not value.startswith(accounts.TOKEN_PREFIX) or "\x00" in value or len(value) > 200:
            raise unauthorized("malformed Bearer token")
        token_id = value[len(accounts.TOKEN_PREFIX) :].partition(".")[0]
        return "bearer", f"token:{token_id}", value
    if scheme != "basic" or not value:
        raise unauthorized("use HTTP Basic authentication or a Bearer token")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials") from None
    name, separator, password = decoded.partition(":")
    # No account name holds NUL, which PostgreSQL refuses in a query (a 500).
    if not separator or not name or "\x00" in name or len(name) > 128:
        raise unauthorized("malformed Basic credentials")
    return "basic", name, password
