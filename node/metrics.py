"""``/metrics`` in the Prometheus text format, and the ``/healthz`` and ``/readyz`` probes.

Two kinds of figures:

* Request counters and latency histograms, counted in each server process.
  ``serve`` runs several gunicorn worker processes, so it gives the server a
  directory of its own (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's
  multiprocess mode) where every worker keeps its counts; a scrape, answered
  by any one worker, adds up all of them, and gunicorn's ``child_exit`` hook
  tells prometheus_client about workers that are gone.  Without that
  directory (tests, another WSGI server) each app counts in its own registry.
* Everything about the store (objects per collection, sync counts, lag, dead
  letters, audit records, failed logins) is read from the store at scrape
  time, so every process answers the same and nothing is counted twice.

``/metrics`` is not public: it answers a Prometheus scraper presenting the
token in ``[server] metrics_token_file`` (``Authorization: Bearer ...``), an
admin account's API credentials, or, with ``[server] metrics_loopback =
true``, any client on a loopback address.  The probes answer anyone and say
nothing but ``ok`` / ``ready`` / ``not ready``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from node.config import Config, ConfigError
from node.store import Store, search, syncstate
from node.taxii.auth import peer_certificate
from node.taxii.errors import TaxiiError, error_response
from node.timestamps import now_micros

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION = "taxii_node_metrics"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

log = logging.getLogger(__name__)


def multiprocess_directory() -> str | None:
    """The per-server directory of multiprocess mode, when ``serve`` set one up."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    return directory if directory and Path(directory).is_dir() else None


def enable_multiprocess(directory: Path) -> None:
    """Make this process and the workers it forks count into ``directory``.

    prometheus_client chooses how values are kept when it is first imported;
    if that happened before the directory was known, choose again.
    """
    os.environ[MULTIPROCESS_ENV] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: drop the live-gauge files of a gone worker."""
    from prometheus_client import multiprocess

    if multiprocess_directory():
        multiprocess.mark_process_dead(pid)


class RequestMetrics:
    """Requests by endpoint, method and status, and latency by endpoint.

    The labelled children are looked up once per label values and kept:
    prometheus_client's ``labels()`` takes a lock and validates the values on
    every call, which cost as much as counting itself.  Methods are whatever
    clients send, so the kept children are bounded (``_MAX_CHILDREN``).
    """

    _MAX_CHILDREN = 1_000

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[str, Any] = {}
        self.requests = Counter(
            "taxii_node_http_requests",
            "HTTP requests answered, by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "taxii_node_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._kept(
                self._counters, key, self.requests.labels(endpoint, method, str(status))
            )
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._kept(self._histograms, endpoint, self.latency.labels(endpoint))
        counter.inc()
        histogram.observe(seconds)

    def _kept(self, children: dict, key: Any, child: Any) -> Any:
        """``child`` remembered under ``key`` (all forgotten past ``_MAX_CHILDREN``;
        prometheus_client keeps its own, so the figures stay whole)."""
        if len(children) >= self._MAX_CHILDREN:
            children.clear()
        children[key] = child
        return child


class StoreCollector:
    """Figures read from the store at scrape time (the same from every process)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._audit = search.AuditTally()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._store.read() as connection:
            per_collection = search.versions_per_collection(connection)
            states = syncstate.all_states(connection)
            pending = search.dead_letter_counts(connection)
            with self._lock:
                search.tally_audit(connection, self._audit)
                withheld = dict(self._audit.withheld)
                records, failed_logins = self._audit.records, self._audit.failed_logins
        yield _objects(per_collection)
        yield from _sync_counters(states)
        yield _withheld_by_rule(withheld)
        yield _pending_dead_letters(pending)
        yield _lag(states)
        audit_records = GaugeMetricFamily("taxii_node_audit_records", "Records in the audit trail")
        audit_records.add_metric([], records)
        yield audit_records
        failed = CounterMetricFamily("taxii_node_failed_logins", "Failed logins (API and console)")
        failed.add_metric([], failed_logins)
        yield failed


def _objects(per_collection: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "taxii_node_objects", "Object versions stored, by collection", labels=["collection"]
    )
    for name, count in sorted(per_collection.items()):
        family.add_metric([name], count)
    return family


