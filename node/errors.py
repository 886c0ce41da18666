"""The exceptions taxii-node raises for conditions it expects, all in one place.

Everything here is something an operator or a client can cause and fix: a
wrong value, a missing account, a server that is down.  Such an error carries
a message meant for a person, one line, naming what is wrong.  Any other
exception escaping the node is a bug, and the command line shows its
traceback rather than dressing it up as an "error:" line.

The hierarchy::

    NodeError
    ├── ConfigError       a config file (or collection file) the operator must fix
    ├── InvalidValue      a value given to an operation is malformed: a password too
    │                     short, a certificate fingerprint or subject, a duration
    ├── StoreError        the store refuses a change as asked
    │   ├── NotFound      no such account, token or collection
    │   ├── AlreadyExists an account of that name exists
    │   └── Conflict      the change contradicts what is stored (a certificate
    │                     already bound to another account)
    └── RemoteError       a TAXII server could not be reached, or answered with an
                          error (``status``; ``transient`` when retrying may help)

``BodyTimeout`` stands apart: it is a ``TimeoutError`` that the server's socket
raises while a request body is read, saying which limit was reached.

``ConfigError`` and ``InvalidValue`` are also ``ValueError``: they are bad values,
and callers that validated with ``except ValueError`` keep working.
"""

from __future__ import annotations


class NodeError(Exception):
    """An expected condition, with a one-line message for a person."""


class ConfigError(NodeError, ValueError):
    """A configuration problem; the message names the file and the key."""


class InvalidValue(NodeError, ValueError):
    """A value given to an operation is malformed or out of range."""


class StoreError(NodeError):
    """The store refuses a change as it was asked for."""


class NotFound(StoreError):
    """The account, token or collection named does not exist."""


class AlreadyExists(StoreError):
    """Something of that name exists already."""


class Conflict(StoreError):
    """The change contradicts what is stored."""


class RemoteError(NodeError):
    """A TAXII server could not be reached or answered with an error.

    ``transient`` is true for what may succeed if tried again (network errors,
    timeouts, 5xx, 408, 429); ``status`` is the HTTP status, when there was one;
    ``too_much`` is true when the answer could not be read for its size or depth
    (a page with fewer objects may be readable); ``retry_now`` is false for a
    transient error not worth retrying at once (an answer that did not arrive
    within its deadline, a status still pending, a caller told to stop): the
    next round tries again, so one slow peer does not hold the others for long.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        too_much: bool = False,
        retry_now: bool = True,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.too_much = too_much
        self.retry_now = retry_now


class BodyTimeout(TimeoutError):
    """A request body stopped arriving: past the request's deadline, or while
    the server already waits for as many slow clients as it allows.  The
    message names the limit, for the client's 408."""
