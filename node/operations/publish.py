"""Publishing objects into a local collection (the console's Publish page).

The objects go through the same validator and the same storage as a TAXII
POST (``objects.prepare`` and ``store_prepared``): per-object successes and
failures, one transaction, one status resource, one audit record.  Before
that, objects without a TLP marking may get one, and objects without an
author ``created_by_ref`` (``node.marking``, the rule ``publish --tlp`` uses too).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from node import jsoncodec
from node.errors import InvalidValue
from node.marking import Marking, marked
from node.store import Store, audit, objects, statuses
from node.store.audit import Action, AuditRecord, Direction
from node.store.objects import AddOutcome
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
        return record_publication(
            connection, collection_id, request_timestamp, outcome, actor=actor, source="console"
        )


def record_publication(
    connection: Connection,
    collection_id: str,
    request_timestamp: int,
    outcome: AddOutcome,
    *,
    actor: str,
    peer: str | None = None,
    refused: Sequence[dict] = (),
    owner: str | None = None,
    source: str | None = None,
    decisions: Sequence[AuditRecord] = (),
    concealed: int = 0,
) -> dict:
    """The status resource of one stored publication (TAXII 2.1 section 4.3.1) and
    its audit record, in the caller's write transaction; returns the resource.

    ``refused``: failures decided before storage (the envelope's, a partner's
    policy); ``owner``: the account that may read the status besides admins;
    ``decisions``: a partner's POST's one record per received version, appended
    with the publication's so that the chain head's lock is taken once, as late
    as possible; ``concealed``: how many of ``outcome``'s successes are refusals
    answered to a partner as if stored (``node.sharing.ingress.conceal``), which
    the audit counts as failed.
    """
    resource = statuses.record(
        connection, collection_id, request_timestamp, outcome.successes,
        [*refused, *outcome.failures], owner=owner,
    )  # fmt: skip
    already = len(outcome.successes) - len(outcome.stored) - concealed
    hidden = f" ({concealed} answered as stored)" if concealed else ""
    publication = AuditRecord(
        action=Action.PUBLISHED,
        direction=Direction.RECEIVE if peer else Direction.LOCAL,
        actor=actor,
        peer=peer,
        collection_id=collection_id,
        detail=f"{f'{source}, ' if source else ''}status {resource['id']}: "
        f"{len(outcome.stored)} new, {already} already present, "
        f"{len(outcome.failures) + len(refused) + concealed} failed{hidden}",
    )
    audit.record(connection, [publication, *decisions])
    return resource
