"""Accounts: create, grant, change password, remove, unlock, bind a certificate, list.

The rules live here, once: a password has at least 8 characters, a sync
account names a configured peer, collections are named by id or alias and
must exist, a certificate binds one account at most and is given by a SHA-256
fingerprint or a subject, not both.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from node.errors import InvalidValue, NotFound
from node.store import accounts, catalog, roles
from node.store.accounts import Account
from node.store.audit import Action

from .audit import record_change

MIN_PASSWORD_LENGTH = 8
# The store's column (users.name): PostgreSQL refuses a longer name, SQLite would keep it.
MAX_NAME_LENGTH = 128


@dataclass(frozen=True)
class CertificateBinding:
    """The client certificate an account is bound to: by fingerprint or by subject."""

    fingerprint: str | None = None  # normalised: 64 lowercase hex digits
    subject: str | None = None  # canonical (accounts.parse_subject)

    @classmethod
    def parse(cls, fingerprint: str | None, subject: str | None) -> CertificateBinding:
        """From what an operator typed (``AB:CD:...``, ``CN=node-b,O=Partner``)."""
        if fingerprint is not None and subject is not None:
            raise InvalidValue("give a certificate fingerprint or a subject, not both")
        return cls(
            accounts.normalize_fingerprint(fingerprint) if fingerprint is not None else None,
            accounts.parse_subject(subject) if subject is not None else None,
        )

    @property
    def bound(self) -> bool:
        return self.fingerprint is not None or self.subject is not None

    def describe(self) -> str:
        if self.fingerprint is not None:
            return f"cert:sha256:{self.fingerprint}"
        return f"cert:subject:{self.subject}" if self.subject is not None else "-"


@dataclass(frozen=True)
class NewAccount:
    name: str
    password: str
    is_admin: bool = False
    peer: str | None = None  # the partner node of a sync account
    read: tuple[str, ...] = ()  # collections, by id or alias
    write: tuple[str, ...] = ()
    certificate: CertificateBinding = field(default_factory=CertificateBinding)

    @property
    def role(self) -> str:
        if self.is_admin:
            return "admin"
        return f"peer {self.peer}" if self.peer else "analyst"


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValue(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def check_account_name(name: str) -> str:
    """A name an account can sign in with over HTTP Basic, the same on both stores.

    RFC 7617 (section 2) ends the user-id at the first colon and allows no
    control characters; an empty name cannot be typed; a name past the store's
    column is refused by PostgreSQL and kept by SQLite, so both refuse it here.
    """
    if not name:
        raise InvalidValue("the account name is empty")
    if ":" in name:
        raise InvalidValue(f"account name {name!r}: a colon cannot be signed in with (HTTP Basic)")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise InvalidValue(f"account name {name!r} holds a control character")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidValue(
            f"the account name has {len(name)} characters; at most {MAX_NAME_LENGTH}"
        )
    return name


def check_role(new: NewAccount) -> None:
    """A partner's sync account is never an admin: an admin reads every collection,
    and a sync account is meant to read what its mappings share."""
    if new.is_admin and new.peer is not None:
        raise InvalidValue(
            f"a sync account of peer {new.peer!r} cannot be an admin (an admin reads every "
            "collection); grant it the collections its mappings share instead"
        )


def add_account(
    connection: Connection,
    new: NewAccount,
    *,
    actor: str,
    known_peers: Collection[str] | None = None,
) -> Account:
    """Create an account with its rights and certificate binding, audited.

    ``known_peers``, when given, are the peers a sync account may belong to.
    """
    check_account_name(new.name)
    check_role(new)
    if new.peer is not None and known_peers is not None and new.peer not in known_peers:
        listed = ", ".join(sorted(known_peers)) or "none configured"
        raise NotFound(f"no peer named {new.peer!r} (peers: {listed})")
    check_password(new.password)
    readable = collection_ids(connection, new.read)
    writable = collection_ids(connection, new.write)
    accounts.add_user(connection, new.name, new.password, is_admin=new.is_admin, peer=new.peer)
    record_change(connection, actor, Action.USER_ADDED, new.name,
                  f"role {new.role}; read {list(new.read)}; write {list(new.write)}")  # fmt: skip
    if new.certificate.bound:
        bind_certificate(connection, new.name, new.certificate, actor=actor)
    _grant_all(connection, new.name, readable, writable)
    return _loaded(connection, new.name)


def grant(
    connection: Connection,
    name: str,
    *,
    read: Iterable[str] = (),
    write: Iterable[str] = (),
    actor: str,
) -> Account:
    """Add read and write rights on collections (by id or alias), audited."""
    read, write = tuple(read), tuple(write)
    _loaded(connection, name)
    readable = collection_ids(connection, read)
    writable = collection_ids(connection, write)
    record_change(connection, actor, Action.RIGHTS_GRANTED, name, f"read {list(read)}; "
                  f"write {list(write)}")  # fmt: skip
    _grant_all(connection, name, readable, writable)
    return _loaded(connection, name)


def set_role(connection: Connection, name: str, role: str, *, granted: bool, actor: str) -> bool:
    """Give (``granted``) or take away a role such as ``releaser``, audited; False when
    nothing changed."""
    _loaded(connection, name)
    if granted:
        changed = roles.add_role(connection, name, role)
    else:
        changed = roles.remove_role(connection, name, role)
    if changed:
        action = Action.ROLE_GRANTED if granted else Action.ROLE_REMOVED
        record_change(connection, actor, action, name, f"role {role}")
    return changed


def set_password(connection: Connection, name: str, password: str, *, actor: str) -> None:
    accounts.set_password(connection, name, check_password(password))
    record_change(connection, actor, Action.PASSWORD_CHANGED, name)


def remove_account(connection: Connection, name: str, *, actor: str) -> None:
    accounts.remove_user(connection, name)
    record_change(connection, actor, Action.USER_REMOVED, name)


def unlock(connection: Connection, name: str, *, actor: str) -> int:
    """Lift the failed-login block of ``name`` (and its tokens) from every address;
    return how many failures were forgotten."""
    _loaded(connection, name)
    forgotten = accounts.clear_login_failures(connection, name)
    record_change(
        connection, actor, Action.USER_UNLOCKED, name, f"{forgotten} failed login(s) cleared"
    )
    return forgotten


def bind_certificate(
    connection: Connection, name: str, binding: CertificateBinding, *, actor: str
) -> None:
    """Bind ``name`` to a certificate, or unbind it with an empty binding; audited."""
    accounts.bind_certificate(
        connection, name, fingerprint=binding.fingerprint, subject=binding.subject
    )
    action = Action.CERTIFICATE_BOUND if binding.bound else Action.CERTIFICATE_UNBOUND
    record_change(connection, actor, action, name, binding.describe())


def certificate_of(account: Account) -> CertificateBinding:
    return CertificateBinding(account.cert_fingerprint, account.cert_subject)


def get_account(connection: Connection, name: str) -> Account:
    return _loaded(connection, name)


@dataclass(frozen=True)
class AccountView:
    """An account as listed: role, rights by collection alias, certificate binding."""

    name: str
    role: str  # admin, analyst or peer:NAME
    rights: dict[str, str]  # collection alias (or id) -> "r", "w" or "rw"
    certificate: str | None  # cert:sha256:... or cert:subject:...

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "rights": self.rights,
                "certificate": self.certificate}  # fmt: skip


def list_accounts(connection: Connection) -> list[AccountView]:
    names = {c.id: c.alias or c.id for c in catalog.all_collections(connection)}
    views = []
    for account in accounts.list_accounts(connection):
        rights = {
            names.get(cid, cid): ("r" if r.can_read else "") + ("w" if r.can_write else "")
            for cid, r in sorted(account.rights.items())
        }
        binding = certificate_of(account)
        views.append(
            AccountView(
                name=account.name,
                role=f"peer:{account.peer}" if account.peer else account.role,
                rights=rights,
                certificate=binding.describe() if binding.bound else None,
            )
        )
    return views


def collection_ids(connection: Connection, names: Iterable[str]) -> list[str]:
    """The ids of collections named by id or alias; NotFound names the known ones."""
    ids = []
    for name in names:
        found = catalog.find(connection, name)
        if found is None:
            known = ", ".join(c.alias or c.id for c in catalog.all_collections(connection))
            raise NotFound(f"unknown collection {name!r} (known: {known or 'none'})")
        ids.append(found.id)
    return ids


def _grant_all(connection: Connection, name: str, readable: list[str], writable: list[str]):
    for collection_id in set(readable) | set(writable):
        accounts.grant(
            connection,
            name,
            collection_id,
            read=collection_id in readable,
            write=collection_id in writable,
        )


def _loaded(connection: Connection, name: str) -> Account:
    account = accounts.load_account(connection, name)
    if account is None:
        raise NotFound(f"no user {name!r}")
    return account
