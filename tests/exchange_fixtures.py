"""In-process stores and objects for the release, quarantine and recall tests."""

from __future__ import annotations

import uuid
from typing import Any

from node.store import Store, accounts, objects
from node.store.catalog import Collection
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.conftest import migrated_store

COLLECTION = "4c3f3b1e-0000-4000-8000-0000000000a1"
ALIAS = "shared"


def open_store(store_url: str | None, path) -> Store:
    return migrated_store(store_url, path, Collection(id=COLLECTION, alias=ALIAS, title="Shared"))


def indicator(
    *,
    tlp: TLP = TLP.GREEN,
    labels: tuple[str, ...] = (),
    modified: str = "2026-01-01T00:00:00.000Z",
    object_id: str | None = None,
    name: str = "bad host",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id or f"indicator--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": modified,
        "name": name,
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "object_marking_refs": [TLP2_MARKING_IDS[tlp]],
    }
    if labels:
        obj["labels"] = list(labels)
    return obj


def report(refs: list[str], *, tlp: TLP = TLP.GREEN) -> dict[str, Any]:
    return {
        "type": "report",
        "spec_version": "2.1",
        "id": f"report--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "campaign report",
        "published": "2026-01-01T00:00:00Z",
        "object_refs": refs,
        "object_marking_refs": [TLP2_MARKING_IDS[tlp]],
    }


def publish(store: Store, items: list[dict[str, Any]], account: str, origin: str | None = None):
    """Store ``items`` as published by ``account`` (or received from ``origin``)."""
    with store.write() as connection:
        publisher = account if origin is None else None
        outcome = objects.add_objects(connection, COLLECTION, items, origin, publisher)
        assert not outcome.failures, outcome.failures
    return outcome


def add_account(store: Store, name: str, password: str = "password-123", **kwargs) -> None:
    with store.write() as connection:
        accounts.add_user(connection, name, password, **kwargs)
