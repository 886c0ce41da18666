"""Analysts' commands against any TAXII 2.1 server: publish, collections, get, watch.

They start fast (a person waits for them): this module imports only what every
one of them needs; the HTTP client, the validator and the bundle reader are
imported by the commands that use them.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.errors import RemoteError
from node.timestamps import is_timestamp, to_micros
from node.validation import version_stamp

from .common import EXIT_FAILURES, CommandError, NodeContext, warn

if TYPE_CHECKING:
    from node.client import TaxiiClient
    from node.marking import Marking

pass_node = click.make_pass_decorator(NodeContext)

# Asked for on every page: servers cap it at their max_page_size, and medallion
# 3.0.0 answers 500 to a ``next`` that does not repeat ``limit``.
_PAGE_LIMIT = "1000"
TOKEN_ENV = "TAXII_NODE_TOKEN"
_CONFLICT = "a different object with this id and version is already stored"


def server_options(command):
    """--url | --config, and --user/--password-env or --token-env: the client commands'."""
    options = [
        click.option(
            "--url",
            metavar="URL",
            help="The server's base URL (http://host:6001/), its discovery URL (.../taxii2/) "
            "or an API root URL of any TAXII 2.1 server.",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(),
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
        click.option(
            "--token-env",
            metavar="VAR",
            help=f"Environment variable holding an API token (Bearer); {TOKEN_ENV} is used "
            "when set and no --user is given.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True)
class ServerOptions:
    url: str | None
    config_path: str | None
    user: str | None
    password_env: str
    token_env: str | None

    @classmethod
    def of(cls, options: dict[str, Any]) -> ServerOptions:
        return cls(
            options.pop("url"),
            options.pop("config_path"),
            options.pop("user"),
            options.pop("password_env"),
            options.pop("token_env"),
        )


def _client(node: NodeContext, server: ServerOptions) -> TaxiiClient:
    """A client for the server named by --url or --config, with the caller's credentials."""
    if server.url and server.config_path:
        raise CommandError("give either --url or --config, not both")
    url = server.url or _configured_api_root(node, server.config_path)
    user, password, token = _credentials(server)
    from node.client import TaxiiClient  # requests: imported once there is work for it

    client = TaxiiClient(url, user, password, token=token, timeout=60)
    if server.url:
        try:
            client.use_default_api_root()
        except RemoteError as exc:
            client.close()
            raise _remote_problem(exc, url=server.url) from None
    return client


def _configured_api_root(node: NodeContext, config_path: str | None) -> str:
    if config_path:
        node.config_path = config_path
    config = node.config()
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{config.server.scheme}://{host}:{config.server.port}/{config.taxii.api_root}/"


def _credentials(server: ServerOptions) -> tuple[str | None, str | None, str | None]:
    """(user, password, token): a token from --token-env, or from TAXII_NODE_TOKEN when
    no --user is given; else the user and the password from --password-env."""
    if server.token_env or (not server.user and TOKEN_ENV in os.environ):
        variable = server.token_env or TOKEN_ENV
        token = os.environ.get(variable)
        if not token:
            raise CommandError(f"no token: set the environment variable {variable}")
        return None, None, token.strip()
    if not server.user:
        raise CommandError(
            f"no credentials: pass --user NAME (or set TAXII_NODE_USER) with a password, "
            f"or set {TOKEN_ENV} to an API token"
        )
    password = os.environ.get(server.password_env)
    if password is None:
        raise CommandError(f"no password: set the environment variable {server.password_env}")
    return server.user, password, None


def _collection(client: TaxiiClient, name: str) -> str:
    try:
        return client.collection_id(name)
    except RemoteError as exc:
        raise _remote_problem(exc) from None


_HINTS = {
    401: " (check the user name and password, or the token)",
    403: " (this account lacks the right for that)",
    413: " (the server refused the size of the request)",
    429: " (an administrator can lift the block: taxii-node user unlock NAME)",
}


def _remote_problem(exc: RemoteError, url: str | None = None) -> CommandError:
    """One line for a server's refusal or absence, with what to do about it."""
    if exc.status == 404:
        hint = (
            f" (no TAXII API root or discovery resource at {url}: give the server's base URL, "
            "its discovery URL .../taxii2/ or an API root URL)"
            if url
            else " (check the collection id or alias with 'taxii-node collections')"
        )
    elif exc.status is None:
        hint = " (is the server running and the URL right?)" if exc.transient else ""
    elif exc.status >= 500:
        hint = " (the server failed: its log says why)"
    else:
        hint = _HINTS.get(exc.status, "")
    # One line, even when the server answered with an HTML error page.
    message = " ".join(str(exc).split())
    if exc.status is None and message.endswith(")"):
        hint = ""  # the client's message has its own hint (a refused connection's)
    return CommandError(f"{message}{hint}")


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

    @property
    def conflicts(self) -> int:
        return sum(1 for item in self.failed if _CONFLICT in str(item.get("message", "")))

    def as_dict(self) -> dict:
        return {
            "posted": self.posted,
            "already_present": self.already_present,
            "invalid": self.invalid,
            "failed": self.failed,
        }


def _marking(tlp: str | None, created_by: str | None) -> Marking | None:
    if tlp is None and created_by is None:
        return None
    from node.marking import Marking
    from node.tlp import parse_level

    try:
        level = parse_level(tlp) if tlp is not None else None
    except ValueError as exc:
        raise CommandError(f"--tlp: {exc}") from None
    try:
        return Marking(level, created_by)
    except ValueError as exc:
        raise CommandError(f"--created-by: {exc}") from None


class _Progress:
    """Progress on a terminal (tqdm): objects done of the total, %, rate, ETA, the file.

    Silent when stderr is not a TTY (scripts, pipes).  The total is counted
    first, by a fast pass over the files, because a bundle streams from disk;
    standard input is not counted twice (no total, no ETA).
    """

    def __init__(self, paths: tuple[str, ...]) -> None:
        self._bar: Any = None
        if not sys.stderr.isatty():
            return
        from tqdm import tqdm

        from node.bundles import count_objects

        total = None if "-" in paths else count_objects(paths)
        self._bar = tqdm(total=total, unit=" objects", file=sys.stderr, dynamic_ncols=True)

    def at(self, source: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(Path(source).name, refresh=False)

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Sources:
    """The file each object in flight came from, so a failure names its file.

    Keyed by (id, version), as the server's status reports objects; when one
    run holds the same version in several files, a failure names them all.
    """

    def __init__(self) -> None:
        self._by_version: dict[tuple[str, str], list[str]] = {}

    @staticmethod
    def _key(stix_id: object, version: object) -> tuple[str, str]:
        return (str(stix_id or ""), str(version or ""))

    def remember(self, obj: dict, source: str) -> None:
        self._by_version.setdefault(self._key(obj.get("id"), version_stamp(obj)), []).append(source)

    def name(self, stix_id: object, version: object) -> str:
        return " or ".join(dict.fromkeys(self._by_version.get(self._key(stix_id, version), [])))

    def forget(self, objects: Iterable[dict]) -> None:
        for obj in objects:
            key = self._key(obj.get("id"), version_stamp(obj))
            remaining = self._by_version.get(key, [])[1:]
            if remaining:
                self._by_version[key] = remaining
            else:
                self._by_version.pop(key, None)


def _describe_invalid(source: str, obj: object, reason: str) -> dict:
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return {
        "source": source,
        "id": object_id if isinstance(object_id, str) else "",
        "message": reason,
    }


def _valid_objects(
    paths: tuple[str, ...],
    summary: PublishSummary,
    *,
    marking: Marking | None = None,
    sources: _Sources | None = None,
    progress: _Progress | None = None,
) -> Iterator[dict]:
    """The valid objects of ``paths`` (marked as asked); the others go to the summary."""
    from node.bundles import iter_objects
    from node.marking import marked
    from node.validation import object_problem

    for source, obj in iter_objects(paths):
        if progress is not None:
            progress.at(source)
        if marking is not None:
            obj = marked(obj, marking)
        problem = object_problem(obj)
        if problem is None:
            assert isinstance(obj, dict)
            if sources is not None:
                sources.remember(obj, source)
            yield obj
            continue
        summary.invalid.append(_describe_invalid(source, obj, problem))
        if progress is not None:
            progress.advance(1)


def _failures_not_held(
    client: TaxiiClient, collection_id: str, sent: list[dict], status: dict
) -> tuple[list[dict], int]:
    """The status's failures less versions the server holds exactly as sent, and how
    many those are (already present), checked by reading them back as the push worker
    does (``node.client.not_already_held``): medallion 3.0.0 answers a version it
    holds with "Unable to process object", and a bundle published twice is no failure."""
    failures = status.get("failures") or []
    if not failures:
        return failures, 0
    from node.client import as_sent, not_already_held

    kept, held = not_already_held(client, collection_id, sent, as_sent(sent, failures))
    return kept, len(held)


def _record_status(
    status: dict,
    failures: list[dict],
    sent: list[dict],
    summary: PublishSummary,
    sources: _Sources,
) -> None:
    """Count an envelope's status into the summary: what it stored, what it held
    already, what it refused (``failures``: the status's, less those found held as
    sent), and what it does not account for (``node.client.unaccounted_objects``)."""
    from node.client import unaccounted_objects  # (loaded by the POST already)

    successes = status.get("successes") or []
    already = sum(1 for s in successes if "already" in str(s.get("message", "")).lower())
    unaccounted = unaccounted_objects(sent, status)
    # Successes may be counted and not listed (the lists are optional, 4.3.1): those
    # are posted, unless some object is unaccounted for (it may be one of them).
    unlisted = 0 if unaccounted else max(0, _count_of(status, "success_count") - len(successes))
    summary.already_present += already
    summary.posted += len(successes) - already + unlisted
    for failure in failures:
        source = sources.name(failure.get("id"), failure.get("version"))
        summary.failed.append({"source": source, **failure})
    for obj in unaccounted:
        summary.failed.append({
            "source": sources.name(obj.get("id"), version_stamp(obj)),
            "id": obj.get("id", ""),
            "version": version_stamp(obj),
            "message": f"not in the server's status {status.get('id', '')} as stored or "
            f"refused (of the envelope's {len(sent)} objects): it may not be stored "
            "(publish it again to know)",
        })  # fmt: skip


def _count_of(status: dict, name: str) -> int:
    value = status.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--dry-run", is_flag=True, help="Validate only; post nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--tlp",
    metavar="LEVEL",
    help="Mark objects that carry no TLP marking with this TLP 2.0 level "
    "(clear, green, amber, amber+strict, red).",
)
@click.option(
    "--created-by",
    metavar="IDENTITY",
    help="Set created_by_ref to this identity id on objects that have none.",
)
@server_options
@pass_node
@click.pass_context
def publish(ctx, node, paths, collection, dry_run, as_json, tlp, created_by, **options):
    """Publish STIX 2.1 bundles (files, directories, or - for stdin) to a collection.

    Objects are validated locally first, with the server's rules; invalid ones
    are listed with their file and not sent.  Envelopes are sized to the
    server's max_content_length and each status is followed to completion.
    --tlp and --created-by mark objects at publication (a version the server
    already holds unmarked then conflicts: it is another object under the same
    id and modified).  A version the server refuses and, read back, turns
    out to hold exactly as sent (medallion's answer to a bundle published
    twice) is already present.  An object the server's status neither
    stores nor refuses fails: it may not be stored.  Exit code: 0 all posted
    or already present, 1 some objects failed, 2 usage or connection error.

    \b
    Example:
      export TAXII_NODE_PASSWORD=...
      taxii-node publish --url http://127.0.0.1:6001/ --user alice \\
          --collection shared examples/bundle.json
      taxii-node publish --url http://127.0.0.1:6001/ --user alice \\
          --collection shared --tlp green reports/*.json
    """
    from node.bundles import BundleError

    server = ServerOptions.of(options)
    marking = _marking(tlp, created_by)
    summary = PublishSummary()
    try:
        if dry_run:
            count = sum(1 for _ in _valid_objects(paths, summary, marking=marking))
            _print_dry_run(count, summary, as_json)
            ctx.exit(0 if summary.ok else EXIT_FAILURES)
        client = _client(node, server)
        try:
            _publish(client, collection, paths, summary, marking)
        finally:
            client.close()
    except BundleError as exc:
        raise CommandError(str(exc)) from None
    _print_summary(summary, as_json, marked=marking is not None)
    ctx.exit(0 if summary.ok else EXIT_FAILURES)


def _publish(
    client: TaxiiClient,
    collection: str,
    paths: tuple[str, ...],
    summary: PublishSummary,
    marking: Marking | None,
) -> None:
    from node.client import split_envelopes

    sources = _Sources()

    def oversized(obj: dict, size: int) -> None:
        summary.failed.append(
            {
                "source": sources.name(obj.get("id"), version_stamp(obj)),
                "id": obj.get("id", ""),
                "message": f"{size} bytes: larger than the server's max_content_length "
                f"({max_bytes})",
            }
        )
        progress.advance(1)

    try:
        collection_id = _collection(client, collection)
        max_bytes = client.max_content_length()
        progress = _Progress(paths)
        try:
            valid = _valid_objects(
                paths, summary, marking=marking, sources=sources, progress=progress
            )
            for envelope in split_envelopes(valid, max_bytes, on_oversized=oversized):
                status = client.post_serialized(collection_id, [text for _, text in envelope])
                sent = [obj for obj, _ in envelope]
                failures, held = _failures_not_held(client, collection_id, sent, status)
                _record_status(status, failures, sent, summary, sources)
                summary.already_present += held
                sources.forget(obj for obj, _ in envelope)
                progress.advance(len(envelope))
        finally:
            progress.close()
    except RemoteError as exc:
        raise _remote_problem(exc) from None


def _print_dry_run(count: int, summary: PublishSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"valid": count, "invalid": summary.invalid}))
        return
    for item in summary.invalid:
        click.echo(f"INVALID {item['source']}: {item['id'] or '(no id)'}: {item['message']}")
    click.echo(f"{count} valid, {len(summary.invalid)} invalid (dry run: nothing posted)")


def _print_summary(summary: PublishSummary, as_json: bool, marked: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    for item in summary.invalid:
        click.echo(f"INVALID {item['source']}: {item['id'] or '(no id)'}: {item['message']}")
    for item in summary.failed:
        where = f"{item['source']}: " if item.get("source") else ""
        version = f" {item['version']}" if item.get("version") else ""
        click.echo(f"FAILED  {where}{item.get('id', '')}{version}: {item.get('message', '')}")
    if summary.conflicts:
        click.echo(
            f"note: {summary.conflicts} object(s) conflict: the server already holds a "
            "different object under the same id and version (modified). STIX versions never "
            "change (STIX 2.1 3.6): a changed object needs a later 'modified'. Ask its "
            "producer for a corrected release, or keep the version the server holds."
            + (" (--tlp and --created-by change the objects they mark: versions the server "
               "holds without them conflict.)" if marked else "")
        )  # fmt: skip
    click.echo(
        f"posted {summary.posted}, already present {summary.already_present}, "
        f"failed {len(summary.failed) + len(summary.invalid)}"
    )


# -- collections --------------------------------------------------------------


@click.command("collections")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@server_options
@pass_node
def collections_command(node, as_json, **options):
    """List collections with id, alias, title, permissions and object counts.

    \b
    Example:
      taxii-node collections --url http://127.0.0.1:6001/ --user alice
    """
    client = _client(node, ServerOptions.of(options))
    try:
        rows = []
        for collection in client.collections():
            count = _count(client, collection) if collection.get("can_read") else None
            rows.append({**collection, "objects": count})
    except RemoteError as exc:
        raise _remote_problem(exc) from None
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        rights = ("r" if row.get("can_read") else "-") + ("w" if row.get("can_write") else "-")
        count = "?" if row["objects"] is None else row["objects"]
        alias = row.get("alias") or "-"
        click.echo(f"{row['id']}  {alias:<16} {rights}  {count:>8}  {row.get('title', '')}")


def _count(client: TaxiiClient, collection: dict) -> int:
    """Objects (latest versions) in a collection, by paging its manifest."""
    pages = client.pages(collection["id"], {"limit": _PAGE_LIMIT}, endpoint="manifest")
    return sum(len(page.objects) for page in pages)


# -- get and watch --------------------------------------------------------------


def _filters(types, ids, added_after, version) -> dict:
    params: dict[str, str] = {"limit": _PAGE_LIMIT}
    if types:
        for warning in _unknown_types(types):
            warn(warning)
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


def _unknown_types(types: Iterable[str]) -> Iterator[str]:
    """A warning for each --type that STIX 2.1 does not define (custom x- types aside)."""
    import difflib

    from node.validation import STIX_TYPES

    for name in types:
        if name in STIX_TYPES or name.startswith("x-"):
            continue
        close = difflib.get_close_matches(name, sorted(STIX_TYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        yield f"--type {name!r} is not a STIX 2.1 object type{hint}; matching it anyway"


@click.command()
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--type", "types", multiple=True, metavar="T",
              help="Only objects of this STIX type (repeat for several).")  # fmt: skip
@click.option("--id", "ids", multiple=True, metavar="ID",
              help="Only this object id (repeat for several).")  # fmt: skip
@click.option("--added-after", metavar="TIME", help="Only objects added after TIME.")
@click.option("--version", type=click.Choice(["first", "last", "all"]), help="Versions to get.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@server_options
@pass_node
def get(node, collection, types, ids, added_after, version, output, **options):
    """Fetch objects (following every page) and write one STIX 2.1 bundle.

    With -o the bundle is written to a temporary file renamed at the end (a
    failure leaves no half bundle), and the number of objects is printed.  A
    server whose pages cannot be followed to the end (more: true without a
    next token, nor a date header to page on by added_after) is an error, exit
    code 2, never a bundle of its first pages.

    \b
    Example:
      taxii-node get --url http://127.0.0.1:6001/ --user alice \\
          --collection shared --type indicator -o indicators.json
    """
    params = _filters(types, ids, added_after, version)
    client = _client(node, ServerOptions.of(options))
    try:
        collection_id = _collection(client, collection)
        pages = client.pages(collection_id, params)
        if output is None:
            _write_bundle(sys.stdout, pages)
            return
        count = _write_bundle_file(Path(output), pages)
    except RemoteError as exc:
        raise _remote_problem(exc) from None
    finally:
        client.close()
    click.echo(f"wrote {count} object{'s' if count != 1 else ''} to {output}", err=True)


def _write_bundle(handle, pages) -> int:
    """Write one bundle of every object of ``pages``; return how many."""
    handle.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [')
    count = 0
    for page in pages:
        for obj in page.objects:
            handle.write(("," if count else "") + "\n" + json.dumps(obj))
            count += 1
    handle.write("\n]}\n")
    return count


def _write_bundle_file(output: Path, pages) -> int:
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w") as handle:
            count = _write_bundle(handle, pages)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return count


@click.command()
@click.option("--collection", "-c", required=True, metavar="C", help="Collection id or alias.")
@click.option("--since", metavar="TIME", help="Start after this date_added (default: all).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="Resume from and record the position in this file.")  # fmt: skip
@click.option("--interval", default=5.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Stop when caught up instead of polling forever.")
@server_options
@pass_node
def watch(node, collection, since, state_file, interval, once, **options):
    """Subscribe: print each new object as one JSON line, until interrupted.

    Polls with added_after from the server's X-TAXII-Date-Added-Last, so
    nothing is missed; with --state it resumes after a restart.  Delivery is
    at least once: after a poll that did not end (Ctrl-C, kill, a server
    error), a restart prints again the objects added at the instant of the
    last ones printed (medallion gives every object of one POST the same
    date_added), so a consumer should take each id and modified once.

    \b
    Example:
      taxii-node watch --url http://127.0.0.1:6001/ --user alice \\
          --collection shared --state var/shared.watch | my-ingester
    """
    position = _starting_position(state_file, since)
    client = _client(node, ServerOptions.of(options))
    try:
        collection_id = _collection(client, collection)
        save = (lambda p: _save_position(state_file, p)) if state_file else (lambda p: None)
        while True:
            position = _poll(client, collection_id, position, save)
            if once:
                return
            time.sleep(interval)
    except RemoteError as exc:
        raise _remote_problem(exc) from None
    except KeyboardInterrupt:
        return
    finally:
        client.close()


def _starting_position(state_file: str | None, since: str | None) -> str | None:
    """The position in ``state_file``, else --since; an error for one that is not a
    timestamp (sent as added_after, it would be refused or read as anything)."""
    saved = _load_position(state_file)
    position, source = (saved, f"--state {state_file}") if saved else (since, "--since")
    if position and not is_timestamp(position):
        raise CommandError(f"{source}: {position!r} is not an RFC 3339 timestamp")
    return position


def _poll(
    client: TaxiiClient, collection_id: str, position: str | None, save: Callable[[str], None]
) -> str | None:
    """Print everything added after ``position``; return the new position.

    Pages are followed with ``next`` rather than by moving ``added_after``
    page by page: servers such as medallion give every object of one POST the
    same date_added, and ``added_after`` would skip the rest of such a group.
    After each page is printed, the position is saved where a restart misses
    nothing (``_resume_point``).
    """
    params: dict[str, str | None] = {"match[version]": "all", "limit": _PAGE_LIMIT}
    if position:
        params["added_after"] = position
    last_printed: str | None = None
    for page in client.pages(collection_id, params):
        _print_objects(page.objects)
        if page.objects and page.date_added_last:
            last_printed = page.date_added_last
        resume = _resume_point(last_printed, complete=not page.more)
        if resume is not None and _is_later(resume, position):
            position = resume
            save(position)
    return position


def _print_objects(objects: list[dict]) -> None:
    """One JSON line per object, flushed: the position saved next covers them."""
    for obj in objects:
        click.echo(json.dumps(obj))
    sys.stdout.flush()


def _resume_point(last_printed: str | None, *, complete: bool) -> str | None:
    """The added_after from which a restart misses nothing, given the date_added of the
    last object printed: that date_added once the poll is complete; before, just
    before it, as the sync worker's pull cursor (``node.sync.pull.just_before``).

    Servers serve in date_added order, so everything added before it is printed;
    not everything added at it: a page may end inside a group of objects that share
    one date_added (medallion 3.0.0 gives a whole POST one), and added_after keeps
    only what was added strictly after (TAXII 2.1 section 3.4.1).  Resuming just
    before prints that group again: the only objects a restart repeats.
    """
    if last_printed is None or complete:
        return last_printed
    from node.timestamps import just_before

    return just_before(last_printed)


def _is_later(candidate: str, position: str | None) -> bool:
    """Whether ``candidate`` is a position past ``position`` (it never moves back)."""
    return position is None or to_micros(candidate) > to_micros(position)


def _load_position(state_file: str | None) -> str | None:
    if not state_file or not Path(state_file).exists():
        return None
    value = Path(state_file).read_text().strip()
    return value or None


def _save_position(state_file: str, position: str) -> None:
    """Write ``position`` to ``state_file`` whole or not at all: a temporary file,
    synced, renamed over it (a kill or a power cut leaves the old position or the new,
    never a truncated one that would restart from the beginning or fail)."""
    path = Path(state_file)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w") as handle:
        handle.write(position + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
