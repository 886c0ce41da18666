"""Reading STIX content from files and stdin, one object at a time.

A bundle of 100,000 objects is streamed with ijson, so memory does not grow
with the file.  Accepted shapes: a STIX bundle, a bare JSON list of objects,
or a single object.  Directories are read recursively (``*.json``).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import ijson

from node.errors import NodeError


class BundleError(NodeError, ValueError):
    """A file that is not STIX content; the message names the file."""


def iter_paths(inputs: tuple[str, ...]) -> Iterator[str]:
    """Expand directories into their ``*.json`` files, in a stable order."""
    for item in inputs:
        if item == "-":
            yield item
            continue
        path = Path(item)
        if path.is_dir():
            yield from (str(p) for p in sorted(path.rglob("*.json")))
        elif path.exists():
            yield item
        else:
            raise BundleError(f"{item}: no such file or directory")


def iter_objects(inputs: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    """(source name, object) for every object in every input."""
    for name in iter_paths(inputs):
        if name == "-":
            with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool)
                spool.seek(0)
                yield from ((name, obj) for obj in _objects_in(spool, "<stdin>"))
        else:
            with open(name, "rb") as handle:
                yield from ((name, obj) for obj in _objects_in(handle, name))


_VALUE_STARTS = frozenset({"start_map", "start_array", "string", "number", "boolean", "null"})


def count_objects(inputs: tuple[str, ...]) -> int:
    """About how many objects ``iter_objects`` will yield (files only, not stdin).

    For a progress bar's total: one pass of the C parser that builds no objects.
    A file that is not valid JSON counts what was read before the error, which
    ``iter_objects`` then reports.
    """
    total = 0
    for name in iter_paths(inputs):
        if name != "-":
            with open(name, "rb") as handle:
                total += _count_in(handle)
    return total


def _count_in(handle: IO[bytes]) -> int:
    first = _first_char(handle)
    handle.seek(0)
    prefix = "item" if first == b"[" else "objects.item"
    count = 0
    try:
        for where, event, _ in ijson.parse(handle, use_float=True):
            if where == prefix and event in _VALUE_STARTS:
                count += 1
    except (ijson.JSONError, ValueError):
        return count
    return count if count or first != b"{" else 1


def _first_char(handle: IO[bytes]) -> bytes:
    while True:
        char = handle.read(1)
        if not char or not char.isspace():
            return char


def _objects_in(handle: IO[bytes], name: str) -> Iterator[object]:
    start = handle.tell()
    first = _first_char(handle)
    handle.seek(start)
    try:
        if first == b"[":
            yield from ijson.items(handle, "item", use_float=True)
            return
        if first != b"{":
            raise BundleError(f"{name}: not JSON: expected a bundle, a list or an object")
        count = 0
        for obj in ijson.items(handle, "objects.item", use_float=True):
            count += 1
            yield obj
        if count:
            return
        handle.seek(start)
        document = json.load(handle)
    except BundleError:
        raise
    except (ijson.JSONError, ValueError) as exc:
        raise BundleError(f"{name}: invalid JSON: {_first_line(exc)}") from None
    if "objects" in document and not isinstance(document["objects"], list):
        raise BundleError(f"{name}: 'objects' must be a list of STIX objects")
    if document.get("type") == "bundle" or "objects" in document:
        return  # an empty bundle or envelope
    yield document  # a single STIX object


def _first_line(exc: Exception) -> str:
    """The parser's message without the multi-line excerpt yajl appends."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
