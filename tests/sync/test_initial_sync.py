"""Connect and the initial sync against the BC sandbox over real HTTP: Pending, the last 12
months first, then all history, then Connected; paging; invoice PDFs; the store mirrors BC."""
from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

from sqlalchemy import func, select

from payweave.core.sync import ProgressEvent
from payweave.core.sync.models import ErpInvoiceRow, ErpPdfRow


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_initial_sync_reads_last_12_months_then_history_then_reports_connected(bc, store):
    service = bc.service(store, page_size=7)
    events: list[tuple[str, str, str, str]] = []
    at_history_start: dict[str, object] = {}

    def progress(event: ProgressEvent) -> None:
        conn = service.connection(bc.company.id)  # what `payweave status` would show right now
        events.append((event.kind, event.phase, event.entity, conn.status))
        if event.kind == "phase" and event.phase == "history":
            with store.transaction() as s:
                at_history_start["stored"] = set(s.scalars(select(ErpInvoiceRow.invoice_id)))
            at_history_start["boundary"] = conn.recent_boundary

    view = service.connect(progress=progress)

    assert (view.status, view.phase) == ("connected", "delta")
    assert view.connected_at is not None and view.status_reason is None
    phases = [phase for kind, phase, _, _ in events if kind == "phase"]
    # no closing delta pass: each delta starts where its newest-first stream started
    assert phases == ["recent", "history"]
    # Pending throughout both windows; Connected only after the history is complete
    first_connected = next(i for i, e in enumerate(events) if e[0] == "status" and e[3] == "connected")
    assert all(status == "pending" for _, _, _, status in events[:first_connected])
    assert all(phase in ("recent", "history") for _, phase, _, _ in events[:first_connected])
    last_recent = max(i for i, e in enumerate(events) if e[1] == "recent")
    first_history = min(i for i, e in enumerate(events) if e[1] == "history")
    assert last_recent < first_history < first_connected

    # when the history started, every invoice changed in the last 12 months was stored, and of
    # the older ones only the newest (the rest of the ERP response that crossed the boundary)
    boundary_ms = _ms(at_history_start["boundary"])  # type: ignore[arg-type]
    recent = {i for i, d in bc.invoices().items() if d.lm >= boundary_ms}
    older = set(bc.invoices()) - recent
    assert recent and older, "the seed must have both recent and older invoices"
    stored = at_history_start["stored"]
    assert recent <= stored  # type: ignore[operator]
    early = older & stored  # type: ignore[operator]
    assert len(early) < 7, "at most the rest of one page of history before the history phase"
    assert all(bc.invoices()[a].lm >= bc.invoices()[b].lm for a in early for b in older - early)

    counts = bc.assert_mirrored(store)
    assert counts["invoices"] == len(bc.invoices()) and counts["lines"] > counts["invoices"]
    status = service.status(bc.company.id)
    assert status.counts["invoices"] == counts["invoices"]
    assert status.connection.progress["recent"]["invoices"]["done"] is True


def test_paging_follows_next_links_page_by_page(bc, sqlite_store):
    store = sqlite_store
    service = bc.service(store, page_size=5)
    service.connect()
    cursors = {(c.stream, c.entity): c for c in service.status(bc.company.id).cursors}
    for stream in ("recent", "history"):
        cur = cursors[(stream, "invoices")]
        assert cur.state == "done" and not cur.resumable
        assert cur.records > 5
        assert cur.pages == math.ceil(cur.records / 5), (stream, cur.pages, cur.records)
    # BC saw one request per page (plus the token), nothing listed twice
    assert cursors[("recent", "invoices")].records + cursors[("history", "invoices")].records == len(bc.invoices())
    hw = cursors[("recent", "invoices")].high_water
    assert hw == max(datetime.fromtimestamp(d.lm / 1000, UTC) for d in bc.invoices().values())


def test_pdfs_of_open_invoices_are_stored_content_addressed(bc, sqlite_store):
    store = sqlite_store
    service = bc.service(store, pdfs="open")
    service.connect()
    open_ids = {i for i, d in bc.invoices().items() if d.posted and not d.canceled and d.remaining > 0}
    assert open_ids
    with store.transaction() as s:
        with_pdf = {r.invoice_id: r.pdf_sha256 for r in s.scalars(
            select(ErpInvoiceRow).where(ErpInvoiceRow.pdf_sha256.is_not(None)))}
        blobs = s.scalar(select(func.count()).select_from(ErpPdfRow))
    assert set(with_pdf) == open_ids
    assert blobs <= len(with_pdf)
    for invoice_id, sha in with_pdf.items():
        content = service.invoice_pdf(bc.company.id, invoice_id)
        assert content is not None and content.startswith(b"%PDF-")
        assert hashlib.sha256(content).hexdigest() == sha
        assert bc.invoices()[invoice_id].number.encode() in content
    draft = bc.draft_invoice()
    assert service.invoice_pdf(bc.company.id, draft.id) is None


def test_pdf_scope_all_covers_every_posted_invoice(bc, sqlite_store):
    store = sqlite_store
    service = bc.service(store, pdfs="all", page_size=50)
    service.connect()
    posted = {i for i, d in bc.invoices().items() if d.posted}
    with store.transaction() as s:
        with_pdf = set(s.scalars(select(ErpInvoiceRow.invoice_id).where(ErpInvoiceRow.pdf_sha256.is_not(None))))
    assert with_pdf == posted


def test_connect_again_changes_nothing_and_a_second_run_reads_only_changes(bc, store):
    service = bc.service(store)
    service.connect()
    before = bc.state.stats.total(entity_set="salesInvoices")
    again = service.connect()
    assert again.status == "connected"
    report = service.run_sync(bc.company.id)
    # the delta re-reads at most the few records at its high-water mark, never the history
    assert report.records("delta", "invoices") <= 2
    assert bc.state.stats.total(entity_set="salesInvoices") - before <= 4
    bc.assert_mirrored(store)
