"""Document rules: which BC documents the engine processes and how.

* Sales order and sales invoice capture; sales return order and sales credit memo refund or
  credit (a credit memo only against a posted invoice).
* A document needs a payweave payment method; one without is not ours.
* BC features payweave does not support on its documents are refused, naming the field.
* Supported lines: items, resources (vouchers and shipping by subtype), G/L accounts, charge
  items; comment lines are ignored. Fixed-asset lines are refused.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any

from payweave.core.errors import DocumentNotOurs, UnsupportedDocumentFeature, UnsupportedDocumentLine, WrongDocumentDirection
from payweave.hooks.models import DocumentLineType, DocumentType, SalesDocument


class Direction(StrEnum):
    CAPTURE = "capture"
    REFUND = "refund"


DIRECTIONS: dict[DocumentType, Direction] = {
    DocumentType.SALES_ORDER: Direction.CAPTURE,
    DocumentType.SALES_INVOICE: Direction.CAPTURE,
    DocumentType.SALES_RETURN_ORDER: Direction.REFUND,
    DocumentType.SALES_CREDIT_MEMO: Direction.REFUND,
}

DOCUMENT_TITLES: dict[DocumentType, str] = {
    DocumentType.SALES_ORDER: "Sales order",
    DocumentType.SALES_INVOICE: "Sales invoice",
    DocumentType.SALES_RETURN_ORDER: "Sales return order",
    DocumentType.SALES_CREDIT_MEMO: "Sales credit memo",
}

#: (field, BC caption, "is used" predicate)
UNSUPPORTED_FIELDS: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("invoice_discount_amount", "Invoice Discount Amount", lambda v: Decimal(v) != 0),
    ("payment_discount_percent", "Payment Discount %", lambda v: Decimal(v) != 0),
    ("prepayment_percent", "Prepayment %", lambda v: Decimal(v) != 0),
    ("combine_shipments", "Combine Shipments", bool),
)

SUPPORTED_LINE_TYPES = frozenset(
    {DocumentLineType.ITEM, DocumentLineType.RESOURCE, DocumentLineType.GL_ACCOUNT, DocumentLineType.CHARGE_ITEM, DocumentLineType.COMMENT}
)


def describe(document: SalesDocument) -> str:
    return f"{DOCUMENT_TITLES[document.document_type]} {document.number or document.document_id}"


def direction(document: SalesDocument) -> Direction:
    return DIRECTIONS[document.document_type]


def require_direction(document: SalesDocument, wanted: Direction) -> None:
    if direction(document) is not wanted:
        verb = "capture a payment" if wanted is Direction.CAPTURE else "refund or credit a payment"
        raise WrongDocumentDirection(
            f"{describe(document)} cannot {verb}: sales orders and invoices capture, return orders and credit "
            f"memos refund or credit.",
            details={"document_type": document.document_type.value, "expected": wanted.value},
        )


def require_payment_method(document: SalesDocument) -> str:
    code = (document.payment_method_code or "").strip().upper()
    if not code:
        raise DocumentNotOurs(
            f"{describe(document)} has no payment method, so it is not a payweave document and was not processed.",
            details={"document_id": document.document_id, "field": "payment_method_code"},
        )
    return code


def check_document(document: SalesDocument) -> None:
    """Refuse documents that use an unsupported BC feature or line type (naming it)."""
    for field, caption, used in UNSUPPORTED_FIELDS:
        value = getattr(document, field)
        if used(value):
            raise UnsupportedDocumentFeature(
                f"{describe(document)} uses '{caption}' ({value}), which payweave does not support on documents "
                f"with a payweave payment method. Remove it or choose another payment method.",
                details={"field": field, "caption": caption, "value": str(value), "document_id": document.document_id},
            )
    if document.document_type is DocumentType.SALES_CREDIT_MEMO and not (
        document.applies_to_invoice_id or document.applies_to_invoice_number
    ):
        raise UnsupportedDocumentFeature(
            f"{describe(document)} is not applied to a posted invoice; payweave refunds credit memos only against "
            f"the invoice that was paid (set 'Applies-to Doc. No.').",
            details={"field": "applies_to_invoice_id", "caption": "Applies-to Doc. No.", "document_id": document.document_id},
        )
    for line in document.lines:
        if line.type not in SUPPORTED_LINE_TYPES:
            raise UnsupportedDocumentLine(
                f"{describe(document)} line {line.line_no} is of type '{line.type.value}', which payweave cannot "
                f"send to a PSP (supported: items, resources, G/L accounts, charge items).",
                details={"line_no": line.line_no, "type": line.type.value},
            )
