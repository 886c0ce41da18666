"""Indicator patterns at ingest: the reference parser's verdict, fast for the common shape.

node.patterns accepts the plain one-comparison pattern by a regular
expression and sends everything else to stix2-patterns.  The shortcut must
never accept what the parser refuses: these tests compare the two.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from node.patterns import _plainly_valid, pattern_problem
from node.validation import object_problem


def _indicator(pattern: str, **extra) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00Z",
        "modified": "2026-01-01T00:00:00Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        **extra,
    }


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("[ipv4-addr:value = ]", "mismatched input ']'"),
        ("ipv4-addr:value = '198.51.100.1'", "square brackets"),
        ("[file:hashes.'SHA-256' = 'abc']", "not a valid SHA-256 hash"),
        ("[ipv4-addr:value = '198.51.100.1'", ""),
    ],
)
def test_invalid_patterns_are_refused_with_the_parsers_message(pattern, fragment) -> None:
    problem = object_problem(_indicator(pattern))
    assert problem is not None and problem.startswith("'pattern' is not a valid STIX pattern: ")
    assert fragment in problem
    assert "FAIL:" not in problem and "\n" not in problem


def test_valid_patterns_and_other_pattern_languages_pass() -> None:
    for pattern in (
        "[ipv4-addr:value = '198.51.100.1']",
        "[file:hashes.'SHA-256' = '" + "ab" * 32 + "'] AND [file:name = 'x.exe']",
        "[network-traffic:dst_port > 1024] WITHIN 300 SECONDS",
        "[url:value LIKE 'http://%.example/']",
    ):
        assert object_problem(_indicator(pattern)) is None, pattern
    # Only pattern_type "stix" is STIX patterning; others are opaque to the node.
    assert object_problem(_indicator("alert tcp any any -> any any", pattern_type="snort")) is None


_names = st.sampled_from(["ipv4-addr", "file", "x-custom", "a_b", "value", "name", "in", "AND",
                          "start", "hashes", "x", "_", "-", "9a", "a-"])  # fmt: skip
_values = st.text(alphabet="a'\\\" .-%9\n", max_size=12)


@settings(max_examples=400, deadline=None)
@given(kind=_names, path=st.lists(_names, min_size=1, max_size=3), value=_values,
       operator=st.sampled_from(["=", "!=", "==", "<"]))  # fmt: skip
def test_the_shortcut_never_accepts_what_the_parser_refuses(kind, path, value, operator) -> None:
    pattern = f"[{kind}:{'.'.join(path)} {operator} '{value}']"
    if _plainly_valid(pattern):
        assert run_validator(pattern, stix_version="2.1") == [], pattern
    assert (pattern_problem(pattern) is None) == (run_validator(pattern, "2.1") == [])
