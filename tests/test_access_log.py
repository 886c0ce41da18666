"""The node's access log (node.access_log) writes the lines gunicorn's own logger writes."""

from __future__ import annotations

import base64
import datetime
import logging
import re
from types import SimpleNamespace

import pytest
import requests
from gunicorn import glogging
from gunicorn.config import Config

from node.access_log import AccessLogger
from tests.nodes import ADMIN_PASSWORD, new_node

FORMATS = [
    Config().access_log_format,  # gunicorn's default, which the node serves with
    "%(h)s %(m)s %(U)s %(q)s %(H)s %(B)s %(T)s %(D)s %(M)s %(L)s %(p)s",
    "%({x-request-id}i)s %({Content-Type}o)s %({remote_addr}e)s %({absent}i)s %(nothing)s",
]


def _request(authorization: str | None, sent: int | None) -> tuple:
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": '/api/collections/a/objects/?limit=1&x="q"',
        "PATH_INFO": "/api/collections/a/objects/",
        "QUERY_STRING": 'limit=1&x="q"',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'client "quoted"/1.0',
    }
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    resp = SimpleNamespace(
        status="200 OK", sent=sent, headers=[("Content-Type", "application/taxii+json")]
    )
    req = SimpleNamespace(headers=[("X-Request-Id", "abc"), ("Host", "127.0.0.1")])
    return resp, req, environ, datetime.timedelta(seconds=1, microseconds=2345)


def _line(logger: glogging.Logger, log_format: str, request: tuple) -> str:
    atoms = logger.atoms_wrapper_class(logger.atoms(*request))
    record = logging.LogRecord("access", logging.INFO, __file__, 1, log_format, (atoms,), None)
    return record.getMessage()


@pytest.fixture
def loggers(monkeypatch):
    # One clock for both, so that %(t)s compares.
    monkeypatch.setattr(glogging.Logger, "now", lambda self: "[02/Dec/2026:07:00:00 +0000]")
    config = Config()
    return glogging.Logger(config), AccessLogger(config)


@pytest.mark.parametrize("log_format", FORMATS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"alice:secret").decode(), "Bearer tok", "Basic %%%"],
)
@pytest.mark.parametrize("sent", [None, 0, 1234])
def test_lines_are_gunicorns(loggers, log_format, authorization, sent):
    gunicorns, ours = loggers
    request = _request(authorization, sent)
    assert _line(ours, log_format, request) == _line(gunicorns, log_format, request)


def test_the_user_and_escaped_quotes_are_in_the_default_line(loggers):
    _, ours = loggers
    request = _request("Basic " + base64.b64encode(b"alice:secret").decode(), 10)
    line = _line(ours, FORMATS[0], request)
    assert " alice [02/Dec/2026" in line
    assert 'x=\\"q\\"' in line and 'client \\"quoted\\"/1.0' in line
    assert "secret" not in line


def test_a_served_request_is_logged_in_the_combined_format(tmp_path):
    node = new_node(tmp_path, "logged", None)
    node.start()
    try:
        response = requests.get(
            f"{node.base_url}/taxii2/",
            auth=("admin", ADMIN_PASSWORD),
            headers={"Accept": "application/taxii+json;version=2.1", "User-Agent": "probe/1"},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        node.stop()
    assert node.log_path is not None
    lines = [line for line in node.log_path.read_text().splitlines() if "probe/1" in line]
    assert len(lines) == 1
    assert re.fullmatch(
        rf'127\.0\.0\.1 - admin \[[^]]+\] "GET /taxii2/ HTTP/1\.1" 200 {len(response.content)} '
        r'"-" "probe/1"',
        lines[0],
    ), lines[0]
