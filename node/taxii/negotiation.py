"""Content negotiation for TAXII 2.1 (sections 1.6.8 and 3.1).

medallion 3.0.0 rejects ``application/taxii+json`` without a version, ``*/*``
and Accept lists with ``q`` parameters.  RFC 9110 and TAXII 2.1 (1.6.8: the
versionless type means "the latest version the server supports") allow all of
them, so the node parses Accept properly.
"""

from __future__ import annotations

from node.mediatypes import TAXII_MEDIA
from node.memo import short_texts

# Clients send the same few Accept and Content-Type values on every request:
# each answer is a function of the header's text alone, so it is remembered
# (for texts of at most 200 characters: node.memo).
_remembered = short_texts(size=256, longest=200)


def _media_ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    ranges = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        params = {}
        for param in parts[1:]:
            name, _, value = param.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        ranges.append((media, params))
    return ranges


def _quality(params: dict[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 0.0


@_remembered
def accepts_taxii_21(header: str | None) -> bool:
    """True when an Accept header admits TAXII 2.1 JSON.

    No Accept header means "anything" (RFC 9110 12.5.1).
    """
    if header is None or not header.strip():
        return True
    for media, params in _media_ranges(header):
        if _quality(params) <= 0:
            continue
        if media in ("*/*", "application/*"):
            return True
        if media == TAXII_MEDIA and params.get("version", "2.1") == "2.1":
            return True
    return False


@_remembered
def is_taxii_21_body(content_type: str | None) -> bool:
    """True when a request body is declared as TAXII 2.1 JSON (versionless allowed)."""
    if not content_type:
        return False
    ranges = _media_ranges(content_type)
    if len(ranges) != 1:
        return False
    media, params = ranges[0]
    return media == TAXII_MEDIA and params.get("version", "2.1") == "2.1"
