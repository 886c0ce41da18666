"""STIX patterns (STIX 2.1 section 9), checked with the reference parser.

An indicator whose ``pattern_type`` is ``stix`` must carry a pattern of the
STIX patterning language; one that does not parse (``[ipv4-addr:value = ]``)
matches nothing and is refused at ingest with the parser's message.  The
reference parser is OASIS's stix2-patterns (an ANTLR grammar): thorough, but
about a millisecond a pattern, which would dominate a bulk load of
indicators.  The commonest shape, one comparison of a plain property path with
a string (``[ipv4-addr:value = '198.51.100.7']``), is therefore recognised by
a regular expression that accepts nothing the grammar refuses; everything
else goes to the parser, and its verdicts are cached.
"""

from __future__ import annotations

import functools
import re

# Keywords of the grammar (matched case-insensitively by its lexer): a path
# component spelled like one is left to the parser.
_KEYWORDS = frozenset(
    {"and", "or", "not", "followedby", "like", "matches", "issuperset", "issubset", "exists",
     "last", "in", "start", "stop", "seconds", "true", "false", "within", "repeats", "times"}
)  # fmt: skip
_IDENTIFIER = r"[a-z_][a-z0-9_]*"
_SIMPLE = re.compile(
    rf"\[(?P<type>[a-z_][a-z0-9_-]*):(?P<path>{_IDENTIFIER}(?:\.{_IDENTIFIER})*)"
    r" (?:=|!=) '(?:[^'\\]|\\['\\])*'\]"
)


def pattern_problem(pattern: str, version: str = "2.1") -> str | None:
    """None for a valid STIX pattern, else the parser's reason in one line."""
    if version == "2.1" and _plainly_valid(pattern):
        return None
    return _parsed_problem(pattern, "2.0" if version == "2.0" else "2.1")


def _plainly_valid(pattern: str) -> bool:
    match = _SIMPLE.fullmatch(pattern)
    if match is None:
        return False
    names = [match["type"], *match["path"].split(".")]
    return not any(name in _KEYWORDS for name in names)


@functools.lru_cache(maxsize=4096)
def _parsed_problem(pattern: str, version: str) -> str | None:
    from stix2patterns.validator import run_validator

    errors = run_validator(pattern, stix_version=version)
    if not errors:
        return None
    reason = " ".join(str(errors[0]).split())
    return reason.removeprefix("FAIL: ")
