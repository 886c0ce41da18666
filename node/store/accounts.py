"""User accounts, their per-collection rights, and password hashing.

Passwords are kept only as salted scrypt hashes.  Verifying a password for an
unknown user still runs scrypt against a dummy hash so that response times do
not tell which user names exist.

An account may be bound to a client certificate, by the SHA-256 fingerprint
of the certificate or by its subject: it then authenticates only over a TLS
connection that presented that certificate (verified by the server against
``[server] tls_client_ca``), and such a connection authenticates as the
account even without an Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, func, select, update

from node.errors import AlreadyExists, Conflict, InvalidValue, NotFound
from node.timestamps import now_micros

from .schema import api_tokens, grants, login_failures, users


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's work factors: ``n`` (CPU and memory, a power of 2), ``r`` (block
    size) and ``p`` (parallelism); memory is ``128 * n * r`` bytes."""

    n: int
    r: int
    p: int


# The cost new passwords are hashed at: 16 MiB and about 60 ms of CPU a hash on a
# 2-core machine, the parameters the scrypt paper recommends for interactive
# logins.  A stored hash names the parameters it was made with, and is checked
# with those, so raising the cost here leaves existing passwords valid.  The test
# harness lowers it for the hundreds of accounts it creates (tests/passwords.py).
PASSWORD_COST = ScryptCost(n=2**14, r=8, p=1)


@dataclass(frozen=True)
class Rights:
    can_read: bool = False
    can_write: bool = False


