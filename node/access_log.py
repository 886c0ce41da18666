"""gunicorn's access log, with the fields of each line computed only when the format names them.

gunicorn builds every atom of a request before formatting its access log line:
a dictionary of the fixed fields, one entry per request header, response
header and WSGI environ variable (some sixty strings, each escaped), and the
user name decoded from an ``Authorization`` header.  The default format
(``%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"``) uses nine
of them; building the rest was an eighth of a worker's CPU on a GET by id.
``AccessLogger`` writes the same lines, for any ``access_log_format``, from a
mapping that computes an atom when the format asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gunicorn import glogging


def _as_given(atoms: Mapping[str, Any]) -> Mapping[str, Any]:
    return atoms


class AccessLogger(glogging.Logger):
    """gunicorn's ``Logger`` (``logger_class``) with lazily computed access log atoms."""

    # The atoms below already escape and default as gunicorn's SafeAtoms does.
    atoms_wrapper_class = staticmethod(_as_given)

    def atoms(self, resp, req, environ, request_time) -> Mapping[str, Any]:
        return _LazyAtoms(self, resp, req, environ, request_time)

    def all_atoms(self, resp, req, environ, request_time) -> dict[str, Any]:
        """Every atom, as gunicorn computes them (for fields the fast path does not know)."""
        return super().atoms(resp, req, environ, request_time)


class _LazyAtoms(Mapping[str, Any]):
    """The atoms of one request (glogging.Logger.atoms), computed on lookup.

    Lookups behave as gunicorn's ``SafeAtoms``: strings have ``"`` escaped, an
    unknown atom is ``-``, and ``{name}i`` / ``{name}o`` / ``{name}e`` ignore
    the letter case of the name.  A Mapping (and never empty), so that
    ``logging`` formats the line with it (``LogRecord`` takes a single
    non-empty mapping argument as the format's mapping).
    """

    __slots__ = ("_all", "_environ", "_logger", "_req", "_request_time", "_resp")

    def __init__(self, logger: AccessLogger, resp, req, environ, request_time) -> None:
        self._logger = logger
        self._resp = resp
        self._req = req
        self._environ = environ
        self._request_time = request_time
        self._all: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        value = self._common(key)
        if value is None:
            value = self._other(key)
        return value.replace('"', '\\"') if isinstance(value, str) else value

    def _common(self, key: str) -> Any:
        """The atoms of the default format, or None for any other."""
        environ = self._environ
        if key == "h":
            return environ.get("REMOTE_ADDR", "-")
        if key == "l":
            return "-"
        if key == "u":
            return self._logger._get_user(environ) or "-"
        if key == "t":
            return self._logger.now()
        if key == "r":
            return f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
        if key == "s":
            status = self._resp.status
            return status.split(None, 1)[0] if isinstance(status, str) else status
        if key == "b":
            sent = getattr(self._resp, "sent", None)
            return "-" if sent is None else str(sent)
        if key == "f":
            return environ.get("HTTP_REFERER", "-")
        if key == "a":
            return environ.get("HTTP_USER_AGENT", "-")
        return None

    def _other(self, key: str) -> Any:
        if self._all is None:
            self._all = self._logger.all_atoms(
                self._resp, self._req, self._environ, self._request_time
            )
        if key.startswith("{"):
            key = key.lower()
        return self._all.get(key, "-")

    def __iter__(self) -> Iterator[str]:
        return iter(("h", "l", "u", "t", "r", "s", "b", "f", "a"))

    def __len__(self) -> int:
        return 9
