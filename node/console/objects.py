"""Collections, object search, the object page and its STIX bundle export."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import Connection

from node.mediatypes import STIX_21
from node.operations.deletions import delete_versions
from node.sharing.verdicts import PeerVerdict, object_verdicts
from node.store import quarantine, search
from node.store.catalog import Collection
from node.store.objects import ObjectQuery
from node.store.quarantine import Held
from node.store.search import Found, ObjectSearch, StoredVersion
from node.taxii.state import current_account, node_state
from node.timestamps import from_micros, to_micros
from node.tlp import TLP, TLP_BY_MARKING_ID
from node.validation import version_key

from .blueprint import blueprint

PAGE_SIZE = 50
TLP_CHOICES = [level.label for level in (TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT,
                                         TLP.RED)] + ["none"]  # fmt: skip
_CONTAINER_TYPES = ("report", "grouping", "note", "opinion", "observed-data")


def readable_collections() -> list[Collection]:
    """The collections the signed-in account may read (admins: all)."""
    account = current_account()
    return [c for c in node_state().collections.all() if account.rights_on(c.id).can_read]


def _readable(collection_id: str) -> Collection:
    for collection in readable_collections():
        if collection.id == collection_id:
            return collection
    abort(404, "No such collection, or you may not read it.")


@blueprint.route("/")
def home():
    return redirect(url_for("console.collections_page"))


@blueprint.route("/collections")
def collections_page():
    state = node_state()
    rows = []
    with state.store.read() as connection:
        for collection in readable_collections():
            rows.append((collection, search.collection_counts(connection, collection.id)))
    return render_template("collections.html", rows=rows, tlp_choices=TLP_CHOICES)


SEARCH_KEYS = ("q", "collection", "type", "tlp", "label", "author", "from", "to")


def known_args(keys: tuple[str, ...]) -> dict[str, str]:
    """The request's filters named ``keys`` (for the next page's link): never other
    parameters, which ``url_for`` would read as its own (``_external``, ``_scheme``)."""
    return {key: request.args[key] for key in keys if request.args.get(key)}


def position(text: str) -> int | None:
    """A keyset position from a ``before`` parameter: digits that fit a BIGINT, else none."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _date_bound(name: str, end_of_day: bool = False) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if len(text) == 10:  # a date from <input type=date>
        text += "T23:59:59.999999Z" if end_of_day else "T00:00:00Z"
    try:
        return to_micros(text)
    except ValueError:
        abort(400, f"{name}: {text[:40]!r} is not a date (YYYY-MM-DD) or an RFC 3339 timestamp.")


def _search_from_args() -> ObjectSearch:
    readable = [c.id for c in readable_collections()]
    chosen = request.args.get("collection", "")
    if chosen:
        if chosen not in readable:
            abort(404, "No such collection, or you may not read it.")
        readable = [chosen]
    before = request.args.get("before", "")
    tlp = request.args.get("tlp", "")
    if tlp and tlp not in TLP_CHOICES:
        abort(400, f"tlp: choose one of {', '.join(TLP_CHOICES)}.")
    return ObjectSearch(
        collection_ids=tuple(readable),
        text=request.args.get("q", "").strip()[:200],
        types=tuple(t for t in (request.args.get("type", "").strip()[:250],) if t),
        tlp=tlp,
        label=request.args.get("label", "").strip()[:200],
        author=request.args.get("author", "").strip()[:300],
        added_from=_date_bound("from"),
        added_to=_date_bound("to", end_of_day=True),
        before=position(before),
        limit=PAGE_SIZE,
    )


@blueprint.route("/objects")
def objects_page():
    wanted = _search_from_args()
    with node_state().store.read() as connection:
        page = search.search_objects(connection, wanted)
    next_args = None
    if page.next_before is not None:
        next_args = {**known_args(SEARCH_KEYS), "before": page.next_before}
    titles = {c.id: c.alias or c.title for c in readable_collections()}
    return render_template(
        "objects.html",
        page=page,
        args=request.args,
        next_args=next_args,
        collections=readable_collections(),
        titles=titles,
        tlp_choices=TLP_CHOICES,
        from_micros=from_micros,
    )


