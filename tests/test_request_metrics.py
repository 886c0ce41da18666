"""Request counters and latency histograms (node.metrics.RequestMetrics) count every request,
with their labelled children kept between requests and the kept ones bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from node.metrics import RequestMetrics


def _count(registry: CollectorRegistry, endpoint: str, method: str, status: str) -> float | None:
    return registry.get_sample_value(
        "taxii_node_http_requests_total",
        {"endpoint": endpoint, "method": method, "status": status},
    )


def test_each_request_is_counted_under_its_labels() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    for status in (200, 200, 404):
        metrics.observe("taxii.get_object", "GET", status, 0.002)
    metrics.observe("taxii.get_objects", "GET", 200, 0.3)
    assert _count(registry, "taxii.get_object", "GET", "200") == 2
    assert _count(registry, "taxii.get_object", "GET", "404") == 1
    assert _count(registry, "taxii.get_objects", "GET", "200") == 1
    histogram = "taxii_node_http_request_duration_seconds"
    labels = {"endpoint": "taxii.get_object"}
    assert registry.get_sample_value(f"{histogram}_count", labels) == 3
    assert registry.get_sample_value(f"{histogram}_bucket", labels | {"le": "0.0025"}) == 3
    assert registry.get_sample_value(f"{histogram}_bucket", labels | {"le": "0.001"}) == 0


def test_counts_stay_whole_past_the_bound_of_kept_children(monkeypatch) -> None:
    monkeypatch.setattr(RequestMetrics, "_MAX_CHILDREN", 10)
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    methods = [f"M{number}" for number in range(25)]
    for _ in range(2):
        for method in methods:
            metrics.observe("unmatched", method, 405, 0.001)
    assert len(metrics._counters) <= 10
    assert all(_count(registry, "unmatched", method, "405") == 2 for method in methods)
