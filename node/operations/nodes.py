"""Setting a node up: create or migrate its store and load its collection files; what
``taxii-node check`` warns about beyond the files themselves."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from node.collection_files import load_collection_files
from node.config import Config
from node.errors import ConfigError
from node.sharing import Agreements
from node.store import Store, accounts, catalog
from node.store.accounts import Account


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


def deployment_warnings(config: Config) -> list[str]:
    """What is not wrong in the file but will fail at run time: secrets the worker
    cannot read, and (when the store exists) mappings and peer accounts that do not
    match it.  Errors that make the mappings unusable are raised, not warned."""
    warnings = []
    for peer in config.peers:
        try:
            peer.password()
        except ConfigError as exc:
            warnings.append(f"{exc} (the sync worker needs it)")
    url = make_url(config.store_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return [*warnings, "the store does not exist yet: run init"]  # check creates nothing
    store = Store(config.store_url)
    try:
        if not store.is_current():
            return [*warnings, "the store is not initialised yet: run init"]
        agreements = Agreements(config, store)  # local collections exist, one mapping each
        with store.read() as connection:
            for peer in config.peers:
                account = accounts.load_account(connection, peer.account) if peer.account else None
                if peer.account and (account is None or account.peer != peer.name):
                    warnings.append(
                        f"peer {peer.name!r}: account {peer.account!r} is not a sync account "
                        f"of this peer (user add {peer.account} --peer {peer.name} ...)"
                    )
                elif account is not None:
                    warnings.extend(_double_deliveries(agreements, peer.name, account))
    finally:
        store.close()
    return warnings


def _double_deliveries(agreements: Agreements, peer: str, account: Account) -> list[str]:
    """Streams both workers could move: each object would cross twice.

    One config shows our side only: what our worker moves (``worker``) and
    what the partner's sync account may do here (its rights, within
    ``direction``).  When our worker pushes a collection the partner may also
    read, its worker can pull the same stream; when our worker pulls into a
    collection the partner may also write, its worker can push the same
    stream.  Whether the partner's worker does is in its config, not ours.
    """
    found = []
    for agreement in agreements:
        if agreement.peer.name != peer:
            continue
        mapping = agreement.mapping
        rights = account.rights_on(agreement.collection_id)
        cases = (
            (mapping.worker_pushes, rights.can_read and mapping.pushes, "pushes", "read", "pulls"),
            (mapping.worker_pulls, rights.can_write and mapping.pulls, "pulls", "write", "pushes"),
        )
        for ours, theirs, verb, right, their_verb in cases:
            if ours and theirs:
                found.append(
                    f"peer {peer!r}: mapping {mapping.key}: our worker {verb} it and "
                    f"{peer}'s sync account {account.name!r} may {right} {mapping.local!r} "
                    f"here: if {peer}'s worker also {their_verb} it, every object crosses "
                    f"twice; let one side carry each stream (mapping key worker = ...; "
                    f"README: Topologies)"
                )
    return found
