"""Tables of the HTTP service and of the PSP-facing flows the engine does not own yet.

* ``api_keys``: API keys of BC companies (HMAC-SHA256 with the server's pepper, never the key).
* ``idempotent_requests``: the first answer to every POST with an ``Idempotency-Key``.
* ``psp_events``: every normalized PSP webhook event, once per (PSP, account, event id), with
  what applying it did to its transaction.
* ``service_operations``: intent and outcome of PSP calls made outside the engine's operation
  table (payment-link creation, mandate charges), same protocol: intent committed before the
  call, outcome after it, the stored request and idempotency key replayed after a timeout.
* ``payment_links``: the hosted payment pages sent to customers, and how the customer returned.
* ``mandates``: customer mandates for recurring payments.
* ``company_setups``: the account setup of a BC company (payments account, deposits bank
  account, fee account).

Same conventions as :mod:`payweave.core.store.models`: every row carries ``company_id``,
amounts are integer minor units, timestamps are aware UTC.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, BigId, UtcDateTime


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_company", "company_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class IdempotentRequestRow(Base):
    __tablename__ = "idempotent_requests"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))  # in_progress | done
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PspEventRow(Base):
    __tablename__ = "psp_events"
    __table_args__ = (
        UniqueConstraint("psp", "psp_account", "event_id"),
        # events are looked up by reference only while unmatched (they came before their payment
        # had its reference): the index holds those alone, so recording and applying skip it
        Index("ix_psp_events_unmatched", "psp", "psp_account", "psp_reference",
              sqlite_where=text("status = 'unmatched'"), postgresql_where=text("status = 'unmatched'")),
        Index("ix_psp_events_transaction", "company_id", "transaction_id"),
        # the applier's queue: events recorded and not applied yet (a partial index stays small)
        Index("ix_psp_events_received", "id", sqlite_where=text("status = 'received'"),
              postgresql_where=text("status = 'received'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    psp: Mapped[str] = mapped_column(String(100))
    psp_account: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(30))
    raw_type: Mapped[str] = mapped_column(String(100), default="")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    psp_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    link_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    payout_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    company_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    transaction_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    #: received (not applied yet) | applied | no_change | deferred | unmatched | stored | ignored
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    operation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ServiceOperationRow(Base):
    __tablename__ = "service_operations"
    __table_args__ = (
        UniqueConstraint("company_id", "request_id"),
        UniqueConstraint("idempotency_key"),
        Index("ix_service_operations_transaction", "company_id", "transaction_id"),
        Index("ix_service_operations_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    company_id: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(30))  # payment_link | mandate_charge
    status: Mapped[str] = mapped_column(String(20))  # started | unknown | succeeded | failed
    request_id: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(200), default="")
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PaymentLinkRow(Base):
    __tablename__ = "payment_links"
    __table_args__ = (
        Index("ix_payment_links_psp", "psp", "psp_account", "psp_link_id"),
        Index("ix_payment_links_transaction", "company_id", "transaction_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(36))
    operation_id: Mapped[int] = mapped_column(BigInteger)
    psp: Mapped[str] = mapped_column(String(100))
    psp_account: Mapped[str] = mapped_column(String(100))
    payment_method_code: Mapped[str] = mapped_column(String(20))
    #: creating | open | completed | failed | expired
    status: Mapped[str] = mapped_column(String(20))
    psp_link_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    psp_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    returned_via: Mapped[str | None] = mapped_column(String(20), nullable=True)
    returned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MandateRow(Base):
    __tablename__ = "mandates"
    __table_args__ = (
        UniqueConstraint("company_id", "payment_method_code", "mandate_reference"),
        Index("ix_mandates_company_customer", "company_id", "customer_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64))
    payment_method_code: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str] = mapped_column(String(100))
    customer: Mapped[dict[str, Any]] = mapped_column(JSON)
    mandate_reference: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20))  # active | revoked
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


__all__ = [
    "ApiKeyRow",
    "IdempotentRequestRow",
    "MandateRow",
    "PaymentLinkRow",
    "PspEventRow",
    "ServiceOperationRow",
]
