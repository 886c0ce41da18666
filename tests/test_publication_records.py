"""What a publication leaves behind: one status resource and one audit record,
written the same way for a TAXII POST and for the console's Publish page
(``operations.publish.record_publication``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from node.operations.publish import publish
from node.store import audit, schema
from node.store.audit import Action, AuditFilter
from node.taxii.state import EXTENSION, NodeState
from tests.inprocess import new_inprocess_node
from tests.test_serving import AdminClient, indicator

COLLECTION_ALIAS = "alpha"


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[AdminClient, NodeState]]:
    node = new_inprocess_node(tmp_path, "records-node", None).start()
    assert node.app is not None
    yield AdminClient(node.app.test_client()), node.app.extensions[EXTENSION]
    node.stop()


def last_publication(state: NodeState) -> dict:
    with state.store.read() as connection:
        rows = audit.matching(connection, AuditFilter(action=Action.PUBLISHED, limit=1))
    assert rows, "no publication recorded"
    return rows[0]


def status_owner(state: NodeState, status_id: str) -> str | None:
    table = schema.statuses_table
    with state.store.read() as connection:
        owner: str | None = connection.execute(
            select(table.c.owner).where(table.c.id == status_id)
        ).scalar_one()
    return owner


def test_a_taxii_post_records_its_status_and_one_publication(served):
    client, state = served
    valid, invalid = indicator(), {**indicator(), "pattern_type": 5}
    path = client.collection(COLLECTION_ALIAS) + "objects/"
    status = client.post(path, {"objects": [valid, invalid]}).get_json()
    assert (status["success_count"], status["failure_count"]) == (1, 1)
    record = last_publication(state)
    assert (record["actor"], record["peer"], record["direction"]) == ("admin", None, "local")
    assert record["detail"] == f"status {status['id']}: 1 new, 0 already present, 1 failed"
    assert status_owner(state, status["id"]) == "admin"

    again = client.post(path, {"objects": [valid]}).get_json()
    assert last_publication(state)["detail"] == (
        f"status {again['id']}: 0 new, 1 already present, 0 failed"
    )


def test_the_console_records_its_publication_the_same_way(served):
    client, state = served
    collection_id = client.collection(COLLECTION_ALIAS).rstrip("/").rsplit("/", 1)[1]
    resource = publish(state.store, collection_id, [indicator(), indicator()], actor="analyst")
    assert resource["success_count"] == 2
    record = last_publication(state)
    assert (record["actor"], record["peer"], record["direction"]) == ("analyst", None, "local")
    assert record["detail"] == (
        f"console, status {resource['id']}: 2 new, 0 already present, 0 failed"
    )
    assert status_owner(state, resource["id"]) is None  # admins read it
