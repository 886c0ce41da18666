"""API tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from node.errors import Conflict, InvalidValue, NotFound
from node.store import accounts
from node.store.accounts import TokenInfo
from node.store.audit import Action
from node.timestamps import from_micros, now_micros

from .audit import record_change

_DURATION = re.compile(r"^([0-9]+)([hdw])$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}
# The last instant RFC 3339 timestamps (four-digit years) can name: an expiry
# after it could be neither shown nor stored (it overflows a 64-bit column).
_LAST_EXPIRY = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 1_000_000


def parse_expiry(value: str, now: int | None = None) -> int | None:
    """'never' or a duration such as 12h, 30d, 8w -> expiry in epoch microseconds."""
    if value == "never":
        return None
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise InvalidValue(f"{value!r} is not a duration like 12h, 30d, 8w or 'never'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    expiry = (now_micros() if now is None else now) + seconds * 1_000_000
    if expiry > _LAST_EXPIRY:
        raise InvalidValue(f"{value!r} would expire after the year 9999; use 'never'")
    return expiry


@dataclass(frozen=True)
class NewToken:
    id: str
    user_name: str
    secret: str  # shown once, never stored
    expires: int | None


def create_token(
    connection: Connection, name: str, *, expires: int | None, label: str | None, actor: str
) -> NewToken:
    token_id, secret = accounts.create_token(connection, name, expires=expires, label=label)
    until = from_micros(expires) if expires is not None else "never"
    record_change(
        connection, actor, Action.TOKEN_CREATED, name, f"token {token_id}, expires {until}"
    )
    return NewToken(token_id, name, secret, expires)


def revoke_token(connection: Connection, token_id: str, *, actor: str) -> str:
    """Revoke a token; return its user.  A token revoked already is ``Conflict``: its
    revocation keeps its time, and nothing says it was revoked again."""
    revoked = _revoked_at(connection, token_id)
    if revoked is not None:
        owner, at = revoked
        raise Conflict(f"token {token_id} of {owner} was already revoked at {from_micros(at)}")
    owner = accounts.revoke_token(connection, token_id)
    record_change(connection, actor, Action.TOKEN_REVOKED, owner, f"token {token_id}")
    return owner


@dataclass(frozen=True)
class TokenView:
    id: str
    user_name: str
    label: str | None
    created: str
    expires: str | None
    state: str  # valid, expired or revoked
    since: str | None  # when it expired or was revoked

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _revoked_at(connection: Connection, token_id: str) -> tuple[str, int] | None:
    """(its user, when) for a token revoked already; None for any other id."""
    for token in accounts.list_tokens(connection):
        if token.id == token_id and token.revoked is not None:
            return token.user_name, token.revoked
    return None


def list_tokens(connection: Connection, name: str | None = None) -> list[TokenView]:
    """The tokens (of the account ``name``: ``NotFound`` when there is none, rather
    than an empty list that reads as "no tokens")."""
    if name is not None and accounts.load_account(connection, name) is None:
        raise NotFound(f"no user {name!r}")
    now = now_micros()
    return [_view(token, now) for token in accounts.list_tokens(connection, name)]


def _view(token: TokenInfo, now: int) -> TokenView:
    expires = from_micros(token.expires) if token.expires is not None else None
    since: str | None
    if token.revoked is not None:
        state, since = "revoked", from_micros(token.revoked)
    elif token.expires is not None and token.expires <= now:
        state, since = "expired", expires
    else:
        state, since = "valid", None
    return TokenView(token.id, token.user_name, token.label, from_micros(token.created),
                     expires, state, since)  # fmt: skip
