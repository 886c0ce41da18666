"""The console's blueprint, before-request hooks and error pages."""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from node.store.engine import BUSY_RETRY_AFTER, is_store_busy
from node.taxii.state import node_state, set_current_account, signed_in_account

from .session import check_csrf, csrf_token, secure_headers, session_account

blueprint = Blueprint(
    "console",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

_OPEN_ENDPOINTS = {"console.sign_in", "console.static"}


@blueprint.before_request
def _session_and_csrf():
    """Every page but sign-in needs a signed-in account; every POST a CSRF token."""
    # Bounds every body, chunked ones too, before the form is parsed (for the CSRF check).
    request.max_content_length = node_state().config.taxii.max_content_length
    if _holds_nul():
        # PostgreSQL refuses NUL in text (a 500); no stored id, name or value has one.
        abort(400, "A value in the request holds a NUL character.")
    account = session_account()
    if account is not None:
        set_current_account(account)
    check_csrf()
    if account is None and request.endpoint not in _OPEN_ENDPOINTS:
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    return None


def _holds_nul() -> bool:
    values = [*(request.view_args or {}).values(), *request.args.values()]
    if request.method == "POST":
        values += request.form.values()
    return any("\x00" in str(value) for value in values)


@blueprint.after_request
def _headers(response: Response) -> Response:
    return secure_headers(response)


_SECTIONS = {"collections_page": "collections", "objects_page": "objects",
             "object_page": "objects", "publish_page": "publish", "sharing_page": "sharing",
             "preview_page": "sharing", "audit_page": "audit", "releases_page": "releases",
             "quarantine_page": "quarantine"}  # fmt: skip


@blueprint.context_processor
def _template_helpers() -> dict:
    endpoint = (request.endpoint or "").partition(".")[2]
    return {
        "account": signed_in_account(),  # None on the sign-in and error pages
        "csrf_token": csrf_token,
        "node_name": node_state().config.name,
        "active": _SECTIONS.get(endpoint, ""),
    }


@blueprint.errorhandler(HTTPException)
def _error_page(error: HTTPException):
    description = error.description
    if isinstance(error, RequestEntityTooLarge):
        # Werkzeug's own words ("the data value transmitted exceeds the capacity
        # limit") name no limit; the operator's is [taxii] max_content_length.
        description = too_large_message()
        _sign_in_for_the_error_page()
    response = Response(
        render_template("error.html", code=error.code, name=error.name,
                        description=description),
        status=error.code or 500,
    )  # fmt: skip
    return secure_headers(response)


@blueprint.errorhandler(OperationalError)
def _store_error_page(error: OperationalError):
    """A store busy with another process's write (SQLite's lock held past the busy
    timeout) is a page saying so, 503 with Retry-After; any other database error is
    raised on, to the app's handler and the log."""
    if not is_store_busy(error):
        raise error
    response = Response(
        render_template("error.html", code=503, name="Store busy",
                        description="The store is busy with another process's write (a sync "
                        "worker, a command, another server): nothing was changed. Try again "
                        f"in {BUSY_RETRY_AFTER} seconds."),
        status=503,
        headers={"Retry-After": str(BUSY_RETRY_AFTER)},
    )  # fmt: skip
    return secure_headers(response)


def _sign_in_for_the_error_page() -> None:
    """The session's account, for the layout of an error page of a request refused
    before the session was read (a body too large to parse for the NUL check): a
    page with its navigation, rather than one that looks signed out."""
    if signed_in_account() is None:
        account = session_account()
        if account is not None:
            set_current_account(account)


def too_large_message() -> str:
    """Why a request body was refused for its size, naming the setting that bounds it."""
    limit = node_state().config.taxii.max_content_length
    return f"The request exceeds max_content_length ({limit} bytes)."
