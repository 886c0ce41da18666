"""The medallion 3.0.0 test peer starts, takes an envelope and serves it back."""

from __future__ import annotations

import pytest
import requests
from taxii2client.v21 import Collection, as_pages

from tests.medallion_peer import MEDIA_TYPE, start_medallion
from tests.nodes import random_id

CREATED = "2024-05-01T12:00:00.000Z"


def _envelope(count: int) -> dict:
    objects = []
    for index in range(count):
        objects.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": random_id("indicator"),
                "created": CREATED,
                "modified": CREATED,
                "name": f"indicator {index}",
                "pattern": f"[ipv4-addr:value = '198.51.100.{index}']",
                "pattern_type": "stix",
                "valid_from": CREATED,
            }
        )
    return {"objects": objects}


@pytest.mark.parametrize("server", ["werkzeug", "gunicorn"])
def test_medallion_peer_round_trip(tmp_path, server):
    peer = start_medallion(
        tmp_path, {"alpha": "d9e8c6f0-5d3b-4c41-9a65-3a1f5e7d0a01"}, server=server
    )
    try:
        assert peer.api_root == f"http://127.0.0.1:{peer.port}/trustgroup1/"
        collection = Collection(
            peer.collection_url("alpha"), user=peer.user, password=peer.password
        )
        assert collection.can_read and collection.can_write

        envelope = _envelope(5)
        status = collection.add_objects(envelope)
        assert status.status == "complete"
        assert status.success_count == 5 and status.failure_count == 0

        sent = {obj["id"]: obj for obj in envelope["objects"]}
        received = collection.get_objects()["objects"]
        assert {obj["id"]: obj for obj in received} == sent

        # taxii2-client repeats limit with next, as medallion 3.0.0 needs.
        paged = [
            obj["id"]
            for page in as_pages(collection.get_objects, per_request=2)
            for obj in page.get("objects", [])
        ]
        assert sorted(paged) == sorted(sent)

        one = next(iter(sent))
        assert collection.get_object(one)["objects"] == [sent[one]]

        # The defect the helper documents: a versionless Accept header is refused.
        response = requests.get(
            peer.api_root,
            auth=(peer.user, peer.password),
            headers={"Accept": "application/taxii+json"},
            timeout=10,
        )
        assert response.status_code == 406
        response = requests.get(
            peer.api_root,
            auth=(peer.user, peer.password),
            headers={"Accept": MEDIA_TYPE},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        peer.stop()
    assert peer.process is None
