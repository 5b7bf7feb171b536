"""Request and response models of the BC-facing API (/v1).

Requests never carry the company: the API key decides it. A body that names a company anyway
must name the key's company (another company answers 404, as for its ids). Amounts are decimal
strings (integers accepted, floats refused), at most the currency's decimals, positive where an
amount is asked for. Strings are bounded by what the store keeps, so a valid request can always
be stored.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from payweave.core.engine import PaymentMethodSetup
from payweave.core.engine.psp_events import EventOutcome
from payweave.core.errors import CoreError
from payweave.hooks.models import Customer, DocumentEvent, DocumentEventType, SalesDocument
from payweave.hooks.money import DecimalStr, currency_exponent

#: The largest amount the API takes (well inside the store's 64-bit minor units for every currency).
MAX_AMOUNT = Decimal("1000000000000")

PositiveAmount = Annotated[
    DecimalStr,
    Field(gt=0, le=MAX_AMOUNT, description="A positive decimal amount in the payment's currency, e.g. \"10.50\"."),
]


class RequestInvalid(CoreError):
    """A request whose parts are valid one by one but not together (422)."""

    code = "invalid_request"
    http_status = 422


class CompanyNotFound(CoreError):
    code = "company_not_found"
    http_status = 404


def _walk(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path or 'value'} must not contain NUL characters")
    elif isinstance(value, Decimal):
        if abs(value) > MAX_AMOUNT:
            raise ValueError(f"{path or 'amount'} is larger than {MAX_AMOUNT}")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]")


def _convert(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise RequestInvalid(f"{where}: {first.get('msg', 'invalid')}") from None


def own_company(given: str | None, company_id: str) -> None:
    if given is not None and given != company_id:
        raise CompanyNotFound("This API key has no access to the company named in the request.",
                              details={"company_id": given})


class DocumentIn(SalesDocument):
    """A BC sales document (order, invoice, return order, credit memo) with its lines."""

    company_id: str | None = Field(None, max_length=64, description="Optional; must be the API key's company.")
    document_id: str = Field(min_length=1, max_length=100)
    number: str = Field(max_length=50)
    payment_method_code: str | None = Field(None, max_length=20)
    applies_to_invoice_id: str | None = Field(None, max_length=100)
    applies_to_invoice_number: str | None = Field(None, max_length=50)
    order_id: str | None = Field(None, max_length=100)

    @field_validator("currency", mode="after")
    @classmethod
    def _iso(cls, value: str) -> str:
        currency_exponent(value)  # an active ISO 4217 currency with a minor unit
        return value

    @model_validator(mode="after")
    def _bounded(self) -> DocumentIn:
        _walk(self)
        return self

    def for_company(self, company_id: str) -> SalesDocument:
        own_company(self.company_id, company_id)
        data = {name: getattr(self, name) for name in SalesDocument.model_fields}
        data["company_id"] = company_id
        return _convert(SalesDocument, data)


class DocumentEventIn(BaseModel):
    """A change of a BC sales document, told by the BC extension."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=150, description="Unique per event; a repeat returns the first result.")
    type: DocumentEventType
    document: DocumentIn
    occurred_at: AwareDatetime
    posted_document_id: str | None = Field(None, max_length=100, description="For 'posted': the posted document's id.")
    posted_document_number: str | None = Field(None, max_length=50)

    @model_validator(mode="after")
    def _bounded(self) -> DocumentEventIn:
        _walk(self)
        return self

    def for_company(self, company_id: str) -> DocumentEvent:
        return _convert(DocumentEvent, {
            "event_id": self.event_id, "type": self.type, "document": self.document.for_company(company_id),
            "occurred_at": self.occurred_at, "posted_document_id": self.posted_document_id,
            "posted_document_number": self.posted_document_number,
        })


class AuthorizeIn(BaseModel):
    """Prepare and authorize the payment of a sales order or invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: DocumentIn
    payment_method_token: str | None = Field(None, max_length=500, description="A PSP payment-method token, if any.")

    @model_validator(mode="after")
    def _bounded(self) -> AuthorizeIn:
        _walk(self)
        return self


class PaymentLinkIn(BaseModel):
    """Start Payment: a payment link for a sales order or invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: DocumentIn
    expires_at: AwareDatetime | None = Field(None, description="When the link stops working (default: the PSP's).")


