"""The audit trail: show it (newest first), export it, verify its hash chain."""

from __future__ import annotations

import json

import click

from .common import COUNT_OR_ZERO, EXIT_FAILURES, CommandError, NodeContext

pass_node = click.make_pass_decorator(NodeContext)

# Columns of the text listing: (heading, width; 0 for the last, unbounded).
_COLUMNS = (("AT", 27), ("DIRECTION", 9), ("ACTION", 19), ("WHO", 14), ("OBJECT", 45),
            ("RULE", 22), ("DETAIL", 0))  # fmt: skip


def _line(values: list[str]) -> str:
    pairs = zip(values, _COLUMNS, strict=True)
    cells = [value if width == 0 else f"{value:<{width}}" for value, (_, width) in pairs]
    return " ".join(cells).rstrip()


def _cells(row: dict) -> list[str]:
    return [row["at"], row["direction"], row["action"], row["peer"] or row["actor"] or "-",
            row["object_id"] or "-", f"[{row['rule'] or '-'}]", row["detail"] or ""]  # fmt: skip


@click.group("audit", invoke_without_command=True)
@click.option("--peer", metavar="NAME", help="Only records about this peer.")
@click.option("--since", metavar="TIME", help="RFC 3339 timestamp, e.g. 2026-01-01T00:00:00Z.")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=COUNT_OR_ZERO,
    help="At most this many records (0: all).",
)
@click.option("--oldest-first", is_flag=True, help="The oldest records, oldest first.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines with the hash chain, in chain order (export).")  # fmt: skip
@pass_node
@click.pass_context
def audit_command(ctx, node: NodeContext, peer, since, limit, oldest_first, as_json) -> None:
    """Show the audit trail: what was sent, received, withheld or deleted, and why.

    Also logins, account changes and publications.  Shows the newest records
    first (--oldest-first for the oldest); --json prints the records chosen in
    the order of the hash chain.  'audit verify' checks the chain.

    \b
    Examples:
      taxii-node --config config/node-a.toml audit --peer node-b --since 2026-01-01T00:00:00Z
      taxii-node --config config/node-a.toml audit --json --limit 0 > audit.jsonl
      taxii-node --config config/node-a.toml audit verify
    """
    from node.operations import audit as operations
    from node.store.audit import AuditFilter
    from node.timestamps import from_micros, to_micros

    if ctx.invoked_subcommand is not None:
        return
    try:
        since_micros = to_micros(since) if since else None
    except ValueError as exc:
        raise CommandError(f"--since: {exc}") from None
    with node.reading() as connection:
        rows = operations.entries(connection, AuditFilter(peer=peer or "", since=since_micros,
                                  limit=limit or None, oldest_first=oldest_first))  # fmt: skip
    for row in rows:
        row["at"] = from_micros(row["at"])
    if as_json:
        for row in sorted(rows, key=lambda r: r["pk"]):
            click.echo(json.dumps(row))
        return
    if rows:
        click.echo(_line([heading for heading, _ in _COLUMNS]))
    for row in rows:
        click.echo(_line(_cells(row)))


@audit_command.command("verify")
@pass_node
@click.pass_context
def audit_verify(ctx, node: NodeContext) -> None:
    """Check the audit hash chain; report the first broken record.

    Exit code 0 when intact, 1 when the chain is broken.

    \b
    Example:
      taxii-node --config config/node-a.toml audit verify
    """
    from node.operations import audit as operations

    with node.reading() as connection:
        result = operations.verify(connection)
    if result.ok:
        click.echo(f"audit chain intact: {result.records} records, head {result.head}")
        return
    where = f"record {result.broken_at}" if result.broken_at is not None else "the end"
    click.echo(f"audit chain BROKEN at {where}: {result.reason}")
    ctx.exit(EXIT_FAILURES)
