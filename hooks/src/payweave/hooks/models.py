"""Pydantic models that cross the plugin boundary.

Every amount is a :class:`~payweave.hooks.money.Money` or a Decimal checked against the
document currency; datetimes are timezone-aware UTC. Models are frozen: a plugin returns new
objects, it never mutates what the core passed.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .money import DecimalStr, Money, MoneyError, check_precision, normalize_currency


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return value


# ============================================================================================
# Plugin identity and accounts
# ============================================================================================
class PluginKind(StrEnum):
    PSP = "psp"
    ERP = "erp"


class PluginInfo(_Model):
    """Returned by ``payweave_plugin_info``: who the plugin is.

    :param name: the entry-point name (``psp_mock``); must match the registration name.
    :param kind: ``psp`` or ``erp``; decides which hooks are required.
    :param title: a human name for tables and the dashboard.
    :param settings_model: a ``pydantic_settings.BaseSettings`` subclass for one account of this
        plugin (API keys as ``SecretStr``), or None when the plugin needs no settings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    kind: PluginKind
    title: str
    settings_model: type[BaseModel] | None = None


class Account(_Model):
    """One configured account of a plugin (a Stripe account, a BC company connection).

    ``settings`` is an instance of the plugin's own ``settings_model``; the core builds it from
    ``PAYWEAVE_*`` environment, the config file or the store, and passes the same object on
    every call for that account. Plugins may cache clients keyed by ``Account.key``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    plugin: str
    name: str = "default"
    settings: BaseModel | None = None

    @property
    def key(self) -> str:
        return f"{self.plugin}:{self.name}"

    def __repr__(self) -> str:  # settings reprs hide SecretStr values already; keep it short
        return f"Account(plugin={self.plugin!r}, name={self.name!r})"


class SandboxSpec(_Model):
    """A sandbox server a plugin ships (``payweave_sandboxes``): ``payweave <command>`` serves it."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    command: str = Field(description="CLI command name, e.g. 'stripe-sandbox'.")
    description: str
    app_factory: Any = Field(description="Callable returning an ASGI app (no arguments).")
    default_port: int = 0


# ============================================================================================
# Carts
# ============================================================================================
class LineKind(StrEnum):
    ITEM = "item"
    RESOURCE = "resource"
    GL_ACCOUNT = "gl_account"
    SHIPPING = "shipping"
    VOUCHER = "voucher"
    DISCOUNT = "discount"


class CartLine(_Model):
    """One cart line as the PSP sees it. Amounts are in the cart's currency.

    ``net_amount`` = quantity x unit_price - discount_amount; ``gross_amount`` = net + tax.
    Vouchers and discounts carry negative amounts.
    """

    line_id: str
    kind: LineKind
    number: str = ""
    description: str = ""
    quantity: DecimalStr = Decimal(1)
    unit_price: DecimalStr
    discount_amount: DecimalStr = Decimal(0)
    tax_rate: DecimalStr = Decimal(0)
    net_amount: DecimalStr
    tax_amount: DecimalStr = Decimal(0)
    gross_amount: DecimalStr

    @model_validator(mode="after")
    def _sums(self) -> CartLine:
        if self.net_amount + self.tax_amount != self.gross_amount:
            raise ValueError(
                f"line {self.line_id}: net {self.net_amount} + tax {self.tax_amount} != gross {self.gross_amount}"
            )
        return self


class Cart(_Model):
    """A cart: lines plus totals that must equal their sums to the minor unit."""

    currency: str
    lines: tuple[CartLine, ...]
    total_net: DecimalStr
    total_tax: DecimalStr
    total_gross: DecimalStr

    @field_validator("currency", mode="before")
    @classmethod
    def _cur(cls, v: Any) -> str:
        return normalize_currency(v)

    @model_validator(mode="after")
    def _totals(self) -> Cart:
        for line in self.lines:
            for field in ("unit_price", "net_amount", "tax_amount", "gross_amount", "discount_amount"):
                try:
                    check_precision(getattr(line, field), self.currency) if field != "unit_price" else None
                except MoneyError as exc:
                    raise ValueError(f"line {line.line_id} {field}: {exc.message}") from None
        net = sum((l.net_amount for l in self.lines), Decimal(0))
        tax = sum((l.tax_amount for l in self.lines), Decimal(0))
        gross = sum((l.gross_amount for l in self.lines), Decimal(0))
        if (net, tax, gross) != (self.total_net, self.total_tax, self.total_gross):
            raise ValueError(
                f"cart totals {self.total_net}/{self.total_tax}/{self.total_gross} do not equal the sum of "
                f"the lines {net}/{tax}/{gross}"
            )
        return self

    @property
    def total(self) -> Money:
        return Money(amount=self.total_gross, currency=self.currency)


