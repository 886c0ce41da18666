"""Shared plumbing for CLI commands: config loading, store access and one-line errors.

Expected problems are the node's own exceptions (``node.errors``: a bad config,
a missing account, a server that is down), click's usage errors and the
commands' ``CommandError``: each is printed as one ``error: ...`` line on
stderr, with exit code 2.  Anything else is a bug and keeps its traceback.
Nothing heavy is imported here: the client commands must start quickly.
"""

from __future__ import annotations

import getpass
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from node.errors import NodeError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from node.config import Config
    from node.store import Store

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
# node.store.schema.MAX_STORE_INTEGER, the largest number a store column holds (not
# imported: the client commands start without loading the store).
MAX_STORE_INTEGER = 2**63 - 1


class CommandError(click.ClickException):
    """An expected failure: one ``error:`` line for the user, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class StoreNumber(click.ParamType):
    """A whole number the store can hold (an entry, a dead letter's id, a limit), from
    ``low`` up: a larger one names nothing stored, and binding it would fail in the
    database driver (OverflowError) instead of saying so.

    ``taxii-node sync retry`` and ``sync skip`` want it for their ids too:
    ``click.argument("ids", nargs=-1, type=ENTRY_NUMBER)``.
    """

    name = "integer"

    def __init__(self, low: int = 1) -> None:
        self.low = low

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if not self.low <= number <= MAX_STORE_INTEGER:
            self.fail(
                f"{number} is not a number from {self.low} to {MAX_STORE_INTEGER}", param, ctx
            )
        return number


ENTRY_NUMBER = StoreNumber(1)
COUNT_OR_ZERO = StoreNumber(0)


def warn(message: str) -> None:
    """A warning line on stderr, spelled like the error lines."""
    click.echo(f"warning: {message}", err=True)


def cli_actor() -> str:
    """Who acts, in audit records of changes made from the command line: the OS user."""
    return f"cli:{getpass.getuser()}"


@dataclass
class NodeContext:
    config_path: str | None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from node.config import load_config

            if not self.config_path:
                raise CommandError("no config: pass --config FILE or set TAXII_NODE_CONFIG")
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        from node.store import Store

        return Store(self.config().store_url)

    @contextmanager
    def opened(self) -> Iterator[Store]:
        """The node's (initialised) store, closed afterwards."""
        store = self.ready_store()
        try:
            yield store
        finally:
            store.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction on the node's (initialised) store, closed afterwards."""
        with self.opened() as store, store.read() as connection:
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction on the node's (initialised) store, closed afterwards."""
        with self.opened() as store, store.write() as connection:
            yield connection

    def ready_store(self) -> Store:
        """The store, initialised and current; a SQLite file that does not exist
        is refused, not created (a read-only command must not make a store)."""
        from node.store.engine import missing_sqlite_file

        missing = missing_sqlite_file(self.config().store_url)
        if missing is not None:
            raise CommandError(
                f"the store {missing} does not exist yet: "
                f"run 'taxii-node --config {self.config_path} init'"
            )
        store = self.store()
        if not store.is_current():
            store.close()
            raise CommandError(
                f"the store is not initialised or needs migrating: "
                f"run 'taxii-node --config {self.config_path} init'"
            )
        return store


def run_guarded(
    command: click.Group, args: Sequence[str] | None = None, prog_name: str | None = None
) -> int:
    """Run the CLI on ``args`` (default: the process's arguments), turning expected
    errors into one-line messages; the exit code."""
    debug = "--debug" in (sys.argv[1:] if args is None else args)
    try:
        # Without standalone mode click *returns* the code of ``ctx.exit(code)``
        # instead of raising it: pass it on, or exit 1 would become 0.
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        if exc.ctx is not None and exc.format_message() == exc.ctx.get_help():
            click.echo(exc.format_message())  # a group run without a command: its help
            return EXIT_USAGE
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _report(f"error: {exc.format_message()}{where}", debug)
    except click.ClickException as exc:  # CommandError, and click's own (files, for one)
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except NodeError as exc:
        return _report(f"error: {exc}", debug)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_store_error(exc):
            raise
        return _report(f"error: the store failed: {str(exc).splitlines()[0]}", debug)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return EXIT_OK


def _is_store_error(exc: Exception) -> bool:
    """A database error (unreachable server, locked file): the operator's to fix."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)


def _report(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    click.echo(message, err=True)
    return EXIT_USAGE
