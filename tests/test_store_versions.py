"""The store's latest/first version markers, on SQLite and PostgreSQL.

match[version] (TAXII 2.1 section 3.4.2) is answered from markers kept at
insert and delete instead of a subquery per row; these tests hold the markers
to the definition (the newest and the oldest version by ``modified``, else
``created``) through new versions, older versions arriving later, deletes and
filters, and check the migration that backfills them in an older store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from node.store import Store, objects, schema
from node.store.catalog import Collection
from node.store.objects import ObjectQuery
from node.timestamps import to_micros
from tests.conftest import migrated_store

COLLECTION = "c0ffee00-0000-4000-8000-000000000001"
OTHER = "c0ffee00-0000-4000-8000-000000000002"
T1, T2, T3 = "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    opened = migrated_store(
        store_url,
        tmp_path,
        Collection(id=COLLECTION, title="versions"),
        Collection(id=OTHER, title="other"),
    )
    yield opened
    opened.close()


def indicator(object_id: str, modified: str, created: str = T1) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id,
        "created": created,
        "modified": modified,
        "pattern": "[ipv4-addr:value = '192.0.2.1']",
        "pattern_type": "stix",
        "valid_from": created,
    }


def new_id(kind: str = "indicator") -> str:
    return f"{kind}--{uuid.uuid4()}"


def post(store: Store, *items: dict, collection: str = COLLECTION) -> objects.AddOutcome:
    with store.write() as connection:
        outcome = objects.add_objects(connection, collection, list(items))
    assert not outcome.failures, outcome.failures
    return outcome


def versions_served(store: Store, collection: str = COLLECTION, **filters) -> list[tuple]:
    """(id, version) of every row the query returns, in date_added order."""
    query = ObjectQuery(collection_id=collection, limit=1000, **filters)
    with store.read() as connection:
        rows, more = objects.page(connection, query)
    assert not more
    return [(row.object_id, row.version_text) for row in rows]


def markers(store: Store, object_id: str) -> dict[str, tuple[bool, bool]]:
    """version_text -> (is_latest, is_first) as stored."""
    with store.read() as connection:
        rows = connection.execute(
            text(
                "SELECT version_text, is_latest, is_first FROM objects "
                "WHERE collection_id = :c AND object_id = :o"
            ),
            {"c": COLLECTION, "o": object_id},
        )
        return {version: (bool(latest), bool(first)) for version, latest, first in rows}


def test_a_newer_version_takes_the_latest_marker(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1))
    assert markers(store, oid) == {T1: (True, True)}
    post(store, indicator(oid, T2))
    assert markers(store, oid) == {T1: (False, True), T2: (True, False)}
    assert versions_served(store) == [(oid, T2)]
    assert versions_served(store, versions=("first",)) == [(oid, T1)]
    assert versions_served(store, versions=("all",)) == [(oid, T1), (oid, T2)]


def test_an_older_version_arriving_later_takes_no_latest_marker(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T2))
    post(store, indicator(oid, T3))
    post(store, indicator(oid, T1))  # a peer catching up sends the oldest last
    assert markers(store, oid) == {T1: (False, True), T2: (False, False), T3: (True, False)}
    assert versions_served(store) == [(oid, T3)]
    assert versions_served(store, versions=("first",)) == [(oid, T1)]
    assert versions_served(store, versions=("first", "last")) == [(oid, T3), (oid, T1)]


def test_several_versions_of_one_object_in_one_envelope(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T2), indicator(oid, T3), indicator(oid, T1))
    assert markers(store, oid) == {T1: (False, True), T2: (False, False), T3: (True, False)}


def test_reposting_a_stored_version_keeps_the_markers(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1), indicator(oid, T2))
    outcome = post(store, indicator(oid, T1), indicator(oid, T3))
    assert [d["message"] for d in outcome.successes] == ["already present", "added"]
    assert markers(store, oid) == {T1: (False, True), T2: (False, False), T3: (True, False)}


def test_a_different_object_under_a_stored_version_is_refused(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1))
    changed = indicator(oid, T1) | {"name": "changed"}
    with store.write() as connection:
        outcome = objects.add_objects(connection, COLLECTION, [changed])
    assert outcome.failures and not outcome.successes
    assert markers(store, oid) == {T1: (True, True)}


def test_version_is_modified_else_created(store: Store) -> None:
    """A marking definition has no ``modified``: its ``created`` is its one version."""
    marking = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": new_id("marking-definition"),
        "created": T2,
        "name": "internal",
        "extensions": {
            "extension-definition--00000000-0000-4000-8000-000000000000": {
                "extension_type": "property-extension"
            }
        },
    }
    with store.write() as connection:
        outcome = objects.add_objects(connection, COLLECTION, [marking])
    if outcome.failures:  # the validator may refuse the made-up extension
        pytest.skip(outcome.failures[0]["message"])
    assert versions_served(store, versions=(to_micros(T2),)) == [(marking["id"], T2)]


def test_an_sco_without_versions_is_latest_and_first(store: Store) -> None:
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": new_id("ipv4-addr"),
           "value": "192.0.2.7"}  # fmt: skip
    outcome = post(store, sco)
    date_added = outcome.stored[0].date_added
    assert versions_served(store) == [(sco["id"], "")]
    assert versions_served(store, versions=("first",)) == [(sco["id"], "")]
    # Its one version is labelled by its date_added, which selects it too.
    assert versions_served(store, versions=(date_added,)) == [(sco["id"], "")]
    assert post(store, sco).successes[0]["message"] == "already present"


def test_deleting_the_latest_version_promotes_the_next_newest(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1), indicator(oid, T2), indicator(oid, T3))
    with store.write() as connection:
        deleted = objects.delete(
            connection,
            ObjectQuery(COLLECTION, limit=1, ids=(oid,), versions=(to_micros(T3),)),
        )
    assert deleted == 1
    assert markers(store, oid) == {T1: (False, True), T2: (True, False)}
    assert versions_served(store) == [(oid, T2)]


def test_deleting_the_first_version_moves_the_first_marker(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1), indicator(oid, T2), indicator(oid, T3))
    with store.write() as connection:
        objects.delete(
            connection, ObjectQuery(COLLECTION, limit=1, ids=(oid,), versions=("first",))
        )
    assert markers(store, oid) == {T2: (False, True), T3: (True, False)}


def test_deleting_every_version_leaves_nothing_served(store: Store) -> None:
    oid, kept = new_id(), new_id()
    post(store, indicator(oid, T1), indicator(oid, T2), indicator(kept, T1))
    with store.write() as connection:
        objects.delete(connection, ObjectQuery(COLLECTION, limit=1, ids=(oid,), versions=("all",)))
    assert versions_served(store) == [(kept, T1)]
    post(store, indicator(oid, T1))  # posted again after the delete: latest once more
    assert markers(store, oid) == {T1: (True, True)}


def test_markers_are_per_collection(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T2))
    post(store, indicator(oid, T1), collection=OTHER)
    post(store, indicator(oid, T3), collection=OTHER)
    assert versions_served(store) == [(oid, T2)]
    assert versions_served(store, collection=OTHER) == [(oid, T3)]


def test_filters_combine_with_the_markers(store: Store) -> None:
    a, b = new_id(), new_id()
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": new_id("ipv4-addr"),
           "value": "192.0.2.8"}  # fmt: skip
    first = post(store, indicator(a, T1), indicator(b, T1), sco)
    post(store, indicator(a, T2))
    assert versions_served(store, ids=(a,)) == [(a, T2)]
    assert versions_served(store, types=("indicator",)) == [(b, T1), (a, T2)]
    assert versions_served(store, types=("ipv4-addr",)) == [(sco["id"], "")]
    assert versions_served(store, spec_versions=("2.1",), ids=(a, b)) == [(b, T1), (a, T2)]
    assert versions_served(store, spec_versions=("2.0",)) == []
    after = first.stored[-1].date_added
    assert versions_served(store, after=after) == [(a, T2)]
    assert versions_served(store, after=after, versions=("first",)) == []
    assert versions_served(store, ids=(a,), versions=(to_micros(T1), "last")) == [(a, T1), (a, T2)]
    assert versions_served(store, exclude_origin="peer-x") == [(b, T1), (sco["id"], ""), (a, T2)]


def test_versions_from_a_peer_are_not_echoed_but_keep_their_markers(store: Store) -> None:
    oid = new_id()
    post(store, indicator(oid, T1))
    with store.write() as connection:
        objects.add_objects(connection, COLLECTION, [indicator(oid, T2)], origin="peer-x")
    assert versions_served(store, exclude_origin="peer-x") == []  # its latest is the peer's
    assert versions_served(store, exclude_origin="peer-y") == [(oid, T2)]


def test_each_commit_ends_on_a_whole_millisecond(store: Store) -> None:
    """So a client keeping X-TAXII-Date-Added-Last to the millisecond resumes exactly."""
    for size in (1, 3, 250):
        outcome = post(store, *(indicator(new_id(), T1) for _ in range(size)))
        dates = [stored.date_added for stored in outcome.stored]
        assert dates == sorted(set(dates))
        assert dates[-1] % 1_000 == 0


# -- migration 5 from a store at schema version 4 ------------------------------


def _downgrade_to_version_4(store: Store) -> None:
    """Make ``store`` what schema version 4 created: objects without markers."""
    with store.write() as connection:
        connection.execute(text("DROP INDEX ix_objects_latest"))
        for column in ("is_latest", "is_first"):
            connection.execute(text(f"ALTER TABLE objects DROP COLUMN {column}"))
        connection.execute(text("DELETE FROM schema_version WHERE version = 5"))


def _insert_version_4_row(store: Store, object_id: str, version: str, date_added: int) -> None:
    with store.write() as connection:
        connection.execute(
            text(
                "INSERT INTO objects (collection_id, object_id, type, spec_version, version, "
                "version_text, date_added, body, origin) VALUES (:c, :o, 'indicator', '2.1', "
                ":v, :vt, :d, :b, NULL)"
            ),
            {"c": COLLECTION, "o": object_id, "v": to_micros(version), "vt": version,
             "d": date_added, "b": "{}"},
        )  # fmt: skip


def test_migration_5_backfills_the_markers(store: Store) -> None:
    assert schema.LATEST_VERSION >= 5
    _downgrade_to_version_4(store)
    a, b = new_id(), new_id()
    for date_added, (object_id, version) in enumerate(
        [(a, T2), (b, T1), (a, T3), (a, T1)], start=1
    ):
        _insert_version_4_row(store, object_id, version, date_added)
    assert not store.is_current()
    applied = store.migrate()
    assert [step.split(":")[0] for step in applied] == ["5"]
    assert store.is_current()
    assert markers(store, a) == {T1: (False, True), T2: (False, False), T3: (True, False)}
    assert markers(store, b) == {T1: (True, True)}
    assert versions_served(store) == [(b, T1), (a, T3)]
    # New versions after the migration move the backfilled markers.
    post(store, indicator(b, T2))
    assert markers(store, b) == {T1: (False, True), T2: (True, False)}
    assert store.migrate() == []  # idempotent


def test_the_latest_page_is_an_index_range(store: Store) -> None:
    """The default page query is planned on ix_objects_latest (the plan, not a timing)."""
    post(store, *(indicator(new_id(), T1) for _ in range(50)))
    query = ObjectQuery(COLLECTION, limit=10, after=1)
    with store.read() as connection:
        if store.dialect == "postgresql":
            # 50 rows are cheaper to scan whole; ask for the plan of a big table.
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            connection.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = objects.explain_page(connection, query)
    assert "ix_objects_latest" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # no sort: an ordered range


def test_a_lookup_by_id_goes_through_the_object_id_index(store: Store) -> None:
    """GET objects/<id>/ must not scan the latest-version index of the whole collection."""
    items = [indicator(new_id(), T1) for _ in range(300)]
    post(store, *items)
    if store.dialect == "postgresql":
        # PostgreSQL plans from statistics (kept current by autovacuum, see
        # migration 5); a table never analysed looks empty to it.  SQLite
        # must choose right without any.
        with store.write() as connection:
            connection.execute(text("ANALYZE objects"))
    for versions in (("last",), ("first",), ("all",)):
        query = ObjectQuery(COLLECTION, limit=10, ids=(items[7]["id"],), versions=versions)
        with store.read() as connection:
            plan = objects.explain_page(connection, query)
        assert "ix_objects_latest" not in plan, plan
        assert "object_id=?" in plan or "uq_objects_version" in plan, plan


def test_postgresql_statistics_follow_a_bulk_publication(store: Store) -> None:
    """The planner's row estimate of ``objects`` follows a growing collection (not a timing)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite needs no statistics for these plans")
    for _ in range(3):
        post(store, *(indicator(new_id(), T1) for _ in range(500)))
    with store.read() as connection:
        estimate = connection.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'objects'::regclass")
        ).scalar_one()
    assert estimate >= 1_000


