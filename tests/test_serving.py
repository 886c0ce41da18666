"""Keep serving: hostile and unusual requests of issue 9, and collection aliases in paths.

The HTTP-layer cases run in-process (``create_app(...).test_client()``) on a
store of their own; what depends on gunicorn (trickling clients, requests
without Host, redirects of non-canonical paths) runs against a real server on
a loopback port (see the later sections).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from node.app import create_app
from node.collection_files import load_collection_files
from node.config import load_config
from node.store import Store, accounts, catalog
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS, NodeFiles, free_port, random_id

TAXII_21 = "application/taxii+json;version=2.1"
CREATED = "2024-05-01T12:00:00.000Z"


# --------------------------------------------------------------------------- in-process node


@dataclass
class InProcessNode:
    client: FlaskClient
    store: Store
    api_root: str = "/api/"

    def collection(self, alias: str, name: str | None = None) -> str:
        """The collection's URL path, by its id or (``name=alias``) by its alias."""
        return f"{self.api_root}collections/{name or COLLECTIONS[alias]}/"

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers=_headers(), **kwargs)

    def post(self, path: str, body: bytes | str | dict):
        data = json.dumps(body) if isinstance(body, dict) else body
        return self.client.post(path, data=data, headers={**_headers(), "Content-Type": TAXII_21})

    def delete(self, path: str, **kwargs):
        return self.client.delete(path, headers=_headers(), **kwargs)


def _headers() -> dict[str, str]:
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII_21}


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[InProcessNode]:
    directory = tmp_path_factory.mktemp("serving")
    files = NodeFiles(
        directory=directory,
        name="serving-node",
        store_url=f"sqlite:///{directory / 'node.db'}",
        port=free_port(),
    )
    config = load_config(files.config_path)
    store = Store(config.store_url)
    store.migrate()
    with store.write() as connection:
        for collection in load_collection_files(Path(config.taxii.collections_dir)):
            catalog.upsert(connection, collection)
        accounts.add_user(connection, "admin", ADMIN_PASSWORD, is_admin=True)
    app = create_app(config, store)
    yield InProcessNode(app.test_client(), store)
    store.close()


def indicator(**extra) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": random_id("indicator"),
        "created": CREATED,
        "modified": CREATED,
        "name": "serving test",
        "pattern": "[ipv4-addr:value = '198.51.100.9']",
        "pattern_type": "stix",
        "valid_from": CREATED,
        **extra,
    }


def objects_of(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json().get("objects", [])


def assert_taxii_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"].replace(" ", "") == TAXII_21
    body = response.get_json()
    assert body["http_status"] == str(status) and body["description"]
    return body


# --------------------------------------------------------------------------- aliases


def test_a_collection_alias_works_like_its_id_on_every_endpoint(node):
    by_alias = node.collection("alpha", name="alpha")
    by_id = node.collection("alpha")
    obj = indicator()

    status = node.post(by_alias + "objects/", {"objects": [obj]})
    assert status.status_code == 202, status.get_data(as_text=True)
    assert status.get_json()["success_count"] == 1

    assert node.get(by_alias).get_json() == node.get(by_id).get_json()
    assert node.get(by_alias).get_json()["id"] == COLLECTIONS["alpha"]
    assert objects_of(node.get(by_alias + "objects/", query_string={"match[id]": obj["id"]})) == [
        obj
    ]
    assert objects_of(node.get(f"{by_alias}objects/{obj['id']}/")) == [obj]
    versions = node.get(f"{by_alias}objects/{obj['id']}/versions/")
    assert versions.get_json()["versions"] == [CREATED]
    manifest = objects_of(node.get(by_alias + "manifest/", query_string={"match[id]": obj["id"]}))
    assert [record["id"] for record in manifest] == [obj["id"]]
    # The object went into the collection with that id, and nowhere else.
    assert objects_of(node.get(f"{by_id}objects/{obj['id']}/")) == [obj]
    assert_taxii_error(node.get(f"{node.collection('beta', name='beta')}objects/{obj['id']}/"), 404)

    assert node.delete(f"{by_alias}objects/{obj['id']}/").status_code == 200
    assert_taxii_error(node.get(f"{by_id}objects/{obj['id']}/"), 404)


def test_an_unknown_alias_or_api_root_is_404(node):
    assert_taxii_error(node.get(node.collection("alpha", name="no-such-alias")), 404)
    assert_taxii_error(node.get(node.collection("alpha", name="no-such-alias") + "objects/"), 404)
    assert_taxii_error(node.get("/other-root/collections/alpha/objects/"), 404)
    assert_taxii_error(node.get("/other-root/"), 404)


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("match[spec_version]", "\uff12.\uff11"),  # fullwidth digits
        ("match[spec_version]", "\u0662.\u0661"),  # Arabic-Indic digits
        ("limit", "\uff11\uff10"),
        ("limit", "\u0663"),
        ("added_after", "\uff12\uff10\uff12\uff14-01-01T00:00:00Z"),
        ("match[version]", "2024-01-01T00:00:00.\uff11Z"),
    ],
)
def test_filters_take_ascii_digits_only(node, name, value):
    body = assert_taxii_error(
        node.get(node.collection("alpha") + "objects/", query_string={name: value}), 400
    )
    assert name in body["description"]


