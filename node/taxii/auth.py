"""Authentication: HTTP Basic against accounts in the store, or Bearer API tokens.

Password hashes are deliberately slow (scrypt), so a verified credential is
remembered for ``ttl`` seconds; the cache key is a MAC of the secret (keyed
BLAKE2b, RFC 7693, under a per-process random key: a third of an HMAC-SHA256's
cost on every request), so no password or token is kept in memory.  Account
rights are cached with it: a change of rights, or a revoked token, applies
within ``ttl`` seconds.  A token is never remembered past its expiry.

Failed logins are audited and throttled per (account, source address): after
``MAX_FAILURES`` within ``WINDOW`` seconds that pair is refused with 429 until
the window passes, even with the right password (``taxii-node user unlock``
lifts it).  The failures are counted in the store (``accounts``' failed-login
table, apart from the audit trail), so the count holds across server
processes and restarts.
An unknown user costs the same scrypt work as a wrong password.

Client certificates (mutual TLS, ``[server] tls_client_ca``): an account bound
to a certificate is refused, with the same answer as a wrong password, unless
the connection presented that certificate; a connection that presents a
certificate bound to an account, and no Authorization header, authenticates as
that account.  The TLS layer has verified any certificate seen here against
the CA bundle: one that does not chain to it fails the handshake.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from node.store import Store, accounts, audit
from node.store.accounts import Account
from node.store.audit import Action, AuditQueue, AuditRecord, Direction
from node.timestamps import now_micros

from .errors import TaxiiError

if TYPE_CHECKING:
    from sqlalchemy import Connection

REALM = "taxii-node"
MAX_FAILURES = 5
WINDOW = 300  # seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientCertificate:
    """The verified certificate a TLS client presented."""

    fingerprint: str  # SHA-256 of the DER form, lowercase hex
    subject: str | None  # canonical (accounts.canonical_subject)


def peer_certificate(environ: Mapping[str, Any]) -> ClientCertificate | None:
    """The client certificate of the request's connection, if it presented one.

    gunicorn passes no certificate in the WSGI environ (no ``SSL_CLIENT_CERT``
    as Apache's mod_ssl sets), but it does pass the connection itself as
    ``environ["gunicorn.socket"]`` (gunicorn/http/wsgi.py, ``default_environ``);
    the gthread worker has wrapped it in an ``ssl.SSLSocket`` before parsing
    the request (gunicorn/workers/gthread.py, ``TConn.init``), so the
    certificate is ``getpeercert()`` of that socket.  ``getpeercert()`` decodes
    only a certificate verified against the CA bundle (``cert_reqs`` OPTIONAL or
    REQUIRED; an empty dict otherwise), and with OPTIONAL the handshake has
    already failed for one that does not verify.  Plain HTTP, another server,
    no certificate, or an unverified one: None.
    """
    connection = environ.get("gunicorn.socket")
    if not isinstance(connection, ssl.SSLSocket):
        return None
    try:
        der = connection.getpeercert(binary_form=True)
        decoded = connection.getpeercert()
    except (ValueError, OSError):  # not connected any more
        return None
    if not der or not decoded:  # none presented, or not verified: it proves nothing
        return None
    rdns = cast("tuple[tuple[tuple[str, str], ...], ...]", decoded.get("subject", ()))
    pairs = [pair for rdn in rdns for pair in rdn]
    subject = accounts.canonical_subject(pairs) if pairs else None
    return ClientCertificate(hashlib.sha256(der).hexdigest(), subject)


def unauthorized(description: str) -> TaxiiError:
    return TaxiiError(
        401,
        "Unauthorized",
        description,
        {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8", Bearer realm="{REALM}"'},
    )


class Authenticator:
    def __init__(
        self,
        store: Store,
        logins: AuditQueue,
        ttl: float = 30.0,
        max_entries: int = 10_000,
    ) -> None:
        self._store = store
        self._logins = logins  # successful logins, recorded off the request's path
        self._ttl = ttl
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], tuple[float, Account]] = {}
        self._lock = threading.Lock()
        self._attempt_locks: dict[tuple[str, str], threading.Lock] = {}

    def authenticate(
        self,
        authorization: str | None,
        source: str = "",
        certificate: ClientCertificate | None = None,
    ) -> Account:
        """The account named by an ``Authorization`` header, or else by the client
        certificate; 401 (or 429) otherwise."""
        if not authorization and certificate is not None:
            return self._by_certificate(certificate, source)
        scheme, name, secret = _credentials(authorization)
        cache_key = (f"{scheme}:{name}", _mac(self._key, secret))
        account = self._cached(cache_key)
        if account is None:
            account, expires = self._verify(scheme, name, secret, source)
            self._remember(cache_key, account, expires)
        if not account.accepts_certificate(
            certificate.fingerprint if certificate else None,
            certificate.subject if certificate else None,
        ):
            # The same answer as a wrong secret: it must not tell that the secret was right.
            log.warning(
                "account %r is bound to a client certificate; the connection from %s %s",
                account.name,
                source,
                "presented another" if certificate else "presented none",
            )
            self._audit_login(account.name, source, "certificate", False)
            what = "token" if scheme == "bearer" else "user name or password"
            raise unauthorized(f"wrong {what}")
        return account

    def verify_password(self, name: str, password: str, source: str, via: str) -> Account:
        """The account whose password this is, for sign-ins that are not HTTP requests
        to the API (the web console): the same throttling and audit as API logins,
        the audit record's rule naming ``via``; TaxiiError 401 or 429 otherwise."""
        if not name or "\x00" in name or len(name) > 128:
            raise unauthorized("wrong user name or password")
        return self._verify(via, name, password, source, queued=False)[0]

    def _cached(self, cache_key: tuple[str, bytes]) -> Account | None:
        with self._lock:
            cached = self._cache.get(cache_key)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def _remember(
        self, cache_key: tuple[str, bytes], account: Account, expires: int | None = None
    ) -> Account:
        """Remember ``account`` for ``ttl`` seconds, and never past ``expires`` (the
        credential's own expiry, microseconds since the epoch)."""
        seconds = float(self._ttl)
        if expires is not None:
            seconds = min(seconds, (expires - now_micros()) / 1_000_000)
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[cache_key] = (time.monotonic() + seconds, account)
        return account

    def _by_certificate(self, certificate: ClientCertificate, source: str) -> Account:
        """The account bound to a verified client certificate; 401 if none is."""
        cache_key = ("certificate", bytes.fromhex(certificate.fingerprint))
        account = self._cached(cache_key)
        if account is not None:
            return account
        with self._store.read() as connection:
            account = accounts.account_for_certificate(
                connection, certificate.fingerprint, certificate.subject
            )
        if account is None:
            raise unauthorized(
                "authentication required: the client certificate is bound to no account "
                "(use HTTP Basic or a Bearer token)"
            )
        self._audit_login(account.name, source, "certificate", True)
        return self._remember(cache_key, account)

    def _attempt_lock(self, name: str, source: str) -> threading.Lock:
        """One verification at a time per (account, address) in this process, so that
        concurrent guesses cannot all pass the failure count before any is recorded."""
        with self._lock:
            if len(self._attempt_locks) >= self._max_entries:
                self._attempt_locks.clear()
            return self._attempt_locks.setdefault((name, source), threading.Lock())

    def _verify(
        self, scheme: str, name: str, secret: str, source: str, *, queued: bool = True
    ) -> tuple[Account, int | None]:
        """(the account, when the credential expires: a token's expiry, else None)."""
        with self._attempt_lock(name, source):
            return self._verify_unlocked(scheme, name, secret, source, queued)

    def _verify_unlocked(
        self, scheme: str, name: str, secret: str, source: str, queued: bool
    ) -> tuple[Account, int | None]:
        with self._store.read() as connection:
            since = now_micros() - WINDOW * 1_000_000
            if accounts.login_failures_since(connection, name, source, since) >= MAX_FAILURES:
                raise TaxiiError(
                    429,
                    "Too Many Requests",
                    f"too many failed logins for {name!r} from this address; "
                    f"try again in {WINDOW // 60} minutes",
                    {"Retry-After": str(WINDOW)},
                )
            expires = None
            expired = False
            if scheme == "bearer":
                token = accounts.valid_token(connection, secret, now_micros())
                valid = token is not None
                if token is not None:
                    name, expires = token.user, token.expires
                else:
                    expired = _expired(connection, secret)
            else:
                valid = accounts.password_matches(
                    secret, accounts.password_hash_of(connection, name)
                )
            account = accounts.load_account(connection, name) if valid else None
        self._audit_login(name, source, scheme, account is not None, queued=queued)
        if account is None:
            what = "token" if scheme == "bearer" else "user name or password"
            raise unauthorized("token expired" if expired else f"wrong {what}")
        return account, expires

    def _audit_login(
        self, name: str, source: str, scheme: str, ok: bool, *, queued: bool = True
    ) -> None:
        """Audit a login or a failed one.  A failure also counts towards the
        throttle, so it is written before the answer; an API request's success
        is queued, so that no read (a partner's first GET of a cache period)
        waits on the store's write lock.  A person's sign-in (``queued`` False)
        is written at once: the audit page they open next shows it."""
        record = AuditRecord(
            action=Action.LOGIN if ok else Action.LOGIN_FAILED,
            direction=Direction.AUTH,
            actor=name,
            rule=scheme,
            detail=f"from {source}",
        )
        if ok and queued:
            self._logins.put(record)
            return
        with self._store.write() as connection:
            if not ok:
                now = now_micros()
                accounts.record_login_failure(
                    connection, name, source, at=now, keep_after=now - WINDOW * 1_000_000
                )
            audit.record(connection, [record])


def _expired(connection: Connection, secret: str) -> bool:
    """Whether a Bearer secret that is not valid now is a real token that expired
    (right secret, not revoked, valid at the epoch): its holder is told so, as
    "token expired"; a wrong or revoked token still gets "wrong token"."""
    return accounts.valid_token(connection, secret, 0) is not None


def _mac(key: bytes, secret: str) -> bytes:
    """The cache key's digest of a secret: keyed BLAKE2b, a MAC by design (RFC 7693, 2.9)."""
    return hashlib.blake2b(secret.encode(), key=key, digest_size=32).digest()


def _basic_text(raw: bytes) -> str:
    """The user-pass of HTTP Basic as text: UTF-8, which the challenge asks for (RFC 7617
    section 2.1, ``charset``); else ISO-8859-1, which requests (so taxii2-client, stix2
    and MISP's push) sends for credentials given as text, so that a password with
    non-ASCII characters works from those clients too.  (Latin-1 bytes of such a
    password are not valid UTF-8 unless the password is contrived to be.)"""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


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
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise unauthorized("malformed Basic credentials") from None
    decoded = _basic_text(raw)
    name, separator, password = decoded.partition(":")
    # No account name holds NUL, which PostgreSQL refuses in a query (a 500).
    if not separator or not name or "\x00" in name or len(name) > 128:
        raise unauthorized("malformed Basic credentials")
    return "basic", name, password