def _sync_counters(states: list[syncstate.SyncState]) -> Iterator[Metric]:
    labels = ["peer", "mapping", "direction"]
    for field, text in (
        ("sent", "Object versions sent to the peer"),
        ("received", "Object versions received from the peer and stored"),
        ("withheld", "Object versions withheld by policy"),
        ("dead_lettered", "Object versions refused by the receiving side (dead letters)"),
    ):
        family = CounterMetricFamily(f"taxii_node_sync_{field}", text, labels=labels)
        for state in states:
            family.add_metric([state.peer, state.mapping, state.direction], getattr(state, field))
        yield family


def _withheld_by_rule(withheld: dict[tuple[str, str, str, str], int]) -> Metric:
    family = CounterMetricFamily(
        "taxii_node_sync_withheld_by_rule",
        "Withheld decisions in the audit trail, by peer, collection, direction and rule",
        labels=["peer", "collection", "direction", "rule"],
    )
    for (peer, collection_id, direction, rule), count in sorted(withheld.items()):
        family.add_metric([peer, collection_id, direction, rule], count)
    return family


def _pending_dead_letters(pending: dict[tuple[str, str], int]) -> Metric:
    family = GaugeMetricFamily(
        "taxii_node_sync_dead_letters", "Dead letters waiting for a retry or a skip",
        labels=["peer", "mapping"],
    )  # fmt: skip
    for (peer, mapping), count in sorted(pending.items()):
        family.add_metric([peer, mapping], count)
    return family


def _lag(states: list[syncstate.SyncState]) -> Metric:
    family = GaugeMetricFamily(
        "taxii_node_sync_lag_seconds",
        "Seconds since the last successful round, by peer, mapping and direction",
        labels=["peer", "mapping", "direction"],
    )
    now = now_micros()
    for state in states:
        if state.last_success is not None:
            lag = max(0.0, (now - state.last_success) / 1e6)
            family.add_metric([state.peer, state.mapping, state.direction], lag)
    return family


@dataclass
class MetricsState:
    requests: RequestMetrics
    registry: CollectorRegistry | None  # None in multiprocess mode: built per scrape
    store_collector: StoreCollector
    scrape_token: str | None
    loopback: bool


def _scrape_token(config: Config) -> str | None:
    path = config.server.metrics_token_file
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{config.path}: [server] metrics_token_file: {exc}") from None
    if len(token) < 16:
        raise ConfigError(
            f"{config.path}: [server] metrics_token_file: {path} holds fewer than 16 characters"
        )
    return token


def register_metrics(app: Flask, config: Config, store: Store) -> None:
    """Count every request of ``app`` and serve /metrics, /healthz and /readyz."""
    multiprocess = multiprocess_directory() is not None
    registry = None if multiprocess else CollectorRegistry()
    collector = StoreCollector(store)
    if registry is not None:
        registry.register(collector)
    state = MetricsState(RequestMetrics(registry), registry, collector, _scrape_token(config),
                         config.server.metrics_loopback)  # fmt: skip
    app.extensions[EXTENSION] = state

    @app.before_request
    def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            state.requests.observe(request.endpoint or "unmatched", request.method,
                                   response.status_code, time.perf_counter() - started)  # fmt: skip
        return response

    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
    app.add_url_rule("/healthz", "healthz", _healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", lambda: _readyz(store), methods=["GET"])


def _metrics_state() -> MetricsState:
    from flask import current_app

    return current_app.extensions[EXTENSION]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _authorise_scrape(state: MetricsState) -> None:
    """Return if the caller may read /metrics; TaxiiError (401/403/429) otherwise."""
    from node.taxii.state import node_state

    authorization = request.headers.get("Authorization", "")
    if state.scrape_token and hmac.compare_digest(
        authorization.encode(), f"Bearer {state.scrape_token}".encode()
    ):
        return
    if state.loopback and _is_loopback(request.remote_addr or ""):
        return
    account = node_state().authenticator.authenticate(
        authorization or None, request.remote_addr or "", peer_certificate(request.environ)
    )
    if not account.is_admin:
        raise TaxiiError(403, "Forbidden", "metrics are for administrators and scrapers")


def _metrics() -> Response:
    state = _metrics_state()
    try:
        _authorise_scrape(state)
    except TaxiiError as error:
        return error_response(error.status, error.title, error.description, error.headers)
    registry = state.registry
    if registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(state.store_collector)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _healthz() -> Response:
    """The process answers."""
    return _plain("ok", 200)


def _readyz(store: Store) -> Response:
    """The store is reachable and at the schema this code needs."""
    try:
        ready = store.is_current()
    except Exception:  # any failure to reach the store means not ready
        log.warning("readiness check: the store is not reachable", exc_info=True)
        ready = False
    return _plain("ready" if ready else "not ready", 200 if ready else 503)
