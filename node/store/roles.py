"""Roles an account holds besides admin, analyst and peer: ``releaser`` (migration 7).

A releaser approves or rejects versions waiting in a peer's release queue
(mapping egress ``release = "approval"``).  The role is kept in a table of its
own, so an analyst can also be a releaser and an account's other rights stay
as they are.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    select,
)

from node.errors import InvalidValue

from .schema import metadata

RELEASER = "releaser"
ROLES: frozenset[str] = frozenset({RELEASER})

account_roles = Table(
    "account_roles",
    metadata,
    Column("user_name", String(128), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("role", String(32), nullable=False),
    PrimaryKeyConstraint("user_name", "role"),
)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidValue(f"no role {role!r} (roles: {', '.join(sorted(ROLES))})")
    return role


def add_role(connection: Connection, user_name: str, role: str) -> bool:
    """Give ``user_name`` the role; False when it already had it."""
    check_role(role)
    if has_role(connection, user_name, role):
        return False
    connection.execute(account_roles.insert().values(user_name=user_name, role=role))
    return True


def remove_role(connection: Connection, user_name: str, role: str) -> bool:
    """Take the role away; False when the account did not have it."""
    check_role(role)
    result = connection.execute(
        delete(account_roles).where(
            account_roles.c.user_name == user_name, account_roles.c.role == role
        )
    )
    return bool(result.rowcount)


def has_role(connection: Connection, user_name: str, role: str) -> bool:
    found = connection.execute(
        select(account_roles.c.role).where(
            account_roles.c.user_name == user_name, account_roles.c.role == role
        )
    ).first()
    return found is not None


def roles_of(connection: Connection, user_name: str) -> list[str]:
    statement = select(account_roles.c.role).where(account_roles.c.user_name == user_name)
    return sorted(connection.execute(statement).scalars())
