"""/metrics, /healthz and /readyz on a real gunicorn server with two worker processes.

Requests are answered by whichever worker accepts the connection; counts are
kept per process in the server's metrics directory (prometheus_client's
multiprocess mode, set up by ``serve``), so every scrape, whichever worker
answers it, reports the sum over all workers.
"""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.nodes import ADMIN_PASSWORD, new_node

REQUESTS = 30


def _discovery_count(text: str) -> float:
    match = re.search(
        r'taxii_node_http_requests_total\{endpoint="taxii.discovery",method="GET",'
        r'status="200"\} ([0-9.e+]+)',
        text,
    )
    return float(match.group(1)) if match else 0.0


def test_request_counts_add_up_across_worker_processes(tmp_path: Path, store_url) -> None:
    node = new_node(tmp_path, "node-a", store_url, workers=2).start()
    try:
        auth = ("admin", ADMIN_PASSWORD)
        for _ in range(REQUESTS):
            # A new connection each time, so that both workers get some.
            with requests.Session() as session:
                assert session.get(f"{node.base_url}/taxii2/", auth=auth, timeout=10).ok
        scrapes = []
        for _ in range(6):
            with requests.Session() as session:
                response = session.get(f"{node.base_url}/metrics", auth=auth, timeout=10)
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            scrapes.append(_discovery_count(response.text))
        # start() polled /taxii2/ without credentials (401s): only our 200s count here.
        assert scrapes == [REQUESTS] * len(scrapes)
        assert requests.get(f"{node.base_url}/metrics", timeout=10).status_code == 401
        assert requests.get(f"{node.base_url}/healthz", timeout=10).text == "ok\n"
        assert requests.get(f"{node.base_url}/readyz", timeout=10).text == "ready\n"
    finally:
        node.stop()
