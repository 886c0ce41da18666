"""Memo caches for pure functions of one short text: timestamps, header values.

The POST and read paths meet the same few strings again and again (an
envelope's timestamps, a client's Accept header), so their answers are
remembered.  The strings come from clients, though: a cache that kept any
of them could be made to hold thousands of megabyte strings per server
process.  ``short_texts`` remembers answers for texts up to a length and
computes longer ones each time; a failure (an exception) is never remembered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

A = TypeVar("A", bound="str | None")
R = TypeVar("R")


class ShortTextMemo(Generic[A, R]):
    """``compute`` with its answers for texts of at most ``longest`` characters (and
    None) remembered, ``size`` of them at most (least recently used forgotten)."""

    def __init__(self, compute: Callable[[A], R], size: int, longest: int) -> None:
        functools.update_wrapper(self, compute)
        self._compute: Callable[[A], R] = compute
        self._longest = longest
        self._remembered = functools.lru_cache(maxsize=size)(compute)

    def __call__(self, value: A) -> R:
        if value is not None and len(value) > self._longest:
            return self._compute(value)
        return self._remembered(value)

    def cache_clear(self) -> None:
        self._remembered.cache_clear()

    def cache_info(self) -> Any:
        return self._remembered.cache_info()


def short_texts(size: int, longest: int) -> Callable[[Callable[[A], R]], ShortTextMemo[A, R]]:
    """Decorator: ``ShortTextMemo(function, size, longest)``."""

    def remember(compute: Callable[[A], R]) -> ShortTextMemo[A, R]:
        return ShortTextMemo(compute, size, longest)

    return remember
