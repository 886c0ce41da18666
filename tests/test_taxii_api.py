"""TAXII 2.1 conformance of the node's API (sections 3, 4 and 5), against a real server.

One gunicorn server runs per store kind (SQLite, PostgreSQL) for the whole
module.  Tests share it, so each test works on objects with fresh ids and
selects them with ``match[id]``; collection ``gamma`` is never written to and
stays empty.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from node.timestamps import from_micros, is_timestamp, to_micros
from tests.inprocess import new_inprocess_node
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, RunningNode, random_id, serving

TAXII_21 = "application/taxii+json;version=2.1"
STIX_21 = "application/stix+json;version=2.1"
MAX_CONTENT_LENGTH = 20_000
PASSWORD = "user-password-1"
DATE_FIRST = "X-TAXII-Date-Added-First"
DATE_LAST = "X-TAXII-Date-Added-Last"

T1 = "2024-01-01T00:00:00.000Z"
T2 = "2024-02-01T00:00:00.000Z"
T3 = "2024-03-01T00:00:00.000Z"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def node(module_store_url, tmp_path_factory) -> Iterator[RunningNode]:
    running = new_inprocess_node(
        tmp_path_factory.mktemp("api"),
        "api-node",
        module_store_url,
        taxii_toml=f"max_content_length = {MAX_CONTENT_LENGTH}",
    )
    users = {
        "reader": {"read": ("alpha",)},
        "writer": {"write": ("alpha",)},
        "outsider": {"read": ("beta",), "write": ("beta",)},
        "nobody": {},
    }
    for name, rights in users.items():
        running.add_user(name, PASSWORD, **rights)
    yield from serving(running)


def session(user: str = "admin", password: str | None = None) -> requests.Session:
    client = requests.Session()
    client.auth = (user, password or (ADMIN_PASSWORD if user == "admin" else PASSWORD))
    client.headers["Accept"] = TAXII_21
    return client


@pytest.fixture(scope="module")
def admin() -> requests.Session:
    return session()


@pytest.fixture
def alpha(node) -> str:
    return node.collection_url("alpha")


# --------------------------------------------------------------------------- helpers


def indicator(object_id: str | None = None, modified: str = T1, **extra) -> dict:
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id or random_id("indicator"),
        "created": T1,
        "modified": modified,
        "name": "test indicator",
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": T1,
    }
    obj.update(extra)
    return obj


def malware(object_id: str | None = None) -> dict:
    return {
        "type": "malware",
        "spec_version": "2.1",
        "id": object_id or random_id("malware"),
        "created": T1,
        "modified": T1,
        "name": "test malware",
        "is_family": False,
    }


def ipv4(value: str = "198.51.100.9") -> dict:
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": random_id("ipv4-addr"),
        "value": value,
    }


def post(
    client: requests.Session, collection_url: str, body: object, content_type: str = TAXII_21
) -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        collection_url + "objects/", data=data, headers={"Content-Type": content_type}, timeout=30
    )


def add(client: requests.Session, collection_url: str, *objects: dict) -> dict:
    """POST an envelope and return its status resource (every object must succeed)."""
    response = post(client, collection_url, {"objects": list(objects)})
    assert response.status_code == 202, response.text
    status = response.json()
    assert status["success_count"] == len(objects), status
    return status


def get(client: requests.Session, url: str, **params) -> requests.Response:
    return client.get(url, params=params, timeout=30)


def post_objects(
    client: requests.Session, collection_url: str, objects: list[dict], timeout: float = 60.0
) -> dict:
    """POST ``objects`` in one envelope; the status resource of the 202 answer."""
    response = client.post(
        collection_url + "objects/",
        json={"objects": objects},
        headers={"Content-Type": TAXII_21},
        timeout=timeout,
    )
    assert response.status_code == 202, response.text
    status: dict = response.json()
    return status


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    assert is_taxii(response), response.headers
    body = response.json()
    if "more" in body:
        # 3.5: "more": true always comes with "next", and "next" only with it.
        assert ("next" in body) is body["more"], body
        if body["more"]:
            assert isinstance(body["next"], str) and body["next"]
    return body


def is_taxii(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").replace(" ", "") == TAXII_21


def assert_error(response: requests.Response, status: int) -> dict:
    """Every error is a TAXII error message (3.6.1) with the TAXII media type."""
    assert response.status_code == status, (response.status_code, response.text)
    assert is_taxii(response), response.headers
    body = response.json()
    assert isinstance(body.get("title"), str) and body["title"]
    assert body.get("http_status") == str(status)
    assert isinstance(body.get("description"), str) and body["description"]
    return body


def ids_param(*objects: dict) -> str:
    return ",".join(obj["id"] for obj in objects)


def ids_of(body: dict) -> list[str]:
    return [obj["id"] for obj in body.get("objects", [])]


def date_headers(response: requests.Response) -> tuple[int, int]:
    """(first, last) as microseconds; both headers must be present and valid."""
    return to_micros(response.headers[DATE_FIRST]), to_micros(response.headers[DATE_LAST])


def manifest_of(client: requests.Session, collection_url: str, **params) -> list[dict]:
    return ok(get(client, collection_url + "manifest/", **params)).get("objects", [])


# --------------------------------------------------------------------------- discovery, API root


def test_discovery(node, admin):
    response = admin.get(node.base_url + "/taxii2/", timeout=30)
    body = ok(response)
    assert body["title"] == "Test api-node"
    assert body["default"] == node.api_root
    assert body["api_roots"] == [node.api_root]


def test_api_root_information(node, admin):
    body = ok(admin.get(node.api_root, timeout=30))
    assert body["title"] == "Test api-node"
    assert body["versions"] == [TAXII_21]
    assert body["max_content_length"] == MAX_CONTENT_LENGTH


def test_unknown_api_root_and_paths_are_taxii_404(node, admin):
    assert_error(admin.get(node.base_url + "/other/", timeout=30), 404)
    assert_error(admin.get(node.base_url + "/other/collections/", timeout=30), 404)
    assert_error(admin.get(node.api_root + "no/such/path/", timeout=30), 404)


def test_wrong_method_is_taxii_405(alpha, admin):
    response = admin.put(alpha + "objects/", data="{}", timeout=30)
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


# --------------------------------------------------------------------------- collections


def test_collections_list_what_the_caller_may_see(node):
    everything = ok(get(session(), node.api_root + "collections/"))["collections"]
    assert sorted(c["id"] for c in everything) == sorted(COLLECTIONS.values())
    for resource in everything:
        assert resource["can_read"] is True and resource["can_write"] is True
        assert resource["media_types"] == [STIX_21]
        assert resource["title"].startswith("Collection ")

    (readable,) = ok(get(session("reader"), node.api_root + "collections/"))["collections"]
    assert (readable["id"], readable["can_read"], readable["can_write"]) == (
        COLLECTIONS["alpha"],
        True,
        False,
    )
    (writable,) = ok(get(session("writer"), node.api_root + "collections/"))["collections"]
    assert (writable["id"], writable["can_read"], writable["can_write"]) == (
        COLLECTIONS["alpha"],
        False,
        True,
    )
    # No collection at all: an empty resource, the optional list omitted.
    assert ok(get(session("nobody"), node.api_root + "collections/")) == {}


@pytest.mark.parametrize(
    ("user", "can_read", "can_write"),
    [("admin", True, True), ("reader", True, False), ("writer", False, True)],
)
def test_collection_rights_reflect_the_caller(alpha, user, can_read, can_write):
    body = ok(get(session(user), alpha))
    assert body["id"] == COLLECTIONS["alpha"]
    assert body["title"] == "Collection alpha"
    assert body["alias"] == "alpha"
    assert (body["can_read"], body["can_write"]) == (can_read, can_write)
    assert body["media_types"] == [STIX_21]


@pytest.mark.parametrize("user", ["outsider", "nobody"])
def test_collection_without_rights_is_404(alpha, user):
    client = session(user)
    assert_error(get(client, alpha), 404)
    assert_error(get(client, alpha + "objects/"), 404)
    assert_error(get(client, alpha + "manifest/"), 404)
    assert_error(post(client, alpha, {"objects": [indicator()]}), 404)


def test_unknown_collection_is_404(node, admin):
    url = f"{node.api_root}collections/{uuid.uuid4()}/"
    assert_error(get(admin, url), 404)
    assert_error(get(admin, url + "objects/"), 404)
    assert_error(post(admin, url, {"objects": [indicator()]}), 404)


# --------------------------------------------------------------------------- status


def test_post_answers_a_status_that_can_be_fetched(node, alpha):
    writer = session("writer")
    good = indicator()
    bad = indicator(created="yesterday")
    response = post(writer, alpha, {"objects": [good, bad]})
    assert response.status_code == 202
    assert is_taxii(response)
    status = response.json()
    assert status["status"] == "complete"
    assert (status["total_count"], status["success_count"], status["failure_count"]) == (2, 1, 1)
    assert status["pending_count"] == 0
    assert "pendings" not in status  # empty lists are omitted
    (success,) = status["successes"]
    assert (success["id"], success["version"]) == (good["id"], good["modified"])
    assert isinstance(success["message"], str) and success["message"]
    (failure,) = status["failures"]
    assert failure["id"] == bad["id"]
    assert failure["version"] == bad["modified"]
    assert "created" in failure["message"] and "yesterday" in failure["message"]
    to_micros(status["request_timestamp"])

    status_url = f"{node.api_root}status/{status['id']}/"
    assert ok(get(writer, status_url)) == status
    assert ok(get(session(), status_url)) == status
    # A status belongs to the account that made the POST (and admins): another
    # account, even one that reads the collection, does not learn it exists.
    assert_error(get(session("reader"), status_url), 404)
    assert_error(get(session("outsider"), status_url), 404)
    assert_error(get(session("nobody"), status_url), 404)
    assert_error(get(writer, f"{node.api_root}status/{uuid.uuid4()}/"), 404)
    assert_error(get(writer, f"{node.api_root}status/not-a-status/"), 404)


# --------------------------------------------------------------------------- objects


def test_objects_post_and_get(alpha, admin):
    first, second = indicator(), malware()
    add(admin, alpha, first, second)
    response = get(admin, alpha + "objects/", **{"match[id]": ids_param(first, second)})
    body = ok(response)
    assert body["more"] is False
    assert body["objects"] == [first, second]
    first_added, last_added = date_headers(response)
    assert first_added < last_added


def test_object_get_and_versions(alpha, admin):
    object_id = random_id("indicator")
    versions = [indicator(object_id, t) for t in (T1, T2, T3)]
    add(admin, alpha, *versions)

    body = ok(get(admin, alpha + f"objects/{object_id}/"))
    assert body["objects"] == [versions[2]]

    response = get(admin, alpha + f"objects/{object_id}/versions/")
    body = ok(response)
    assert body == {"more": False, "versions": [T1, T2, T3]}
    first_added, last_added = date_headers(response)
    assert first_added < last_added


@pytest.mark.parametrize(
    ("match_version", "expected"),
    [
        (None, [T3]),
        ("last", [T3]),
        ("first", [T1]),
        ("all", [T1, T2, T3]),
        (T2, [T2]),
        ("2024-02-01T00:00:00Z", [T2]),  # the same instant, written differently
        (f"{T1},{T3}", [T1, T3]),
        (f"first,{T2}", [T1, T2]),
        ("first,last", [T1, T3]),
        ("2030-01-01T00:00:00Z", []),
    ],
)
def test_match_version(alpha, admin, match_version, expected):
    object_id = random_id("indicator")
    other = indicator()
    add(admin, alpha, *(indicator(object_id, t) for t in (T1, T2, T3)), other)
    params = {} if match_version is None else {"match[version]": match_version}

    one = get(admin, alpha + f"objects/{object_id}/", **params)
    assert [obj["modified"] for obj in ok(one).get("objects", [])] == expected
    assert date_headers(one)

    many = ok(
        get(admin, alpha + "objects/", **{"match[id]": f"{object_id},{other['id']}"}, **params)
    )
    assert [o["modified"] for o in many.get("objects", []) if o["id"] == object_id] == expected
    records = manifest_of(admin, alpha, **{"match[id]": object_id}, **params)
    assert [record["version"] for record in records] == expected


def test_repost_identical_version_is_success_without_duplicate(alpha, admin):
    object_id = random_id("indicator")
    versions = [indicator(object_id, t) for t in (T1, T2, T3)]
    add(admin, alpha, *versions)

    status = add(admin, alpha, versions[0])
    assert status["successes"] == [{"id": object_id, "version": T1, "message": "already present"}]
    # The same version twice in one envelope is one version too.
    status = add(admin, alpha, versions[1], versions[1])
    assert [s["message"] for s in status["successes"]] == ["already present", "already present"]

    assert ok(get(admin, alpha + f"objects/{object_id}/versions/"))["versions"] == [T1, T2, T3]
    every = ok(get(admin, alpha + f"objects/{object_id}/", **{"match[version]": "all"}))
    assert every["objects"] == versions


def test_different_object_under_an_existing_version_is_a_failure(alpha, admin):
    original = indicator()
    add(admin, alpha, original)
    impostor = dict(original, name="something else")
    response = post(admin, alpha, {"objects": [impostor]})
    assert response.status_code == 202
    status = response.json()
    assert (status["success_count"], status["failure_count"]) == (0, 1)
    (failure,) = status["failures"]
    assert failure["id"] == original["id"] and failure["version"] == T1
    assert failure["message"]

    body = ok(get(admin, alpha + f"objects/{original['id']}/", **{"match[version]": "all"}))
    assert body["objects"] == [original]


def test_sco_without_created_or_modified_is_one_version(alpha, admin):
    address = ipv4("203.0.113.5")
    add(admin, alpha, address)
    status = add(admin, alpha, address)
    assert status["successes"][0]["message"] == "already present"

    response = get(admin, alpha + f"objects/{address['id']}/versions/")
    body = ok(response)
    (label,) = body["versions"]
    first_added, last_added = date_headers(response)
    # The one version is labelled by its date_added.
    assert to_micros(label) == first_added == last_added
    assert ok(get(admin, alpha + f"objects/{address['id']}/"))["objects"] == [address]
    (record,) = manifest_of(admin, alpha, **{"match[id]": address["id"]})
    assert record["version"] == label

    # The label is the version: match[version] selects it like any other.
    for params in ({"match[version]": label}, {"match[version]": "first"}, {}):
        body = ok(get(admin, alpha + f"objects/{address['id']}/", **params))
        assert body["objects"] == [address], params
    (record,) = manifest_of(admin, alpha, **{"match[id]": address["id"], "match[version]": label})
    assert record["id"] == address["id"]

    changed = dict(address, value="203.0.113.6")
    response = post(admin, alpha, {"objects": [changed]})
    assert response.json()["failure_count"] == 1
    assert ok(get(admin, alpha + f"objects/{address['id']}/versions/"))["versions"] == [label]
    assert ok(get(admin, alpha + f"objects/{address['id']}/"))["objects"] == [address]

    url = alpha + f"objects/{address['id']}/"
    assert_error(admin.delete(url, params={"match[version]": T1}, timeout=30), 404)
    assert admin.delete(url, params={"match[version]": label}, timeout=30).status_code == 200
    assert_error(get(admin, url), 404)


def test_object_not_found(alpha, admin):
    missing = random_id("indicator")
    assert_error(get(admin, alpha + f"objects/{missing}/"), 404)
    assert_error(get(admin, alpha + f"objects/{missing}/versions/"), 404)
    assert_error(admin.delete(alpha + f"objects/{missing}/", timeout=30), 404)


# --------------------------------------------------------------------------- delete


def test_delete_object_with_match_version(alpha, admin):
    object_id = random_id("indicator")
    add(admin, alpha, *(indicator(object_id, t) for t in (T1, T2, T3)))
    versions_url = alpha + f"objects/{object_id}/versions/"

    response = admin.delete(alpha + f"objects/{object_id}/", params={"match[version]": "first"})
    assert response.status_code == 200
    assert is_taxii(response)
    assert ok(get(admin, versions_url))["versions"] == [T2, T3]

    response = admin.delete(alpha + f"objects/{object_id}/", params={"match[version]": T3})
    assert response.status_code == 200
    assert ok(get(admin, versions_url))["versions"] == [T2]
    assert ok(get(admin, alpha + f"objects/{object_id}/"))["objects"][0]["modified"] == T2

    # Nothing matches: nothing deleted.
    response = admin.delete(alpha + f"objects/{object_id}/", params={"match[version]": T1})
    assert_error(response, 404)
    assert ok(get(admin, versions_url))["versions"] == [T2]

    assert admin.delete(alpha + f"objects/{object_id}/", timeout=30).status_code == 200
    assert_error(get(admin, alpha + f"objects/{object_id}/"), 404)
    assert_error(get(admin, versions_url), 404)
    assert manifest_of(admin, alpha, **{"match[id]": object_id}) == []
    assert_error(admin.delete(alpha + f"objects/{object_id}/", timeout=30), 404)


def test_delete_all_versions_by_default(alpha, admin):
    object_id = random_id("indicator")
    add(admin, alpha, *(indicator(object_id, t) for t in (T1, T2)))
    assert admin.delete(alpha + f"objects/{object_id}/", timeout=30).status_code == 200
    assert_error(get(admin, alpha + f"objects/{object_id}/versions/"), 404)


def test_delete_stays_in_its_collection(node, admin):
    alpha, beta = node.collection_url("alpha"), node.collection_url("beta")
    shared = indicator()
    add(admin, alpha, shared)
    add(admin, beta, shared)
    assert admin.delete(alpha + f"objects/{shared['id']}/", timeout=30).status_code == 200
    assert_error(get(admin, alpha + f"objects/{shared['id']}/"), 404)
    assert ok(get(admin, beta + f"objects/{shared['id']}/"))["objects"] == [shared]


def test_delete_needs_rights(alpha, admin):
    obj = indicator()
    add(admin, alpha, obj)
    url = alpha + f"objects/{obj['id']}/"
    assert_error(session("reader").delete(url, timeout=30), 403)
    assert_error(session("outsider").delete(url, timeout=30), 404)
    assert_error(requests.delete(url, timeout=30), 401)
    assert ok(get(admin, url))["objects"] == [obj]


# --------------------------------------------------------------------------- manifest


def test_manifest_records(alpha, admin):
    object_id = random_id("indicator")
    other = malware()
    add(admin, alpha, indicator(object_id, T1), other)
    add(admin, alpha, indicator(object_id, T2))

    response = get(admin, alpha + "manifest/", **{"match[id]": f"{object_id},{other['id']}"})
    body = ok(response)
    assert body["more"] is False
    records = body["objects"]
    assert [(r["id"], r["version"]) for r in records] == [(other["id"], T1), (object_id, T2)]
    for record in records:
        assert record["media_type"] == STIX_21
        assert set(record) == {"id", "date_added", "version", "media_type"}
    added = [to_micros(r["date_added"]) for r in records]
    assert date_headers(response) == (added[0], added[-1])

    every = manifest_of(
        admin, alpha, **{"match[id]": f"{object_id},{other['id']}", "match[version]": "all"}
    )
    assert [(r["id"], r["version"]) for r in every] == [
        (object_id, T1),
        (other["id"], T1),
        (object_id, T2),
    ]


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    "accept",
    [
        TAXII_21,
        "application/taxii+json; version=2.1",
        "application/taxii+json",
        "*/*",
        "application/*",
        "text/html;q=0.9, application/taxii+json;q=0.8",
        "application/json, application/taxii+json;version=2.1;q=0.5",
        "application/taxii+json;version=2.0, application/taxii+json;version=2.1",
        None,
    ],
)
def test_accept_header_admitting_taxii_21(alpha, accept):
    client = session()
    client.headers.pop("Accept")
    headers = {} if accept is None else {"Accept": accept}
    for url in (alpha, alpha + "objects/", alpha + "manifest/"):
        response = client.get(url, headers=headers, timeout=30)
        if accept is None:
            assert "Accept" not in response.request.headers
        assert response.status_code == 200, (accept, response.text)
        assert is_taxii(response)


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "application/taxii+json;version=2.0",
        "text/html",
        "application/stix+json;version=2.1",
        "application/taxii+json;version=2.1;q=0",
    ],
)
def test_accept_header_refusing_taxii_21_is_406(node, alpha, accept):
    client = session()
    for url in (node.base_url + "/taxii2/", node.api_root, alpha, alpha + "objects/"):
        assert_error(client.get(url, headers={"Accept": accept}, timeout=30), 406)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/taxii+json;version=2.0",
        "text/plain",
        "application/stix+json",
    ],
)
def test_post_with_another_content_type_is_415(alpha, admin, content_type):
    obj = indicator()
    assert_error(post(admin, alpha, {"objects": [obj]}, content_type=content_type), 415)
    assert_error(get(admin, alpha + f"objects/{obj['id']}/"), 404)


def test_post_without_content_type_is_415(alpha, admin):
    response = admin.post(alpha + "objects/", data=b'{"objects": []}', timeout=30)
    assert "Content-Type" not in response.request.headers
    assert_error(response, 415)


@pytest.mark.parametrize(
    "content_type", ["application/taxii+json", "application/taxii+json; version=2.1"]
)
def test_post_with_taxii_content_type_variants(alpha, admin, content_type):
    obj = indicator()
    response = post(admin, alpha, {"objects": [obj]}, content_type=content_type)
    assert response.status_code == 202, response.text
    assert ok(get(admin, alpha + f"objects/{obj['id']}/"))["objects"] == [obj]


# --------------------------------------------------------------------------- filters


def test_match_id_type_and_spec_version(alpha, admin):
    ind, mal, address = indicator(), malware(), ipv4()
    add(admin, alpha, ind, mal, address)
    every = ids_param(ind, mal, address)

    def selected(**params) -> list[str]:
        return ids_of(ok(get(admin, alpha + "objects/", **{"match[id]": every, **params})))

    assert selected() == [ind["id"], mal["id"], address["id"]]
    assert selected(**{"match[type]": "indicator"}) == [ind["id"]]
    # Values of one field are ORed ...
    assert selected(**{"match[type]": "indicator,ipv4-addr"}) == [ind["id"], address["id"]]
    # ... fields are ANDed.
    assert selected(**{"match[type]": "malware", "match[id]": ids_param(ind, address)}) == []
    assert selected(**{"match[type]": "malware", "match[id]": ids_param(ind, mal)}) == [mal["id"]]
    assert selected(**{"match[spec_version]": "2.1"}) == [ind["id"], mal["id"], address["id"]]
    assert selected(**{"match[spec_version]": "2.0"}) == []
    assert selected(**{"match[spec_version]": "2.0,2.1", "match[type]": "malware"}) == [mal["id"]]
    assert selected(**{"match[type]": "x-unknown-type"}) == []

    records = manifest_of(admin, alpha, **{"match[id]": every, "match[type]": "malware"})
    assert [r["id"] for r in records] == [mal["id"]]


def test_added_after(alpha, admin):
    early, late = indicator(), indicator()
    both = ids_param(early, late)
    add(admin, alpha, early)
    response = get(admin, alpha + "objects/", **{"match[id]": both})
    assert ids_of(ok(response)) == [early["id"]]
    early_added = date_headers(response)[1]
    resume_from = response.headers[DATE_LAST]
    add(admin, alpha, late)

    response = get(admin, alpha + "objects/", **{"match[id]": both, "added_after": resume_from})
    assert ids_of(ok(response)) == [late["id"]]
    late_added = date_headers(response)[0]
    assert late_added > early_added
    records = manifest_of(admin, alpha, **{"match[id]": both, "added_after": resume_from})
    assert [r["id"] for r in records] == [late["id"]]

    # added_after is exclusive, and compares instants whatever the precision written.
    response = get(
        admin, alpha + "objects/", **{"match[id]": both, "added_after": from_micros(late_added)}
    )
    assert "objects" not in ok(response)
    just_before = from_micros(late_added - 1)
    response = get(admin, alpha + "objects/", **{"match[id]": both, "added_after": just_before})
    assert ids_of(ok(response)) == [late["id"]]
    whole_second = from_micros((early_added - 1) // 1_000_000 * 1_000_000)[:19] + "Z"
    response = get(admin, alpha + "objects/", **{"match[id]": both, "added_after": whole_second})
    assert ids_of(ok(response)) == [early["id"], late["id"]]
    assert "objects" not in ok(
        get(admin, alpha + "objects/", **{"match[id]": both, "added_after": "2999-01-01T00:00:00Z"})
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("added_after", "yesterday"),
        ("added_after", "2024-01-01"),
        ("added_after", "2024-02-30T00:00:00Z"),
        ("added_after", "2024-01-01T00:00:00+01:00"),
        ("limit", "-1"),
        ("limit", "abc"),
        ("limit", "0"),
        ("limit", "1.5"),
        ("limit", ""),
        ("limit", "\u00b2"),  # a digit to str.isdigit, not to int()
        ("limit", "\u0663"),  # an Arabic-Indic digit 3
        ("match[version]", "bogus"),
        ("match[version]", "last,"),
        ("match[id]", "not-an-id"),
        ("match[id]", "indicator--1234"),
        ("match[type]", "BAD TYPE"),
        ("match[type]", "indicator,"),
        ("match[spec_version]", "two"),
        ("next", "forged"),
        ("next", "a.b.c"),
        ("next", "\u00e9t\u00e9.x"),
    ],
)
def test_malformed_filter_is_400(alpha, admin, name, value):
    assert_error(get(admin, alpha + "objects/", **{name: value}), 400)
    assert_error(get(admin, alpha + "manifest/", **{name: value}), 400)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("added_after", "yesterday"),
        ("limit", "-1"),
        ("limit", "\u00b2"),
        ("match[version]", "bogus"),
        ("next", "forged"),
    ],
)
def test_malformed_filter_on_one_object_is_400(alpha, admin, name, value):
    obj = indicator()
    add(admin, alpha, obj)
    url = alpha + f"objects/{obj['id']}/"
    assert_error(get(admin, url, **{name: value}), 400)
    if name != "match[version]":  # not a filter of the versions endpoint (5.8)
        assert_error(get(admin, url + "versions/", **{name: value}), 400)
    if name == "match[version]":
        assert_error(admin.delete(url, params={name: value}, timeout=30), 400)
        assert ok(get(admin, url))["objects"] == [obj]


def test_path_segments_that_no_store_can_hold_are_not_500(node, alpha, admin):
    for url in (
        f"{node.api_root}collections/bad%00id/",
        f"{node.api_root}collections/bad%00id/objects/",
        f"{node.api_root}status/bad%00id/",
        alpha + "objects/indicator--bad%00id/",
        alpha + "objects/indicator--bad%00id/versions/",
    ):
        response = get(admin, url)
        assert response.status_code in (400, 404), (url, response.text)
        assert_error(response, response.status_code)


# --------------------------------------------------------------------------- date headers, order


def test_date_headers_on_every_200(alpha, admin):
    obj = indicator()
    add(admin, alpha, obj)
    (record,) = manifest_of(admin, alpha, **{"match[id]": obj["id"]})
    added = to_micros(record["date_added"])
    urls = [
        (alpha + "objects/", {"match[id]": obj["id"]}),
        (alpha + "manifest/", {"match[id]": obj["id"]}),
        (alpha + f"objects/{obj['id']}/", {}),
        (alpha + f"objects/{obj['id']}/versions/", {}),
    ]
    for url, params in urls:
        response = get(admin, url, **params)
        ok(response)
        assert date_headers(response) == (added, added), url
    # Empty results carry both headers too.
    for url, params in urls:
        response = get(admin, url, **params, added_after=record["date_added"])
        body = ok(response)
        assert "objects" not in body and "versions" not in body
        first, last = date_headers(response)
        assert first == last == added, url


def test_resuming_from_the_date_headers_of_an_empty_page(node, admin):
    gamma = node.collection_url("gamma")
    for start in ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2999-12-31T23:59:59.5Z"):
        response = get(admin, gamma + "objects/", added_after=start)
        assert ok(response) == {"more": False}
        assert date_headers(response) == (to_micros(start), to_micros(start))
        # A poller sends -Last back as added_after: it must be a valid timestamp.
        resumed = get(admin, gamma + "objects/", added_after=response.headers[DATE_LAST])
        assert ok(resumed) == {"more": False}
        assert resumed.headers[DATE_LAST] == response.headers[DATE_LAST]


def test_empty_collection_omits_empty_lists(node, admin):
    gamma = node.collection_url("gamma")
    for url in (gamma + "objects/", gamma + "manifest/"):
        response = get(admin, url)
        assert ok(response) == {"more": False}
        assert DATE_FIRST in response.headers and DATE_LAST in response.headers
        date_headers(response)


def test_results_sorted_by_date_added(alpha, admin):
    objects = [indicator() for _ in range(6)]
    add(admin, alpha, *objects[:3])
    add(admin, alpha, *objects[3:5])
    add(admin, alpha, objects[5])
    every = ids_param(*reversed(objects))
    assert ids_of(ok(get(admin, alpha + "objects/", **{"match[id]": every}))) == [
        obj["id"] for obj in objects
    ]
    records = manifest_of(admin, alpha, **{"match[id]": every})
    added = [to_micros(r["date_added"]) for r in records]
    assert added == sorted(added) and len(set(added)) == len(added)
    assert [r["id"] for r in records] == [obj["id"] for obj in objects]


# --------------------------------------------------------------------------- pagination


def pages(client: requests.Session, url: str, **params) -> list[dict]:
    """Every page of a paged endpoint, following ``next``."""
    result = [ok(get(client, url, **params))]
    while result[-1]["more"]:
        assert len(result) < 50
        result.append(ok(get(client, url, **params, next=result[-1]["next"])))
    return result


def test_pagination_across_pages(alpha, admin):
    objects = [indicator() for _ in range(7)]
    add(admin, alpha, *objects)
    expected = [obj["id"] for obj in objects]
    filters = {"match[id]": ids_param(*objects), "limit": "3"}

    got = pages(admin, alpha + "objects/", **filters)
    assert [len(page.get("objects", [])) for page in got] == [3, 3, 1]
    assert [page["more"] for page in got] == [True, True, False]
    assert [i for page in got for i in ids_of(page)] == expected

    got = pages(admin, alpha + "manifest/", **filters)
    assert [r["id"] for page in got for r in page.get("objects", [])] == expected

    object_id = random_id("indicator")
    add(admin, alpha, *(indicator(object_id, t) for t in (T1, T2, T3)))
    got = pages(admin, alpha + f"objects/{object_id}/versions/", limit="1")
    assert [v for page in got for v in page.get("versions", [])] == [T1, T2, T3]
    got = pages(admin, alpha + f"objects/{object_id}/", limit="2", **{"match[version]": "all"})
    assert [o["modified"] for page in got for o in page.get("objects", [])] == [T1, T2, T3]


def test_next_page_headers_follow_the_pages(alpha, admin):
    objects = [indicator() for _ in range(4)]
    add(admin, alpha, *objects)
    filters = {"match[id]": ids_param(*objects), "limit": "2"}
    first = get(admin, alpha + "objects/", **filters)
    second = get(admin, alpha + "objects/", **filters, next=ok(first)["next"])
    assert ids_of(ok(second)) == [obj["id"] for obj in objects[2:]]
    assert date_headers(first)[1] < date_headers(second)[0]


def test_next_without_limit(alpha, admin):
    objects = [indicator() for _ in range(5)]
    add(admin, alpha, *objects)
    filters = {"match[id]": ids_param(*objects)}
    token = ok(get(admin, alpha + "objects/", **filters, limit="2"))["next"]
    body = ok(get(admin, alpha + "objects/", **filters, next=token))
    assert body["more"] is False
    assert ids_of(body) == [obj["id"] for obj in objects[2:]]
    # The limit may change from page to page.
    body = ok(get(admin, alpha + "objects/", **filters, next=token, limit="1"))
    assert ids_of(body) == [objects[2]["id"]] and body["more"] is True


def test_next_token_replayed_with_other_filters_is_400(node, alpha, admin):
    objects = [indicator() for _ in range(4)]
    add(admin, alpha, *objects)
    filters = {"match[id]": ids_param(*objects), "limit": "2"}
    token = ok(get(admin, alpha + "objects/", **filters))["next"]

    for other in (
        {**filters, "match[id]": ids_param(*objects[:3])},
        {**filters, "match[type]": "indicator"},
        {**filters, "match[version]": "all"},
        {"limit": "2"},
    ):
        assert_error(get(admin, alpha + "objects/", **other, next=token), 400)
    # Another endpoint or another collection: 400 too.
    assert_error(get(admin, alpha + "manifest/", **filters, next=token), 400)
    beta = node.collection_url("beta")
    assert_error(get(admin, beta + "objects/", **filters, next=token), 400)
    # The genuine request still works.
    assert len(ids_of(ok(get(admin, alpha + "objects/", **filters, next=token)))) == 2


def test_next_token_pages_on_with_added_after_left_out_or_written_otherwise(alpha, admin):
    """OpenCTI's taxii2 connector drops ``added_after`` when it follows ``next``; other
    clients write the instant with other digits: the token's position holds."""
    objects = [indicator() for _ in range(6)]
    add(admin, alpha, *objects)
    since = {"match[id]": ids_param(*objects), "added_after": "2020-01-01T00:00:00.000000Z"}
    first = ok(get(admin, alpha + "objects/", **since, limit="2"))
    assert ids_of(first) == [obj["id"] for obj in objects[:2]]
    for follow_up in ({"match[id]": since["match[id]"]},
                      {**since, "added_after": "2020-01-01T00:00:00Z"}):  # fmt: skip
        body = ok(get(admin, alpha + "objects/", **follow_up, limit="2", next=first["next"]))
        assert ids_of(body) == [obj["id"] for obj in objects[2:4]] and body["more"] is True
    # A later added_after than the token's position bounds the page instead.
    last = get(admin, alpha + "objects/", **{**since, "limit": "5"}).headers[DATE_LAST]
    later = ok(get(admin, alpha + "objects/", **{**since, "added_after": last},
                   limit="2", next=first["next"]))  # fmt: skip
    assert ids_of(later) == [objects[5]["id"]]


