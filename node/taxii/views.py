"""The TAXII 2.1 endpoints (sections 4 and 5) as one Flask blueprint.

These views replace medallion 3.0.0's: see "Why not medallion's views" in the
README.  Each view authenticates (``before_request``), checks the caller's
rights on the collection, parses filters, runs one store transaction, and
answers TAXII JSON.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence

from flask import Blueprint, Response, g, request

from node import jsoncodec
from node.mediatypes import STIX_21, TAXII_21
from node.operations.deletions import delete_versions
from node.operations.publish import record_publication
from node.sharing import (
    Agreement,
    EgressPage,
    Position,
    admit,
    conceal,
    egress,
    read_record,
    served_records,
    settle,
)
from node.sharing.egress import visible
from node.store import objects, statuses
from node.store.accounts import Rights
from node.store.audit import Direction
from node.store.catalog import Collection
from node.store.objects import StoredObject
from node.timestamps import from_micros, now_micros

from . import bodies, filters
from .auth import peer_certificate
from .errors import TaxiiError, forbidden, not_found
from .hosts import check_host
from .negotiation import accepts_taxii_21, is_taxii_21_body
from .pagination import RequestFingerprint
from .state import NodeState, current_account, node_state, set_current_account

blueprint = Blueprint("taxii", __name__)

_EPOCH = 0
_STATUS_PURGE_SECONDS = 600


@blueprint.url_value_preprocessor
def _take_api_root(_endpoint: str | None, values: dict | None) -> None:
    """Every view but discovery is under the one API root: take it out of the
    view arguments here, and check it (``_check_path``) once the caller is known."""
    g.api_root = (values or {}).pop("api_root", None)


@blueprint.before_request
def _authenticate_and_negotiate() -> None:
    # The headers straight from the WSGI environ (RFC 3875 4.1.18 names them
    # HTTP_*), as request.headers would find them, without its lookup per header.
    environ = request.environ
    state = node_state()
    if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
        state.publishers_first.wait_to_read()
    check_host(environ)
    account = state.authenticator.authenticate(
        environ.get("HTTP_AUTHORIZATION"),
        environ.get("REMOTE_ADDR") or "",
        peer_certificate(environ),
    )
    set_current_account(account)
    accept = environ.get("HTTP_ACCEPT")
    if not accepts_taxii_21(accept):
        raise TaxiiError(
            406,
            "Not Acceptable",
            f"this server answers {TAXII_21}; the Accept header "
            f"{(accept or '')[:100]!r} does not admit it",
        )
    _check_path(state, g.api_root, request.view_args or {})


def _check_path(state: NodeState, api_root: str | None, values: dict) -> None:
    """404 for another API root; a collection named by its alias becomes its id.

    The alias property of a collection (TAXII 2.1, 5.2.1) is what clients'
    settings often hold (OpenCTI, MISP), so ``/{api-root}/collections/{alias}/``
    works like the id on every endpoint.  The views see the id only.
    """
    # PostgreSQL refuses NUL in text (a DataError, so a 500): no stored id has one.
    for name in (api_root, *values.values()):
        if isinstance(name, str) and "\x00" in name:
            raise not_found("no resource has a NUL character in its name")
    if api_root is not None and api_root != state.config.taxii.api_root:
        raise not_found(f"no API root {api_root!r}")
    named = values.get("collection_id")
    if named is not None:
        g.collection_named = named
        found = state.collections.find(named)
        values["collection_id"] = found.id if found is not None else named


def _json(body: dict | str, status: int = 200, headers: dict | None = None) -> Response:
    text = body if isinstance(body, str) else jsoncodec.dumps(body)
    return Response(text, status=status, content_type=TAXII_21, headers=headers)


def _rights(collection_id: str) -> Rights:
    """The caller's rights on a collection.

    A partner's sync account (role "peer") reaches only the collections its
    mappings name, whatever rights were granted to it.
    """
    account = current_account()
    if account.peer is None:
        return account.rights_on(collection_id)
    agreement = node_state().agreements.find(account.peer, collection_id)
    if agreement is None:
        return Rights()
    granted = account.rights_on(collection_id)
    # The partner reading is data leaving us (our mapping must push); the
    # partner writing is data arriving (our mapping must pull).
    return Rights(
        can_read=granted.can_read and agreement.mapping.pushes,
        can_write=granted.can_write and agreement.mapping.pulls,
    )


def _readable(collection_id: str) -> Collection:
    return _collection_for(collection_id, need_read=True)


def _collection_for(collection_id: str, *, need_read: bool = False, need_write: bool = False):
    """The collection, if the caller may see it with the rights asked for.

    A collection the caller can neither read nor write is reported as absent
    (404), so that its existence is not revealed.
    """
    collection = node_state().collections.get(collection_id)
    rights = _rights(collection_id)
    if collection is None or not (rights.can_read or rights.can_write):
        # Named as the caller named it: the id behind an alias it guessed would tell it
        # that such a collection exists (and its id).
        raise not_found(f"no collection {g.get('collection_named', collection_id)!r}")
    if need_read and not rights.can_read:
        raise forbidden(f"no read access to collection {collection_id!r}")
    if need_write and not rights.can_write:
        raise forbidden(f"no write access to collection {collection_id!r}")
    return collection


def _date_headers(first: int | None, last: int | None, after: int | None) -> dict[str, str]:
    """X-TAXII-Date-Added-First/-Last (3.4.2) of a page's first and last date_added,
    also for an empty page (``first`` and ``last`` None).

    For an empty page both carry the request's lower bound, so a poller that
    resumes from -Last neither skips nor repeats anything.
    """
    if first is None or last is None:
        first = last = after if after is not None else _EPOCH
    return {
        "X-TAXII-Date-Added-First": from_micros(first),
        "X-TAXII-Date-Added-Last": from_micros(last),
    }


def _rows_date_headers(rows: Sequence[StoredObject], after: int | None) -> dict[str, str]:
    if not rows:
        return _date_headers(None, None, after)
    return _date_headers(rows[0].date_added, rows[-1].date_added, after)


def _page_fields(last: int | None, more: bool, request_fingerprint: RequestFingerprint) -> str:
    """``more`` and ``next`` (3.5), the token resuming after the page's last date_added."""
    if not more or last is None:
        return '"more":false'
    token = node_state().signer.issue(last, request_fingerprint)
    # taxii2-client loops forever on more=true without next: never send one alone.
    return f'"more":true,"next":{json.dumps(token)}'


