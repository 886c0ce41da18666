"""API tokens: create (printed once), list, revoke."""

from __future__ import annotations

import re

import click

from node.store import accounts
from node.timestamps import from_micros, now_micros

from .common import CommandError, NodeContext, admin_audit

pass_node = click.make_pass_decorator(NodeContext)

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str) -> int | None:
    """'never' or a duration such as 12h, 30d, 8w -> expiry in epoch microseconds."""
    if value == "never":
        return None
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise CommandError(f"--expires: {value!r} is not a duration like 12h, 30d, 8w or 'never'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return now_micros() + seconds * 1_000_000


@click.group()
def token() -> None:
    """API tokens for Bearer authentication (create, list, revoke).

    \b
    Example:
      taxii-node --config config/node-a.toml token create alice --expires 30d
      taxii-node --config config/node-a.toml token list
    """


@token.command("create")
@click.argument("name")
@click.option("--expires", default="90d", show_default=True, help="12h, 30d, 8w or never.")
@click.option("--label", help="What the token is for.")
@pass_node
def token_create(node: NodeContext, name: str, expires: str, label: str | None) -> None:
    """Create a token for user NAME and print it once (only a hash is stored).

    \b
    Example:
      taxii-node --config config/node-a.toml token create alice --expires 30d --label opencti
      curl -H "Authorization: Bearer tnk_..." http://127.0.0.1:6001/taxii2/
    """
    expiry = parse_expiry(expires)
    with node.writing() as connection:
        try:
            token_id, secret = accounts.create_token(connection, name, expires=expiry, label=label)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        admin_audit(connection, "token-created", name, f"token {token_id}, expires {expires}")
    click.echo(secret)
    click.echo(
        f"token {token_id} for {name}, expires {from_micros(expiry) if expiry else 'never'}; "
        "it is shown only now",
        err=True,
    )


@token.command("list")
@click.argument("name", required=False)
@pass_node
def token_list(node: NodeContext, name: str | None) -> None:
    """List tokens (never their secrets), optionally of one user.

    \b
    Example:
      taxii-node --config config/node-a.toml token list alice
    """
    with node.reading() as connection:
        tokens = accounts.list_tokens(connection, name)
    now = now_micros()
    for t in tokens:
        if t.revoked:
            state = f"revoked {from_micros(t.revoked)}"
        elif t.expires is not None and t.expires <= now:
            state = f"expired {from_micros(t.expires)}"
        else:
            state = f"valid until {from_micros(t.expires)}" if t.expires else "valid, no expiry"
        click.echo(f"{t.id}\t{t.user_name}\t{state}\t{t.label or ''}")


@token.command("revoke")
@click.argument("token_id")
@pass_node
def token_revoke(node: NodeContext, token_id: str) -> None:
    """Revoke a token by id (servers stop accepting it within 30 s).

    \b
    Example:
      taxii-node --config config/node-a.toml token revoke 3f9a1c2b7d4e
    """
    with node.writing() as connection:
        try:
            owner = accounts.revoke_token(connection, token_id)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        admin_audit(connection, "token-revoked", owner, f"token {token_id}")
    click.echo(f"token {token_id} of {owner} revoked")
