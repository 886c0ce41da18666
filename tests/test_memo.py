"""node.memo: answers for short texts remembered, long ones and failures never kept."""

from __future__ import annotations

import pytest

from node.memo import short_texts
from node.taxii.negotiation import accepts_taxii_21


def _counting():
    calls: list[str | None] = []

    @short_texts(size=8, longest=10)
    def length(value: str | None) -> int:
        calls.append(value)
        if value == "bad":
            raise ValueError(value)
        return len(value or "")

    return length, calls


def test_a_short_text_is_computed_once() -> None:
    length, calls = _counting()
    assert [length("abc"), length("abc"), length(None), length(None)] == [3, 3, 0, 0]
    assert calls == ["abc", None]
    assert length.cache_info().currsize == 2


def test_a_long_text_is_computed_each_time_and_never_kept() -> None:
    length, calls = _counting()
    text = "x" * 11
    assert [length(text), length(text)] == [11, 11]
    assert calls == [text, text]
    assert length.cache_info().currsize == 0


def test_a_failure_is_never_remembered() -> None:
    length, calls = _counting()
    for _ in range(2):
        with pytest.raises(ValueError):
            length("bad")
    assert calls == ["bad", "bad"]


def test_a_client_sized_accept_header_is_answered_and_not_kept() -> None:
    header = "application/taxii+json;version=2.1, " + "text/plain;q=0.1, " * 1_000
    accepts_taxii_21.cache_clear()
    assert accepts_taxii_21(header) is True
    assert accepts_taxii_21("application/taxii+json;version=2.1") is True
    assert accepts_taxii_21.cache_info().currsize == 1  # the short one only