def _rows_page_fields(
    rows: Sequence[StoredObject], more: bool, request_fingerprint: RequestFingerprint
) -> str:
    return _page_fields(rows[-1].date_added if rows else None, more, request_fingerprint)


def _version_label(row: StoredObject) -> str:
    # An SCO without created/modified has one version, labelled by date_added.
    return row.version_text or from_micros(row.date_added)


def _query(collection_id: str, scope: str, allowed: frozenset[str], **extra):
    state = node_state()
    query, request_fingerprint = filters.parse_query(
        request.args,
        collection_id=collection_id,
        scope=scope,
        allowed=allowed,
        max_page_size=state.config.taxii.max_page_size,
        signer=state.signer,
        **extra,
    )
    peer = current_account().peer
    if peer is not None:
        # A partner never gets back the versions it sent us (no echo).
        query = dataclasses.replace(query, exclude_origin=peer)
    return query, request_fingerprint


def _page(query) -> tuple[list[StoredObject], bool]:
    with node_state().store.read_statement() as connection:
        return objects.page(connection, query)


# -- discovery and API root (4.1, 4.2) ---------------------------------------


@blueprint.route("/taxii2/", methods=["GET"])
def discovery() -> Response:
    taxii = node_state().config.taxii
    root_url = f"{request.host_url}{taxii.api_root}/"
    body = {"title": taxii.title, "default": root_url, "api_roots": [root_url]}
    if taxii.description:
        body["description"] = taxii.description
    if taxii.contact:
        body["contact"] = taxii.contact
    return _json(body)