class AmountIn(BaseModel):
    """Capture / void: an amount (default: everything still reserved)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: PositiveAmount | None = None
    reason: str = Field("", max_length=200)

    @field_validator("reason")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        _walk(v, "reason")
        return v


class MoneyBackIn(AmountIn):
    """Refund / credit: an amount (default: everything captured and not yet paid back)."""


class ImportIn(BaseModel):
    """Advanced import: attach a payment made elsewhere to a BC document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: DocumentIn
    psp_reference: str = Field(min_length=1, max_length=200)
    amount: PositiveAmount


class PaymentMethodIn(PaymentMethodSetup):
    """One payweave payment method (a line of the payweave setup in BC)."""

    company_id: str | None = Field(None, max_length=64, description="Optional; must be the API key's company.")
    code: str | None = Field(None, max_length=20, description="Optional; the code in the path decides.")
    description: str = Field("", max_length=200)
    psp: str = Field(min_length=1, max_length=100, description="Name of the PSP plugin (e.g. 'psp_mock').")
    psp_account: str = Field("default", min_length=1, max_length=100, description="The plugin account to use.")
    success_url: str | None = Field(None, max_length=2000)
    error_url: str | None = Field(None, max_length=2000)
    cancel_url: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _bounded(self) -> PaymentMethodIn:
        _walk(self)
        return self

    def for_company(self, company_id: str, code: str) -> PaymentMethodSetup:
        own_company(self.company_id, company_id)
        if self.code is not None and self.code.strip().upper() != code.strip().upper():
            raise RequestInvalid(f"code: the body names {self.code}, the address {code}.")
        data = {name: getattr(self, name) for name in PaymentMethodSetup.model_fields}
        data.update(company_id=company_id, code=code)
        return _convert(PaymentMethodSetup, data)


class MandateIn(BaseModel):
    """Register a mandate the PSP holds for a customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_method_code: str = Field(min_length=1, max_length=20)
    customer: Customer
    mandate_reference: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _bounded(self) -> MandateIn:
        _walk(self)
        if not self.customer.customer_id or len(self.customer.customer_id) > 100:
            raise ValueError("customer.customer_id must be 1 to 100 characters")
        return self


class MandateChargeIn(BaseModel):
    """Charge a mandate for a sales order or invoice of its customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: DocumentIn


class AccountSetup(BaseModel):
    """The account setup of the company: where payments and payouts are recorded in BC. Each
    account is named by its ERP id or number (see ``GET /v1/account-setup/choices``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payments_account: str = Field(min_length=1, max_length=100,
                                  description="G/L account that records customer payments (the clearing account).")
    bank_account: str = Field(min_length=1, max_length=100, description="Bank account that receives PSP payouts.")
    fee_account: str = Field(min_length=1, max_length=100, description="G/L account for PSP fees.")

    @model_validator(mode="after")
    def _bounded(self) -> AccountSetup:
        _walk(self)
        return self


class AccountSetupMissing(CoreError):
    code = "account_setup_missing"
    http_status = 404


class PspAccountView(BaseModel):
    """A PSP account this service can use, and what it can do."""

    psp: str
    account: str
    title: str
    features: dict[str, bool]


class Me(BaseModel):
    company_id: str
    api_key_id: str
    api_key_name: str


class Deleted(BaseModel):
    deleted: Literal[True] = True


class WebhookReceipt(BaseModel):
    """The webhook was verified; each event is stored once."""

    received: int
    events: list[EventOutcome]


__all__ = [
    "AccountSetup",
    "AccountSetupView",
    "AmountIn",
    "AuthorizeIn",
    "CompanyNotFound",
    "Deleted",
    "DocumentEventIn",
    "DocumentIn",
    "ImportIn",
    "MandateChargeIn",
    "MandateIn",
    "Me",
    "MoneyBackIn",
    "PaymentLinkIn",
    "PaymentMethodIn",
    "PositiveAmount",
    "PspAccountView",
    "RequestInvalid",
    "WebhookReceipt",
]
