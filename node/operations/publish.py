"""Publishing objects into a local collection (the console's Publish page).

The objects go through the same validator and the same storage as a TAXII
POST (``objects.prepare`` and ``store_prepared``): per-object successes and
failures, one transaction, one status resource, one audit record.  Before
that, objects without a TLP marking may get one, and objects without an
author may get ``created_by_ref`` (STIX 2.1 section 3.2: only objects with
``created``, SDOs, SROs and marking definitions, carry it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from node import jsoncodec
from node.store import Store, audit, objects, statuses
from node.store.audit import AuditRecord
from node.timestamps import now_micros
from node.tlp import TLP, TLP2_MARKING_IDS, tlp_of

_IDENTITY_ID = re.compile(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class PublishError(ValueError):
    """The upload as a whole cannot be published; the message says why."""


@dataclass(frozen=True)
class Marking:
    """What to add to objects that lack it; None adds nothing."""

    tlp: TLP | None = None
    created_by_ref: str | None = None

    def __post_init__(self) -> None:
        if self.created_by_ref is not None and not _IDENTITY_ID.fullmatch(self.created_by_ref):
            raise PublishError(
                f"created_by_ref {self.created_by_ref[:80]!r} is not an identity id "
                "(identity--<UUID>)"
            )


def objects_of(document: object) -> list:
    """The objects of a STIX bundle, of a JSON list of objects, or the one object given."""
    if isinstance(document, dict) and document.get("type") == "bundle":
        items = document.get("objects", [])
        if not isinstance(items, list):
            raise PublishError("the bundle's 'objects' is not a list")
        return items
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    raise PublishError("expected a STIX bundle, a list of objects or one object")


def parse_upload(data: bytes, max_objects: int) -> list:
    try:
        document = jsoncodec.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PublishError(f"the file is not valid JSON: {str(exc)[:200]}") from None
    items = objects_of(document)
    if len(items) > max_objects:
        raise PublishError(f"{len(items)} objects; at most {max_objects} at a time")
    return items


def with_marking(items: Sequence[object], marking: Marking) -> list:
    """Copies of ``items`` with the TLP marking and author added where they have none."""
    marked = []
    for item in items:
        if not isinstance(item, dict):
            marked.append(item)
            continue
        copy = dict(item)
        if (marking.tlp is not None and item.get("type") != "marking-definition"
                and tlp_of(item) is None):  # fmt: skip
            refs = list(item.get("object_marking_refs") or [])
            copy["object_marking_refs"] = [*refs, TLP2_MARKING_IDS[marking.tlp]]
        if marking.created_by_ref and "created" in item and "created_by_ref" not in item:
            copy["created_by_ref"] = marking.created_by_ref
        marked.append(copy)
    return marked


def publish(store: Store, collection_id: str, items: Sequence[object], actor: str) -> dict:
    """Validate and store ``items``; the status resource (TAXII 2.1 section 4.3.1)."""
    prepared = objects.prepare(items)
    request_timestamp = now_micros()
    with store.write() as connection:
        outcome = objects.store_prepared(connection, collection_id, prepared)
        resource = statuses.record(
            connection, collection_id, request_timestamp, outcome.successes, outcome.failures
        )
        audit.record(
            connection,
            [
                AuditRecord(
                    action="published",
                    direction="local",
                    actor=actor,
                    collection_id=collection_id,
                    detail=f"console, status {resource['id']}: {len(outcome.stored)} new, "
                    f"{len(outcome.successes) - len(outcome.stored)} already present, "
                    f"{len(outcome.failures)} failed",
                )
            ],
        )
    return resource
