"""User accounts, their per-collection rights, and password hashing.

Passwords are kept only as salted scrypt hashes.  Verifying a password for an
unknown user still runs scrypt against a dummy hash so that response times do
not tell which user names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, select, update

from node.timestamps import now_micros

from .schema import grants, users

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


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

    def rights_on(self, collection_id: str) -> Rights:
        if self.is_admin:
            return Rights(can_read=True, can_write=True)
        return self.rights.get(collection_id, Rights())


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    )


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
    # Same parameters as real hashes, so the work matches.
    return "scrypt$16384$8$1$" + _b64(b"\0" * 16) + "$" + _b64(b"\0" * 32)


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
    """Create ``name``; raises ValueError if it exists."""
    if connection.execute(select(users.c.name).where(users.c.name == name)).first():
        raise ValueError(f"user {name!r} already exists")
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
        raise ValueError(f"no user {name!r}")


def remove_user(connection: Connection, name: str) -> None:
    connection.execute(delete(grants).where(grants.c.user_name == name))
    if connection.execute(delete(users).where(users.c.name == name)).rowcount == 0:
        raise ValueError(f"no user {name!r}")


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
    return Account(name=row.name, is_admin=row.is_admin, peer=row.peer, rights=rights)


def list_accounts(connection: Connection) -> list[Account]:
    names = connection.execute(select(users.c.name).order_by(users.c.name)).scalars().all()
    return [account for name in names if (account := load_account(connection, name))]
