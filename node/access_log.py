"""gunicorn's access log, with the fields of each line computed only when the format names them.

gunicorn builds every atom of a request before formatting its access log line:
a dictionary of the fixed fields, one entry per request header, response
header and WSGI environ variable (some sixty strings, each escaped), and the
user name decoded from an ``Authorization`` header.  The default format
(``%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"``) uses nine
of them; building the rest was an eighth of a worker's CPU on a GET by id.
``AccessLogger`` writes the same lines, for any ``access_log_format``: the nine
atoms of the default format are computed for every line, any other when the
format asks for it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from gunicorn import glogging


def _as_given(atoms: dict[str, Any]) -> dict[str, Any]:
    return atoms


class AccessLogger(glogging.Logger):
    """gunicorn's ``Logger`` (``logger_class``) with lazily computed access log atoms."""

    # The atoms below already escape and default as gunicorn's SafeAtoms does.
    atoms_wrapper_class = staticmethod(_as_given)

    def atoms(self, resp, req, environ, request_time) -> dict[str, Any]:
        return _Atoms(self, resp, req, environ, request_time)

    def all_atoms(self, resp, req, environ, request_time) -> dict[str, Any]:
        """Every atom, as gunicorn computes them (for fields the fast path does not know)."""
        return super().atoms(resp, req, environ, request_time)

    def access(self, resp, req, environ, request_time) -> None:
        """The line of one request, as gunicorn's ``access`` logs it.

        The record is made here and handed to the access logger's handlers:
        ``Logger.info`` would first walk the stack for the caller's file and
        line (``findCaller``), a tenth of the line's cost, which gunicorn's
        access format never shows; the record names this method instead.
        """
        if not self.access_log_enabled:
            return
        logger = self.access_log
        if not logger.isEnabledFor(logging.INFO):
            return
        try:
            atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
            record = logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, self.cfg.access_log_format,
                (atoms,), None, func="access",
            )  # fmt: skip
            logger.handle(record)
        except Exception:
            self.error(traceback.format_exc())


class _Atoms(dict[str, Any]):
    """The atoms of one request (glogging.Logger.atoms): the default format's nine,
    and any other computed when the format looks it up (``__missing__``).

    Lookups behave as gunicorn's ``SafeAtoms``: strings have ``"`` escaped, an
    unknown atom is ``-``, and ``{name}i`` / ``{name}o`` / ``{name}e`` ignore
    the letter case of the name.  A non-empty mapping, so that ``logging``
    formats the line with it (``LogRecord`` takes a single non-empty mapping
    argument as the format's mapping); ``%`` formatting looks keys up through
    ``dict``, whose misses come to ``__missing__``.
    """

    __slots__ = ("_all", "_environ", "_logger", "_req", "_request_time", "_resp")

    def __init__(self, logger: AccessLogger, resp, req, environ, request_time) -> None:
        status = resp.status
        sent = getattr(resp, "sent", None)
        super().__init__(
            h=_escaped(environ.get("REMOTE_ADDR", "-")),
            l="-",
            u=_escaped(logger._get_user(environ) or "-"),
            t=_escaped(logger.now()),
            r=_escaped(
                f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
            ),
            s=_escaped(status.split(None, 1)[0]) if isinstance(status, str) else status,
            b="-" if sent is None else str(sent),
            f=_escaped(environ.get("HTTP_REFERER", "-")),
            a=_escaped(environ.get("HTTP_USER_AGENT", "-")),
        )
        self._logger = logger
        self._resp = resp
        self._req = req
        self._environ = environ
        self._request_time = request_time
        self._all: dict[str, Any] | None = None

    def __missing__(self, key: str) -> Any:
        if self._all is None:
            self._all = self._logger.all_atoms(
                self._resp, self._req, self._environ, self._request_time
            )
        if key.startswith("{"):
            key = key.lower()
        return _escaped(self._all.get(key, "-"))


def _escaped(value: Any) -> Any:
    return value.replace('"', '\\"') if isinstance(value, str) else value