def test_tampered_next_token_is_400(alpha, admin):
    objects = [indicator() for _ in range(3)]
    add(admin, alpha, *objects)
    filters = {"match[id]": ids_param(*objects), "limit": "1"}
    token = ok(get(admin, alpha + "objects/", **filters))["next"]
    payload, signature = token.split(".")

    def flipped(text: str, index: int) -> str:
        return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]

    for forged in (
        flipped(payload, 3) + "." + signature,
        payload + "." + flipped(signature, 0),
        payload + "." + signature[:-2],
        payload,
        token + ".x",
        payload[::-1] + "." + signature,
    ):
        assert_error(get(admin, alpha + "objects/", **filters, next=forged), 400)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "",
        "[]",
        json.dumps([{"objects": []}]),
        json.dumps("objects"),
        json.dumps(42),
        "null",
        json.dumps({"foo": 1}),
        json.dumps({"objects": "indicator"}),
        json.dumps({"objects": {"id": "x"}}),
        b"\xff\xfe not utf-8",
    ],
)
def test_body_that_is_not_an_envelope_is_400(alpha, admin, body):
    assert_error(post(admin, alpha, body), 400)


def test_invalid_object_is_a_failure_and_never_stored(alpha, admin):
    bad = indicator(created="yesterday")
    also_bad = malware()
    del also_bad["is_family"]
    good = indicator()
    response = post(admin, alpha, {"objects": [bad, good, also_bad, "not an object", 7]})
    assert response.status_code == 202
    status = response.json()
    assert (status["success_count"], status["failure_count"]) == (1, 4)
    assert status["successes"][0]["id"] == good["id"]
    assert [f["id"] for f in status["failures"][:2]] == [bad["id"], also_bad["id"]]
    assert all(f["message"] for f in status["failures"])
    # Every status detail names a version (4.3.1; MISP's push reads it): the object's
    # own where it has a valid one, else the instant of the request.
    versions = [f["version"] for f in status["failures"]]
    assert versions[1] == also_bad["modified"]
    assert all(is_timestamp(version) for version in versions), versions
    assert versions[2:] == [status["request_timestamp"]] * 2  # not objects at all

    assert_error(get(admin, alpha + f"objects/{bad['id']}/"), 404)
    assert_error(get(admin, alpha + f"objects/{also_bad['id']}/"), 404)
    assert ok(get(admin, alpha + f"objects/{good['id']}/"))["objects"] == [good]
    # The collection stays readable as a whole.
    ok(get(admin, alpha + "objects/"))
    ok(get(admin, alpha + "manifest/"))


