"""API tokens: create (printed once), list, revoke.  The work is in ``node.operations``."""

from __future__ import annotations

import json

import click

from .common import CommandError, NodeContext, cli_actor

pass_node = click.make_pass_decorator(NodeContext)


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

    Client commands use it from an environment variable: TAXII_NODE_TOKEN, or
    the one --token-env names.

    \b
    Example:
      taxii-node --config config/node-a.toml token create alice --expires 30d --label opencti
      curl -H "Authorization: Bearer tnk_..." http://127.0.0.1:6001/taxii2/
    """
    from node.errors import InvalidValue
    from node.operations import tokens as operations
    from node.timestamps import from_micros

    try:
        expiry = operations.parse_expiry(expires)
    except InvalidValue as exc:
        raise CommandError(f"--expires: {exc}") from None
    with node.writing() as connection:
        created = operations.create_token(
            connection, name, expires=expiry, label=label, actor=cli_actor()
        )
    click.echo(created.secret)
    click.echo(
        f"token {created.id} for {name}, expires {from_micros(expiry) if expiry else 'never'}; "
        "it is shown only now",
        err=True,
    )


@token.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the tokens.")
@pass_node
def token_list(node: NodeContext, name: str | None, as_json: bool) -> None:
    """List tokens (never their secrets), optionally of one user.

    \b
    Example:
      taxii-node --config config/node-a.toml token list alice
      taxii-node --config config/node-a.toml token list --json
    """
    from node.operations import tokens as operations

    with node.reading() as connection:
        views = operations.list_tokens(connection, name)
    if as_json:
        click.echo(json.dumps([view.as_dict() for view in views], indent=2))
        return
    for view in views:
        if view.state == "valid":
            state = f"valid until {view.expires}" if view.expires else "valid, no expiry"
        else:
            state = f"{view.state} {view.since}"
        click.echo(f"{view.id}\t{view.user_name}\t{state}\t{view.label or ''}")


@token.command("revoke")
@click.argument("token_id")
@pass_node
def token_revoke(node: NodeContext, token_id: str) -> None:
    """Revoke a token by id (servers stop accepting it within 30 s).

    \b
    Example:
      taxii-node --config config/node-a.toml token revoke 3f9a1c2b7d4e
    """
    from node.operations import tokens as operations

    with node.writing() as connection:
        owner = operations.revoke_token(connection, token_id, actor=cli_actor())
    click.echo(f"token {token_id} of {owner} revoked")
