"""Analysts' commands against any TAXII 2.1 server: publish, collections, get, watch."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import click

from node.bundles import BundleError, iter_objects
from node.sync.client import PeerClient, PeerError
from node.timestamps import is_timestamp
from node.validation import object_problem

from .common import EXIT_FAILURES, CommandError, NodeContext

pass_node = click.make_pass_decorator(NodeContext)

_ENVELOPE_OVERHEAD = 64
_MAX_OBJECTS_PER_ENVELOPE = 1000
# Asked for on every page: servers cap it at their max_page_size, and medallion
# 3.0.0 answers 500 to a ``next`` that does not repeat ``limit``.
_PAGE_LIMIT = "1000"


def server_options(command):
    """--config | --url/--user/--password-env, shared by the client commands."""
    options = [
        click.option("--url", metavar="API_ROOT", help="API root URL of any TAXII 2.1 server."),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="Use the API root of this node's config instead of --url.",
        ),
        click.option(
            "--user", envvar="TAXII_NODE_USER", metavar="NAME", help="Env: TAXII_NODE_USER."
        ),
        click.option(
            "--password-env",
            default="TAXII_NODE_PASSWORD",
            show_default=True,
            metavar="VAR",
            help="Environment variable holding the password.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _client(node: NodeContext, url, config_path, user, password_env) -> PeerClient:
    if url and config_path:
        raise CommandError("give either --url or --config, not both")
    if not url:
        if config_path:
            node.config_path = config_path
        config = node.config()
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        url = f"{config.server.scheme}://{host}:{config.server.port}/{config.taxii.api_root}/"
    if not user:
        raise CommandError("no user: pass --user NAME (or set TAXII_NODE_USER)")
    password = os.environ.get(password_env)
    if password is None:
        raise CommandError(f"no password: set the environment variable {password_env}")
    return PeerClient(url, user, password, timeout=60)


def _collection(client: PeerClient, name: str) -> str:
    try:
        return client.collection_id(name)
    except PeerError as exc:
        raise _peer_problem(exc) from None


def _peer_problem(exc: PeerError) -> CommandError:
    hints = {
        401: " (check the user name and password)",
        403: " (this account lacks the right for that)",
        404: " (check the collection id or alias with 'taxii-node collections')",
        413: " (the server refused the size of the request)",
    }
    hint = hints.get(exc.status or 0, " (is the server running and the URL right?)")
    # One line, even when the server answered with an HTML error page.
    message = " ".join(str(exc).split())
    return CommandError(f"{message}{hint if exc.status or exc.transient else ''}")


# -- publish -----------------------------------------------------------------


@dataclass
class PublishSummary:
    posted: int = 0
    already_present: int = 0
    invalid: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed

    def as_dict(self) -> dict:
        return {
            "posted": self.posted,
            "already_present": self.already_present,
            "invalid": self.invalid,
            "failed": self.failed,
        }


class _Progress:
    """A progress line on a terminal; silent when stderr is not a TTY (scripts, pipes).

    The total is unknown while a bundle streams from disk, so it shows the
    count, the rate and a spinner rather than a percentage.
    """

    _SPINNER = "|/-\\"

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.count = 0
        self.started = time.monotonic()

    def advance(self, n: int) -> None:
        self.count += n
        if self.enabled:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            spin = self._SPINNER[(self.count // max(n, 1)) % len(self._SPINNER)]
            click.echo(
                f"\r{spin} posted {self.count:,} objects ({self.count / elapsed:,.0f}/s)",
                nl=False,
                err=True,
            )

    def close(self) -> None:
        if self.enabled and self.count:
            click.echo("", err=True)


def _describe_invalid(source: str, obj: object, reason: str) -> dict:
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return {
        "source": source,
        "id": object_id if isinstance(object_id, str) else "",
        "message": reason,
    }


def _valid_objects(paths: tuple[str, ...], summary: PublishSummary):
    for source, obj in iter_objects(paths):
        problem = object_problem(obj)
        if problem is None:
            yield obj
        else:
            summary.invalid.append(_describe_invalid(source, obj, problem))


def _envelopes(objects, max_bytes: int, summary: PublishSummary):
    """Group a stream of objects into envelopes that fit ``max_bytes``.

    An object too large for any envelope is recorded as failed: posting it
    would only earn a 413 and stop the whole run.
    """
    current: list[dict] = []
    size = _ENVELOPE_OVERHEAD
    for obj in objects:
        length = len(json.dumps(obj).encode()) + 2
        if _ENVELOPE_OVERHEAD + length > max_bytes:
            summary.failed.append(
                {
                    "id": obj.get("id", ""),
                    "message": f"{length} bytes: larger than the server's "
                    f"max_content_length ({max_bytes})",
                }
            )
            continue
        if current and (size + length > max_bytes or len(current) >= _MAX_OBJECTS_PER_ENVELOPE):
            yield current
            current, size = [], _ENVELOPE_OVERHEAD
        current.append(obj)
        size += length
    if current:
        yield current


def _record_status(status: dict, summary: PublishSummary) -> None:
    for success in status.get("successes", []) or []:
        if "already" in str(success.get("message", "")).lower():
            summary.already_present += 1
        else:
            summary.posted += 1
    if "successes" not in status:
        summary.posted += int(status.get("success_count", 0) or 0)
    summary.failed.extend(status.get("failures", []) or [])


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--dry-run", is_flag=True, help="Validate only; post nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@server_options
@pass_node
@click.pass_context
def publish(ctx, node, paths, collection, dry_run, as_json, url, config_path, user, password_env):
    """Publish STIX 2.1 bundles (files, directories, or - for stdin) to a collection.

    Objects are validated locally first, with the server's rules; invalid ones
    are listed and not sent.  Envelopes are sized to the server's
    max_content_length and each status is followed to completion.  Exit code:
    0 all posted, 1 some objects failed, 2 usage or connection error.

    \b
    Example:
      export TAXII_NODE_PASSWORD=...
      taxii-node publish --url http://127.0.0.1:6001/api/ --user alice \\
          --collection shared reports/*.json
    """
    summary = PublishSummary()
    try:
        if dry_run:
            count = sum(1 for _ in _valid_objects(paths, summary))
            _print_dry_run(count, summary, as_json)
            ctx.exit(0 if summary.ok else EXIT_FAILURES)
        client = _client(node, url, config_path, user, password_env)
        _publish(client, collection, paths, summary)
    except BundleError as exc:
        raise CommandError(str(exc)) from None
    _print_summary(summary, as_json)
    ctx.exit(0 if summary.ok else EXIT_FAILURES)


def _publish(client: PeerClient, collection: str, paths, summary: PublishSummary) -> None:
    try:
        collection_id = _collection(client, collection)
        max_bytes = client.max_content_length()
        progress = _Progress()
        try:
            for envelope in _envelopes(_valid_objects(paths, summary), max_bytes, summary):
                _record_status(client.post_objects(collection_id, envelope), summary)
                progress.advance(len(envelope))
        finally:
            progress.close()
    except PeerError as exc:
        raise _peer_problem(exc) from None


def _print_dry_run(count: int, summary: PublishSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"valid": count, "invalid": summary.invalid}))
        return
    for item in summary.invalid:
        click.echo(f"INVALID {item['source']}: {item['id'] or '(no id)'}: {item['message']}")
    click.echo(f"{count} valid, {len(summary.invalid)} invalid (dry run: nothing posted)")


def _print_summary(summary: PublishSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    for item in summary.invalid:
        click.echo(f"INVALID {item['source']}: {item['id'] or '(no id)'}: {item['message']}")
    for item in summary.failed:
        click.echo(f"FAILED  {item.get('id', '')}: {item.get('message', '')}")
    click.echo(
        f"posted {summary.posted}, already present {summary.already_present}, "
        f"failed {len(summary.failed) + len(summary.invalid)}"
    )


# -- collections --------------------------------------------------------------


@click.command("collections")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@server_options
@pass_node
def collections_command(node, as_json, url, config_path, user, password_env):
    """List collections with id, alias, title, permissions and object counts.

    \b
    Example:
      taxii-node collections --url http://127.0.0.1:6001/api/ --user alice
    """
    client = _client(node, url, config_path, user, password_env)
    try:
        rows = []
        for collection in client.collections():
            count = _count(client, collection) if collection.get("can_read") else None
            rows.append({**collection, "objects": count})
    except PeerError as exc:
        raise _peer_problem(exc) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        rights = ("r" if row.get("can_read") else "-") + ("w" if row.get("can_write") else "-")
        count = "?" if row["objects"] is None else row["objects"]
        alias = row.get("alias") or "-"
        click.echo(f"{row['id']}  {alias:<16} {rights}  {count:>8}  {row.get('title', '')}")


def _count(client: PeerClient, collection: dict) -> int:
    """Objects (latest versions) in a collection, by paging its manifest."""
    total = 0
    params: dict = {"limit": _PAGE_LIMIT}
    while True:
        page = client.page(collection["id"], params, endpoint="manifest")
        total += len(page.objects)
        if not page.more:
            return total
        params = {"limit": _PAGE_LIMIT, "next": page.next}


# -- get and watch --------------------------------------------------------------


def _filters(types, ids, added_after, version) -> dict:
    params: dict[str, str] = {"limit": _PAGE_LIMIT}
    if types:
        params["match[type]"] = ",".join(types)
    if ids:
        params["match[id]"] = ",".join(ids)
    if added_after:
        if not is_timestamp(added_after):
            raise CommandError(f"--added-after: {added_after!r} is not an RFC 3339 timestamp")
        params["added_after"] = added_after
    if version:
        params["match[version]"] = version
    return params


@click.command()
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--type", "types", multiple=True, metavar="T", help="Only this STIX type.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this object id.")
@click.option("--added-after", metavar="TIME", help="Only objects added after TIME.")
@click.option("--version", type=click.Choice(["first", "last", "all"]), help="Versions to get.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@server_options
@pass_node
def get(node, collection, types, ids, added_after, version, output, url, config_path, user,
        password_env):  # fmt: skip
    """Fetch objects (following every page) and write one STIX 2.1 bundle.

    \b
    Example:
      taxii-node get --url http://127.0.0.1:6001/api/ --user alice \\
          --collection shared --type indicator -o indicators.json
    """
    client = _client(node, url, config_path, user, password_env)
    params = _filters(types, ids, added_after, version)
    collection_id = _collection(client, collection)
    # -o writes to a temporary file renamed at the end: a failure leaves no half bundle.
    partial = Path(f"{output}.partial") if output else None
    handle = partial.open("w") if partial else sys.stdout
    completed = False
    try:
        handle.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [')
        first = True
        while True:
            page = client.page(collection_id, params)
            for obj in page.objects:
                handle.write(("" if first else ",") + "\n" + json.dumps(obj))
                first = False
            if not page.more:
                break
            params = {**params, "next": page.next}
        handle.write("\n]}\n")
        completed = True
    except PeerError as exc:
        raise _peer_problem(exc) from None
    finally:
        if partial:
            handle.close()
            if completed:
                partial.replace(output)
            else:
                partial.unlink(missing_ok=True)


@click.command()
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--since", metavar="TIME", help="Start after this date_added (default: all).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="Resume from and record the position in this file.")  # fmt: skip
@click.option("--interval", default=5.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Stop when caught up instead of polling forever.")
@server_options
@pass_node
def watch(node, collection, since, state_file, interval, once, url, config_path, user,
          password_env):  # fmt: skip
    """Subscribe: print each new object as one JSON line, until interrupted.

    Polls with added_after from the server's X-TAXII-Date-Added-Last, so
    nothing is missed or repeated; with --state it resumes after a restart.

    \b
    Example:
      taxii-node watch --url http://127.0.0.1:6001/api/ --user alice \\
          --collection shared --state var/shared.watch | my-ingester
    """
    client = _client(node, url, config_path, user, password_env)
    collection_id = _collection(client, collection)
    position = _load_position(state_file) or since
    if position and not is_timestamp(position):
        raise CommandError(f"--since: {position!r} is not an RFC 3339 timestamp")
    try:
        while True:
            position = _poll(client, collection_id, position, state_file)
            if once:
                return
            time.sleep(interval)
    except PeerError as exc:
        raise _peer_problem(exc) from None
    except KeyboardInterrupt:
        return


def _poll(client: PeerClient, collection_id: str, position, state_file):
    """Print everything added after ``position``; return the new position.

    Pages are followed with ``next`` rather than by moving ``added_after``
    page by page: servers such as medallion give every object of one POST the
    same date_added, and ``added_after`` would skip the rest of such a group.
    """
    params: dict[str, str | None] = {"match[version]": "all", "limit": _PAGE_LIMIT}
    if position:
        params["added_after"] = position
    while True:
        page = client.page(collection_id, params)
        for obj in page.objects:
            click.echo(json.dumps(obj))
        sys.stdout.flush()
        if page.objects and page.date_added_last:
            position = page.date_added_last
            if state_file:
                _save_position(state_file, position)
        if not page.more:
            return position
        params = {**params, "next": page.next}


def _load_position(state_file: str | None) -> str | None:
    if not state_file or not Path(state_file).exists():
        return None
    value = Path(state_file).read_text().strip()
    return value or None


def _save_position(state_file: str, position: str) -> None:
    path = Path(state_file)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(position + "\n")
    temporary.replace(path)
