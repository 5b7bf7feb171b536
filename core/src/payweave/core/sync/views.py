"""What the sync service returns: frozen pydantic views (amounts as Decimal with currency)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from payweave.hooks.money import DecimalStr, from_minor_units

from .models import ErpAccountSetupRow, ErpConnectionRow, ErpSyncCursorRow, ErpWritebackRow


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ConnectionView(_View):
    company_id: str
    plugin: str
    account_name: str
    erp_company_id: str
    erp_company_name: str
    status: str
    status_reason: str | None
    phase: str
    recent_boundary: datetime | None
    initial_started_at: datetime | None
    connected_at: datetime | None
    last_sync_started_at: datetime | None
    last_sync_finished_at: datetime | None
    last_sync_outcome: str | None
    last_error_code: str | None
    last_error: str | None
    notification_url: str | None
    subscriptions_expire_at: datetime | None
    subscriptions_error: str | None
    progress: dict[str, Any]

    @classmethod
    def of(cls, row: ErpConnectionRow) -> ConnectionView:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


class CursorView(_View):
    entity: str
    stream: str
    state: str
    since: datetime | None
    until: datetime | None
    high_water: datetime | None
    resumable: bool
    pages: int
    records: int
    requests: int
    note: str | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ErpSyncCursorRow) -> CursorView:
        return cls(entity=row.entity, stream=row.stream, state=row.state, since=row.since, until=row.until,
                   high_water=row.high_water, resumable=bool(row.page_token), pages=row.pages, records=row.records,
                   requests=row.requests, note=row.note, finished_at=row.finished_at)


class LedgerChoice(_View):
    account_id: str
    number: str
    name: str


class AccountSetupView(_View):
    company_id: str
    payments_account: LedgerChoice
    bank_account: LedgerChoice
    fee_account: LedgerChoice
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, row: ErpAccountSetupRow) -> AccountSetupView:
        def choice(prefix: str) -> LedgerChoice:
            return LedgerChoice(account_id=getattr(row, f"{prefix}_id"), number=getattr(row, f"{prefix}_number"),
                                name=getattr(row, f"{prefix}_name"))

        return cls(company_id=row.company_id, payments_account=choice("payments_account"),
                   bank_account=choice("bank_account"), fee_account=choice("fee_account"), updated_at=row.updated_at,
                   updated_by=row.updated_by)


class WritebackView(_View):
    id: int
    company_id: str
    kind: str
    source_key: str
    document_number: str
    status: str
    invoice_id: str | None
    invoice_number: str
    customer_id: str | None
    amount: DecimalStr
    currency: str
    posting_date: date
    attempts: int
    last_error_code: str | None
    last_error: str | None
    entry_ids: tuple[str, ...]
    already_existed: bool | None
    observed_in_erp: bool
    payment_failed_at: datetime | None
    payment_failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: ErpWritebackRow) -> WritebackView:
        return cls(
            id=row.id, company_id=row.company_id, kind=row.kind, source_key=row.source_key,
            document_number=row.document_number, status=row.status, invoice_id=row.invoice_id,
            invoice_number=row.invoice_number, customer_id=row.customer_id,
            amount=from_minor_units(row.amount_minor, row.currency), currency=row.currency,
            posting_date=row.posting_date, attempts=row.attempts, last_error_code=row.last_error_code,
            last_error=row.last_error, entry_ids=tuple(row.entry_ids or ()), already_existed=row.already_existed,
            observed_in_erp=row.observed_in_erp, payment_failed_at=row.payment_failed_at,
            payment_failure_reason=row.payment_failure_reason, created_at=row.created_at,
            completed_at=row.completed_at,
        )


class InvoiceView(_View):
    invoice_id: str
    number: str
    customer_id: str
    currency: str
    status: str
    erp_status: str
    origin: str
    invoice_date: date
    due_date: date | None
    total: DecimalStr
    remaining: DecimalStr
    open: DecimalStr
    settled: DecimalStr
    paid_via_payweave: bool
    ignored_erp_changes: int
    archived: bool
    lines: int
    pdf_sha256: str | None


class SyncStatus(_View):
    connection: ConnectionView
    cursors: tuple[CursorView, ...]
    counts: dict[str, int]
    invoices_by_status: dict[str, int]
    writebacks_by_status: dict[str, int]
    document_events_by_status: dict[str, int]
    open_issues: int
    account_setup: AccountSetupView | None
