"""Shared plumbing for CLI commands: config loading and friendly errors."""

from __future__ import annotations

import getpass
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import click
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from node.config import Config, ConfigError, load_config
from node.store import Store, audit
from node.store.audit import AuditRecord

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class CommandError(click.ClickException):
    """An expected failure: one line for the user, exit code 2."""

    exit_code = EXIT_USAGE


@dataclass
class NodeContext:
    config_path: str | None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            if not self.config_path:
                raise CommandError("no config: pass --config FILE or set TAXII_NODE_CONFIG")
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        return Store(self.config().store_url)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction on the node's (initialised) store, closed afterwards."""
        store = self.ready_store()
        try:
            with store.read() as connection:
                yield connection
        finally:
            store.close()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction on the node's (initialised) store, closed afterwards."""
        store = self.ready_store()
        try:
            with store.write() as connection:
                yield connection
        finally:
            store.close()

    def ready_store(self) -> Store:
        store = self.store()
        if not store.is_current():
            raise CommandError(
                f"the store is not initialised or needs migrating: "
                f"run 'taxii-node --config {self.config_path} init'"
            )
        return store


def admin_audit(connection, action: str, subject: str, detail: str = "") -> None:
    """Record an account change made from the command line, by whom (the OS user)."""
    actor = f"cli:{getpass.getuser()}"
    audit.record(
        connection,
        [
            AuditRecord(
                action=action,
                direction="admin",
                actor=actor,
                object_id=subject,
                detail=detail or None,
            )
        ],
    )


def run_guarded(command: click.Group) -> int:
    """Run the CLI, turning expected errors into one-line messages."""
    debug = "--debug" in sys.argv
    try:
        # Without standalone mode click *returns* the code of ``ctx.exit(code)``
        # instead of raising it: pass it on, or exit 1 would become 0.
        code = command.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (ConfigError, ValueError) as exc:
        return _report(f"error: {exc}", debug)
    except SQLAlchemyError as exc:
        return _report(f"store error: {str(exc).splitlines()[0]}", debug)
    except KeyboardInterrupt:
        return 130
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return EXIT_OK


def _report(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    click.echo(message, err=True)
    return EXIT_USAGE
