"""Console sessions: sign-in with the node's accounts, CSRF tokens, idle expiry, headers.

The session is Flask's signed cookie (key kept in the store, so every server
process accepts it), ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when the
node serves HTTPS.  It holds the account name, a fingerprint of the
account's password hash (changing the password ends every session of the
account), the time of the last request (idle expiry), the CSRF token and a
random session id, recorded when the session signs out so that a copy of the
cookie signs nobody in afterwards (``node.store.console_sessions``).

Sign-in uses the API's ``Authenticator``: the same scrypt check, the same
throttling per account and address, the same audit records (rule
``console``).  API tokens cannot sign in, and neither can partner sync
accounts (role ``peer``): they exist for machines.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import Flask, Request, Response, abort, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy.exc import IntegrityError

from node.store import Store, accounts, console_sessions
from node.store.accounts import Account
from node.taxii.auth import peer_certificate
from node.taxii.errors import TaxiiError
from node.taxii.state import current_account, node_state

SESSION_KEY_SETTING = "console_session_key"
COOKIE_NAME = "taxii_node_console"
CONSOLE_PATH = "/ui/"  # the blueprint's url_prefix, with the slash
CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class SignInRefused(Exception):
    """A sign-in that failed; the message is safe to show."""


def session_key(store: Store) -> str:
    """The key that signs console cookies, created once per store.

    Several server processes may start at once on a store that has no key yet:
    the one whose insert loses reads the winner's key.
    """
    try:
        key = store.setting(SESSION_KEY_SETTING, default=secrets.token_hex(32))
    except IntegrityError:
        key = store.setting(SESSION_KEY_SETTING)
    assert key is not None
    return key


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for the console's pages only.

    Flask opens a session for every request; TAXII clients authenticate each
    request and never use one, and opening (a signing serializer, the cookie
    looked up) was a tenth of a GET of one object.  Outside ``/ui/`` the
    session is Flask's null session: nothing is read, and nothing is set.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(CONSOLE_PATH):
            return None  # Flask then uses make_null_session
        return super().open_session(app, request)


def configure_sessions(app: Flask, store: Store, tls: bool) -> None:
    app.session_interface = ConsoleSessions()
    app.secret_key = session_key(store)
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=tls,
        SESSION_COOKIE_PATH="/",
    )


def _hash_fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]


def sign_in(name: str, password: str) -> Account:
    """Check the credentials as the API does and start a session; SignInRefused otherwise."""
    state = node_state()
    try:
        account = state.authenticator.verify_password(
            name, password, request.remote_addr or "", via="console"
        )
    except TaxiiError as error:
        raise SignInRefused(
            "Too many failed sign-ins for this account from this address; try again later."
            if error.status == 429
            else "Wrong user name or password."
        ) from None
    if account.peer is not None:
        raise SignInRefused("A partner's sync account cannot sign in to the console.")
    certificate = peer_certificate(request.environ)
    if not account.accepts_certificate(
        certificate.fingerprint if certificate else None,
        certificate.subject if certificate else None,
    ):
        raise SignInRefused("Wrong user name or password.")
    with state.store.read() as connection:
        stored_hash = accounts.password_hash_of(connection, account.name)
    session.clear()
    session["user"] = account.name
    session["sid"] = secrets.token_urlsafe(24)
    session["pw"] = _hash_fingerprint(stored_hash)
    session["seen"] = int(time.time())
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return account


def sign_out() -> None:
    """End the session here and on the server: a copy of its cookie no longer signs in."""
    session_id = session.get("sid")
    if isinstance(session_id, str):
        state = node_state()
        idle_seconds = state.config.server.console_idle_minutes * 60
        with state.store.write() as connection:
            console_sessions.end(connection, session_id, int(time.time()), idle_seconds)
    session.clear()


def session_account() -> Account | None:
    """The account this request's session cookie signs in, or None (no session,
    expired, signed out, account removed or a partner's, password changed)."""
    name, session_id = session.get("user"), session.get("sid")
    if not isinstance(name, str) or not isinstance(session_id, str):
        return None
    state = node_state()
    idle_limit = state.config.server.console_idle_minutes * 60
    seen = session.get("seen")
    if not isinstance(seen, int) or time.time() - seen > idle_limit:
        session.clear()
        return None
    with state.store.read() as connection:
        account = accounts.load_account(connection, name)
        stored_hash = accounts.password_hash_of(connection, name)
        ended = console_sessions.is_ended(connection, session_id)
    if account is None or account.peer is not None or ended:
        session.clear()
        return None
    if not hmac.compare_digest(str(session.get("pw", "")), _hash_fingerprint(stored_hash)):
        session.clear()
        return None
    session["seen"] = int(time.time())
    return account


def csrf_token() -> str:
    """This session's CSRF token (created for the sign-in form before any sign-in)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """403 for a state-changing request without this session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    presented = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(presented, expected):
        abort(403, "The form has expired or did not come from this console; reload the page.")


def require_admin() -> None:
    if not current_account().is_admin:
        abort(403, "This page is for administrators.")


def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response
