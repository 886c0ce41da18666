"""Collection definitions: loaded from ``collections/*.toml`` and kept in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, select, update

from node.errors import Conflict
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
    # The collection file it was read from, for messages (not part of the definition).
    source: Path | None = field(default=None, compare=False, repr=False)

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
    """Create or update a collection definition; True when it was created.  A name
    another collection holds is ``Conflict`` (``check_names_free``)."""
    check_names_free(connection, collection)
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


def check_names_free(connection: Connection, collection: Collection) -> None:
    """``collection``'s alias and id name no other collection in the store: an alias
    is unique, and one equal to another collection's id (or an id equal to another's
    alias) would make a name mean either.  ``Conflict`` names the file and the holder.

    The usual cause is a collection file whose id was changed while its alias was
    kept: the store still holds the old collection, under that alias.
    """
    where = f"{collection.source}: " if collection.source is not None else ""
    names = [name for name in (collection.alias,) if name]
    others = connection.execute(
        select(collections.c.id, collections.c.alias).where(collections.c.id != collection.id)
    )
    for other_id, other_alias in others:
        if other_alias is not None and other_alias in names:
            raise Conflict(
                f"{where}alias {other_alias!r} already belongs to collection {other_id} in "
                "the store; give this collection another alias (or keep its old id)"
            )
        if other_id in names:
            raise Conflict(
                f"{where}alias {other_id!r} is the id of another collection in the store"
            )
        if other_alias == collection.id:
            raise Conflict(
                f"{where}id {collection.id} is the alias of collection {other_id} in the store"
            )


def find(connection: Connection, id_or_alias: str) -> Collection | None:
    """A collection named by its id or its alias (the CLI and config accept both).

    An id wins over an alias, so that the answer never depends on row order
    (collection files refuse an alias equal to an id, stores of older versions
    may hold one)."""
    for column in (collections.c.id, collections.c.alias):
        row = connection.execute(select(collections).where(column == id_or_alias)).first()
        if row is not None:
            return _from_row(row)
    return None