@dataclass
class Links:
    """How other objects relate to one object.

    ``outgoing`` and ``incoming`` hold (relationship, the object at its other end,
    if this account can read it); a relationship object itself has its ends as
    ``source`` and ``target``.
    """

    outgoing: list[tuple[Found, Found | None]] = field(default_factory=list)
    incoming: list[tuple[Found, Found | None]] = field(default_factory=list)
    sightings: list[Found] = field(default_factory=list)
    containers: list[Found] = field(default_factory=list)
    other: list[Found] = field(default_factory=list)


def _links(object_id: str, referrers: list[Found], targets: dict[str, Found]) -> Links:
    links = Links()
    for found in referrers:
        other = found.obj
        if found.type == "relationship" and other.get("source_ref") == object_id:
            links.outgoing.append((found, targets.get(str(other.get("target_ref")))))
        elif found.type == "relationship" and other.get("target_ref") == object_id:
            links.incoming.append((found, targets.get(str(other.get("source_ref")))))
        elif found.type == "sighting":
            links.sightings.append(found)
        elif found.type in _CONTAINER_TYPES and object_id in (other.get("object_refs") or ()):
            links.containers.append(found)
        else:
            links.other.append(found)
    return links


def _relation_ends(referrers: list[Found]) -> set[str]:
    ends: set[str] = set()
    for found in referrers:
        if found.type == "relationship":
            ends.update(str(found.obj.get(k, "")) for k in ("source_ref", "target_ref"))
    return ends


def _own_refs(obj: dict) -> set[str]:
    refs: set[str] = set()
    for key, value in obj.items():
        if key.endswith("_ref") and isinstance(value, str):
            refs.add(value)
        elif key.endswith("_refs") and isinstance(value, list):
            refs.update(v for v in value if isinstance(v, str))
    return refs


def _current_verdicts(
    collection_id: str, object_id: str, latest: StoredVersion | None, held: list[Held]
) -> list[PeerVerdict]:
    """What sharing decides now, for each peer mapping this collection: the egress
    pipeline's decision on the newest stored version (policy and gates: awaiting
    release, onward sharing, recalls) and "quarantined" for each version held for
    review (``node.sharing.verdicts``, the words ``policy preview`` uses too)."""
    state = node_state()
    stored = None
    if latest is not None:
        stamp = latest.version_text
        stored = (to_micros(stamp) if stamp else 0, stamp, latest.origin)
    with state.store.read() as connection:
        return object_verdicts(connection, state.agreements, collection_id, object_id, stored,
                               held)  # fmt: skip


