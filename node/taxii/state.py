"""Per-application state of one node, kept in ``app.extensions``.

Nothing lives at module level, so two nodes (two apps with two stores) can run
in one process, as the tests do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from node.config import Config
from node.sharing import Agreements
from node.store import Store

from .auth import Authenticator
from .pagination import TokenSigner

EXTENSION = "taxii_node"


@dataclass
class NodeState:
    config: Config
    store: Store
    signer: TokenSigner
    authenticator: Authenticator
    agreements: Agreements
    last_status_purge: float = field(default=0.0)


def node_state() -> NodeState:
    return current_app.extensions[EXTENSION]
