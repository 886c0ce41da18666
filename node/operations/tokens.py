"""API tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from node.errors import InvalidValue
from node.store import accounts
from node.store.accounts import TokenInfo
from node.store.audit import Action
from node.timestamps import from_micros, now_micros

from .audit import record_change

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str, now: int | None = None) -> int | None:
    """'never' or a duration such as 12h, 30d, 8w -> expiry in epoch microseconds."""
    if value == "never":
        return None
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise InvalidValue(f"{value!r} is not a duration like 12h, 30d, 8w or 'never'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return (now_micros() if now is None else now) + seconds * 1_000_000


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
    """Revoke a token; return its user."""
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


def list_tokens(connection: Connection, name: str | None = None) -> list[TokenView]:
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