def safe_url(url: object) -> str | None:
    """``url`` if it is an http(s) link, else None (no javascript:, data: or other schemes)."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def tlp_badges(obj: dict) -> list[str]:
    refs = list(obj.get("object_marking_refs") or ())
    granular = obj.get("granular_markings") or ()
    refs += [m.get("marking_ref") for m in granular if isinstance(m, dict)]
    labels = []
    for ref in refs:
        level = TLP_BY_MARKING_ID.get(ref.lower()) if isinstance(ref, str) else None
        if level is not None and level.label not in labels:
            labels.append(level.label)
    return labels


@blueprint.route("/objects/<collection_id>/<path:object_id>")
def object_page(collection_id: str, object_id: str):
    collection = _readable(collection_id)
    readable = [c.id for c in readable_collections()]
    reviewer = current_account().rights_on(collection_id).can_write
    with node_state().store.read() as connection:
        versions = search.versions(connection, collection_id, object_id)
        # Quarantine holds what peers sent for review: shown to those who review it.
        held = _held_newer(connection, collection_id, object_id, versions) if reviewer else []
        if not versions and not held:
            abort(404, "No such object in this collection.")
        latest = versions[0].obj if versions else held[-1].obj
        referrers = search.referencing(connection, [collection_id], object_id)
        wanted = _own_refs(latest) | _relation_ends(referrers)
        targets = search.latest_of(connection, readable, wanted)
        recorded = search.latest_decisions(connection, object_id)
    return render_template(
        "object.html",
        collection=collection,
        obj=latest,
        versions=versions,
        links=_links(object_id, referrers, targets),
        targets=targets,
        recorded=[r for r in recorded if r["collection_id"] in (collection_id, None)],
        verdicts=_current_verdicts(
            collection_id, object_id, versions[0] if versions else None, held
        ),
        held=held,
        may_delete=reviewer and bool(versions),
        raw=json.dumps(latest, indent=2, ensure_ascii=False, sort_keys=False),
        badges=tlp_badges(latest),
        safe_url=safe_url,
        from_micros=from_micros,
        is_ref=_is_ref_property,
        tlp_name=_tlp_name,
    )


@blueprint.route("/objects/<collection_id>/<path:object_id>/delete", methods=["POST"])
def delete_object(collection_id: str, object_id: str):
    """Delete every version of the object here and recall it from the peers that
    received one (``node.operations.deletions``, as the API's DELETE): for accounts
    that may write the collection, after they ticked the confirmation."""
    _readable(collection_id)
    account = current_account()
    if not account.rights_on(collection_id).can_write:
        abort(403, "Deleting needs write rights on the collection.")
    if request.form.get("confirm") != "yes":
        flash("Nothing deleted: tick the confirmation first.", "error")
        return redirect(url_for("console.object_page", collection_id=collection_id,
                                object_id=object_id))  # fmt: skip
    state = node_state()
    query = ObjectQuery(collection_id, limit=0, ids=(object_id,), versions=("all",))
    with state.store.write() as connection:
        deletion = delete_versions(connection, state.agreements, query, object_id,
                                   actor=f"console:{account.name}")  # fmt: skip
    if not deletion.deleted:
        abort(404, "No such object in this collection.")
    flash(f"Deleted {deletion.deleted} version(s) of {object_id}; {deletion.recalls} "
          "recall(s) queued for the peers that received it.", "ok")  # fmt: skip
    return redirect(url_for("console.objects_page", collection=collection_id))


def _held_newer(
    connection: Connection, collection_id: str, object_id: str, versions: list[StoredVersion]
) -> list[Held]:
    """The versions of the object quarantine holds that are newer than every stored one
    (oldest first): those are what the collection will have once accepted."""
    newest = max((version_key(v.obj) for v in versions), default=None)
    held = quarantine.held(connection, collection_id=collection_id, object_ids=[object_id])
    return sorted((h for h in held if newest is None or h.version > newest),
                  key=lambda h: h.version)  # fmt: skip


def _tlp_name(marking_id: object) -> str:
    level = TLP_BY_MARKING_ID.get(marking_id) if isinstance(marking_id, str) else None
    return level.label if level is not None else ""


def _is_ref_property(key: str) -> bool:
    return key.endswith("_ref") or key.endswith("_refs")


@blueprint.route("/objects/<collection_id>/<path:object_id>/bundle")
def object_bundle(collection_id: str, object_id: str):
    """The object as a STIX bundle (latest version, or every version with ?versions=all)."""
    _readable(collection_id)
    with node_state().store.read() as connection:
        versions = search.versions(connection, collection_id, object_id)
    if not versions:
        abort(404, "No such object in this collection.")
    chosen = versions if request.args.get("versions") == "all" else versions[:1]
    bundle = {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [v.obj for v in reversed(chosen)],
    }
    filename = object_id.replace("/", "_").replace('"', "_") + ".json"
    return Response(
        json.dumps(bundle, indent=2, ensure_ascii=False),
        content_type=STIX_21,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
