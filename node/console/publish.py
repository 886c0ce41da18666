"""The publish page: upload a bundle into a collection, with per-object results."""

from __future__ import annotations

from flask import abort, render_template, request

from node.operations.publish import Marking, PublishError, parse_upload, publish, with_marking
from node.store.catalog import Collection
from node.taxii.state import current_account, node_state
from node.tlp import parse_level

from .blueprint import blueprint


def writable_collections() -> list[Collection]:
    account = current_account()
    return [c for c in node_state().collections.all() if account.rights_on(c.id).can_write]


def _marking() -> Marking:
    level = request.form.get("tlp", "")
    author = request.form.get("created_by_ref", "").strip()
    try:
        return Marking(tlp=parse_level(level) if level else None, created_by_ref=author or None)
    except ValueError as error:
        raise PublishError(str(error)) from None


@blueprint.route("/publish", methods=["GET", "POST"])
def publish_page():
    collections = writable_collections()
    if request.method == "GET":
        return render_template("publish.html", collections=collections, status=None, error="")
    taxii = node_state().config.taxii
    if (request.content_length or 0) > taxii.max_content_length:
        abort(413)  # the message is the error page's (blueprint.too_large_message)
    chosen = request.form.get("collection", "")
    if chosen not in {c.id for c in collections}:
        abort(403, "You may not write to that collection.")
    upload = request.files.get("bundle")
    try:
        if upload is None or not upload.filename:
            raise PublishError("choose a bundle file to upload")
        items = parse_upload(upload.read(taxii.max_content_length + 1),
                             taxii.max_objects_per_envelope)  # fmt: skip
        status = publish(node_state().store, chosen, with_marking(items, _marking()),
                         current_account().name)  # fmt: skip
    except PublishError as error:
        page = render_template("publish.html", collections=collections, status=None,
                               error=str(error))  # fmt: skip
        return page, 400
    return render_template("publish.html", collections=collections, status=status, error="",
                           chosen=chosen)  # fmt: skip