class Customer(_Model):
    customer_id: str
    number: str = ""
    name: str = ""
    email: str = ""


# ============================================================================================
# PSP requests and results
# ============================================================================================
class _MoneyRequest(_Model):
    idempotency_key: str = Field(
        min_length=1,
        max_length=255,
        description="Derived by the core from transaction and step; identical on every retry.",
    )
    transaction_id: str = Field(description="payweave's transaction id (for metadata / references).")


class ReserveRequest(_MoneyRequest):
    """Authorize ``amount``; with ``capture=True`` capture at once (AutoCapture).

    ``cart`` is None in no-cart mode (then only the total is sent).
    """

    amount: Money
    cart: Cart | None = None
    capture: bool = False
    customer: Customer | None = None
    reference: str = Field("", description="The BC document number, for the PSP's statement.")
    payment_method_token: str | None = Field(None, description="A PSP payment-method token, when the caller has one.")
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cart_matches(self) -> ReserveRequest:
        if self.cart is not None and self.cart.total != self.amount:
            raise ValueError(f"cart total {self.cart.total} differs from amount {self.amount}")
        return self


class PaymentStatus(StrEnum):
    PENDING = "pending"
    """Waiting for the customer or the PSP (e.g. 3DS, a payment link)."""
    RESERVED = "reserved"
    CAPTURED = "captured"
    PARTLY_CAPTURED = "partly_captured"
    VOIDED = "voided"
    REFUNDED = "refunded"
    EXPIRED = "expired"
    FAILED = "failed"


class ReservationResult(_Model):
    """Outcome of reserve / mandate charge / renewal.

    :param psp_reference: the PSP's id of the payment (e.g. ``pi_...``); the key for later calls.
    :param status: ``reserved`` (authorized), ``captured`` (AutoCapture, mandate charge) or ``pending``.
    :param amount: the amount reserved (or captured).
    :param captured: the amount captured so far (zero unless AutoCapture).
    :param expires_at: when the reservation lapses, if the PSP says; else the core derives it from
        ``reservation_validity``.
    """

    psp_reference: str
    status: PaymentStatus
    amount: Money
    captured: Money
    expires_at: datetime | None = None
    operation_reference: str | None = Field(None, description="The PSP id of the capture/charge, if separate.")
    raw_status: str = ""

    @field_validator("expires_at")
    @classmethod
    def _expires_aware(cls, v: datetime | None) -> datetime | None:
        return _aware(v)


class CaptureRequest(_MoneyRequest):
    """Capture ``amount`` of the reservation ``psp_reference``.

    ``final=True`` tells the PSP no further capture follows (the rest may be released);
    with single-capture PSPs every capture is final.
    """

    psp_reference: str
    amount: Money
    final: bool = True


class VoidRequest(_MoneyRequest):
    """Release ``amount`` of the uncaptured reservation, or all of what remains when None."""

    psp_reference: str
    amount: Money | None = None
    reason: str = ""


class RefundRequest(_MoneyRequest):
    """Cart-dependent refund of captured money; ``lines`` are the refunded cart lines (if any)."""

    psp_reference: str
    amount: Money
    lines: tuple[CartLine, ...] = ()
    reason: str = ""


class CreditRequest(_MoneyRequest):
    """Cart-independent credit. ``psp_reference`` is the original payment when there is one."""

    psp_reference: str | None = None
    amount: Money
    customer: Customer | None = None
    reason: str = ""


class OperationStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    """Accepted, outcome later (webhook or lookup)."""


class OperationResult(_Model):
    """Outcome of capture / void / refund / credit. A failure is raised, never returned."""

    psp_reference: str = Field(description="The payment's PSP reference.")
    operation_reference: str = Field(description="The PSP's id of this operation (capture, refund...).")
    status: OperationStatus
    amount: Money
    processed_at: datetime | None = None
    released: Money | None = Field(None, description="For a final partial capture: what the PSP released.")


class CartUpdateRequest(_MoneyRequest):
    """Replace the cart of a prepared or reserved payment. ``stage`` says which."""

    psp_reference: str
    stage: Literal["before_reservation", "while_reserved"]
    cart: Cart


