"""Collection definitions: loaded from ``collections/*.toml`` and kept in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update

from node.mediatypes import STIX_21

from .schema import collections

DEFAULT_MEDIA_TYPES = (STIX_21,)


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    alias: str | None = None
    description: str | None = None
    media_types: tuple[str, ...] = DEFAULT_MEDIA_TYPES

    def resource(self, can_read: bool, can_write: bool) -> dict[str, Any]:
        """The collection resource of TAXII 2.1 section 5.2.1 for one caller."""
        resource: dict[str, Any] = {"id": self.id, "title": self.title}
        if self.description:
            resource["description"] = self.description
        if self.alias:
            resource["alias"] = self.alias
        resource["can_read"] = can_read
        resource["can_write"] = can_write
        resource["media_types"] = list(self.media_types)
        return resource


def _from_row(row: Row[Any]) -> Collection:
    return Collection(
        id=row.id,
        title=row.title,
        alias=row.alias,
        description=row.description,
        media_types=tuple(json.loads(row.media_types)),
    )


def upsert(connection: Connection, collection: Collection) -> bool:
    """Create or update a collection definition; True when it was created."""
    values = {
        "alias": collection.alias,
        "title": collection.title,
        "description": collection.description,
        "media_types": json.dumps(list(collection.media_types)),
    }
    exists = connection.execute(
        select(collections.c.id).where(collections.c.id == collection.id)
    ).first()
    if exists:
        connection.execute(update(collections).where(collections.c.id == collection.id), values)
        return False
    connection.execute(collections.insert().values(id=collection.id, last_date_added=0, **values))
    return True


def all_collections(connection: Connection) -> list[Collection]:
    rows = connection.execute(select(collections).order_by(collections.c.title, collections.c.id))
    return [_from_row(row) for row in rows]


def find(connection: Connection, id_or_alias: str) -> Collection | None:
    """A collection named by its id or its alias (the CLI and config accept both)."""
    row = connection.execute(
        select(collections).where(
            or_(collections.c.id == id_or_alias, collections.c.alias == id_or_alias)
        )
    ).first()
    return None if row is None else _from_row(row)