@blueprint.route("/<api_root>/", methods=["GET"])
def api_root_information() -> Response:
    taxii = node_state().config.taxii
    body = {
        "title": taxii.title,
        "versions": [TAXII_21],
        "max_content_length": taxii.max_content_length,
    }
    if taxii.description:
        body["description"] = taxii.description
    return _json(body)


@blueprint.route("/<api_root>/status/<status_id>/", methods=["GET"])
def status(status_id: str) -> Response:
    with node_state().store.read() as connection:
        found = statuses.get(connection, status_id)
    # A status names the objects of one POST: it belongs to the account that made it
    # (and to admins); to everyone else it does not exist.
    account = current_account()
    if found is None or not (account.is_admin or found.owner == account.name):
        raise not_found(f"no status {status_id!r}")
    rights = _rights(found.collection_id)
    if not (rights.can_read or rights.can_write):
        raise not_found(f"no status {status_id!r}")
    return _json(found.resource)


# -- collections (5.1, 5.2) ----------------------------------------------------


@blueprint.route("/<api_root>/collections/", methods=["GET"])
def collections() -> Response:
    everything = node_state().collections.all()
    resources = []
    for collection in everything:
        rights = _rights(collection.id)
        if rights.can_read or rights.can_write:
            resources.append(collection.resource(rights.can_read, rights.can_write))
    return _json({"collections": resources} if resources else {})


@blueprint.route("/<api_root>/collections/<collection_id>/", methods=["GET"])
def collection(collection_id: str) -> Response:
    found = _collection_for(collection_id)
    rights = _rights(collection_id)
    return _json(found.resource(rights.can_read, rights.can_write))


# -- manifest (5.3) ----------------------------------------------------------


@blueprint.route("/<api_root>/collections/<collection_id>/manifest/", methods=["GET"])
def manifest(collection_id: str) -> Response:
    _readable(collection_id)
    query, request_fingerprint = _query(collection_id, "manifest", filters.OBJECTS)
    if current_account().peer is not None:
        page = _peer_page(collection_id, query, "manifest")
        entries = [(r.object_id, r.date_added or 0, r.version_label) for r in page.rows]
        fields = _peer_page_fields(page, request_fingerprint)
        headers = _peer_date_headers(page, query.after)
    else:
        rows, more = _page(query)
        entries = [(r.object_id, r.date_added, _version_label(r)) for r in rows]
        fields = _rows_page_fields(rows, more, request_fingerprint)
        headers = _rows_date_headers(rows, query.after)
    records = [
        json.dumps(
            {
                "id": object_id,
                "date_added": from_micros(date_added),
                "version": version,
                "media_type": STIX_21,
            }
        )
        for object_id, date_added, version in entries
    ]
    body = "{" + fields
    if records:
        body += ',"objects":[' + ",".join(records) + "]"
    return _json(body + "}", headers=headers)


# -- objects (5.4, 5.5) ------------------------------------------------------


def _objects_envelope(fields: str, texts: Sequence[str]) -> str:
    body = "{" + fields
    if texts:
        body += ',"objects":[' + ",".join(texts) + "]"
    return body + "}"


def _objects_response(
    collection_id: str, query, request_fingerprint: RequestFingerprint, endpoint: str
):
    """(envelope, headers, whether any object matched) for objects/ and objects/<id>/."""
    if current_account().peer is not None:
        served = _peer_page(collection_id, query, endpoint, delivers=True)
        fields = _peer_page_fields(served, request_fingerprint)
        texts = [item.body for item in served.items]
        return (
            _objects_envelope(fields, texts),
            _peer_date_headers(served, query.after),
            bool(texts),
        )
    with node_state().store.read_statement() as connection:
        page = objects.page_bodies(connection, query)
    fields = _page_fields(page.last_added, page.more, request_fingerprint)
    envelope = _objects_envelope(fields, page.bodies)
    headers = _date_headers(page.first_added, page.last_added, query.after)
    return envelope, headers, bool(page.bodies)


@blueprint.route("/<api_root>/collections/<collection_id>/objects/", methods=["GET"])
def get_objects(collection_id: str) -> Response:
    _readable(collection_id)
    query, request_fingerprint = _query(collection_id, "objects", filters.OBJECTS)
    envelope, headers, _ = _objects_response(collection_id, query, request_fingerprint, "objects")
    return _json(envelope, headers=headers)


