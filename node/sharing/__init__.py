"""Sharing with partner nodes: agreements, egress, ingress and their decision records.

* ``agreements``: the config's peer mappings, bound to local collections and policies;
* ``egress``: the one function deciding what may leave for a peer, used by the
  worker's push, every TAXII read by the peer's sync account and ``policy preview``;
* ``ingress``: the one function deciding what is accepted from a peer, used by
  the worker's pull and the peer's POSTs;
* ``records``: decisions as audit records.

Nothing here knows about HTTP: the TAXII layer passes the calling peer in.
``node.policy`` is the pure rule engine underneath.
"""

from .agreements import Agreement, Agreements
from .egress import EgressPage, Outgoing, Position, egress
from .ingress import Admission, admit, conceal, settle
from .records import RecentDeliveries, decision_records, read_record, served_records

__all__ = [
    "Admission",
    "Agreement",
    "Agreements",
    "EgressPage",
    "Outgoing",
    "Position",
    "RecentDeliveries",
    "admit",
    "conceal",
    "decision_records",
    "egress",
    "read_record",
    "served_records",
    "settle",
]
