"""What the engine returns: pydantic views of transactions, their operations and history.

These are the models the HTTP service and the CLI serialise; amounts are Decimal (JSON
strings) with the transaction's currency.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from payweave.hooks.models import DocumentEventType, DocumentType
from payweave.hooks.money import DecimalStr, from_minor_units

from .statemachine import Ledger, TxStatus


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Amounts(_View):
    authorized: DecimalStr
    captured: DecimalStr
    voided: DecimalStr
    expired: DecimalStr
    refunded: DecimalStr
    credited: DecimalStr
    invoiced: DecimalStr = Field(description="Posted (invoiced) in BC; captures follow it.")
    capturable: DecimalStr = Field(description="Still reserved and capturable.")
    refundable: DecimalStr = Field(description="Captured and not yet paid back.")

    @classmethod
    def of(cls, ledger: Ledger, invoiced: int = 0) -> Amounts:
        m = ledger.money
        return cls(
            authorized=m(ledger.authorized),
            captured=m(ledger.captured),
            voided=m(ledger.voided),
            expired=m(ledger.expired),
            refunded=m(ledger.refunded),
            credited=m(ledger.credited),
            invoiced=m(invoiced),
            capturable=m(ledger.open),
            refundable=m(ledger.refundable),
        )


class OperationView(_View):
    id: int
    seq: int
    kind: str
    status: str
    trigger: str
    actor: str
    amount: DecimalStr | None
    currency: str
    idempotency_key: str
    request_id: str
    psp_reference: str | None
    operation_reference: str | None
    document_type: str | None = None
    document_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int
    created_at: datetime
    completed_at: datetime | None


class HistoryEntry(_View):
    id: int
    at: datetime
    actor: str
    trigger: str
    action: str
    outcome: str
    from_status: str | None
    to_status: str | None
    amount: DecimalStr | None
    operation_id: int | None
    idempotency_key: str | None
    psp_reference: str | None
    operation_reference: str | None
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class TransactionView(_View):
    id: str
    company_id: str
    document_type: DocumentType
    document_id: str
    document_number: str
    payment_method_code: str
    psp: str
    psp_account: str
    psp_reference: str | None
    currency: str
    status: TxStatus
    origin: str = Field(description="'document' (paid through payweave) or 'advanced_import'.")
    no_cart: bool
    auto_capture: bool
    amount: DecimalStr = Field(description="The document amount the payment was prepared for.")
    amounts: Amounts
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    operations: tuple[OperationView, ...] = ()
    history: tuple[HistoryEntry, ...] = ()


class EventAction(_View):
    action: str
    transaction_id: str | None = None
    amount: DecimalStr | None = None
    job_id: int | None = None
    message: str = ""


class EventResult(_View):
    """What the engine did with a document event (repeated event ids return the first result)."""

    event_id: str
    event_type: DocumentEventType
    document_type: DocumentType
    document_id: str
    replayed: bool = False
    actions: tuple[EventAction, ...] = ()
    transaction: TransactionView | None = None


def money(minor: int | None, currency: str) -> Decimal | None:
    return None if minor is None else from_minor_units(minor, currency)
