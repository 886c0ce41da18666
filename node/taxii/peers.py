"""What a partner's sync account sees and may add: sharing policy on the TAXII paths.

A pull by the partner must not bypass this node's egress policy, and a push by
the partner must pass this node's ingress policy, exactly as when this node's
own worker does the pushing and pulling.  Accounts that are not a peer's see
the collection as stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from node import jsoncodec
from node.policy import Policy
from node.sharing import decision_records, egress, local_resolver, serialized
from node.store import audit
from node.store.objects import StoredObject

from .state import current_account, node_state


def peer_name() -> str | None:
    """The peer whose sync account is calling, or None for ordinary accounts."""
    return current_account().peer


def served_bodies(collection_id: str, rows: Sequence[StoredObject]) -> list[str]:
    """JSON texts of the objects the caller may receive, in page order.

    For a peer: the egress policy of its mapping, with redaction, trimmed
    containers and the dependencies (identities, markings) that allowed
    objects need; each decision is audited.
    """
    peer = peer_name()
    if peer is None:
        return [row.body for row in rows]
    state = node_state()
    rules = state.agreements.egress_rules(peer, collection_id)
    with state.store.write() as connection:
        resolve = local_resolver(connection, collection_id)
        dependency = local_resolver(connection, collection_id, exclude_origin=peer)
        to_send, decisions = egress(Policy(rules, resolve), _decoded(rows), dependency)
        audit.record(
            connection, decision_records(peer, collection_id, "serve", decisions, "served")
        )
    return [serialized(obj) for obj in to_send]


def served_rows(collection_id: str, rows: Sequence[StoredObject]) -> list[StoredObject]:
    """The rows (for manifests and version lists) whose objects the caller may see."""
    peer = peer_name()
    if peer is None:
        return list(rows)
    state = node_state()
    rules = state.agreements.egress_rules(peer, collection_id)
    with state.store.read() as connection:
        policy = Policy(rules, local_resolver(connection, collection_id))
        decisions = policy.apply(_decoded(rows))
    return [row for row, d in zip(rows, decisions, strict=False) if d.allowed]


def object_shared(collection_id: str, obj: dict) -> bool:
    """Whether the caller may see ``obj`` (always, unless it is a partner's account)."""
    peer = peer_name()
    if peer is None:
        return True
    state = node_state()
    rules = state.agreements.egress_rules(peer, collection_id)
    with state.store.read() as connection:
        policy = Policy(rules, local_resolver(connection, collection_id))
        return policy.apply([obj])[0].allowed


def accepted_items(collection_id: str, items: list) -> tuple[list, list[dict]]:
    """(objects to store, failures) for a POST; a peer's objects pass ingress policy first."""
    peer = peer_name()
    if peer is None:
        return items, []
    state = node_state()
    rules = state.agreements.ingress_rules(peer, collection_id)
    candidates = [item for item in items if isinstance(item, dict)]
    malformed = [item for item in items if not isinstance(item, dict)]
    with state.store.read() as connection:
        decisions = Policy(rules, local_resolver(connection, collection_id)).apply(candidates)
    accepted = malformed + [d.obj for d in decisions if d.allowed and d.obj is not None]
    refused = [
        {
            "id": d.object_id,
            "version": d.version,
            "message": f"refused by ingress policy ({d.rule}): {d.detail}",
        }
        for d in decisions
        if not d.allowed
    ]
    if refused:
        with state.store.write() as connection:
            records = decision_records(peer, collection_id, "receive", decisions, "received")
            audit.record(connection, [r for r in records if r.action == "withheld"])
    return accepted, refused


def _decoded(rows: Sequence[StoredObject]) -> list[dict]:
    return [jsoncodec.loads(row.body) for row in rows]
