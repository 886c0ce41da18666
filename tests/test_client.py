"""node.client: the one envelope splitter and the one page iterator, without a server.

The splitter's size rule is the size of the body ``post_serialized`` sends, so
an envelope is never refused with 413 for being a byte too large, and never
needlessly small.  The page iterator follows ``next`` and repeats the first
request's filters on every page.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from node.client import (
    ENVELOPE_OVERHEAD,
    ObjectPage,
    TaxiiClient,
    envelope_body,
    split_envelopes,
)

_objects = st.lists(
    st.builds(
        lambda n, text: {"id": f"indicator--{n}", "x_text": text},
        st.integers(0, 10**6),
        st.text(max_size=300),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(objects=_objects, max_bytes=st.integers(ENVELOPE_OVERHEAD + 1, 2_000),
       max_objects=st.integers(1, 20))  # fmt: skip
def test_envelopes_fit_keep_order_and_report_what_cannot_fit(objects, max_bytes, max_objects):
    oversized: list[tuple[dict, int]] = []
    envelopes = list(
        split_envelopes(
            objects,
            max_bytes,
            max_objects=max_objects,
            on_oversized=lambda obj, size: oversized.append((obj, size)),
        )
    )
    for envelope in envelopes:
        assert 0 < len(envelope) <= max_objects
        body = envelope_body(text for _, text in envelope)
        assert len(body) <= max_bytes
        assert [obj for obj, _ in envelope] == json.loads(body)["objects"]
    sent = [obj for envelope in envelopes for obj, _ in envelope]
    too_big = [obj for obj, _ in oversized]
    assert sorted(map(json.dumps, sent + too_big)) == sorted(map(json.dumps, objects))
    assert sent == [obj for obj in objects if obj not in too_big]
    for obj, size in oversized:
        assert ENVELOPE_OVERHEAD + size + 1 > max_bytes
        assert size == len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def test_an_envelope_is_filled_up_to_the_byte() -> None:
    objects = [{"id": f"x--{n}"} for n in range(10)]
    exact = len(envelope_body(json.dumps(o, separators=(",", ":")) for o in objects[:4]))
    envelopes = list(split_envelopes(objects, exact + 1, on_oversized=lambda *_: None))
    assert [len(e) for e in envelopes] == [4, 4, 2]


class _ScriptedClient(TaxiiClient):
    """Pages from a script instead of a server, recording the parameters asked for."""

    def __init__(self, pages: list[ObjectPage]) -> None:
        super().__init__("http://127.0.0.1:1/api/", "u", "p")
        self.script = list(pages)
        self.asked: list[dict] = []

    def page(self, collection_id: str, params: dict, endpoint: str = "objects") -> ObjectPage:
        self.asked.append(dict(params))
        return self.script.pop(0)


def test_pages_follow_next_with_the_same_filters() -> None:
    script = [
        ObjectPage([{"id": "a"}], True, "token-1", None),
        ObjectPage([{"id": "b"}], True, "token-2", None),
        ObjectPage([{"id": "c"}], False, None, None),
    ]
    client = _ScriptedClient(script)
    params = {"limit": "2", "match[type]": "indicator"}
    pages = list(client.pages("c1", params))
    assert [obj["id"] for page in pages for obj in page.objects] == ["a", "b", "c"]
    assert client.asked == [
        params,
        {**params, "next": "token-1"},
        {**params, "next": "token-2"},
    ]
    assert params == {"limit": "2", "match[type]": "indicator"}  # not changed in place