# -- what a partner's sync account sees: the egress decision, nothing else ----------


def _agreement(collection_id: str) -> Agreement:
    peer = current_account().peer
    assert peer is not None
    return node_state().agreements.for_peer(peer, collection_id)


def _peer_page(collection_id: str, query, endpoint: str, *, delivers: bool = False) -> EgressPage:
    """The page a peer's account gets: what egress lets through for its agreement.

    Served without a write transaction; audited in the background: the read once,
    and, when it ``delivers`` content (objects, not manifests or version lists),
    each version served, so that a recall reaches a partner that pulls.
    """
    state = node_state()
    account = current_account()
    with state.store.read() as connection:
        page = egress(
            connection, _agreement(collection_id), Position.of(query), cache=state.decisions
        )
    asked = request.query_string.decode("utf-8", "replace")[:500]
    peer = account.peer or ""
    records = [
        read_record(
            peer,
            account.name,
            collection_id,
            f"GET {endpoint}" + (f"?{asked}" if asked else ""),
            page.decisions,
        )
    ]
    if delivers:
        fresh = state.deliveries.new(peer, collection_id, page.served_decisions)
        records.extend(served_records(peer, account.name, collection_id, fresh))
    state.read_audit.put_all(records)
    return page


def _peer_page_fields(page: EgressPage, request_fingerprint: RequestFingerprint) -> str:
    """``more``/``next`` from what the peer is served: the token resumes just before
    the next version it may see, past the withheld ones already examined."""
    return _page_fields(page.resume_after, page.more, request_fingerprint)


def _peer_date_headers(page: EgressPage, after: int | None) -> dict[str, str]:
    """X-TAXII-Date-Added-First/-Last of the versions served (never of withheld ones)."""
    added = [row.date_added for row in page.rows if row.date_added is not None]
    if not added:
        return _date_headers(None, None, after)
    return _date_headers(added[0], added[-1], after)


@blueprint.route("/<api_root>/collections/<collection_id>/objects/", methods=["POST"])
def add_objects(collection_id: str) -> Response:
    _collection_for(collection_id, need_write=True)
    if not is_taxii_21_body(request.headers.get("Content-Type")):
        raise TaxiiError(
            415,
            "Unsupported Media Type",
            f"send the envelope as {TAXII_21}, not "
            f"{request.headers.get('Content-Type', 'no Content-Type')[:100]!r}",
        )
    state = node_state()
    body = bodies.read_body(state.config.taxii.max_content_length, state.config.server.timeout)
    # Reads wait for the CPU-heavy part only, never for a client's upload.
    with state.publishers_first.publishing():
        return _publish(state, collection_id, body)


def _publish(state: NodeState, collection_id: str, body: bytes) -> Response:
    """Validate, admit and store one envelope; its status resource (5.5, 4.3)."""
    envelope = bodies.envelope_objects(body, state.config.taxii.max_objects_per_envelope)
    account = current_account()
    admission = None
    items = envelope.items
    if account.peer is not None:
        # The peer's objects pass the one ingress decision (as when our worker pulls).
        with state.store.read() as connection:
            admission = admit(connection, _agreement(collection_id), items, to_peer=True)
        items = admission.accepted
    refused = envelope.failures + (admission.refused if admission else [])
    request_timestamp = now_micros()
    # Validation and JSON before taking the writer lock; the texts serialised to
    # check the body are reused unless a partner's policy changed the objects.
    prepared = objects.prepare(
        items,
        envelope.texts if items is envelope.items else None,
        admission.valid if admission is not None else frozenset(),
    )
    with state.store.write() as connection:
        # Four-eyes release needs who published each local version.
        publisher = account.name if account.peer is None else None
        outcome = objects.store_prepared(
            connection, collection_id, prepared, account.peer, publisher
        )
        records, concealed = [], 0
        if admission is not None:
            outcome.successes[:0] = admission.echoes
            records = settle(
                connection,
                _agreement(collection_id),
                admission,
                outcome,
                Direction.RECEIVE,
                to_peer=True,
                agreements=state.agreements,
            )
            concealed = conceal(connection, _agreement(collection_id), admission, envelope.items,
                                refused, outcome)  # fmt: skip
        resource = record_publication(
            connection, collection_id, request_timestamp, outcome, actor=account.name,
            peer=account.peer, refused=refused, owner=account.name, decisions=records,
            concealed=concealed,
        )  # fmt: skip
    _purge_old_statuses()
    return _json(resource, status=202)


