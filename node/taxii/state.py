"""Per-application state of one node, kept in ``app.extensions``.

Nothing lives at module level, so two nodes (two apps with two stores) can run
in one process, as the tests do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flask import current_app, g

from node.config import Config
from node.sharing import Agreements, RecentDeliveries
from node.sharing.egress import DecisionCache
from node.store import Store, catalog
from node.store.accounts import Account
from node.store.audit import AuditQueue
from node.store.catalog import Collection

from .auth import Authenticator
from .pagination import TokenSigner
from .priority import PublishersFirst

EXTENSION = "taxii_node"


class CollectionCache:
    """Collection definitions, re-read from the store at most every ``ttl`` seconds.

    Every request needs its collection; definitions change only with
    ``taxii-node init``, so a read transaction per request for them is waste.
    An id not in the cache triggers a refresh, so a new collection is served
    at once; a changed title or a removed collection shows within ``ttl``.
    """

    def __init__(self, store: Store, ttl: float = 30.0) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._by_id: dict[str, Collection] = {}
        self._by_alias: dict[str, Collection] = {}
        self._ordered: list[Collection] = []
        self._expires = 0.0

    def _refresh(self) -> None:
        with self._store.read() as connection:
            ordered = catalog.all_collections(connection)
        with self._lock:
            self._ordered = ordered
            self._by_id = {c.id: c for c in ordered}
            self._by_alias = {c.alias: c for c in ordered if c.alias}
            self._expires = time.monotonic() + self._ttl

    def all(self) -> list[Collection]:
        if time.monotonic() >= self._expires:
            self._refresh()
        return self._ordered

    def get(self, collection_id: str) -> Collection | None:
        if time.monotonic() >= self._expires or collection_id not in self._by_id:
            self._refresh()
        return self._by_id.get(collection_id)

    def find(self, id_or_alias: str) -> Collection | None:
        """The collection with this id, else the one with this alias (unique in the store)."""
        found = self.get(id_or_alias)
        return found if found is not None else self._by_alias.get(id_or_alias)


@dataclass
class NodeState:
    config: Config
    store: Store
    signer: TokenSigner
    authenticator: Authenticator
    agreements: Agreements
    collections: CollectionCache
    read_audit: AuditQueue  # partner reads, audited without a write lock in the request
    decisions: DecisionCache = field(default_factory=DecisionCache)  # partner reads
    deliveries: RecentDeliveries = field(default_factory=RecentDeliveries)  # partner reads
    last_status_purge: float = field(default=0.0)
    publishers_first: PublishersFirst = field(default_factory=PublishersFirst)


def node_state() -> NodeState:
    state: NodeState = current_app.extensions[EXTENSION]
    return state


def set_current_account(account: Account) -> None:
    """Remember the caller of this request (set before any view runs)."""
    g.account = account


def current_account() -> Account:
    """The authenticated caller of this request.

    Typed access to ``flask.g``: a view that runs without the blueprint's
    authentication hook is a programming error, not an anonymous caller.
    """
    account = signed_in_account()
    if account is None:
        raise RuntimeError("no authenticated account for this request")
    return account


def signed_in_account() -> Account | None:
    """The caller of this request, or None where there may be none: the console's
    sign-in and error pages, and the page layout they share with every other page."""
    account = g.get("account")
    return account if isinstance(account, Account) else None
