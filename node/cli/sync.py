"""Sync commands: run the worker, show its state, preview policy."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections import Counter

import click

from node.client import check_peer_tls
from node.operations import sync as operations
from node.operations.sync import preview
from node.sharing import Agreements
from node.store.audit import Direction
from node.sync.health import configure_logging, describe, log_round
from node.sync.worker import SyncWorker

from . import deadletters
from .common import EXIT_FAILURES, CommandError, NodeContext, cli_actor

pass_node = click.make_pass_decorator(NodeContext)
log = logging.getLogger("node.sync")


@click.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run one round for each mapping, then exit.")
@click.option("--peer", metavar="NAME", help="Only this peer.")
@click.option("--verbose", is_flag=True, help="Also log idle rounds (DEBUG).")
@pass_node
@click.pass_context
def sync(ctx: click.Context, node: NodeContext, once: bool, peer: str | None,
         verbose: bool) -> None:  # fmt: skip
    """Push to and pull from the peers of the config, under their policies.

    Without --once, runs until SIGTERM or Ctrl-C, each direction of each
    mapping at its interval, and logs (UTC timestamps, on stderr) each round
    that moved something, each failure and each recovery; a stop waits for
    the batch in flight to commit.

    \b
    Examples:
      taxii-node --config config/node-a.toml sync
      taxii-node --config config/node-a.toml sync --once --peer node-b
      taxii-node --config config/node-a.toml sync status
      taxii-node --config config/node-a.toml sync dead-letters
    """
    if ctx.invoked_subcommand is not None:
        return
    config = node.config()
    if not config.peers:
        raise CommandError(f"{config.path}: no [[peers]] configured")
    check_peer_tls(config)  # an unreadable ca_bundle or client certificate: fail now
    store = node.ready_store()
    worker = SyncWorker(config, store, peer=peer)
    try:
        if once:
            results = worker.run_once()
            for result in results:
                click.echo(describe(result))
            if not all(r.ok for r in results):
                ctx.exit(EXIT_FAILURES)
            return
        _stop_on_signals(worker.stop)
        configure_logging(verbose)
        log.info("sync worker for %s running; SIGTERM or Ctrl-C stops it", config.name)
        worker.run_forever(on_result=log_round)
        log.info("sync worker stopped")
    finally:
        worker.close()
        store.close()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@sync.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (RFC 3339 times).")
@pass_node
def sync_status(node: NodeContext, as_json: bool) -> None:
    """Per peer, mapping and direction: cursor, last attempt and success, lag, counts,
    the last error, dead letters waiting.

    \b
    Examples:
      taxii-node --config config/node-a.toml sync status
      taxii-node --config config/node-a.toml sync status --json
    """
    with node.opened() as store:
        states = operations.sync_status(store)
    if as_json:
        click.echo(json.dumps([state.as_dict() for state in states], indent=2))
        return
    if not states:
        click.echo("no sync rounds have run yet")
    for state in states:
        lag = f"{state.lag_seconds:.1f}s ago" if state.lag_seconds is not None else "never"
        click.echo(f"{state.peer} {state.mapping} {state.direction}")
        click.echo(f"  cursor:      {state.cursor or 'start'}")
        click.echo(f"  last sync:   {lag} ({state.last_success or '-'}); "
                   f"last attempt {state.last_attempt or '-'}")  # fmt: skip
        click.echo(
            f"  counts:      sent {state.sent}, received {state.received}, "
            f"withheld {state.withheld}, dead-lettered {state.dead_lettered}; "
            f"already present {state.already_present}"
        )
        click.echo(f"  last error:  {state.last_error or '-'}")
    waiting = sum(state.dead_letters_waiting for state in states)
    if waiting:
        click.echo(f"dead letters: {waiting} waiting (taxii-node sync dead-letters)")


@sync.command("set-cursor")
@click.argument("peer")
@click.argument("mapping")
@click.argument("direction", type=click.Choice(["push", "pull"]))
@click.option("--to", "to", metavar="TIMESTAMP",
              help="RFC 3339 timestamp (push: our date_added; pull: the peer's). "
                   "Default: the start.")  # fmt: skip
@pass_node
def set_cursor(node: NodeContext, peer: str, mapping: str, direction: str,
               to: str | None) -> None:  # fmt: skip
    """Move one lane's cursor (audited): the next round goes on after it.

    MAPPING is as `sync status` prints it (local<->remote) or its local
    collection.  Back, or to the start, to send or fetch again what was added
    after it (a store restored from a backup, a peer that lost data): what the
    other side holds is counted as already present, never stored twice.  A push
    cursor moved also sends again the identities and marking definitions the
    peer acknowledged on that mapping, with the first object that needs them.
    Forward, to pass over a version the peer serves that cannot be read:
    nothing added in between crosses in that direction.  A round of the
    running worker in flight stops at its next commit (what crossed is audited)
    and leaves the cursor where this puts it.

    \b
    Examples:
      taxii-node --config config/node-a.toml sync set-cursor node-b 'alpha<->alpha' pull
      taxii-node --config config/node-a.toml sync set-cursor node-b alpha push \\
          --to 2026-11-30T00:00:00Z
    """
    config = node.config()
    with node.opened() as store:
        state = operations.set_cursor(
            config, store, peer, mapping, Direction(direction), to, cli_actor()
        )
    click.echo(f"{state.peer} {state.mapping} {state.direction}: cursor {state.cursor or 'start'}")


for _command in deadletters.COMMANDS:
    sync.add_command(_command)


@click.group()
def policy() -> None:
    """Inspect sharing policies.

    \b
    Example:
      taxii-node --config config/node-a.toml policy preview --peer node-b
    """


@policy.command("preview")
@click.option("--peer", required=True, metavar="NAME", help="The peer to preview for.")
@click.option("--collection", metavar="C", help="Only this local collection (id or alias).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per decision.")
@pass_node
def policy_preview(node: NodeContext, peer: str, collection: str | None, as_json: bool) -> None:
    """Dry run of egress: what would be sent to PEER, and why the rest is withheld.

    Nothing is sent and nothing is recorded.

    \b
    Example:
      taxii-node --config config/node-a.toml policy preview --peer node-b
    """
    config = node.config()
    config.peer(peer)
    with node.opened() as store:
        agreements = [a for a in Agreements(config, store) if a.peer.name == peer]
        if collection:
            agreements = [a for a in agreements if collection in (a.mapping.local,
                                                                  a.collection_id)]  # fmt: skip
            if not agreements:
                raise CommandError(f"no mapping of peer {peer!r} for collection {collection!r}")
        totals: Counter[str] = Counter()
        by_rule: Counter[str] = Counter()
        for agreement in agreements:
            _preview(store, agreement, as_json, totals, by_rule)
    if not as_json:
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(by_rule.items()))
        click.echo(f"would send {totals['send']}, would withhold {totals['withhold']}"
                   f"{'; by rule: ' + rules if rules else ''}")  # fmt: skip


def _preview(store, agreement, as_json: bool, totals: Counter, by_rule: Counter) -> None:
    for line in preview(store, agreement):
        d = line.decision
        totals["send" if d.allowed else "withhold"] += 1
        by_rule[str(d.rule)] += 1
        if as_json:
            click.echo(json.dumps({"mapping": agreement.mapping.key, "id": d.object_id,
                                   "version": d.version, "send": d.allowed, "name": line.name,
                                   "state": str(line.state), "rule": str(d.rule),
                                   "detail": d.detail}))  # fmt: skip
        else:
            verdict = "SEND    " if d.allowed else "WITHHOLD"
            name = f"{line.name!r}" if line.name else "(no name)"
            detail = f": {d.detail}" if d.detail else ""
            click.echo(f"{verdict} {d.object_id} {d.version or ''} [{d.rule}] {name}{detail}")
