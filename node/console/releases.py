"""The release queue page (egress ``release = "approval"``) and the quarantine page.

Releasers (accounts with the role ``releaser``) see what waits for each peer
and approve or reject it, one version, a report with everything it
references, or everything matching a filter; the signed-in account is the
releaser, so the four-eyes rule (not the publisher) applies to it.  Admins and
analysts who may write to a collection accept or reject what peers sent to
it for review.  Every form carries the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable, Sized

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy import Connection
from werkzeug.wrappers import Response

from node.errors import InvalidValue, NodeError
from node.operations import quarantine as quarantine_operations
from node.operations import releases as operations
from node.operations.holds import CONSOLE_WORDING
from node.store import roles
from node.store.accounts import Account
from node.store.quarantine import Held
from node.taxii.state import current_account, node_state, signed_in_account

from .blueprint import blueprint

# The decisions each page offers, and how the outcome says it.
_RELEASE_DECISIONS = {"approve": "approved", "reject": "rejected"}
_QUARANTINE_DECISIONS = {"accept": "accepted", "reject": "rejected"}


@blueprint.context_processor
def _exchange_links() -> dict:
    """Which of the two queues the navigation offers: Releases to releasers, Quarantine
    when something the account may review is held."""
    account = signed_in_account()
    if account is None:
        return {"exchange_links": {}}
    with node_state().store.read() as connection:
        releaser = roles.has_role(connection, account.name, roles.RELEASER)
        reviewable = bool(_reviewable(connection, account))
    return {"exchange_links": {"releases": releaser, "quarantine": reviewable}}


def _reviewable(connection: Connection, account: Account) -> list[Held]:
    """What is held in collections the account may write to (it may review those)."""
    held = quarantine_operations.list_held(connection, quarantine_operations.Selection())
    return [h for h in held if account.rights_on(h.collection_id).can_write]


def _require_releaser() -> None:
    with node_state().store.read() as connection:
        if not roles.has_role(connection, current_account().name, roles.RELEASER):
            abort(403, "This page is for accounts with the role releaser.")


def _entries() -> tuple[int, ...]:
    """The ticked entries; whether such entries can exist the operations decide."""
    values = request.form.getlist("entry")
    # isascii: str.isdigit is true of digits int() refuses ("²").
    if not all(value.isascii() and value.isdigit() for value in values):
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


def _decision(offered: dict[str, str], refusal: str) -> str:
    """The decision the form asks for: one of those ``offered`` (else 400 ``refusal``)."""
    decision = request.form.get("decision", "")
    if decision not in offered:
        abort(400, refusal)
    return decision


def _decided(
    page: Callable[[], str], outcome: str, decide: Callable[[Connection], Sized]
) -> Response:
    """Run ``decide`` in one write transaction, flash what it did (``outcome``: how many
    versions were approved, accepted...) or why nothing changed, and go back to ``page``.

    A form the operations refuse as malformed (an unknown TLP level, an entry
    number no entry can have) gets the page again with the reason, as a 400: the
    request was wrong, not the state of the queue.
    """
    try:
        with node_state().store.write() as connection:
            done = decide(connection)
    except InvalidValue as error:
        flash(f"Nothing changed: {error}", "error")
        return make_response(page(), 400)
    except NodeError as error:
        flash(f"Nothing changed: {error}", "error")
    else:
        flash(f"{len(done)} version(s) {outcome}.", "ok")
    return redirect(url_for(f"console.{page.__name__}"))  # endpoints are named for views


def _actor() -> str:
    return f"console:{current_account().name}"


@blueprint.route("/releases")
def releases_page():
    _require_releaser()
    state = node_state()
    with state.store.write() as connection:
        operations.refresh(connection, state.agreements)
        items = operations.list_queue(connection, operations.Selection(), current_account().name)
    return render_template("releases.html", items=items, me=current_account().name)


@blueprint.route("/releases/decide", methods=["POST"])
def decide_releases():
    _require_releaser()
    decision = _decision(_RELEASE_DECISIONS, "Approve or reject.")
    releaser, actor, selection = current_account().name, _actor(), _selection()
    reason = request.form.get("reason", "")

    def decide(connection: Connection) -> list[operations.QueueItem]:
        operations.refresh(connection, node_state().agreements)
        if decision == "approve":
            return operations.approve(connection, selection, releaser, actor=actor,
                                      wording=CONSOLE_WORDING)  # fmt: skip
        return operations.reject(connection, selection, releaser, reason, actor=actor,
                                 wording=CONSOLE_WORDING)  # fmt: skip

    return _decided(releases_page, _RELEASE_DECISIONS[decision], decide)


@blueprint.route("/quarantine")
def quarantine_page():
    account = current_account()
    with node_state().store.read() as connection:
        held = _reviewable(connection, account)
    return render_template("quarantine.html", held=held)


@blueprint.route("/quarantine/decide", methods=["POST"])
def decide_quarantine():
    selection = quarantine_operations.Selection(pks=_entries())
    decision = _decision(_QUARANTINE_DECISIONS, "Accept or reject.")
    account, actor = current_account().name, _actor()
    reason = request.form.get("reason", "")

    def decide(connection: Connection) -> list[Held]:
        if decision == "accept":
            return quarantine_operations.accept(connection, selection, actor=actor,
                                                account=account,
                                                wording=CONSOLE_WORDING)  # fmt: skip
        return quarantine_operations.reject(connection, selection, reason, actor=actor,
                                            account=account, wording=CONSOLE_WORDING)  # fmt: skip

    return _decided(quarantine_page, _QUARANTINE_DECISIONS[decision], decide)