class PaymentLinkRequest(_MoneyRequest):
    amount: Money
    cart: Cart | None = None
    customer: Customer | None = None
    reference: str = ""
    success_url: str
    error_url: str
    cancel_url: str
    expires_at: datetime | None = None
    capture: bool = False


class PaymentLinkResult(_Model):
    link_id: str
    url: str
    expires_at: datetime | None = None
    psp_reference: str | None = Field(None, description="The payment's reference, when known at creation.")


class MandateChargeRequest(_MoneyRequest):
    """Charge a customer's mandate (saved payment method) without customer interaction."""

    mandate_reference: str
    customer: Customer
    amount: Money
    cart: Cart | None = None
    reference: str = ""


class RenewReservationRequest(_MoneyRequest):
    psp_reference: str
    amount: Money
    cart: Cart | None = None


class RenewalResult(_Model):
    """``reservation`` is the new (or extended) reservation; ``old_reference_action`` says what
    happened to the old one: ``voided`` (the plugin released it), ``lapses`` (left to expire),
    ``extended`` (same reference, later expiry)."""

    reservation: ReservationResult
    old_reference_action: Literal["voided", "lapses", "extended"]


class PaymentLookup(_Model):
    """State of a payment at the PSP (``psp_get_payment``): for advanced import, reconciliation,
    and the core's check of a webhook that reports a change payweave did not make itself.

    :param amount: what was authorized. ``captured`` and ``refunded`` are cumulative totals
        (``refunded`` includes credits).
    :param capturable: what is still reserved and can be captured now (authorized minus
        captured, released and lapsed); 0 once the payment is closed. ``None`` when the PSP does
        not say: the core then takes ``amount - captured`` while the status is ``reserved`` or
        ``partly_captured``, and 0 otherwise.
    """

    psp_reference: str
    status: PaymentStatus
    amount: Money
    captured: Money
    refunded: Money
    capturable: Money | None = None
    expires_at: datetime | None = None
    customer_id: str | None = None


# ---- webhooks -------------------------------------------------------------------------------
class WebhookRequest(_Model):
    """An incoming webhook as received: raw bytes (verify before parsing) and headers (lower-case keys)."""

    headers: dict[str, str]
    body: bytes
    received_at: datetime

    @field_validator("headers", mode="before")
    @classmethod
    def _lower(cls, v: dict[str, str]) -> dict[str, str]:
        return {str(k).lower(): str(val) for k, val in dict(v).items()}


