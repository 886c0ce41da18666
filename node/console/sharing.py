"""The sharing page: per peer and mapping, state, counts, dead letters, policy preview."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, flash, redirect, render_template, request, url_for

from node.errors import NodeError
from node.operations import sync as operations
from node.sharing import Agreement
from node.store import search, syncstate
from node.store.audit import Direction
from node.store.syncstate import SyncState
from node.taxii.state import current_account, node_state
from node.timestamps import from_micros, now_micros

from .blueprint import blueprint
from .objects import position
from .session import require_admin

PREVIEW_LIMIT = 500
DEAD_LETTERS_SHOWN = 100


@dataclass
class MappingView:
    agreement: Agreement
    states: list[SyncState]
    withheld: dict[str, int]  # by rule
    dead_letters: list[dict]  # the oldest DEAD_LETTERS_SHOWN
    dead_letter_count: int

    @property
    def peer(self) -> str:
        return self.agreement.peer.name


def lag_seconds(state: SyncState) -> float | None:
    """Seconds since the last successful round; None if there never was one."""
    if state.last_success is None:
        return None
    return max(0.0, (now_micros() - state.last_success) / 1e6)


def _mapping_views() -> list[MappingView]:
    state = node_state()
    views = []
    with state.store.read() as connection:
        withheld = search.withheld_by_rule(connection)
        for agreement in state.agreements:
            key = agreement.mapping.key
            mapping = agreement.mapping
            lanes = ((Direction.PUSH, mapping.pushes), (Direction.PULL, mapping.pulls))
            directions = [d for d, on in lanes if on]
            states = [syncstate.load(connection, agreement.peer.name, key, d) for d in directions]
            by_rule: dict[str, int] = {}
            for (peer, collection_id, direction, rule), n in withheld.items():
                if peer == agreement.peer.name and collection_id == agreement.collection_id:
                    label = f"{rule} ({direction})"
                    by_rule[label] = by_rule.get(label, 0) + n
            letters = syncstate.list_dead_letters(connection, agreement.peer.name, key)
            views.append(MappingView(agreement, states, by_rule, letters[:DEAD_LETTERS_SHOWN],
                                     len(letters)))  # fmt: skip
    return views


@blueprint.route("/sharing")
def sharing_page():
    require_admin()
    return render_template("sharing.html", views=_mapping_views(), lag_seconds=lag_seconds,
                           from_micros=from_micros)  # fmt: skip


def _find_agreement(peer: str, collection_id: str) -> Agreement:
    agreement = node_state().agreements.find(peer, collection_id)
    if agreement is None:
        abort(404, "No such peer mapping.")
    return agreement


@blueprint.route("/sharing/preview")
def preview_page():
    require_admin()
    agreement = _find_agreement(request.args.get("peer", ""), request.args.get("collection", ""))
    lines = list(operations.preview(node_state().store, agreement, limit=PREVIEW_LIMIT + 1))
    return render_template("preview.html", agreement=agreement, lines=lines[:PREVIEW_LIMIT],
                           truncated=len(lines) > PREVIEW_LIMIT)  # fmt: skip


def _letter_pk(pk: str) -> int:
    number = position(pk)
    if number is None:
        abort(404, "No such dead letter.")
    return number


@blueprint.route("/sharing/dead-letters/<pk>/retry", methods=["POST"])
def retry_dead_letter(pk: str):
    require_admin()
    state = node_state()
    try:
        outcome = operations.retry_dead_letter(state.config, state.store, _letter_pk(pk),
                                               current_account().name)  # fmt: skip
    except NodeError as error:
        flash(f"Dead letter {pk}: {error}", "error")
    else:
        flash(f"Retried {outcome.object_id}: {outcome.message}",
              "ok" if outcome.delivered else "error")  # fmt: skip
    return redirect(url_for("console.sharing_page"))


@blueprint.route("/sharing/dead-letters/<pk>/skip", methods=["POST"])
def skip_dead_letter(pk: str):
    require_admin()
    try:
        operations.skip_dead_letter(node_state().store, _letter_pk(pk), current_account().name)
    except NodeError as error:
        flash(f"Dead letter {pk}: {error}", "error")
    else:
        flash(f"Dead letter {pk} skipped.", "ok")
    return redirect(url_for("console.sharing_page"))
