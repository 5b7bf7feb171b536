"""The incremental collection parser: any JSON document split anywhere gives what bcjson.loads
gives, element by element; broken documents are refused; pages stream through the client."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from payweave.hooks.models import SyncCursor, SyncEntity
from payweave.plugins.erp_businesscentral import bcjson
from payweave.plugins.erp_businesscentral.client import PageEnd
from payweave.plugins.erp_businesscentral.jsonstream import CollectionParser, StreamFormatError, iter_elements

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)
members = st.dictionaries(st.text(max_size=10).filter(lambda k: k != "value"), values, max_size=3)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(before=members, items=st.lists(values, max_size=8), after=members,
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12), indent=st.sampled_from([None, 0, 2]),
       ascii_only=st.booleans())
def test_any_split_of_any_collection_parses_like_loads(before, items, after, cuts, indent, ascii_only):
    doc = {**before, "value": items, **{k: v for k, v in after.items() if k not in before}}
    data = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode()
    expected = bcjson.loads(data)
    got_members: dict = {}
    got = list(iter_elements(_chunks(data, cuts), got_members))
    assert got == expected["value"]
    assert got_members == {k: v for k, v in expected.items() if k != "value"}


@settings(max_examples=100, deadline=None)
@given(items=st.lists(values, min_size=1, max_size=6), cuts=st.lists(st.integers(min_value=0, max_value=2000)))
def test_elements_come_out_as_soon_as_they_are_complete(items, cuts):
    data = json.dumps({"value": items}).encode()
    parser = CollectionParser()
    out = []
    fed = 0
    for chunk in _chunks(data, cuts):
        out += parser.feed_bytes(chunk)
        fed += len(chunk)
        # never more than what the text so far holds whole
        assert out == bcjson.loads(data)["value"][:len(out)]
    out += parser.close()
    assert out == bcjson.loads(data)["value"] and fed == len(data)


@pytest.mark.parametrize("text", [
    '{"value": [1, 2', '{"value": [1, 2,]}', '{"value": {"a": 1}}', '[1, 2]', '{"value": [1] 2}',
    '{"value": [1]} x', '{"a": 1}', '{"value": [tru]}', '{"value": [1}', '',
])
def test_broken_documents_are_refused(text):
    with pytest.raises(StreamFormatError):
        list(iter_elements([text.encode()[:3], text.encode()[3:]]))


def test_decimals_stay_decimals_and_utf8_may_split_inside_a_character():
    data = json.dumps({"value": [{"amount": 0.1, "name": "Jürgen ☃"}]}, ensure_ascii=False).encode()
    cut = data.index("☃".encode()) + 1
    [row] = list(iter_elements([data[:cut], data[cut:]]))
    assert str(row["amount"]) == "0.1" and row["name"] == "Jürgen ☃"


def test_client_streams_rows_page_by_page_with_page_ends(env):
    client = env.client()
    items = list(client.stream_rows(client.company().list_url("salesInvoices", expand="salesInvoiceLines"),
                                    page_size=7))
    ends = [i for i, x in enumerate(items) if isinstance(x, PageEnd)]
    rows = [x for x in items if not isinstance(x, PageEnd)]
    assert len(rows) == len(env.company.tables["invoices"]) and all(r["salesInvoiceLines"] for r in rows)
    assert ends[-1] == len(items) - 1 and items[-1].next_link is None
    assert all(items[a].next_link == items[b].url for a, b in zip(ends, ends[1:], strict=False))
    assert client.stats.snapshot()["by_entity"] == {"GET salesInvoices": len(ends)}
    assert client.limiter.in_flight == 0


def test_connector_yields_newest_first_in_store_sized_parts_of_each_response(env, monkeypatch):
    from payweave.plugins.erp_businesscentral import connector as module

    monkeypatch.setattr(module, "STORE_BATCH", 3)
    connector = env.connector()
    pages = list(connector.read_changes(SyncEntity.INVOICES, SyncCursor(newest_first=True), page_size=7))
    assert all(p.newest_first for p in pages)
    assert sum(len(p.records) for p in pages) == len(env.company.tables["invoices"])
    # each response of 7 arrives as 3 + 3 + 1: two partial parts that resume at that response
    full = [p for p in pages if not p.partial]
    assert all(len(p.records) <= 3 for p in pages)
    assert sum(p.requests for p in pages) == connector.client.stats.total == len(full)
    stamps = [max(r.last_modified for r in p.records) for p in pages if p.records]
    assert stamps == sorted(stamps, reverse=True)
    for p in pages:
        if p.partial:
            assert p.next_cursor is not None and p.next_cursor.newest_first
    # resuming at a partial page's cursor reads that response again
    again = list(connector.read_changes(SyncEntity.INVOICES, pages[1].next_cursor, page_size=7))
    assert [r.invoice_id for p in again for r in p.records][:6] == \
        [r.invoice_id for p in pages[:2] for r in sorted(p.records, key=lambda r: r.last_modified)]