def test_unpaired_surrogate_is_refused_not_a_500(alpha, admin):
    good, bad = indicator(), indicator(name="NAME")
    text = json.dumps({"objects": [bad, good]}).replace('"NAME"', '"\\ud800 lone"')
    response = post(admin, alpha, text)
    # "\ud800" alone is not Unicode: the envelope may be refused as a whole (400),
    # or the object may fail on its own (202); it is never stored, never a 500.
    if response.status_code == 202:
        status = response.json()
        assert (status["success_count"], status["failure_count"]) == (1, 1)
        assert status["failures"][0]["id"] == bad["id"]
    else:
        assert_error(response, 400)
    assert_error(get(admin, alpha + f"objects/{bad['id']}/"), 404)
    ok(get(admin, alpha + "objects/"))


def test_control_characters_survive_a_round_trip(alpha, admin):
    obj = indicator(name="nul\u0000 tab\t \u00e9 \U0001f600")
    add(admin, alpha, obj)
    assert ok(get(admin, alpha + f"objects/{obj['id']}/"))["objects"] == [obj]


def test_empty_envelope_is_accepted(alpha, admin):
    response = post(admin, alpha, {"objects": []})
    assert response.status_code == 202
    status = response.json()
    assert (status["total_count"], status["success_count"], status["failure_count"]) == (0, 0, 0)
    assert "successes" not in status and "failures" not in status


