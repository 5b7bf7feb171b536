"""The initial sync as one newest-first stream per entity set (the last 12 months first, then
the same stream on into the history), what it costs in BC requests, a crash in the middle of a
response, the fallback to two windows for a plugin that cannot read newest first, and the delta
that polls every stream in one ``$batch``."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from payweave.core.sync import ErpSyncService
from payweave.core.sync.models import ErpInvoiceRow, ErpSyncCursorRow
from payweave.hooks.models import SyncEntity


def _requests(bc) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in bc.state.stats.snapshot()["requests"]:
        out[row["entitySet"]] = out.get(row["entitySet"], 0) + row["count"]
    return out


def _cursor(store, cid: str, entity: str, stream: str) -> ErpSyncCursorRow:
    with store.transaction() as s:
        row = s.get(ErpSyncCursorRow, (cid, entity, stream))
        s.expunge(row)
        return row


def test_the_initial_sync_costs_one_request_per_page_of_each_entity_set(bc, sqlite_store):
    page = 7
    service = bc.service(sqlite_store, page_size=page, pdfs="none", account={"company_id": bc.company.id})
    bc.state.stats.reset()
    service.connect()
    # no companies list (the company is known), no closing delta (no documentEvents read)
    assert _requests(bc) == {
        "customers": math.ceil(len(bc.customers()) / page),
        "salesInvoices": math.ceil(len(bc.invoices()) / page),
        "salesCreditMemos": math.ceil(len(bc.credit_memos()) / page),
    }
    bc.assert_mirrored(sqlite_store)
    # the delta starts where the invoice stream started: its newest record, minus the overlap
    newest = max(datetime.fromtimestamp(d.lm / 1000, UTC) for d in bc.invoices().values())
    delta = _cursor(sqlite_store, bc.company.id, "invoices", "delta")
    assert delta.since == newest - timedelta(seconds=service.settings.delta_overlap_seconds)
    assert delta.state == "pending"


def test_an_unknown_company_leaves_no_connection_behind(bc, sqlite_store):
    from payweave.core.sync.errors import SyncError

    service = bc.service(sqlite_store, pdfs="none")
    with pytest.raises(SyncError) as caught:
        service.connect(erp_company_id="00000000-0000-0000-0000-00000000abcd")
    assert caught.value.code == "erp_company_unknown"
    assert service.connections() == []


def test_a_crash_in_the_middle_of_a_response_resumes_at_that_response(bc, sqlite_store, monkeypatch):
    from payweave.plugins.erp_businesscentral import connector as module

    monkeypatch.setattr(module, "STORE_BATCH", 3)
    page = 7
    service = bc.service(sqlite_store, page_size=page, pdfs="none")
    cid = bc.company.id
    original = ErpSyncService._commit_page
    commits = {"n": 0}

    def crashing(self, run, entity, stream, sync_page, counter, **kw):
        original(self, run, entity, stream, sync_page, counter, **kw)
        if entity is SyncEntity.INVOICES and stream == "history":
            commits["n"] += 1
            if commits["n"] == 2:  # inside the history's first response (3 + 3 + 1)
                assert sync_page.partial
                raise KeyboardInterrupt  # the process dies right after this commit

    monkeypatch.setattr(ErpSyncService, "_commit_page", crashing)
    with pytest.raises(KeyboardInterrupt):
        service.connect(erp_company_id=cid)
    history = _cursor(sqlite_store, cid, "invoices", "history")
    assert history.state == "running" and history.page_token and history.records == 6
    assert service.connection(cid).status == "pending"

    monkeypatch.setattr(ErpSyncService, "_commit_page", original)
    bc.state.stats.reset()
    report = service.run_sync(cid)
    assert report.status == "connected"
    bc.assert_mirrored(sqlite_store)
    recent = _cursor(sqlite_store, cid, "invoices", "recent")
    history = _cursor(sqlite_store, cid, "invoices", "history")
    assert recent.records + history.records == len(bc.invoices()) + 6  # the 6 re-read after the crash
    # the resumed run re-read only the response it was in, and read the rest once
    left = len(bc.invoices()) - recent.records
    assert _requests(bc) == {"salesInvoices": math.ceil(left / page)}


def test_the_last_12_months_are_done_before_any_history_is_read(bc, sqlite_store):
    service = bc.service(sqlite_store, page_size=5, pdfs="none")
    cid = bc.company.id
    seen: dict[str, set[str]] = {}

    def progress(event):
        if event.kind == "stream_done" and event.phase == "recent" and event.entity == "invoices":
            with sqlite_store.transaction() as s:
                seen["stored"] = set(s.scalars(select(ErpInvoiceRow.invoice_id)))
            seen["boundary"] = service.connection(cid).recent_boundary

    service.connect(erp_company_id=cid, progress=progress)
    boundary = int(seen["boundary"].timestamp() * 1000)
    recent = {i for i, d in bc.invoices().items() if d.lm >= boundary}
    assert recent <= seen["stored"]
    assert len(seen["stored"] - recent) < 5  # at most the rest of the response that crossed it
    history = _cursor(sqlite_store, cid, "invoices", "history")
    assert history.records == len(bc.invoices()) - len(seen["stored"])


def test_a_plugin_that_cannot_read_newest_first_gets_two_windows(bc, sqlite_store, monkeypatch):
    from payweave.plugins.erp_businesscentral.connector import BusinessCentralConnector

    original = BusinessCentralConnector._stream_pages

    def oldest_first(self, entity, cursor, page_size):  # a plugin that ignores the flag
        return original(self, entity, cursor.model_copy(update={"newest_first": False}), page_size)

    monkeypatch.setattr(BusinessCentralConnector, "_stream_pages", oldest_first)
    service = bc.service(sqlite_store, page_size=5, pdfs="none")
    cid = bc.company.id
    stored: set[str] = set()

    def progress(event):
        if event.kind == "phase" and event.phase == "history":
            with sqlite_store.transaction() as s:
                stored.update(s.scalars(select(ErpInvoiceRow.invoice_id)))

    service.connect(erp_company_id=cid, progress=progress)
    boundary = service.connection(cid).recent_boundary
    assert stored == {i for i, d in bc.invoices().items() if d.lm >= int(boundary.timestamp() * 1000)}
    assert _cursor(sqlite_store, cid, "invoices", "recent").since == boundary
    bc.assert_mirrored(sqlite_store)


def test_a_delta_polls_every_stream_in_one_batch_plus_the_event_log(bc, sqlite_store):
    service = bc.service(sqlite_store, page_size=3, pdfs="none")
    cid = bc.company.id
    service.connect(erp_company_id=cid)
    changed = [bc.open_invoice(minimum=0).id]
    changed.append(bc.open_invoice(minimum=0, exclude=tuple(changed)).id)
    for invoice_id in changed:
        bc.pay(invoice_id, "1.00")
    bc.state.stats.reset()
    report = service.run_sync(cid)
    assert _requests(bc) == {"$batch": 1, "documentEvents": 1}
    assert report.records("delta", "invoices") >= 2
    bc.assert_mirrored(sqlite_store)
    # a notification naming one entity is one plain GET
    bc.pay(changed[0], "1.00")
    bc.state.stats.reset()
    service.sync_entities(cid, [SyncEntity.INVOICES])
    assert _requests(bc) == {"salesInvoices": 1}
    bc.assert_mirrored(sqlite_store)


def test_a_delta_with_more_than_a_page_of_changes_pages_on_in_the_next_batch(bc, sqlite_store):
    service = bc.service(sqlite_store, page_size=1, pdfs="none")
    cid = bc.company.id
    service.connect(erp_company_id=cid)
    ids: list[str] = []
    for _ in range(3):
        ids.append(bc.open_invoice(minimum=0, exclude=tuple(ids)).id)
        bc.pay(ids[-1], "1.00")
    bc.state.stats.reset()
    service.run_sync(cid)
    requests = _requests(bc)
    assert set(requests) == {"$batch", "documentEvents"} and requests["$batch"] >= 3
    bc.assert_mirrored(sqlite_store)
