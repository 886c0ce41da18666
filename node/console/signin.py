"""Sign-in and sign-out pages."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from node.taxii.state import signed_in_account

from . import session as sessions
from .blueprint import blueprint
from .session import SignInRefused


def _safe_next(target: str) -> str:
    """Where to go after signing in: a path inside the console, never another site."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.home")


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if request.method == "GET":
        if signed_in_account() is not None:
            return redirect(url_for("console.home"))
        return render_template("sign_in.html", message="", user="",
                               next=request.args.get("next", ""))  # fmt: skip
    name = request.form.get("user", "")[:128]
    target = request.form.get("next", "")
    try:
        sessions.sign_in(name, request.form.get("password", ""))
    except SignInRefused as refused:
        page = render_template("sign_in.html", message=str(refused), user=name, next=target)
        return page, 401
    return redirect(_safe_next(target))


@blueprint.route("/sign-out", methods=["POST"])
def sign_out_action():
    sessions.sign_out()
    return redirect(url_for("console.sign_in"))


@blueprint.route("/<path:unknown>")
def not_found(unknown: str):
    """Unknown console paths get the console's 404 page (not the API's JSON error)."""
    abort(404, "There is no such page in the console.")
