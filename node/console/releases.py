"""The release queue page (egress ``release = "approval"``) and the quarantine page.

Releasers (accounts with the role ``releaser``) see what waits for each peer
and approve or reject it, one version, a report with everything it
references, or everything matching a filter; the signed-in account is the
releaser, so the four-eyes rule (not the publisher) applies to it.  Admins and
analysts who may write to a collection accept or reject what peers sent to
it for review.  Every form carries the session's CSRF token.
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for

from node.errors import NodeError
from node.operations import quarantine as quarantine_operations
from node.operations import releases as operations
from node.store import roles
from node.taxii.state import node_state

from .blueprint import blueprint


@blueprint.context_processor
def _exchange_links() -> dict:
    """Which of the two queues the navigation offers: Releases to releasers, Quarantine
    when something the account may review is held."""
    account = g.get("account")
    if account is None:
        return {"exchange_links": {}}
    with node_state().store.read() as connection:
        releaser = roles.has_role(connection, account.name, roles.RELEASER)
        held = quarantine_operations.list_held(connection, quarantine_operations.Selection())
    reviewable = any(account.rights_on(h.collection_id).can_write for h in held)
    return {"exchange_links": {"releases": releaser, "quarantine": reviewable}}


def _require_releaser() -> None:
    with node_state().store.read() as connection:
        if not roles.has_role(connection, g.account.name, roles.RELEASER):
            abort(403, "This page is for accounts with the role releaser.")


def _entries() -> tuple[int, ...]:
    values = request.form.getlist("entry")
    if not all(value.isdigit() for value in values):
        abort(400, "Entries are numbers.")
    return tuple(int(value) for value in values)


def _selection() -> operations.Selection:
    form = request.form
    return operations.Selection(
        pks=_entries(),
        report=form.get("report") or None,
        types=tuple(t for t in [form.get("type", "")] if t),
        labels=tuple(label for label in [form.get("label", "")] if label),
        tlp=form.get("tlp") or None,
        everything=form.get("all") == "1",
    )


@blueprint.route("/releases")
def releases_page():
    _require_releaser()
    state = node_state()
    with state.store.write() as connection:
        operations.refresh(connection, state.agreements)
        items = operations.list_queue(connection, operations.Selection())
    return render_template("releases.html", items=items, me=g.account.name)


@blueprint.route("/releases/decide", methods=["POST"])
def decide_releases():
    _require_releaser()
    decision = request.form.get("decision")
    actor = f"console:{g.account.name}"
    try:
        with node_state().store.write() as connection:
            operations.refresh(connection, node_state().agreements)
            if decision == "approve":
                done = operations.approve(connection, _selection(), g.account.name, actor=actor)
            elif decision == "reject":
                done = operations.reject(connection, _selection(), g.account.name,
                                         request.form.get("reason", ""), actor=actor)  # fmt: skip
            else:
                abort(400, "Approve or reject.")
    except NodeError as error:
        flash(f"Nothing changed: {error}", "error")
    else:
        flash(f"{len(done)} version(s) {decision}d.", "ok")
    return redirect(url_for("console.releases_page"))


def _reviewable() -> list:
    account = g.account
    with node_state().store.read() as connection:
        held = quarantine_operations.list_held(connection, quarantine_operations.Selection())
    return [h for h in held if account.rights_on(h.collection_id).can_write]


@blueprint.route("/quarantine")
def quarantine_page():
    return render_template("quarantine.html", held=_reviewable())


@blueprint.route("/quarantine/decide", methods=["POST"])
def decide_quarantine():
    decision = request.form.get("decision")
    selection = quarantine_operations.Selection(pks=_entries())
    actor = f"console:{g.account.name}"
    try:
        with node_state().store.write() as connection:
            if decision == "accept":
                done = quarantine_operations.accept(connection, selection, actor=actor,
                                                    account=g.account.name)  # fmt: skip
            elif decision == "reject":
                done = quarantine_operations.reject(connection, selection,
                                                    request.form.get("reason", ""), actor=actor,
                                                    account=g.account.name)  # fmt: skip
            else:
                abort(400, "Accept or reject.")
    except NodeError as error:
        flash(f"Nothing changed: {error}", "error")
    else:
        flash(f"{len(done)} version(s) {decision}ed.", "ok")
    return redirect(url_for("console.quarantine_page"))
