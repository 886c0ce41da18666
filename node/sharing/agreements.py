"""Sharing agreements: the config's peer mappings, bound to local collections and policies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from sqlalchemy import Connection

from node.config import Config, ConfigError, Flow, MappingConfig, PeerConfig
from node.policy import Rules
from node.store import Store, catalog, provenance


@dataclass(frozen=True)
class Agreement:
    """One mapping of one peer, with its local collection id and parsed policies."""

    peer: PeerConfig
    mapping: MappingConfig
    collection_id: str
    egress: Rules
    ingress: Rules
    # Whether some peer's ingress on this collection accepts foreign versions, or ever
    # did (``provenance.note_foreign_versions``), so that one object may hold versions
    # of several origins (see egress's "last").
    foreign_versions: bool = False


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
            mixed = provenance.collections_with_foreign_versions(connection)
        mixed |= {a.collection_id for a in self._by_key.values()
                  if a.ingress.accept_foreign_versions}  # fmt: skip
        for key, agreement in self._by_key.items():
            if agreement.collection_id in mixed:
                self._by_key[key] = replace(agreement, foreign_versions=True)

    def __iter__(self) -> Iterator[Agreement]:
        return iter(self._by_key.values())

    def find(self, peer: str, collection_id: str) -> Agreement | None:
        return self._by_key.get((peer, collection_id))

    def for_peer(self, peer: str, collection_id: str) -> Agreement:
        """The mapping of ``peer`` for the collection; for a collection it does not map (which
        the HTTP layer never lets a peer reach), strict egress and default ingress rules."""
        found = self.find(peer, collection_id)
        if found is not None:
            return found
        return Agreement(
            peer=PeerConfig(name=peer, api_root="", user="", mappings=()),
            mapping=MappingConfig(local=collection_id, remote="", direction=Flow.BOTH),
            collection_id=collection_id,
            egress=self._strict_egress,
            ingress=self._default_ingress,
        )


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
