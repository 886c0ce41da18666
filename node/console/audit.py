"""The audit page: newest first, filtered; the chain's verification state and head."""

from __future__ import annotations

from flask import abort, render_template, request

from node.operations import audit as audit_operations
from node.store.audit import AuditFilter
from node.taxii.state import node_state
from node.timestamps import from_micros, to_micros

from .blueprint import blueprint
from .objects import known_args, position
from .session import require_admin

PAGE_SIZE = 100
AUDIT_KEYS = ("peer", "action", "rule", "object", "since", "until")
AUTO_VERIFY_RECORDS = 50_000  # verify the chain on every visit up to this size


def _time(name: str) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if len(text) == 10:
        text += "T00:00:00Z" if name == "since" else "T23:59:59.999999Z"
    try:
        return to_micros(text)
    except ValueError:
        abort(400, f"{name}: {text[:40]!r} is not a date (YYYY-MM-DD) or an RFC 3339 timestamp.")


def _filter() -> AuditFilter:
    before = request.args.get("before", "")
    return AuditFilter(
        peer=request.args.get("peer", "").strip()[:128],
        action=request.args.get("action", "").strip()[:32],
        rule=request.args.get("rule", "").strip()[:64],
        object_id=request.args.get("object", "").strip()[:300],
        since=_time("since"),
        until=_time("until"),
        before_pk=position(before),
        limit=PAGE_SIZE,
    )


@blueprint.route("/audit")
def audit_page():
    require_admin()
    wanted = _filter()
    verify_up_to = None if request.args.get("verify") else AUTO_VERIFY_RECORDS
    with node_state().store.read() as connection:
        rows = audit_operations.entries(connection, wanted)
        chain = audit_operations.summary(connection, verify_up_to=verify_up_to)
    next_args = None
    if len(rows) == PAGE_SIZE:
        next_args = {**known_args(AUDIT_KEYS), "before": rows[-1]["pk"]}
    return render_template("audit.html", rows=rows, args=request.args, next_args=next_args,
                           filters=known_args(AUDIT_KEYS),
                           verification=chain.verification, head=chain.head,
                           total=chain.records,
                           from_micros=from_micros)  # fmt: skip
