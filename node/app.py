"""The application factory: one Flask app per node, no module-level app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from node.config import Config
from node.console import register_console
from node.metrics import multiprocess_directory, register_metrics
from node.sharing import Agreements
from node.store import Store
from node.store.audit import AuditQueue
from node.taxii.auth import Authenticator
from node.taxii.errors import register_error_handlers
from node.taxii.pagination import TokenSigner
from node.taxii.priority import (
    ACROSS_PROCESSES,
    PUBLICATIONS_FILE,
    OtherProcesses,
    PublishersFirst,
)
from node.taxii.state import EXTENSION, CollectionCache, NodeState
from node.taxii.views import blueprint

log = logging.getLogger(__name__)


class NodeFlask(Flask):
    """Flask, deciding once per function whether a view or hook is ``async def``.

    Flask asks ``inspect.iscoroutinefunction`` of the view and of every
    before- and after-request hook on every request (``ensure_sync``), five
    times for a GET; the answer never changes for a function, so it is kept.
    Functions registered for one request (``after_this_request``) are not
    kept once ``_MAX_KEPT`` are, so the table stays bounded.
    """

    _MAX_KEPT = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synchronous: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._synchronous[func]
        except KeyError:
            pass
        except TypeError:  # an unhashable callable: ask every time, as Flask does
            return super().ensure_sync(func)
        synchronous = super().ensure_sync(func)
        if len(self._synchronous) < self._MAX_KEPT:
            self._synchronous[func] = synchronous
        return synchronous


def _publishers_first() -> PublishersFirst:
    """One gate for the worker processes of a ``serve``, through the directory it
    gives them (``serve``, on Linux); a gate of this process alone otherwise."""
    directory = multiprocess_directory()
    if directory is None or not ACROSS_PROCESSES:
        return PublishersFirst()
    return PublishersFirst(others=OtherProcesses(Path(directory) / PUBLICATIONS_FILE))


class StoreNotReady(RuntimeError):
    """The store has not been initialised, or needs migrating: run ``taxii-node init``."""


def create_app(config: Config, store: Store | None = None) -> Flask:
    """A WSGI app serving TAXII 2.1 for ``config``.

    The store must already be initialised (``taxii-node init``): serving from
    a store with an older schema would fail in the middle of requests.
    """
    store = store or Store(config.store_url)
    if not store.is_current():
        raise StoreNotReady(
            f"the store {store.engine.url!r} is not initialised or needs migrating: "
            f"run 'taxii-node --config {config.path} init'"
        )
    key = store.setting("pagination_key")
    app = NodeFlask("node")
    queued_audit = AuditQueue(store)  # partner reads and logins: no write in the request
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = True
    app.extensions[EXTENSION] = NodeState(
        config=config,
        store=store,
        signer=TokenSigner(bytes.fromhex(key or "")),
        authenticator=Authenticator(
            store, logins=queued_audit, ttl=config.server.auth_cache_seconds
        ),
        agreements=Agreements(config, store),
        collections=CollectionCache(store, ttl=config.server.auth_cache_seconds),
        read_audit=queued_audit,
        publishers_first=_publishers_first(),
    )
    register_error_handlers(app)
    register_metrics(app, config, store)
    app.register_blueprint(blueprint)
    register_console(app, config, store)
    return app
