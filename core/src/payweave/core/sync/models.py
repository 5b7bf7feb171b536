"""Tables of the ERP sync (migration ``0100_erp_sync``), on the store's :class:`Base`.

Conventions of the store apply: ``company_id`` on every row (payweave's company key; by default
the ERP company id), money as exact integer ``*_minor`` columns with the row's currency,
:class:`UtcDateTime` timestamps. Quantities and unit prices, which BC keeps with more decimals
than the currency has, are exact decimal *text*, never floats.

* ``erp_connections``: one per company: status (pending/connected/error + reason), phase,
  progress, the webhook secret and subscription expiry, and the lease that lets one sync run
  at a time per company (fenced on every page commit).
* ``erp_sync_cursors``: one per (company, entity, stream); a stream is a window of the initial
  sync (``recent`` = last 12 months, ``history`` = before that), a repair pass (``full``) or the
  ``delta`` stream. The cursor changes in the same transaction as the page's rows.
* ``erp_customers``, ``erp_invoices`` (+ ``erp_invoice_lines``), ``erp_credit_memos``,
  ``erp_payments``: the synced records; ``origin`` is ``erp`` or ``payweave`` (created here,
  never written to the ERP).
* ``erp_pdfs``: invoice PDFs, content-addressed (sha256) in the database, so every worker on a
  shared PostgreSQL sees them and a PDF commits with the invoice row that points at it.
* ``erp_account_setups``: the accounts write-back uses.
* ``erp_writebacks``: payments and deposits to record in the ERP: written *before* the plugin is
  called, with the deterministic document number every retry reuses.
* ``erp_document_events``: the inbox of pulled document events (DESIGN 5a) for the engine.
* ``erp_sync_issues``: records the ERP sent that could not be stored (named, counted, visible).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from payweave.core.store.models import Base, BigId, UtcDateTime


class ErpConnectionRow(Base):
    __tablename__ = "erp_connections"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plugin: Mapped[str] = mapped_column(String(100))
    account_name: Mapped[str] = mapped_column(String(100), default="default")
    #: non-secret account setting overrides given at connect time (secrets stay in env/config)
    account_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    erp_company_id: Mapped[str] = mapped_column(String(100))
    erp_company_name: Mapped[str] = mapped_column(String(200), default="")
    #: used for ERP records that carry no currency code (BC: blank = the company's local currency)
    default_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    phase: Mapped[str] = mapped_column(String(20))
    initial_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    recent_boundary: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    connected_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_sync_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_sync_finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_sync_outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_state: Mapped[str] = mapped_column(String(100))
    notification_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    subscriptions_expire_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    subscriptions_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpSyncCursorRow(Base):
    __tablename__ = "erp_sync_cursors"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(30), primary_key=True)
    stream: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: pending | running | done | unsupported
    state: Mapped[str] = mapped_column(String(20))
    since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    page_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    high_water: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    pages: Mapped[int] = mapped_column(BigInteger, default=0)
    records: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpCustomerRow(Base):
    __tablename__ = "erp_customers"
    __table_args__ = (Index("ix_erp_customers_company_number", "company_id", "number"),)

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[str] = mapped_column(String(50), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3), default="")
    blocked: Mapped[str] = mapped_column(String(20), default="")
    origin: Mapped[str] = mapped_column(String(10))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    erp_last_modified: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpInvoiceRow(Base):
    __tablename__ = "erp_invoices"
    __table_args__ = (
        Index("ix_erp_invoices_company_number", "company_id", "number"),
        Index("ix_erp_invoices_company_customer", "company_id", "customer_id"),
        Index("ix_erp_invoices_company_status", "company_id", "status"),
    )

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[str] = mapped_column(String(50), default="")
    customer_id: Mapped[str] = mapped_column(String(100))
    customer_number: Mapped[str] = mapped_column(String(50), default="")
    invoice_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    #: the ERP's status caption (Draft, In Review, Open, Paid, Canceled, Corrective)
    erp_status: Mapped[str] = mapped_column(String(20), default="")
    #: payweave's view: draft | open | paid | canceled
    status: Mapped[str] = mapped_column(String(20))
    total_excl_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_incl_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: what the ERP says is still owed (after payments and credits applied there)
    remaining_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: what payweave still collects: remaining minus payweave payments the ERP does not show yet
    open_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: settled in the ERP (payments + credits) = total - remaining, as recorded in erp_payments
    settled_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    settlements: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    origin: Mapped[str] = mapped_column(String(10))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_via_payweave: Mapped[bool] = mapped_column(Boolean, default=False)
    payweave_paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: ERP changes that arrived after the invoice was paid through payweave (ignored by rule)
    ignored_erp_changes: Mapped[int] = mapped_column(Integer, default=0)
    last_ignored_change_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    erp_last_modified: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: sha256 of what the ERP sent (header fields and lines), to tell real changes from re-reads
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdf_fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    pdf_attempts: Mapped[int] = mapped_column(Integer, default=0)
    pdf_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpInvoiceLineRow(Base):
    __tablename__ = "erp_invoice_lines"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(30), default="")
    number: Mapped[str] = mapped_column(String(50), default="")
    description: Mapped[str] = mapped_column(String(250), default="")
    quantity: Mapped[str] = mapped_column(String(40), default="0")
    unit_price: Mapped[str] = mapped_column(String(40), default="0")
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_excl_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_incl_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class ErpCreditMemoRow(Base):
    __tablename__ = "erp_credit_memos"
    __table_args__ = (Index("ix_erp_credit_memos_company_invoice", "company_id", "invoice_id"),)

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credit_memo_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[str] = mapped_column(String(50), default="")
    customer_id: Mapped[str] = mapped_column(String(100))
    invoice_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    erp_status: Mapped[str] = mapped_column(String(20), default="")
    total_incl_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_memo_date: Mapped[date] = mapped_column(Date)
    origin: Mapped[str] = mapped_column(String(10))
    erp_last_modified: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpPaymentRow(Base):
    """Money the ERP shows against an invoice. Never deleted.

    ``source='erp'``: a payment the plugin reported (``SyncEntity.PAYMENTS``).
    ``source='erp_balance'``: a settlement derived from the invoice's balance (BC API v2.0 lists
    no customer ledger entries): ``amount`` is the change of total - remaining, so a payment or
    credit applied in BC appears once, and a reversal appears as a negative row.
    """

    __tablename__ = "erp_payments"
    __table_args__ = (Index("ix_erp_payments_company_invoice", "company_id", "invoice_id"),)

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    invoice_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    document_number: Mapped[str] = mapped_column(String(50), default="")
    posting_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: payweave write-backs this ERP change was recognised as (their ids)
    matched_writebacks: Mapped[list[int]] = mapped_column(JSON, default=list)
    erp_last_modified: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpPdfRow(Base):
    __tablename__ = "erp_pdfs"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ErpAccountSetupRow(Base):
    __tablename__ = "erp_account_setups"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payments_account_id: Mapped[str] = mapped_column(String(100))
    payments_account_number: Mapped[str] = mapped_column(String(50), default="")
    payments_account_name: Mapped[str] = mapped_column(String(200), default="")
    bank_account_id: Mapped[str] = mapped_column(String(100))
    bank_account_number: Mapped[str] = mapped_column(String(50), default="")
    bank_account_name: Mapped[str] = mapped_column(String(200), default="")
    fee_account_id: Mapped[str] = mapped_column(String(100))
    fee_account_number: Mapped[str] = mapped_column(String(50), default="")
    fee_account_name: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class ErpWritebackRow(Base):
    __tablename__ = "erp_writebacks"
    __table_args__ = (
        UniqueConstraint("company_id", "kind", "source_key"),
        UniqueConstraint("company_id", "document_number"),
        Index("ix_erp_writebacks_company_status", "company_id", "status"),
        Index("ix_erp_writebacks_company_invoice", "company_id", "invoice_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    company_id: Mapped[str] = mapped_column(String(64))
    #: payment | deposit
    kind: Mapped[str] = mapped_column(String(10))
    #: what the entry records: the payment key (transaction/operation) or the payout id
    source_key: Mapped[str] = mapped_column(String(200))
    document_number: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    #: pending | posted | failed | cancelled | skipped
    status: Mapped[str] = mapped_column(String(20))
    invoice_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    invoice_number: Mapped[str] = mapped_column(String(50), default="")
    customer_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    posting_date: Mapped[date] = mapped_column(Date)
    external_reference: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(250), default="")
    payout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    entry_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    already_existed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: the ERP's balance showed this payment (recognised in an invoice sync)
    observed_in_erp: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the payment failed after capture: not written to the ERP (reverse manually if posted)
    payment_failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    payment_failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ErpDocumentEventRow(Base):
    __tablename__ = "erp_document_events"
    __table_args__ = (
        UniqueConstraint("company_id", "event_id"),
        Index("ix_erp_document_events_company_status", "company_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    company_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(30))
    document_type: Mapped[str] = mapped_column(String(30))
    document_id: Mapped[str] = mapped_column(String(100))
    document_number: Mapped[str] = mapped_column(String(50), default="")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: pending | dispatched | refused | ignored
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ErpSyncIssueRow(Base):
    __tablename__ = "erp_sync_issues"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(30), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    code: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


SYNC_TABLES = [
    ErpConnectionRow, ErpSyncCursorRow, ErpCustomerRow, ErpInvoiceRow, ErpInvoiceLineRow, ErpCreditMemoRow,
    ErpPaymentRow, ErpPdfRow, ErpAccountSetupRow, ErpWritebackRow, ErpDocumentEventRow, ErpSyncIssueRow,
]
