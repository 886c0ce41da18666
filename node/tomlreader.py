"""Unknown keys in operator-written TOML: found once, with the closest valid key suggested.

The node config (node.config), its collection files (node.collection_files)
and the sharing policies (node.policy) all read tables an operator typed.  A
misspelt key must stop the node instead of being ignored: a misspelt
``max_tlp`` would fall back to the default and share more than was meant.
Each reader words its message for its own place (file and table, or a policy's
key path); what counts as unknown, which key is suggested and how the valid
keys are listed is decided here.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UnknownKey:
    """The first key of a table that is not one of ``valid`` (in the file's order)."""

    key: str
    suggestion: str | None
    valid: tuple[str, ...]

    @property
    def hint(self) -> str:
        """`` (did you mean 'port'?)`` when a valid key is close enough, else empty."""
        return f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""

    @property
    def listing(self) -> str:
        return f"valid keys: {', '.join(self.valid)}"


def first_unknown_key(table: Mapping[str, Any], valid: Collection[str]) -> UnknownKey | None:
    """None when every key of ``table`` is in ``valid``."""
    ordered = tuple(sorted(valid))
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, ordered, n=1)
            return UnknownKey(key, close[0] if close else None, ordered)
    return None
