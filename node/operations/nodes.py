"""Setting a node up: create or migrate its store and load its collection files."""

from __future__ import annotations

from node.collection_files import load_collection_files
from node.config import Config
from node.store import Store, catalog


def initialise(config: Config, store: Store) -> list[str]:
    """Apply missing migrations and create or update the collections of
    ``[taxii] collections_dir``; return one line per step done.  Safe to repeat."""
    done = [f"migrated: {step}" for step in store.migrate()]
    if config.taxii.collections_dir:
        definitions = load_collection_files(config.taxii.collections_dir)
        with store.write() as connection:
            for collection in definitions:
                verb = "created" if catalog.upsert(connection, collection) else "updated"
                done.append(f"collection {verb}: {collection.alias or collection.id}")
    return done
