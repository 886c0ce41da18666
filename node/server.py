"""Serving the app with gunicorn, a production WSGI server (never Flask's dev server).

Each gunicorn worker builds its own app with ``create_app`` after the fork,
so no database connection is shared between processes.

With ``[server] tls_cert`` the node serves HTTPS only, TLS 1.2 or later; with
``tls_client_ca`` it also asks clients for a certificate (optional, so that
people with passwords or tokens still get in) and verifies any it is given
against that CA bundle: an untrusted certificate fails the handshake.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from node import metrics
from node.config import Config, ConfigError, ServerConfig
from node.taxii.negotiation import TAXII_21

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


class TaxiiThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes a TAXII server needs.

    * Reads time out: gthread reads request headers from a blocking socket
      with no timeout, so a client that never finishes its headers (slowloris)
      holds a thread for ever, and a dozen such clients stall the server.
      Once gunicorn has set up a connection, its socket gets ``[server]
      timeout``: a stalled read fails, the connection closes, the thread is free.
    * Errors gunicorn answers itself (a malformed request line, 414, 431, bad
      chunking...) get a TAXII error body (3.6.1) instead of an HTML page.
    """

    def handle(self, conn):
        # gunicorn calls conn.init() before reading each request (a no-op after
        # the first); wrap it once per connection so the timeout is set each time.
        if not hasattr(conn, "plain_init"):
            conn.plain_init = conn.init

            def init_with_timeout() -> None:
                conn.plain_init()
                conn.sock.settimeout(self.cfg.timeout)

            conn.init = init_with_timeout
        return super().handle(conn)

    def handle_request(self, req, conn):
        # Headers are in: the application reads the body with its own timeout
        # (views._read_body) and writes the response on a blocking socket.
        conn.sock.settimeout(None)
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc) -> None:
        captured = _CapturedResponse()
        super().handle_error(req, captured, addr, exc)
        status, _, reason = captured.status_line().partition(" ")
        body = json.dumps(
            {"title": reason or "Bad Request", "http_status": status or "400",
             "description": f"the request could not be read: {reason or 'malformed'}"}
        ).encode()  # fmt: skip
        response = (
            f"HTTP/1.1 {status or '400'} {reason or 'Bad Request'}\r\n"
            f"Connection: close\r\nContent-Type: {TAXII_21}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        try:
            client.sendall(response)
        except OSError:
            self.log.debug("failed to send the error response")


class _CapturedResponse:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float | None:
        return None

    def setblocking(self, _flag) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status_line(self) -> str:
        first = self.data.split(b"\r\n", 1)[0].decode("latin-1")
        return first.partition(" ")[2]  # "431 Request Header Fields Too Large"


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_TLS_VERSION
    return context


def _ssl_context(conf, default_ssl_context_factory) -> ssl.SSLContext:
    """gunicorn's ``ssl_context`` hook: its default context, with TLS 1.2 as the floor.

    gunicorn 27 ignores its deprecated ``ssl_version`` setting; this hook is the
    documented way to choose protocol versions.  The default context already
    holds the certificate, the key, the client CA bundle and ``cert_reqs``.
    """
    return _harden(default_ssl_context_factory())


def tls_settings(server: ServerConfig) -> dict:
    """gunicorn settings for the [server] TLS keys (nothing for insecure_http)."""
    if not server.tls:
        return {}
    settings = {
        "certfile": str(server.tls_cert),
        "keyfile": str(server.tls_key or server.tls_cert),
        "ssl_context": _ssl_context,
        "cert_reqs": int(ssl.CERT_NONE),
        "do_handshake_on_connect": True,
    }
    if server.tls_client_ca is not None:
        settings["ca_certs"] = str(server.tls_client_ca)
        # OPTIONAL: analysts authenticate with passwords or tokens and present no
        # certificate; a certificate that is presented must chain to the CA bundle.
        settings["cert_reqs"] = int(ssl.CERT_OPTIONAL)
    return settings


def check_tls(config: Config) -> ssl.SSLContext | None:
    """Load the certificate, key and client CA as gunicorn will; ConfigError if that fails.

    gunicorn would report an unreadable or mismatched file only from its worker
    processes, as a traceback; this checks before it starts.
    """
    server = config.server
    if not server.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(server.tls_cert), str(server.tls_key or server.tls_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{config.path}: [server] tls_cert, tls_key: cannot load {server.tls_cert}: {exc}"
        ) from None
    if server.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(server.tls_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.path}: [server] tls_client_ca: cannot load {server.tls_client_ca}: {exc}"
            ) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return _harden(context)


class NodeServer(BaseApplication):
    def __init__(self, config: Config) -> None:
        self._config = config
        super().__init__()

    def load_config(self) -> None:
        server = self._config.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        settings = {
            "bind": f"{host}:{server.port}",
            "workers": server.workers,
            "threads": server.threads,
            "worker_class": "node.server.TaxiiThreadWorker",
            "timeout": server.timeout,
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": f"taxii-node[{self._config.name}]",
            # One node per process tree: no shared $HOME/.gunicorn/gunicorn.ctl between nodes.
            "control_socket_disable": True,
            "child_exit": _child_exit,
            **tls_settings(server),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from node.app import create_app

        return create_app(self._config)


def _child_exit(_server, worker) -> None:
    metrics.worker_exited(worker.pid)


def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT.

    The worker processes count requests into a metrics directory of this
    server's own (prometheus_client's multiprocess mode), removed at exit.
    """
    check_tls(config)
    with tempfile.TemporaryDirectory(prefix="taxii-node-metrics-") as directory:
        metrics.enable_multiprocess(Path(directory))
        NodeServer(config).run()