def test_ascii_spec_version_filter_still_matches(node):
    obj = indicator()
    node.post(node.collection("alpha") + "objects/", {"objects": [obj]})
    found = node.get(
        node.collection("alpha") + "objects/",
        query_string={"match[id]": obj["id"], "match[spec_version]": "2.1"},
    )
    assert objects_of(found) == [obj]


# --------------------------------------------------------------------------- deep nesting


def nested_list(levels: int) -> object:
    """``levels`` levels of nested JSON arrays ([] is one level)."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


def deep_object(levels: int) -> dict:
    """An indicator nested ``levels`` deep, counting the object itself as level 1."""
    return indicator(x_deep=nested_list(levels - 1))


def text_of(levels: int) -> str:
    """JSON of ``deep_object`` written without recursion (json.dumps stops near 1000)."""
    obj = indicator()
    head = json.dumps(obj)[:-1]
    return head + ', "x_deep": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


@pytest.mark.parametrize("levels", [255, 600, 1000, 1023, 1100, 5000])
def test_an_object_nested_too_deeply_fails_alone_and_its_siblings_are_stored(node, levels):
    before, after = indicator(), indicator()
    deep_text = text_of(levels)
    deep_id = json.loads(deep_text[: deep_text.index(', "x_deep"')] + "}")["id"]
    body = '{"objects": [' + ", ".join([json.dumps(before), deep_text, json.dumps(after)]) + "]}"

    response = node.post(node.collection("alpha") + "objects/", body)

    assert response.status_code == 202, response.get_data(as_text=True)[:500]
    status = response.get_json()
    assert [s["id"] for s in status["successes"]] == [before["id"], after["id"]]
    (failure,) = status["failures"]
    assert failure["id"] == deep_id
    assert "nested deeper than 254 levels" in failure["message"]
    for obj in (before, after):
        assert objects_of(node.get(f"{node.collection('alpha')}objects/{obj['id']}/")) == [obj]
    assert_taxii_error(node.get(f"{node.collection('alpha')}objects/{deep_id}/"), 404)


def test_an_object_nested_254_levels_is_stored_and_served_again(node):
    obj = deep_object(254)
    response = node.post(node.collection("alpha") + "objects/", {"objects": [obj]})
    assert response.status_code == 202
    assert response.get_json()["success_count"] == 1
    assert objects_of(node.get(f"{node.collection('alpha')}objects/{obj['id']}/")) == [obj]


def test_an_envelope_deeper_than_json_allows_outside_its_objects_is_refused(node):
    body = '{"objects": [], "x": ' + "[" * 2000 + "]" * 2000 + "}"
    assert_taxii_error(node.post(node.collection("alpha") + "objects/", body), 400)
    unterminated = '{"objects": [' + json.dumps(indicator()) + ", " + "[" * 5000
    assert_taxii_error(node.post(node.collection("alpha") + "objects/", unterminated), 400)


def test_a_deep_object_repeating_names_elsewhere_in_the_envelope(node):
    repeating = json.dumps(indicator())[:-1] + ', "name": "again"}'
    kept = indicator()
    body = "{" + '"objects": [' + ", ".join([text_of(1000), repeating, json.dumps(kept)]) + "]}"
    status = node.post(node.collection("alpha") + "objects/", body).get_json()
    assert [s["id"] for s in status["successes"]] == [kept["id"]]
    deep, repeated = status["failures"]  # in the order of the envelope
    assert "nested deeper than 254" in deep["message"]
    assert "'name' is repeated" in repeated["message"]
    assert repeated["id"] == json.loads(repeating)["id"]


# --------------------------------------------------------------------------- integers


BIG = [2**64 + 1, -(2**63) - 1, 2**64, 10**40, -(10**80), 2**64 - 1, -(2**63)]


def test_integers_beyond_64_bits_are_stored_and_served_exactly(node):
    obj = indicator(x_big=BIG, x_one=18446744073709551617, x_float=1.5, x_small=7)
    text = json.dumps({"objects": [obj]})
    assert "18446744073709551617" in text

    status = node.post(node.collection("alpha") + "objects/", text)
    assert status.status_code == 202 and status.get_json()["success_count"] == 1

    served = node.get(f"{node.collection('alpha')}objects/{obj['id']}/").get_data(as_text=True)
    assert "18446744073709551617" in served and "e+19" not in served
    (back,) = json.loads(served)["objects"]  # the standard library keeps integers exact
    assert back == obj
    assert back["x_big"] == BIG and all(type(value) is int for value in back["x_big"])
    # Re-posting the same version is "already present", not a different object.
    again = node.post(node.collection("alpha") + "objects/", text).get_json()
    assert again["successes"][0]["message"] == "already present"


def test_a_long_integer_elsewhere_does_not_let_invalid_json_through(node):
    for bad in (
        '{"objects": [], "n": 18446744073709551617, "x": NaN}',
        '{"objects": [], "n": 18446744073709551617, "x": 1e400}',
        '{"objects": [], "n": 18446744073709551617, "x": "\\udfff"}',
        b'{"objects": [], "n": 18446744073709551617, "x": "\xff"}',
    ):
        assert_taxii_error(node.post(node.collection("alpha") + "objects/", bad), 400)


def test_integer_with_too_many_digits_is_refused_with_a_reason(node):
    text = json.dumps({"objects": [indicator()]})[:-3] + ', "x_n": ' + "9" * 5000 + "}]}"
    body = assert_taxii_error(node.post(node.collection("alpha") + "objects/", text), 400)
    assert "digits" in body["description"] or "integer" in body["description"]