def _purge_old_statuses() -> None:
    state = node_state()
    if time.monotonic() - state.last_status_purge < _STATUS_PURGE_SECONDS:
        return
    state.last_status_purge = time.monotonic()
    hours = state.config.taxii.status_retention_hours
    with state.store.write() as connection:
        statuses.purge_older_than(connection, now_micros() - hours * 3_600_000_000)


# -- one object and its versions (5.6, 5.7, 5.8) -------------------------------


def _object_visible(collection_id: str, object_id: str) -> bool:
    """Whether the caller may learn that the object exists (200 with an empty page
    rather than 404): for a partner, only when egress lets its current version
    through, so a 200 never reveals a withheld object."""
    with node_state().store.read() as connection:
        if current_account().peer is not None:
            return visible(connection, _agreement(collection_id), object_id)
        return objects.latest(connection, collection_id, object_id) is not None


@blueprint.route("/<api_root>/collections/<collection_id>/objects/<object_id>/", methods=["GET"])
def get_object(collection_id: str, object_id: str) -> Response:
    _readable(collection_id)
    query, request_fingerprint = _query(
        collection_id, "object", filters.OBJECT, object_id=object_id
    )
    envelope, headers, found = _objects_response(
        collection_id, query, request_fingerprint, "object"
    )
    if not found and not _object_visible(collection_id, object_id):
        raise not_found(f"no object {object_id!r} in collection {collection_id!r}")
    return _json(envelope, headers=headers)


@blueprint.route("/<api_root>/collections/<collection_id>/objects/<object_id>/", methods=["DELETE"])
def delete_object(collection_id: str, object_id: str) -> Response:
    _collection_for(collection_id, need_read=True, need_write=True)
    if current_account().peer is not None:
        # Deletions stay local and are not policy-filtered: a partner's sync
        # account must not remove (or probe for) what this node holds.
        raise forbidden("a partner's sync account cannot delete objects")
    query, _ = _query(
        collection_id, "delete", filters.DELETE, object_id=object_id, default_version="all"
    )
    state = node_state()
    with state.store.write() as connection:
        # TAXII 2.1 has no tombstones: peers that received a deleted version get a recall.
        deletion = delete_versions(connection, state.agreements, query, object_id,
                                   actor=current_account().name)  # fmt: skip
    if not deletion.deleted:
        raise not_found(f"no object {object_id!r} matching the filters in {collection_id!r}")
    return Response(status=200, content_type=TAXII_21)


@blueprint.route(
    "/<api_root>/collections/<collection_id>/objects/<object_id>/versions/", methods=["GET"]
)
def object_versions(collection_id: str, object_id: str) -> Response:
    _readable(collection_id)
    query, request_fingerprint = _query(
        collection_id, "versions", filters.VERSIONS, object_id=object_id, default_version="all"
    )
    if current_account().peer is not None:
        page = _peer_page(collection_id, query, "versions")
        labels = [row.version_label for row in page.rows]
        fields = _peer_page_fields(page, request_fingerprint)
        headers = _peer_date_headers(page, query.after)
    else:
        rows, more = _page(query)
        labels = [_version_label(row) for row in rows]
        fields = _rows_page_fields(rows, more, request_fingerprint)
        headers = _rows_date_headers(rows, query.after)
    if not labels and not _object_visible(collection_id, object_id):
        raise not_found(f"no object {object_id!r} in collection {collection_id!r}")
    body = "{" + fields
    if labels:
        body += ',"versions":' + json.dumps(labels)
    return _json(body + "}", headers=headers)


__all__ = ["blueprint"]