@dataclass(frozen=True)
class Account:
    """An authenticated caller and what it may do."""

    name: str
    is_admin: bool = False
    peer: str | None = None
    rights: dict[str, Rights] = field(default_factory=dict)  # by collection id
    cert_fingerprint: str | None = None  # sha256 of the bound certificate, lowercase hex
    cert_subject: str | None = None  # the bound certificate's subject, canonical

    @property
    def certificate_bound(self) -> bool:
        return self.cert_fingerprint is not None or self.cert_subject is not None

    def accepts_certificate(self, fingerprint: str | None, subject: str | None) -> bool:
        """Whether a connection that presented this (verified) certificate may act as us.

        True for an unbound account, whatever was presented.
        """
        if self.cert_fingerprint is not None:
            return fingerprint is not None and hmac.compare_digest(
                fingerprint, self.cert_fingerprint
            )
        if self.cert_subject is not None:
            return subject is not None and subject == self.cert_subject
        return True

    @property
    def role(self) -> str:
        """admin (manages everything), peer (a partner's sync account) or analyst."""
        if self.is_admin:
            return "admin"
        return "peer" if self.peer else "analyst"

    def rights_on(self, collection_id: str) -> Rights:
        if self.is_admin:
            return Rights(can_read=True, can_write=True)
        return self.rights.get(collection_id, Rights())


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$digest`` at ``PASSWORD_COST``, with a fresh salt."""
    cost, salt = PASSWORD_COST, secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost.n, cost.r, cost.p)
    return "$".join(["scrypt", str(cost.n), str(cost.r), str(cost.p), _b64(salt), _b64(digest)])


def password_matches(password: str, stored_hash: str | None) -> bool:
    """Constant-effort check; ``stored_hash`` None means an unknown user."""
    candidate = stored_hash or _dummy_hash()
    try:
        scheme, n, r, p, salt, digest = candidate.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, _unb64(digest)) and stored_hash is not None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def _dummy_hash() -> str:
    """A hash no password matches, at the cost new hashes are made at, so that
    checking an unknown user's password takes as long as a known one's."""
    cost = PASSWORD_COST
    return f"scrypt${cost.n}${cost.r}${cost.p}$" + _b64(b"\0" * 16) + "$" + _b64(b"\0" * 32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def add_user(
    connection: Connection,
    name: str,
    password: str,
    *,
    is_admin: bool = False,
    peer: str | None = None,
) -> None:
    """Create ``name``; AlreadyExists if it exists."""
    if connection.execute(select(users.c.name).where(users.c.name == name)).first():
        raise AlreadyExists(f"user {name!r} already exists")
    connection.execute(
        users.insert().values(
            name=name,
            password_hash=hash_password(password),
            is_admin=is_admin,
            peer=peer,
            created=now_micros(),
        )
    )


def set_password(connection: Connection, name: str, password: str) -> None:
    result = connection.execute(
        update(users).where(users.c.name == name).values(password_hash=hash_password(password))
    )
    if result.rowcount == 0:
        raise NotFound(f"no user {name!r}")


def remove_user(connection: Connection, name: str) -> None:
    connection.execute(delete(grants).where(grants.c.user_name == name))
    connection.execute(delete(api_tokens).where(api_tokens.c.user_name == name))
    if connection.execute(delete(users).where(users.c.name == name)).rowcount == 0:
        raise NotFound(f"no user {name!r}")


def grant(
    connection: Connection, name: str, collection_id: str, *, read: bool, write: bool
) -> None:
    """Add rights (never removes one already granted)."""
    current = connection.execute(
        select(grants.c.can_read, grants.c.can_write).where(
            grants.c.user_name == name, grants.c.collection_id == collection_id
        )
    ).first()
    if current is None:
        connection.execute(
            grants.insert().values(
                user_name=name, collection_id=collection_id, can_read=read, can_write=write
            )
        )
        return
    connection.execute(
        update(grants)
        .where(grants.c.user_name == name, grants.c.collection_id == collection_id)
        .values(can_read=current.can_read or read, can_write=current.can_write or write)
    )


def password_hash_of(connection: Connection, name: str) -> str | None:
    return connection.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()


def load_account(connection: Connection, name: str) -> Account | None:
    row = connection.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        return None
    rights = {
        g.collection_id: Rights(can_read=g.can_read, can_write=g.can_write)
        for g in connection.execute(select(grants).where(grants.c.user_name == name))
    }
    return Account(
        name=row.name,
        is_admin=row.is_admin,
        peer=row.peer,
        rights=rights,
        cert_fingerprint=row.cert_fingerprint,
        cert_subject=row.cert_subject,
    )


# -- client certificates ----------------------------------------------------------

# Short names (RFC 4514 and OpenSSL) of the attributes of subjects, by lowercase
# short or long name; ``ssl.SSLSocket.getpeercert()`` reports the long ones.
_ATTRIBUTES = {
    "commonname": "CN",
    "countryname": "C",
    "localityname": "L",
    "stateorprovincename": "ST",
    "streetaddress": "STREET",
    "organizationname": "O",
    "organizationalunitname": "OU",
    "domaincomponent": "DC",
    "userid": "UID",
    "emailaddress": "EMAILADDRESS",
    "e": "EMAILADDRESS",
    "serialnumber": "SERIALNUMBER",
    "givenname": "GN",
    "surname": "SN",
    "title": "TITLE",
}
for _short in set(_ATTRIBUTES.values()):
    _ATTRIBUTES[_short.lower()] = _short


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as stored: 64 lowercase hex digits.

    Accepts ``openssl x509 -noout -fingerprint -sha256`` output (``AB:CD:...``,
    with or without its ``SHA256 Fingerprint=`` prefix); InvalidValue otherwise.
    """
    value = text.strip()
    if "=" in value:
        value = value.partition("=")[2]
    value = re.sub(r"[\s:]", "", value).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InvalidValue(f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return value


def canonical_subject(pairs: Iterable[tuple[str, str]]) -> str:
    """One spelling of a subject for every order of its attributes: sorted ``ATTR=value``.

    ``pairs`` are (attribute, value) in any order, attributes by short or long
    name.  Values are compared exactly (case matters).
    """
    normalized = sorted((_ATTRIBUTES.get(a.lower(), a.upper()), v) for a, v in pairs)
    if not normalized:
        raise InvalidValue("an empty subject")
    return ",".join(f"{a}={_escape(v)}" for a, v in normalized)


def _escape(value: str) -> str:
    return re.sub(r"([\\,+=])", r"\\\1", value)


def parse_subject(text: str) -> str:
    """The canonical form of a subject written ``CN=node-b,O=Partner`` (RFC 4514 style).

    A backslash escapes the next character (``O=Example\\, Inc.``); ``+`` joins
    the attributes of a multi-valued RDN; the order of attributes does not matter.
    InvalidValue if ``text`` is not a subject.
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",+":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    pairs = []
    for part in parts:
        attribute, equals, value = part.partition("=")
        attribute = attribute.strip()
        value = re.sub(r"\\(.)", r"\1", value.strip())
        if escaped or not equals or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", attribute):
            raise InvalidValue(f"{text!r} is not a certificate subject like 'CN=node-b,O=Partner'")
        if not value:
            raise InvalidValue(f"{text!r}: attribute {attribute} has no value")
        pairs.append((attribute, value))
    return canonical_subject(pairs)


def bind_certificate(
    connection: Connection, name: str, *, fingerprint: str | None, subject: str | None
) -> None:
    """Bind ``name`` to a certificate (normalised fingerprint or canonical subject),
    or unbind it when both are None.  A certificate binds one account at most."""
    if fingerprint is not None and subject is not None:
        raise InvalidValue("bind a certificate by fingerprint or by subject, not both")
    for column, value in ((users.c.cert_fingerprint, fingerprint), (users.c.cert_subject, subject)):
        if value is None:
            continue
        other = connection.execute(
            select(users.c.name).where(column == value, users.c.name != name)
        ).scalar()
        if other is not None:
            raise Conflict(f"that certificate is already bound to user {other!r}")
    result = connection.execute(
        update(users)
        .where(users.c.name == name)
        .values(cert_fingerprint=fingerprint, cert_subject=subject)
    )
    if result.rowcount == 0:
        raise NotFound(f"no user {name!r}")


def account_for_certificate(
    connection: Connection, fingerprint: str, subject: str | None
) -> Account | None:
    """The account bound to this certificate (its fingerprint first, then its subject)."""
    name = connection.execute(
        select(users.c.name).where(users.c.cert_fingerprint == fingerprint)
    ).scalar()
    if name is None and subject is not None:
        name = connection.execute(
            select(users.c.name).where(
                users.c.cert_subject == subject, users.c.cert_fingerprint.is_(None)
            )
        ).scalar()
    return load_account(connection, name) if name is not None else None


def list_accounts(connection: Connection) -> list[Account]:
    names = connection.execute(select(users.c.name).order_by(users.c.name)).scalars().all()
    return [account for name in names if (account := load_account(connection, name))]


# -- API tokens ------------------------------------------------------------------

TOKEN_PREFIX = "tnk_"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_name: str
    label: str | None
    created: int
    expires: int | None
    revoked: int | None


def create_token(
    connection: Connection, name: str, *, expires: int | None, label: str | None = None
) -> tuple[str, str]:
    """(token id, token) for user ``name``; only a hash of the secret part is stored.

    Tokens carry 256 random bits, so a fast hash (SHA-256) is as safe as a
    slow one and keeps Bearer authentication cheap.
    """
    if connection.execute(select(users.c.name).where(users.c.name == name)).first() is None:
        raise NotFound(f"no user {name!r}")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    connection.execute(
        api_tokens.insert().values(
            id=token_id,
            user_name=name,
            secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
            label=label,
            created=now_micros(),
            expires=expires,
            revoked=None,
        )
    )
    return token_id, f"{TOKEN_PREFIX}{token_id}.{secret}"


@dataclass(frozen=True)
class ValidToken:
    """A token that is known, unexpired and unrevoked: whose it is, and until when."""

    user: str
    expires: int | None  # microseconds since the epoch; None: never


def token_owner(connection: Connection, token: str, now: int) -> str | None:
    """The user a valid (known, unexpired, unrevoked) token belongs to, else None."""
    found = valid_token(connection, token, now)
    return found.user if found is not None else None


def valid_token(connection: Connection, token: str, now: int) -> ValidToken | None:
    """The token as stored, if it is valid at ``now``; None otherwise."""
    if not token.startswith(TOKEN_PREFIX) or "." not in token:
        return None
    token_id, _, secret = token[len(TOKEN_PREFIX) :].partition(".")
    row = connection.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    presented = hashlib.sha256(secret.encode()).hexdigest()
    expected = row.secret_hash if row is not None else "0" * 64
    if not hmac.compare_digest(presented, expected) or row is None:
        return None
    if row.revoked is not None or (row.expires is not None and row.expires <= now):
        return None
    return ValidToken(row.user_name, row.expires)


def list_tokens(connection: Connection, name: str | None = None) -> list[TokenInfo]:
    statement = select(api_tokens).order_by(api_tokens.c.user_name, api_tokens.c.created)
    if name is not None:
        statement = statement.where(api_tokens.c.user_name == name)
    return [
        TokenInfo(r.id, r.user_name, r.label, r.created, r.expires, r.revoked)
        for r in connection.execute(statement)
    ]


def revoke_token(connection: Connection, token_id: str) -> str:
    """Revoke a token; returns its user.  NotFound for an unknown id."""
    row = connection.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise NotFound(f"no token {token_id!r}")
    connection.execute(
        update(api_tokens).where(api_tokens.c.id == token_id).values(revoked=now_micros())
    )
    user: str = row.user_name
    return user


# -- failed logins -----------------------------------------------------------------


def record_login_failure(connection: Connection, account: str, source: str, *, at: int,
                         keep_after: int) -> None:  # fmt: skip
    """Count a failed login of ``account`` (a user name, or ``token:ID``) from ``source``;
    forget that pair's failures from before ``keep_after``."""
    connection.execute(
        delete(login_failures).where(
            login_failures.c.account == account,
            login_failures.c.source == source,
            login_failures.c.at < keep_after,
        )
    )
    connection.execute(login_failures.insert().values(account=account, source=source, at=at))


def login_failures_since(connection: Connection, account: str, source: str, since: int) -> int:
    """Failed logins of ``account`` from ``source`` at or after ``since``."""
    return connection.execute(
        select(func.count())
        .select_from(login_failures)
        .where(
            login_failures.c.account == account,
            login_failures.c.source == source,
            login_failures.c.at >= since,
        )
    ).scalar_one()


def clear_login_failures(connection: Connection, name: str) -> int:
    """Forget the failed logins of user ``name`` and of its tokens, from every address;
    return how many were forgotten."""
    token_ids = connection.execute(
        select(api_tokens.c.id).where(api_tokens.c.user_name == name)
    ).scalars()
    accounts = [name, *(f"token:{token_id}" for token_id in token_ids)]
    result = connection.execute(
        delete(login_failures).where(login_failures.c.account.in_(accounts))
    )
    return result.rowcount