def test_bundle_is_accepted_as_an_envelope(alpha, admin):
    objects = [indicator(), malware()]
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    response = post(admin, alpha, bundle)
    assert response.status_code == 202
    assert response.json()["success_count"] == 2
    body = ok(get(admin, alpha + "objects/", **{"match[id]": ids_param(*objects)}))
    assert body["objects"] == objects


def test_body_over_max_content_length_is_413(alpha, admin):
    objects = [indicator() for _ in range(80)]
    text = json.dumps({"objects": objects}).encode()
    assert len(text) > MAX_CONTENT_LENGTH
    headers = {"Content-Type": TAXII_21}

    response = admin.post(alpha + "objects/", data=text, headers=headers, timeout=30)
    assert response.request.headers["Content-Length"] == str(len(text))
    assert_error(response, 413)

    chunks = (text[i : i + 4096] for i in range(0, len(text), 4096))
    response = admin.post(alpha + "objects/", data=chunks, headers=headers, timeout=30)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.request.headers
    assert_error(response, 413)
    assert manifest_of(admin, alpha, **{"match[id]": ids_param(*objects[:50])}) == []

    # Under the limit, a chunked body is read whole.
    small = objects[:20]
    text = json.dumps({"objects": small}).encode()
    assert len(text) < MAX_CONTENT_LENGTH
    chunks = (text[i : i + 1000] for i in range(0, len(text), 1000))
    response = admin.post(alpha + "objects/", data=chunks, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == 20


# --------------------------------------------------------------------------- authentication


def test_no_credentials_is_401(node, alpha):
    for url in (node.base_url + "/taxii2/", node.api_root, alpha, alpha + "objects/"):
        response = requests.get(url, headers={"Accept": TAXII_21}, timeout=30)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    response = requests.post(
        alpha + "objects/", data="{}", headers={"Content-Type": TAXII_21}, timeout=30
    )
    assert_error(response, 401)


@pytest.mark.parametrize(
    "auth",
    [("admin", "wrong-password"), ("ghost", PASSWORD), ("reader", ADMIN_PASSWORD), ("", "")],
)
def test_bad_credentials_are_401(alpha, auth):
    response = requests.get(alpha, auth=auth, headers={"Accept": TAXII_21}, timeout=30)
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        "Basic Zm9v",  # "foo": no colon
        "Basic " + base64.b64encode(b"ad\x00min:" + ADMIN_PASSWORD.encode()).decode(),
        "Basic " + base64.b64encode(b"\xff:password").decode(),
    ],
)
def test_malformed_authorization_is_401(alpha, authorization):
    response = requests.get(
        alpha, headers={"Accept": TAXII_21, "Authorization": authorization}, timeout=30
    )
    assert_error(response, 401)


