"""STIX / TAXII timestamps as integers.

The store keys versions and orders ``date_added`` by integer microseconds since
the Unix epoch: integer comparison is exact, whereas STIX timestamp strings of
different fractional precision ("...:00Z" and "...:00.5Z") do not sort as text.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

from node.memo import short_texts

# RFC 3339 as STIX 2.1 (section 3.2) restricts it: UTC only, "Z" suffix,
# optional fractional seconds.  TAXII filters (3.4.2) use the same form.
# ASCII digits only, and \Z: "$" would also accept a trailing newline.
_TIMESTAMP = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z\Z"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_timestamp(value: object) -> bool:
    """True when ``value`` is a valid STIX timestamp string."""
    try:
        to_micros(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def micros_or_none(text: str | None) -> int | None:
    """``to_micros`` of a timestamp; None for None or anything else (a peer's odd value)."""
    return to_micros(text) if text is not None and is_timestamp(text) else None


def to_micros(value: str) -> int:
    """Parse a STIX timestamp into microseconds since the epoch.

    Digits beyond microseconds are truncated.  Raises ``ValueError`` with a
    message fit for an API client when the string is not a valid timestamp.
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, got {type(value).__name__}")
    return _parsed(value)


# Timestamps longer than 40 characters (more than 18 fractional digits: valid, and
# never seen in practice) are parsed each time (node.memo).
@short_texts(size=8192, longest=40)
def _parsed(value: str) -> int:
    """``to_micros`` of a string, remembered (a failure raises and is not).

    A POST parses each object's ``created`` and ``modified`` several times (its
    version key, the check that ``modified`` is not before ``created``, ingress's
    lookup of held versions), and the calendar arithmetic was most of the cost;
    8,192 entries hold the distinct timestamps of the largest envelope a sync
    batch sends.
    """
    match = _TIMESTAMP.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)")
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None
    micros = int((fraction or "").ljust(6, "0")[:6])
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros


def from_micros(micros: int) -> str:
    """Render microseconds since the epoch as a TAXII timestamp with 6 fractional digits."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_up_to_seconds(seconds)}{fraction:06d}Z"


@functools.lru_cache(maxsize=4096)
def _up_to_seconds(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a second since the epoch.

    Remembered: the timestamps a request renders (the date headers of every
    page, each entry of a manifest) mostly share their second with others
    recently rendered, and the calendar arithmetic was most of the cost.
    Fields rather than strftime, which does not pad years before 1000 to four
    digits ("1-01-01").
    """
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
    )


def now_micros() -> int:
    """The wall clock in microseconds since the epoch."""
    return time.time_ns() // 1_000


def just_before(timestamp: str) -> str:
    """The instant a microsecond before ``timestamp``: ``added_after`` that takes in
    everything added at ``timestamp`` (TAXII 2.1 section 3.4.1 keeps what was added
    strictly after)."""
    return from_micros(to_micros(timestamp) - 1)
