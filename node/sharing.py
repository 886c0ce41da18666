"""Sharing agreements: the config's peer mappings, bound to local collections and policies.

The same agreement governs both ways an object can leave this node: pushed by
our worker, or read by the partner's sync account over TAXII (so that pulling
cannot bypass egress policy); and both ways one can arrive: pulled by our
worker, or pushed by the partner to our API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from node import jsoncodec
from node.config import Config, ConfigError, MappingConfig, PeerConfig
from node.policy import Decision, Policy, Rules
from node.store import Store, catalog, objects
from node.store.audit import AuditRecord
from node.tlp import tlp_marking_definitions

Fetch = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class Agreement:
    """One mapping of one peer, with its local collection id and parsed policies."""

    peer: PeerConfig
    mapping: MappingConfig
    collection_id: str
    egress: Rules
    ingress: Rules


class Agreements:
    """All mappings of a node's config, looked up by (peer, local collection id)."""

    def __init__(self, config: Config, store: Store) -> None:
        self._by_key: dict[tuple[str, str], Agreement] = {}
        self._strict_egress = Rules.from_config({}, direction="egress", where="(default)")
        self._default_ingress = Rules.from_config({}, direction="ingress", where="(default)")
        with store.read() as connection:
            for peer in config.peers:
                for mapping in peer.mappings:
                    agreement = _agreement(connection, peer, mapping)
                    key = (peer.name, agreement.collection_id)
                    if key in self._by_key:
                        raise ConfigError(
                            f"{mapping.where}: collection {mapping.local!r} is already mapped "
                            f"for peer {peer.name!r}; one mapping per local collection and "
                            'peer (use direction = "both" to push and pull)'
                        )
                    self._by_key[key] = agreement

    def __iter__(self) -> Iterator[Agreement]:
        return iter(self._by_key.values())

    def find(self, peer: str, collection_id: str) -> Agreement | None:
        return self._by_key.get((peer, collection_id))

    def egress_rules(self, peer: str, collection_id: str) -> Rules:
        """The mapping's egress rules; the strict defaults when nothing maps the collection."""
        agreement = self.find(peer, collection_id)
        return agreement.egress if agreement else self._strict_egress

    def ingress_rules(self, peer: str, collection_id: str) -> Rules:
        agreement = self.find(peer, collection_id)
        return agreement.ingress if agreement else self._default_ingress


def _agreement(connection: Connection, peer: PeerConfig, mapping: MappingConfig) -> Agreement:
    collection = catalog.find(connection, mapping.local)
    if collection is None:
        raise ConfigError(
            f"{mapping.where} local: no collection {mapping.local!r} in the store "
            "(check collections/ and run 'taxii-node init')"
        )
    return Agreement(
        peer=peer,
        mapping=mapping,
        collection_id=collection.id,
        egress=Rules.from_config(
            mapping.egress, direction="egress", where=f"{mapping.where}.egress"
        ),
        ingress=Rules.from_config(
            mapping.ingress, direction="ingress", where=f"{mapping.where}.ingress"
        ),
    )


def local_resolver(
    connection: Connection, collection_id: str, exclude_origin: str | None = None
) -> Fetch:
    """Looks up the latest version of referenced objects in one local collection.

    With ``exclude_origin``, versions that came from that peer are not found:
    dependencies fetched to send to a peer must not echo its own objects back.
    """
    builtin = {obj["id"]: obj for obj in tlp_marking_definitions()}

    def resolve(object_id: str) -> dict[str, Any] | None:
        found = objects.latest(connection, collection_id, object_id, exclude_origin)
        return found if found is not None else builtin.get(object_id)

    return resolve


def egress(
    policy: Policy,
    batch: Iterable[dict[str, Any]],
    fetch: Fetch,
    already_sent: set[str] | None = None,
) -> tuple[list[dict[str, Any]], list[Decision]]:
    """What to send for ``batch``: allowed objects plus the dependencies they need.

    Returns (objects to send, every decision made, dependencies included).
    ``already_sent`` lets a worker skip dependencies sent earlier in the round.
    """
    decisions = policy.apply(batch)
    to_send = [d.obj for d in decisions if d.allowed and d.obj is not None]
    for dependency_id in sorted(policy.dependencies(decisions)):
        if already_sent is not None and dependency_id in already_sent:
            continue
        dependency = fetch(dependency_id)
        if dependency is None:
            continue
        decision = policy.decide_dependency(dependency)
        decisions.append(decision)
        if decision.allowed and decision.obj is not None:
            to_send.append(decision.obj)
    if already_sent is not None:
        already_sent.update(d.object_id for d in decisions if d.allowed)
    return to_send, decisions


def decision_records(
    peer: str,
    collection_id: str,
    direction: str,
    decisions: Iterable[Decision],
    allowed_action: str,
    failures: Iterable[dict[str, Any]] = (),
) -> list[AuditRecord]:
    """One audit record per decision: ``allowed_action`` (sent, received,
    served), withheld with its rule, or dead-letter when the receiving side
    refused the version (a failure for its id and version)."""
    refused = {(f.get("id"), f.get("version")): f.get("message") for f in failures}
    records = []
    for d in decisions:
        key = (d.object_id, d.version or None)
        if d.allowed and key in refused:
            action, detail = "dead-letter", str(refused[key])
        else:
            action, detail = (allowed_action if d.allowed else "withheld"), d.detail
        records.append(
            AuditRecord(
                action=action,
                direction=direction,
                object_id=d.object_id,
                version=d.version or None,
                peer=peer,
                collection_id=collection_id,
                rule=str(d.rule),
                detail=detail,
            )
        )
    return records


def serialized(obj: dict[str, Any]) -> str:
    return jsoncodec.dumps(obj)
