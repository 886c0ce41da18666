"""Real TAXII 2.1 clients against the node: taxii2-client and stix2's TAXII data store.

One server per store kind; ``max_page_size`` is small so that every listing
of a few dozen objects spans several pages.  Each test owns a collection:
``alpha`` for taxii2-client envelopes, ``beta`` for paging, ``gamma`` for stix2.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import requests
import stix2
from stix2 import Filter, TAXIICollectionSink, TAXIICollectionSource, TAXIICollectionStore
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from node.client import TaxiiClient
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, RunningNode, new_node, random_id, serving
from tests.test_taxii_api import TAXII_21, indicator, ipv4, malware

PAGE_SIZE = 10
AUTH = {"user": "admin", "password": ADMIN_PASSWORD}


@pytest.fixture(scope="module")
def node(module_store_url, tmp_path_factory) -> Iterator[RunningNode]:
    running = new_node(
        tmp_path_factory.mktemp("clients"),
        "clients-node",
        module_store_url,
        taxii_toml=f"max_page_size = {PAGE_SIZE}",
    )
    yield from serving(running)


def collection(node: RunningNode, alias: str) -> Collection:
    return Collection(node.collection_url(alias), **AUTH)


def stix_dict(obj) -> dict:
    return json.loads(obj.serialize())


# --------------------------------------------------------------------------- taxii2-client


def test_server_api_root_and_collections(node):
    server = Server(node.base_url + "/taxii2/", **AUTH)
    assert server.title == "Test clients-node"
    assert server.default.url == node.api_root
    (api_root,) = server.api_roots
    assert api_root.url == node.api_root
    assert api_root.versions == [TAXII_21]
    assert api_root.max_content_length > 0
    found = {c.alias: c for c in api_root.collections}
    assert set(found) == set(COLLECTIONS)
    for alias, c in found.items():
        assert c.id == COLLECTIONS[alias]
        assert c.can_read and c.can_write
        assert c.media_types == ["application/stix+json;version=2.1"]
    assert ApiRoot(node.api_root, **AUTH).title == "Test clients-node"


def test_add_objects_with_an_envelope(node):
    alpha = collection(node, "alpha")
    good, bad = indicator(), indicator(created="yesterday")
    status = alpha.add_objects({"objects": [good, bad]})
    assert status.status == "complete"
    assert (status.total_count, status.success_count, status.failure_count) == (2, 1, 1)
    assert status.successes[0]["id"] == good["id"]
    assert status.failures[0]["id"] == bad["id"]

    # The status resource is served where taxii2-client derives it from the collection URL.
    status.refresh()
    assert (status.success_count, status.failure_count) == (1, 1)
    api_root = ApiRoot(node.api_root, **AUTH)
    assert api_root.get_status(status.id).success_count == 1

    # A JSON text envelope works too.
    other = malware()
    status = alpha.add_objects(json.dumps({"objects": [other]}))
    assert status.success_count == 1
    assert alpha.get_object(other["id"])["objects"] == [other]
    assert alpha.get_object(good["id"])["objects"] == [good]
    assert alpha.object_versions(good["id"])["versions"] == [good["modified"]]


def test_as_pages_reads_every_page(node):
    beta = collection(node, "beta")
    objects = [indicator() for _ in range(23)] + [ipv4(f"192.0.2.{i}") for i in range(4)]
    status = beta.add_objects({"objects": objects})
    assert status.success_count == len(objects)
    expected = [obj["id"] for obj in objects]

    for per_request in (PAGE_SIZE, 7, 1000):  # 1000: the server pages by 10 anyway
        pages = list(as_pages(beta.get_objects, per_request=per_request))
        assert len(pages) > 1
        assert [o["id"] for page in pages for o in page.get("objects", [])] == expected
        assert all(page["more"] and page["next"] for page in pages[:-1])
        assert pages[-1]["more"] is False

    pages = list(as_pages(beta.get_manifest, per_request=PAGE_SIZE))
    assert len(pages) == 3
    assert [r["id"] for page in pages for r in page["objects"]] == expected

    # Filters travel with every page.
    pages = list(as_pages(beta.get_objects, per_request=4, type="ipv4-addr"))
    assert [o["id"] for page in pages for o in page.get("objects", [])] == expected[-4:]


def test_delete_with_taxii2_client(node):
    alpha = collection(node, "alpha")
    object_id = random_id("indicator")
    versions = [indicator(object_id, t) for t in ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z")]
    alpha.add_objects({"objects": versions})
    alpha.delete_object(object_id, version="first")
    assert alpha.object_versions(object_id)["versions"] == ["2024-06-01T00:00:00Z"]
    alpha.delete_object(object_id)
    with pytest.raises(Exception, match="404"):
        alpha.get_object(object_id)


# --------------------------------------------------------------------------- stix2


def test_stix2_sink_posts_a_bundle_and_source_reads_it(node):
    gamma = collection(node, "gamma")
    sink = TAXIICollectionSink(gamma)
    first = stix2.v21.Indicator(
        name="first",
        pattern="[ipv4-addr:value = '198.51.100.1']",
        pattern_type="stix",
        valid_from="2024-01-01T00:00:00Z",
    )
    second = first.new_version(name="second")
    family = stix2.v21.Malware(name="family", is_family=True)
    sink.add([first, family])  # a list is posted as one bundle
    sink.add(second)
    many = [
        stix2.v21.Indicator(
            pattern=f"[ipv4-addr:value = '198.51.100.{i}']",
            pattern_type="stix",
            valid_from="2024-01-01T00:00:00Z",
        )
        for i in range(2, 2 + 2 * PAGE_SIZE)
    ]
    sink.add(many)

    source = TAXIICollectionSource(gamma)
    latest = source.get(first.id)
    assert latest.name == "second" and latest.modified == second.modified
    assert sorted(v.modified for v in source.all_versions(first.id)) == [
        first.modified,
        second.modified,
    ]

    malware_found = source.query([Filter("type", "=", "malware")])
    assert [m.id for m in malware_found] == [family.id]

    # More than one server page: stix2 asks for 5000 a page, the node gives 10.
    indicators = source.query([Filter("type", "=", "indicator")])
    assert sorted(i.id for i in indicators) == sorted([first.id] + [i.id for i in many])
    assert {i.id: i.name for i in indicators if i.id == first.id} == {first.id: "second"}
    assert source.get(random_id("indicator")) is None

    # What the server holds is what was sent.
    stored = gamma.get_object(family.id)["objects"]
    assert stored == [stix_dict(family)]


def test_stix2_store_round_trip(node):
    store = TAXIICollectionStore(collection(node, "gamma"))
    report_target = stix2.v21.ThreatActor(name="actor", threat_actor_types=["crime-syndicate"])
    store.add(report_target)
    assert store.get(report_target.id).name == "actor"
    found = store.query([Filter("id", "=", report_target.id)])
    assert [f.id for f in found] == [report_target.id]


# --------------------------------------------------------------------------- credentials


def test_a_password_with_non_ascii_characters_works_from_every_client(node):
    """requests (so taxii2-client, stix2, MISP's push) sends Basic credentials given as
    text in ISO-8859-1, others (and the node's own client) in UTF-8: both log in."""
    password = "pässwörter-lang-1"
    node.add_user("umlaut", password, read=("alpha",))
    assert Server(node.base_url + "/taxii2/", user="umlaut", password=password).api_roots
    assert TaxiiClient(node.api_root, "umlaut", password).collection_id("alpha")
    utf8 = base64.b64encode(f"umlaut:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {utf8}", "Accept": TAXII_21}
    answer = requests.get(node.api_root + "collections/", headers=headers, timeout=10)
    assert answer.status_code == 200
    wrong = requests.get(node.api_root + "collections/", auth=("umlaut", "passworter-lang-1"),
                         headers={"Accept": TAXII_21}, timeout=10)  # fmt: skip
    assert wrong.status_code == 401
    assert 'Basic realm="taxii-node", charset="UTF-8"' in wrong.headers["WWW-Authenticate"]
