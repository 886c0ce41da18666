"""Collection definition files: ``collections/*.toml`` (or ``*.json``), one collection each.

They are data, not code: ``taxii-node init`` loads them into the store, where
the server reads them.  Example::

    id = "365fed99-08fa-fdcd-a1b3-fb247eb41d01"
    alias = "shared-indicators"
    title = "Indicators shared with partners"
    description = "..."
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path

from node.config import ConfigError
from node.store.catalog import DEFAULT_MEDIA_TYPES, Collection
from node.tomlreader import first_unknown_key

_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KEYS = {"id", "alias", "title", "description", "media_types"}


def load_collection_files(directory: Path) -> list[Collection]:
    """Every collection defined in ``directory``, validated, sorted by file name."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: collections directory not found")
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".toml":
            data = _read(path, lambda f: tomllib.load(f))
        elif path.suffix == ".json":
            data = _read(path, json.load)
        else:
            continue
        found.append(_collection(path, data))
    _check_unique(found, directory)
    return found


def _read(path: Path, parse) -> dict:
    try:
        with path.open("rb") as handle:
            data = parse(handle)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of collection properties")
    return data


def _collection(path: Path, data: dict) -> Collection:
    unknown = first_unknown_key(data, _KEYS)
    if unknown is not None:
        raise ConfigError(f"{path}: unknown key {unknown.key!r}{unknown.hint}; {unknown.listing}")
    try:
        collection_id = str(uuid.UUID(str(data.get("id", ""))))
    except ValueError:
        raise ConfigError(f"{path}: id must be a UUID, got {data.get('id')!r}") from None
    alias = data.get("alias")
    if alias is not None and (not isinstance(alias, str) or not _ALIAS.match(alias)):
        raise ConfigError(f"{path}: alias {alias!r} must be letters, digits, '.', '_' or '-'")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"{path}: title is required")
    media_types = data.get("media_types", list(DEFAULT_MEDIA_TYPES))
    if not isinstance(media_types, list) or not all(isinstance(m, str) for m in media_types):
        raise ConfigError(f"{path}: media_types must be a list of strings")
    return Collection(
        id=collection_id,
        title=title,
        alias=alias,
        description=data.get("description"),
        media_types=tuple(media_types),
        source=path,
    )


def _check_unique(found: list[Collection], directory: Path) -> None:
    """Ids and aliases are unique, and no alias is another collection's id: a name
    that could mean either collection would be resolved by row order."""
    ids = [c.id for c in found]
    aliases = [c.alias for c in found if c.alias]
    for values, what in ((ids, "id"), (aliases, "alias")):
        duplicates = {v for v in values if values.count(v) > 1}
        if duplicates:
            raise ConfigError(f"{directory}: duplicate collection {what} {sorted(duplicates)}")
    by_id = {c.id: c for c in found}
    for collection in found:
        other = by_id.get(collection.alias or "")
        if other is not None and other is not collection:
            raise ConfigError(
                f"{collection.source}: alias {collection.alias!r} is the id of the collection "
                f"of {other.source}; an alias must not name another collection"
            )
