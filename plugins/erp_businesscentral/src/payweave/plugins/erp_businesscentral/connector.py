"""One BC company connection, shaped like the ERP hooks so ``plugin.py`` stays a thin adapter.

    connector = BusinessCentralConnector(settings)          # or (settings, client=BCClient(...))
    for page in connector.read_changes(SyncEntity.INVOICES, SyncCursor(), page_size=500): ...
    connector.read_document(DocumentType.SALES_ORDER, order_id)
    connector.invoice_pdf(invoice_id)
    connector.ledger_accounts()
    connector.record_payment(request); connector.record_deposit(request)
    connector.ensure_subscriptions(url, client_state); connector.entities_for_notification(body, client_state)

Reads follow the contract: pages are yielded lazily (nothing holds a whole history), each with
the cursor to store after committing it. Cursors for the lastModifiedDateTime streams carry
``since``/``until`` and, inside a window, the opaque ``@odata.nextLink`` as ``page_token``;
the document-event stream's position is its sequence number (``page_token="seq:<n>"``), so
its pages always carry a cursor (an event log has no lastModifiedDateTime high-water mark that
is safe to resume from when several events share a millisecond).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from payweave.hooks.errors import NotSupported
from payweave.hooks.models import (
    DocumentEvent,
    DocumentType,
    ErpRecordResult,
    LedgerAccount,
    RecordDepositRequest,
    RecordPaymentRequest,
    SalesDocument,
    SyncCursor,
    SyncEntity,
    SyncPage,
)

from . import mapping, subscriptions, writeback
from .client import BatchOperation, BCClient, BCCompany, PageEnd, delta_filter, odata_string
from .errors import BCNotFound, BCRequestError
from .settings import BusinessCentralSettings

#: what each lastModifiedDateTime stream reads: (entity set, $expand, row mapper)
STREAMS: dict[SyncEntity, tuple[str, str | None, Callable[[dict[str, Any]], Any]]] = {
    SyncEntity.CUSTOMERS: ("customers", None, mapping.to_customer),
    SyncEntity.INVOICES: ("salesInvoices", "salesInvoiceLines", mapping.to_invoice),
    SyncEntity.CREDIT_MEMOS: ("salesCreditMemos", None, mapping.to_credit_memo),
}
SEQ_PREFIX = "seq:"
LINES = "salesDocumentLines"
#: the initial sync's order: the last 12 months come first, the same stream goes on into history
NEWEST_FIRST = "lastModifiedDateTime desc"
#: records per SyncPage (one store transaction) when a response is streamed
STORE_BATCH = 1000


def _last_modified(record: Any) -> datetime:
    return record.last_modified


class BusinessCentralConnector:
    def __init__(self, settings: BusinessCentralSettings, *, client: BCClient | None = None,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self.client = client or BCClient(settings)
        self.company: BCCompany = self.client.company(settings.company_id)
        self._shipping_items = frozenset(settings.shipping_item_numbers)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ reads
    def read_changes(self, entity: SyncEntity, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
        if entity is SyncEntity.DOCUMENT_EVENTS:
            return self._event_pages(cursor, page_size)
        if entity is SyncEntity.PAYMENTS:
            raise NotSupported(
                "Business Central API v2.0 exposes no customer ledger entries, so payments posted in BC cannot be "
                "listed; they arrive as invoice remainingAmount/status changes (sync 'invoices').")
        return self._stream_pages(entity, cursor, page_size)

    def _stream_pages(self, entity: SyncEntity, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
        """Stream the entity set (parsed as it arrives) and yield it in pages of at most
        ``STORE_BATCH`` records: a page inside a response resumes at that response's URL (a
        crash re-reads it; the core's upserts make that harmless), the last page of a response
        at its nextLink."""
        entity_set, expand, mapper = STREAMS[entity]
        current = cursor.page_token or self.company.list_url(
            entity_set, filter=delta_filter(cursor.since, cursor.until), expand=expand,
            orderby=NEWEST_FIRST if cursor.newest_first else None)
        batch_size = max(1, min(page_size, STORE_BATCH))
        before = self.client.stats.total
        batch: list[Any] = []

        def page(next_token: str | None, *, last: bool = False, partial: bool = False) -> SyncPage:
            nonlocal before
            used = self.client.stats.total - before
            before += used
            records = tuple(sorted(batch, key=_last_modified))
            high = records[-1].last_modified if records else None
            nxt = None if last else SyncCursor(since=cursor.since, until=cursor.until, page_token=next_token,
                                               newest_first=cursor.newest_first)
            return SyncPage(entity=entity, records=records, next_cursor=nxt, high_water=high, requests=used,
                            newest_first=cursor.newest_first, partial=partial)

        for item in self.client.stream_rows(current, page_size=page_size):
            if isinstance(item, PageEnd):
                # the response ended: its nextLink is a resume point that costs no re-read
                yield page(item.next_link, last=item.next_link is None)
                current = item.next_link or current
                batch = []
                continue
            if len(batch) >= batch_size:  # more rows follow: a part of this response
                yield page(current, partial=True)
                batch = []
            batch.append(mapper(item))

    def read_many_changes(self, cursors: dict[SyncEntity, SyncCursor], page_size: int) -> Iterator[SyncPage]:
        """The standard API's streams of ``cursors`` in one ``$batch`` per round (a stream with
        more pages goes on with its nextLink in the next round), then the companion API's
        document events (another API root, so not in the same ``$batch``)."""
        unsupported = [e for e in cursors if e not in STREAMS and e is not SyncEntity.DOCUMENT_EVENTS]
        if unsupported:
            raise NotSupported(f"Business Central cannot read {', '.join(e.value for e in unsupported)} in a $batch.")
        standard = [e for e in STREAMS if e in cursors]
        if len(standard) == 1:
            yield from self._stream_pages(standard[0], cursors[standard[0]], page_size)
        elif standard:
            yield from self._batched_pages({e: cursors[e] for e in standard}, page_size)
        if SyncEntity.DOCUMENT_EVENTS in cursors:
            yield from self._event_pages(cursors[SyncEntity.DOCUMENT_EVENTS], page_size)

    def _batched_pages(self, cursors: dict[SyncEntity, SyncCursor], page_size: int) -> Iterator[SyncPage]:
        urls: dict[SyncEntity, str] = {}
        for entity, cursor in cursors.items():
            entity_set, expand, _ = STREAMS[entity]
            urls[entity] = cursor.page_token or self.company.list_url(
                entity_set, filter=delta_filter(cursor.since, cursor.until), expand=expand,
                orderby=NEWEST_FIRST if cursor.newest_first else None)
        prefer = {"Prefer": f"odata.maxpagesize={min(page_size, 20000)}"}
        while urls:
            before = self.client.stats.total
            results = self.client.batch([BatchOperation("GET", url, prefer) for url in urls.values()])
            used = self.client.stats.total - before
            following: dict[SyncEntity, str] = {}
            for (entity, url), result in zip(urls.items(), results, strict=True):
                result.raise_for_status()
                body = result.body
                if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                    raise BCRequestError(f"Expected a collection from {STREAMS[entity][0]} in the $batch answer.")
                link = body.get("@odata.nextLink")
                link = link if isinstance(link, str) and link else None
                if link == url:
                    raise BCRequestError(f"Business Central returned the same nextLink twice ({STREAMS[entity][0]}).")
                cursor = cursors[entity]
                records = tuple(sorted((STREAMS[entity][2](row) for row in body["value"]), key=_last_modified))
                nxt = SyncCursor(since=cursor.since, until=cursor.until, page_token=link,
                                 newest_first=cursor.newest_first) if link else None
                yield SyncPage(entity=entity, records=records, next_cursor=nxt,
                               high_water=records[-1].last_modified if records else None, requests=used,
                               newest_first=cursor.newest_first)
                used = 0
                if link:
                    following[entity] = link
            urls = following

    def _event_pages(self, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
        after: int | None = None
        if cursor.page_token and cursor.page_token.startswith(SEQ_PREFIX):
            after = int(cursor.page_token[len(SEQ_PREFIX):])
        flt = f"sequenceNumber gt {after}" if after is not None else delta_filter(cursor.since, cursor.until)
        before = self.client.stats.total
        for page in self.company.pages("documentEvents", filter=flt, page_size=page_size, companion=True):
            events = [self._event(row) for row in page.values]
            last = max((mapping.sequence_number(row) for row in page.values), default=after)
            high = max((e.occurred_at for e in events), default=None)
            used = self.client.stats.total - before
            before = self.client.stats.total
            next_cursor = SyncCursor(page_token=f"{SEQ_PREFIX}{last}") if last is not None else None
            yield SyncPage(entity=SyncEntity.DOCUMENT_EVENTS, records=tuple(events), next_cursor=next_cursor,
                           high_water=high, requests=used)

    def _event(self, row: dict[str, Any]) -> DocumentEvent:
        """Attach the document to an event: the current document for most events, the posted
        document (with the source's identity) for ``Posted``, the event's own snapshot when the
        document no longer exists."""
        kind = row.get("eventType")
        document: SalesDocument | None = None
        if kind == "Posted" and mapping.opt_id(row.get("postedDocumentId")):
            posted = self.company.get(f"salesDocuments({row['postedDocumentId']})", expand=LINES, companion=True)
            if posted is not None:
                source = mapping.document_from_event(self.company.id, row)
                document = mapping.to_sales_document(self.company.id, posted, self._shipping_items).model_copy(
                    update={"document_type": source.document_type, "document_id": source.document_id,
                            "number": source.number, "status": mapping.DocumentStatus.POSTED})
        elif kind != "Deleted":
            row_doc = self.company.get(f"salesDocuments({mapping.required(row, 'documentId')})", expand=LINES,
                                       companion=True)
            if row_doc is not None:
                document = mapping.to_sales_document(self.company.id, row_doc, self._shipping_items)
        if document is None:
            document = mapping.document_from_event(self.company.id, row)
        return mapping.to_document_event(row, document)

    def read_document(self, document_type: DocumentType, document_id: str) -> SalesDocument | None:
        row = self.company.get(f"salesDocuments({document_id})", expand=LINES, companion=True)
        if row is None:
            return None
        doc = mapping.to_sales_document(self.company.id, row, self._shipping_items)
        return doc if doc.document_type is document_type else None

    def sales_documents(self, *, since: datetime | None = None, page_size: int | None = None,
                        payment_method_codes: frozenset[str] | None = None) -> Iterator[list[SalesDocument]]:
        """Pages of companion-API documents changed since ``since`` (all when None), optionally
        only those with one of ``payment_method_codes``."""
        extra = None
        if payment_method_codes:
            extra = " or ".join(f"paymentMethodCode eq {odata_string(c)}" for c in sorted(payment_method_codes))
        for page in self.company.pages("salesDocuments", filter=delta_filter(since, None, extra), expand=LINES,
                                       page_size=page_size, companion=True):
            yield [mapping.to_sales_document(self.company.id, row, self._shipping_items) for row in page.values]

    def invoice_pdf(self, invoice_id: str) -> bytes:
        path = f"salesInvoices({invoice_id})/pdfDocument"
        try:
            docs = list(self.company.entities(path))
        except BCNotFound:
            docs = []
        if not docs:
            raise BCNotFound(f"The invoice {invoice_id} (or its PDF) does not exist in Business Central.")
        link = docs[0].get("content@odata.mediaReadLink")
        if isinstance(link, str) and link.startswith(("http://", "https://")):
            return self.client.request("GET", link, headers={"Accept": "application/pdf"}).content
        return self.company.media(f"{path}({docs[0]['id']})/content")

    def ledger_accounts(self) -> list[LedgerAccount]:
        accounts = [mapping.to_gl_account(r) for r in self.company.entities("accounts", filter="accountType eq 'Posting'")]
        banks = [mapping.to_bank_account(r) for r in self.company.entities("bankAccounts")]
        return accounts + banks

    # ------------------------------------------------------------------ writes
    def record_payment(self, request: RecordPaymentRequest) -> ErpRecordResult:
        return writeback.record_payment(self.company, request, self.settings)

    def record_deposit(self, request: RecordDepositRequest) -> ErpRecordResult:
        return writeback.record_deposit(self.company, request, self.settings)

    # ------------------------------------------------------------------ webhooks
    def ensure_subscriptions(self, notification_url: str, client_state: str) -> datetime | None:
        return subscriptions.ensure_subscriptions(self.company, notification_url, client_state, now=self._wall_clock())

    def entities_for_notification(self, body: bytes, client_state: str) -> list[SyncEntity]:
        notes = subscriptions.parse_notification(body, client_state)
        return subscriptions.entities_to_sync([n for n in notes if n.company_id in (None, self.company.id)])