class EventType(StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"
    CREDITED = "credited"
    EXPIRED = "expired"
    PAYMENT_FAILED = "payment_failed"
    LINK_COMPLETED = "link_completed"
    LINK_EXPIRED = "link_expired"
    PAYOUT_PAID = "payout_paid"
    PAYOUT_FAILED = "payout_failed"
    UNKNOWN = "unknown"


class PspEvent(_Model):
    """A normalized PSP event.

    :param event_id: the PSP's unique event id (the core deduplicates on it).
    :param type: normalized type; ``unknown`` for events the plugin does not map (kept, acknowledged).
    :param psp_reference: the payment it concerns (None for payouts).
    :param amount: the amount of *this* event (e.g. the captured amount), if any.
    :param total_captured / total_refunded: cumulative totals after the event, when the PSP says;
        the core uses them to apply events idempotently and in any order.
    :param link_id: for ``link_completed``: the payment link / session id.
    """

    event_id: str
    type: EventType
    raw_type: str
    occurred_at: datetime
    psp_reference: str | None = None
    amount: Money | None = None
    total_captured: Money | None = None
    total_refunded: Money | None = None
    link_id: str | None = None
    payout_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


# ---- payouts ---------------------------------------------------------------------------------
class PayoutLine(_Model):
    psp_reference: str | None
    kind: Literal["charge", "refund", "adjustment", "fee", "other"]
    gross: DecimalStr
    fee: DecimalStr
    net: DecimalStr


class Payout(_Model):
    """A PSP payout to the merchant's bank: ``net`` = ``gross`` - ``fee``."""

    payout_id: str
    currency: str
    gross: DecimalStr
    fee: DecimalStr
    net: DecimalStr
    arrival_date: date
    status: Literal["pending", "in_transit", "paid", "failed", "canceled"]
    lines: tuple[PayoutLine, ...] = ()

    @model_validator(mode="after")
    def _net(self) -> Payout:
        if self.gross - self.fee != self.net:
            raise ValueError(f"payout {self.payout_id}: gross {self.gross} - fee {self.fee} != net {self.net}")
        return self


# ============================================================================================
# ERP models (Business Central shapes, normalized)
# ============================================================================================
class DocumentType(StrEnum):
    SALES_ORDER = "sales_order"
    SALES_INVOICE = "sales_invoice"
    SALES_RETURN_ORDER = "sales_return_order"
    SALES_CREDIT_MEMO = "sales_credit_memo"


class DocumentLineType(StrEnum):
    ITEM = "item"
    RESOURCE = "resource"
    GL_ACCOUNT = "gl_account"
    CHARGE_ITEM = "charge_item"
    COMMENT = "comment"
    FIXED_ASSET = "fixed_asset"


class ResourceSubtype(StrEnum):
    NONE = "none"
    VOUCHER = "voucher"
    SHIPPING = "shipping"


class DocumentLine(_Model):
    line_no: int
    type: DocumentLineType
    number: str = ""
    description: str = ""
    quantity: DecimalStr = Decimal(0)
    unit_price: DecimalStr = Decimal(0)
    line_discount_percent: DecimalStr = Decimal(0)
    line_discount_amount: DecimalStr = Decimal(0)
    tax_percent: DecimalStr = Decimal(0)
    amount_excluding_tax: DecimalStr = Decimal(0)
    amount_including_tax: DecimalStr = Decimal(0)
    resource_subtype: ResourceSubtype = ResourceSubtype.NONE
    is_shipping_item: bool = False
    quantity_cancelled: DecimalStr = Decimal(0)


class DocumentStatus(StrEnum):
    OPEN = "open"
    RELEASED = "released"
    PENDING_APPROVAL = "pending_approval"
    POSTED = "posted"


class SalesDocument(_Model):
    """A BC sales document as the engine needs it (from the companion API or a BC extension push).

    The unsupported-feature fields (``invoice_discount_amount``, ``payment_discount_percent``,
    ``prepayment_percent``, ``combine_shipments``) must be filled as BC has them: the core refuses
    documents that use them.
    """

    company_id: str
    document_type: DocumentType
    document_id: str
    number: str
    customer: Customer
    currency: str
    payment_method_code: str | None = None
    status: DocumentStatus = DocumentStatus.OPEN
    prices_include_tax: bool = False
    lines: tuple[DocumentLine, ...] = ()
    invoice_discount_amount: DecimalStr = Decimal(0)
    payment_discount_percent: DecimalStr = Decimal(0)
    prepayment_percent: DecimalStr = Decimal(0)
    combine_shipments: bool = False
    total_excluding_tax: DecimalStr = Decimal(0)
    total_tax: DecimalStr = Decimal(0)
    total_including_tax: DecimalStr = Decimal(0)
    applies_to_invoice_id: str | None = None
    applies_to_invoice_number: str | None = None
    order_id: str | None = Field(None, description="For a posted invoice: the order it came from.")
    last_modified: datetime | None = None

    @field_validator("currency", mode="before")
    @classmethod
    def _cur(cls, v: Any) -> str:
        return normalize_currency(v)


class DocumentEventType(StrEnum):
    RELEASED = "released"
    REOPENED = "reopened"
    CHANGED = "changed"
    POSTED = "posted"
    PARTLY_CANCELLED = "partly_cancelled"
    DELETED = "deleted"


class DocumentEvent(_Model):
    """A change to a sales document, pulled by the ERP plugin (companion API) or pushed by BC."""

    event_id: str
    type: DocumentEventType
    document: SalesDocument
    occurred_at: datetime
    posted_document_id: str | None = Field(None, description="For 'posted': the posted invoice / credit memo id.")
    posted_document_number: str | None = None


class SyncEntity(StrEnum):
    CUSTOMERS = "customers"
    INVOICES = "invoices"
    PAYMENTS = "payments"
    CREDIT_MEMOS = "credit_memos"
    DOCUMENT_EVENTS = "document_events"


class ErpCompany(_Model):
    """A company in the ERP that a connection can sync (``erp_list_companies``)."""

    company_id: str
    name: str
    display_name: str = ""


class ErpCustomer(_Model):
    customer_id: str
    number: str
    name: str
    email: str = ""
    currency: str = ""
    blocked: str = ""
    last_modified: datetime


class InvoiceLine(_Model):
    line_id: str
    line_no: int
    type: str
    number: str = ""
    description: str = ""
    quantity: DecimalStr = Decimal(0)
    unit_price: DecimalStr = Decimal(0)
    discount_amount: DecimalStr = Decimal(0)
    amount_excluding_tax: DecimalStr = Decimal(0)
    tax_amount: DecimalStr = Decimal(0)
    amount_including_tax: DecimalStr = Decimal(0)


class ErpInvoice(_Model):
    invoice_id: str
    number: str
    customer_id: str
    customer_number: str = ""
    invoice_date: date
    due_date: date | None = None
    currency: str
    status: str = Field(description="BC caption: Draft, Open, Paid, Canceled, Corrective...")
    total_excluding_tax: DecimalStr
    total_tax: DecimalStr
    total_including_tax: DecimalStr
    remaining_amount: DecimalStr
    order_id: str | None = None
    lines: tuple[InvoiceLine, ...] = ()
    last_modified: datetime


class ErpCreditMemo(_Model):
    credit_memo_id: str
    number: str
    customer_id: str
    invoice_id: str | None = None
    currency: str
    status: str
    total_including_tax: DecimalStr
    credit_memo_date: date
    last_modified: datetime


class ErpPayment(_Model):
    """A customer payment known to BC (posted through a customer payment journal)."""

    payment_id: str
    customer_id: str
    invoice_id: str | None
    document_number: str
    posting_date: date
    amount: DecimalStr = Field(description="Positive amount received, whatever BC's sign convention.")
    currency: str = ""
    last_modified: datetime


class SyncCursor(_Model):
    """Where a sync stream stands. ``since`` is the lastModifiedDateTime high-water mark;
    ``until`` bounds a window; ``page_token`` resumes inside a stream. ``newest_first`` asks
    for the records newest change first (the initial sync: the last 12 months arrive first and
    the same stream goes on into the history)."""

    since: datetime | None = None
    until: datetime | None = None
    page_token: str | None = None
    newest_first: bool = False


class SyncPage(_Model):
    """One page of changed records.

    :param records: models of the entity's type, ordered by ``last_modified``.
    :param next_cursor: the cursor to store *after* the page is committed; None when the stream
        is exhausted for this run.
    :param high_water: the greatest ``last_modified`` in this page (the next delta's ``since``).
    :param requests: the ERP requests this page cost (0 for a further part of a response
        already counted).
    :param newest_first: True when the stream delivers newest change first, as a cursor with
        ``newest_first`` asks (a plugin that cannot leaves it False; the core then reads in
        windows).
    :param partial: True when more of the same ERP response follows in the next page (the
        page's ``next_cursor`` then resumes by reading that response again); the core pauses a
        stream only after a page that is not partial, so pausing costs no request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    entity: SyncEntity
    records: tuple[Any, ...]
    next_cursor: SyncCursor | None
    high_water: datetime | None = None
    requests: int = 1
    newest_first: bool = False
    partial: bool = False


class LedgerAccount(_Model):
    """A G/L account or bank account offered in account setup."""

    account_id: str
    number: str
    name: str
    kind: Literal["gl_account", "bank_account"]
    category: str = ""
    blocked: bool = False


class RecordPaymentRequest(_Model):
    """Record a captured payment in the ERP, applied to its invoice, and post it.

    ``document_number`` is unique per payment and chosen by the core: a retry passes the same
    number, and the plugin must find an earlier entry by it instead of posting twice.
    """

    idempotency_key: str
    document_number: str = Field(max_length=20)
    customer_id: str
    invoice_id: str
    invoice_number: str = ""
    amount: Money
    posting_date: date
    payments_account_id: str = Field(description="The account (journal balancing) that records payments.")
    description: str = ""
    external_reference: str = Field("", description="PSP reference, stored as external document number.")


class RecordDepositRequest(_Model):
    """Record a PSP payout as a deposit: clearing -> bank for the net, fees to the fee account."""

    idempotency_key: str
    document_number: str = Field(max_length=20)
    payout: Payout
    posting_date: date
    clearing_account_id: str
    bank_account_id: str
    fee_account_id: str


class ErpRecordResult(_Model):
    """Where the ERP recorded the entry; ``already_existed`` when a retry found the earlier one."""

    document_number: str
    entry_ids: tuple[str, ...] = ()
    already_existed: bool = False


# Secrets helper re-exported for plugin settings models.
__all__ = [name for name in dir() if not name.startswith("_")] + ["SecretStr", "timedelta"]
