"""Dead-letter commands: ``sync dead-letters``, ``sync retry``, ``sync skip``.

They parse and print; the operations (``node.operations.sync``) list, retry
and skip, and audit each action with the operator's name.
"""

from __future__ import annotations

import json

import click

from node.operations import sync as operations

from .common import ENTRY_NUMBER, EXIT_FAILURES, CommandError, NodeContext, cli_actor

pass_node = click.make_pass_decorator(NodeContext)


@click.command("dead-letters")
@click.option("--peer", metavar="NAME", help="Only this peer's.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_node
def dead_letters(node: NodeContext, peer: str | None, as_json: bool) -> None:
    """List the versions the receiving side refused, oldest first.

    For each: its ID (for retry and skip), peer, mapping and direction (push:
    the peer refused it; pull: this node did), object and version, the
    answer, first and last attempt, and how many attempts ended refused.

    \b
    Examples:
      taxii-node --config config/node-a.toml sync dead-letters
      taxii-node --config config/node-a.toml sync dead-letters --peer node-b --json
    """
    with node.opened() as store:
        letters = operations.dead_letters(store, peer)
    for letter in letters:
        if as_json:
            click.echo(json.dumps(letter.as_dict()))
            continue
        click.echo(
            f"{letter.pk}\t{letter.peer} {letter.mapping} {letter.direction}\t"
            f"{letter.object_id} {letter.version or '-'}"
        )
        click.echo(
            f"\tattempts {letter.attempts}, first {letter.first_attempt}, "
            f"last {letter.last_attempt}: {letter.answer}"
        )
    if not letters and not as_json:
        click.echo("no dead letters")


@click.command("retry")
@click.argument("letter_id", required=False, type=ENTRY_NUMBER)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --peer).")
@click.option("--peer", metavar="NAME", help="With --all: only this peer's.")
@pass_node
@click.pass_context
def retry(
    ctx: click.Context, node: NodeContext, letter_id: int | None, every: bool, peer: str | None
) -> None:
    """Send (push) or fetch (pull) dead letters again now, under the current policy.

    The cursor does not move.  A version delivered, now withheld by policy, or
    found held already leaves the list; one refused again stays, with the
    new answer.  Exit 1 when some were not delivered.

    \b
    Examples:
      taxii-node --config config/node-a.toml sync retry 12
      taxii-node --config config/node-a.toml sync retry --all --peer node-b
    """
    if (letter_id is None) == (not every):
        raise CommandError("give a dead letter ID or --all (see 'sync dead-letters')")
    if peer and not every:
        raise CommandError("--peer goes with --all")
    config = node.config()
    with node.opened() as store:
        if every:
            retried = operations.retry_all(config, store, cli_actor(), peer)
            outcomes = [(letter.pk, outcome) for letter, outcome in retried]
        else:
            assert letter_id is not None
            outcomes = [
                (letter_id, operations.retry_dead_letter(config, store, letter_id, cli_actor()))
            ]
    for pk, outcome in outcomes:
        verdict = "delivered" if outcome.delivered else "NOT delivered"
        click.echo(f"{pk}\t{outcome.object_id}: {verdict}: {outcome.message}")
    if every and not outcomes:
        click.echo("no dead letters")
    if not all(outcome.delivered for _, outcome in outcomes):
        ctx.exit(EXIT_FAILURES)


@click.command("skip")
@click.argument("letter_id", type=ENTRY_NUMBER)
@pass_node
def skip(node: NodeContext, letter_id: int) -> None:
    """Give a dead letter up for good (audited); the version stays where it is.

    \b
    Example:
      taxii-node --config config/node-a.toml sync skip 12
    """
    with node.opened() as store:
        operations.skip_dead_letter(store, letter_id, cli_actor())
    click.echo(f"dead letter {letter_id} skipped")


COMMANDS = (dead_letters, retry, skip)
