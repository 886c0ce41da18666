"""Publishing objects into a local collection (the console's Publish page).

The objects go through the same validator and the same storage as a TAXII
POST (``objects.prepare`` and ``store_prepared``): per-object successes and
failures, one transaction, one status resource, one audit record.  Before
that, objects without a TLP marking may get one, and objects without an
author ``created_by_ref`` (``node.marking``, the rule ``publish --tlp`` uses too).
"""

from __future__ import annotations

from collections.abc import Sequence

from node import jsoncodec
from node.errors import InvalidValue
from node.marking import Marking, marked
from node.store import Store, audit, objects, statuses
from node.store.audit import Action, AuditRecord, Direction
from node.timestamps import now_micros


class PublishError(InvalidValue):
    """The upload as a whole cannot be published; the message says why."""


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
    return [marked(item, marking) for item in items]


def publish(store: Store, collection_id: str, items: Sequence[object], actor: str) -> dict:
    """Validate and store ``items``; the status resource (TAXII 2.1 section 4.3.1)."""
    prepared = objects.prepare(items)
    request_timestamp = now_micros()
    with store.write() as connection:
        outcome = objects.store_prepared(connection, collection_id, prepared, publisher=actor)
        resource = statuses.record(
            connection, collection_id, request_timestamp, outcome.successes, outcome.failures
        )
        audit.record(
            connection,
            [
                AuditRecord(
                    action=Action.PUBLISHED,
                    direction=Direction.LOCAL,
                    actor=actor,
                    collection_id=collection_id,
                    detail=f"console, status {resource['id']}: {len(outcome.stored)} new, "
                    f"{len(outcome.successes) - len(outcome.stored)} already present, "
                    f"{len(outcome.failures)} failed",
                )
            ],
        )
    return resource
