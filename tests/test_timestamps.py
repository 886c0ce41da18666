"""STIX timestamps <-> integer microseconds: the rendering is the calendar's, both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.timestamps import from_micros, to_micros

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = to_micros("0001-01-01T00:00:00Z")
_LAST = to_micros("9999-12-31T23:59:59.999999Z")


def _by_datetime(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@given(st.integers(min_value=_FIRST, max_value=_LAST))
def test_rendering_is_the_calendar_date_and_parses_back(micros: int) -> None:
    rendered = from_micros(micros)
    assert rendered == _by_datetime(micros)
    assert to_micros(rendered) == micros


def test_the_ends_of_the_range_and_the_epoch() -> None:
    assert from_micros(_FIRST) == "0001-01-01T00:00:00.000000Z"
    assert from_micros(_LAST) == "9999-12-31T23:59:59.999999Z"
    assert from_micros(0) == "1970-01-01T00:00:00.000000Z"
    assert from_micros(-1) == "1969-12-31T23:59:59.999999Z"


def test_renderings_of_one_second_keep_their_own_fraction() -> None:
    """The part up to the seconds is remembered; the fraction never is."""
    second = to_micros("2026-12-02T13:00:00Z")
    assert [from_micros(second + n) for n in (5, 0, 999_999)] == [
        "2026-12-02T13:00:00.000005Z",
        "2026-12-02T13:00:00.000000Z",
        "2026-12-02T13:00:00.999999Z",
    ]


def test_a_timestamp_parses_the_same_when_seen_again() -> None:
    """to_micros remembers what it parsed: the second answer is the first."""
    value = "2026-12-02T10:00:00.123456789Z"
    moment = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC) - _EPOCH
    expected = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
    assert to_micros(value) == to_micros(value) == expected


@pytest.mark.parametrize(
    "value", ["2026-02-29T00:00:00Z", "2026-12-02T10:00:00", "\uff12026-12-02T10:00:00Z", "x"]
)
def test_an_invalid_timestamp_fails_every_time(value: str) -> None:
    """A failure is never remembered as a value."""
    for _ in range(2):
        with pytest.raises(ValueError):
            to_micros(value)


@pytest.mark.parametrize("value", [None, 1_764_669_600, ["2026-12-02T10:00:00Z"]])
def test_a_value_that_is_not_a_string_fails_with_a_value_error(value: object) -> None:
    """Not a TypeError of the memo's hashing (a list is unhashable)."""
    with pytest.raises(ValueError, match="must be a string"):
        to_micros(value)  # type: ignore[arg-type]


def test_a_long_valid_timestamp_parses_without_being_remembered() -> None:
    """A client's long fraction is parsed, not kept: the cache holds no client-sized strings."""
    from node.timestamps import _parsed

    value = "2026-12-02T10:00:00.123456" + "7" * 10_000 + "Z"
    expected = to_micros("2026-12-02T10:00:00.123456Z")
    _parsed.cache_clear()
    assert to_micros(value) == expected
    assert _parsed.cache_info().currsize == 0