def test_the_envelope_page_serves_what_the_object_page_holds(store: Store) -> None:
    """``page_bodies`` (the objects endpoints' two-column read) agrees with ``page``:
    the same bodies in date_added order, the first and last date_added, ``more``,
    across pages of a collection with several versions of one object."""
    oid = new_id()
    post(store, indicator(oid, T1), *(indicator(new_id(), T1) for _ in range(4)))
    post(store, indicator(oid, T2))  # T1 loses its latest marker: skipped by "last"
    for versions in (("last",), ("all",)):
        after, served = None, []
        while True:
            query = ObjectQuery(COLLECTION, limit=2, after=after, versions=versions)
            with store.read() as connection:
                rows, more = objects.page(connection, query)
                envelope = objects.page_bodies(connection, query)
            assert envelope.bodies == [row.body for row in rows]
            assert envelope.more == more
            assert (envelope.first_added, envelope.last_added) == (
                (rows[0].date_added, rows[-1].date_added) if rows else (None, None)
            )
            served += envelope.bodies
            if not more:
                break
            after = envelope.last_added
        assert len(served) == (5 if versions == ("last",) else 6)
    empty = ObjectQuery(OTHER, limit=2)
    with store.read() as connection:
        assert objects.page_bodies(connection, empty) == objects.BodyPage([], None, None, False)