def test_rights_are_enforced(alpha):
    obj = indicator()
    assert_error(post(session("reader"), alpha, {"objects": [obj]}), 403)
    assert_error(get(session("writer"), alpha + "objects/"), 403)
    assert_error(get(session("writer"), alpha + "manifest/"), 403)
    status = add(session("writer"), alpha, obj)
    assert status["successes"][0]["id"] == obj["id"]
    assert_error(get(session("writer"), alpha + f"objects/{obj['id']}/"), 403)
    assert_error(get(session("writer"), alpha + f"objects/{obj['id']}/versions/"), 403)
    assert ok(get(session("reader"), alpha + f"objects/{obj['id']}/"))["objects"] == [obj]


# --------------------------------------------------------------------------- restart (last)


def test_next_token_survives_a_restart(node, alpha, admin):
    objects = [indicator() for _ in range(5)]
    add(admin, alpha, *objects)
    filters = {"match[id]": ids_param(*objects), "limit": "2"}
    token = ok(get(admin, alpha + "objects/", **filters))["next"]

    node.stop()
    node.start()

    client = session()
    body = ok(get(client, alpha + "objects/", **filters, next=token))
    assert ids_of(body) == [obj["id"] for obj in objects[2:4]]
    body = ok(get(client, alpha + "objects/", **filters, next=body["next"]))
    assert ids_of(body) == [objects[4]["id"]] and body["more"] is False
