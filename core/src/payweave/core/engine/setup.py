"""Payment-method setup: which PSP a BC payment method uses and how it behaves.

A :class:`PaymentMethodSetup` is keyed by company and BC payment-method code. It is validated
when saved (:func:`validate_setup`): first the forbidden combinations (each refusal names both
settings), then every switched-on option against the PSP's declared capabilities
(``PspCapabilities.require``, the one rule), each refusal naming the setting and the feature.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from payweave.core.errors import SetupCombinationForbidden, SetupIncomplete, SetupOptionNotSupported
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import NotSupported


class CaptureTiming(StrEnum):
    MANUAL = "manual"
    ON_RELEASE = "on_release"
    ON_POSTING = "on_posting"
    JOB_QUEUE = "job_queue"


class RefundTiming(StrEnum):
    MANUAL = "manual"
    ON_POSTING = "on_posting"
    JOB_QUEUE = "job_queue"


#: The captions a BC user sees on the payment-method line (used in every refusal).
SETTING_TITLES: dict[str, str] = {
    "psp": "PSP",
    "capture_timing": "Capture Timing",
    "refund_timing": "Refund Timing",
    "auto_capture": "AutoCapture",
    "late_capture": "Late Automatic Capture",
    "auto_void": "Automatic PSP Cancellation",
    "credit_allowed": "Credit Allowed",
    "start_payment": "Start Payment",
    "recurring": "Recurring Payment",
    "allow_cart_update": "Allow Cart Update",
    "allow_reservation_renewal": "Allow Reservation Renewal",
    "without_cart": "Without Cart",
    "advanced_import": "Advanced Import",
    "success_url": "Success URL",
    "error_url": "Error URL",
    "cancel_url": "Cancel URL",
}

OPTION_FIELDS = (
    "auto_capture",
    "late_capture",
    "auto_void",
    "credit_allowed",
    "start_payment",
    "recurring",
    "allow_cart_update",
    "allow_reservation_renewal",
    "without_cart",
    "advanced_import",
)


class PaymentMethodSetup(BaseModel):
    """One payweave payment method (a line of the payweave setup in BC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=20, description="The BC payment-method code (e.g. 'CARD').")
    description: str = ""
    psp: str = Field(min_length=1, description="Name of the PSP plugin (e.g. 'psp_mock').")
    psp_account: str = Field("default", min_length=1, description="The plugin account to use.")
    capture_timing: CaptureTiming = CaptureTiming.MANUAL
    refund_timing: RefundTiming = RefundTiming.MANUAL
    auto_capture: bool = False
    late_capture: bool = False
    auto_void: bool = False
    credit_allowed: bool = False
    start_payment: bool = False
    recurring: bool = False
    allow_cart_update: bool = False
    allow_reservation_renewal: bool = False
    without_cart: bool = False
    advanced_import: bool = False
    success_url: str | None = None
    error_url: str | None = None
    cancel_url: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    def options(self) -> dict[str, Any]:
        data = self.model_dump(
            mode="json", exclude={"company_id", "code", "description", "psp", "psp_account", "capture_timing", "refund_timing"}
        )
        return data

    @classmethod
    def from_row(cls, row: Any) -> PaymentMethodSetup:
        return cls(
            company_id=row.company_id,
            code=row.code,
            description=row.description,
            psp=row.psp,
            psp_account=row.psp_account,
            capture_timing=row.capture_timing,
            refund_timing=row.refund_timing,
            **{k: v for k, v in (row.options or {}).items() if k in cls.model_fields},
        )


def _t(field: str) -> str:
    return SETTING_TITLES[field]


def _forbid(setup: PaymentMethodSetup, a: str, b: str, why: str) -> None:
    raise SetupCombinationForbidden(
        f"Payment method {setup.code}: '{_t(a)}' cannot be combined with '{_t(b)}' ({why}).",
        details={"settings": [a, b], "payment_method": setup.code},
    )


def check_combinations(setup: PaymentMethodSetup) -> None:
    """Refuse forbidden combinations; each error names both settings."""
    if setup.recurring and setup.allow_reservation_renewal:
        _forbid(setup, "recurring", "allow_reservation_renewal", "recurring charges never hold a reservation to renew")
    if setup.recurring and setup.advanced_import:
        _forbid(setup, "recurring", "advanced_import", "an imported payment carries no mandate")
    if setup.allow_reservation_renewal and setup.advanced_import:
        _forbid(setup, "allow_reservation_renewal", "advanced_import", "an imported reservation cannot be renewed by payweave")
    if setup.without_cart and setup.allow_cart_update:
        _forbid(setup, "without_cart", "allow_cart_update", "without a cart there is no cart to update")
    if setup.without_cart and setup.recurring:
        _forbid(setup, "without_cart", "recurring", "recurring payments need the cart")
    if setup.without_cart and setup.refund_timing is not RefundTiming.MANUAL:
        raise SetupCombinationForbidden(
            f"Payment method {setup.code}: '{_t('without_cart')}' cannot be combined with '{_t('refund_timing')}' = "
            f"{setup.refund_timing.value} (refunds are not available without a cart; set it to manual and pay money "
            f"back as credits).",
            details={"settings": ["without_cart", "refund_timing"], "payment_method": setup.code},
        )
    if setup.auto_capture:
        if setup.late_capture:
            _forbid(setup, "auto_capture", "late_capture", "the PSP captures at authorization already")
        if setup.auto_void:
            _forbid(setup, "auto_capture", "auto_void", "an automatically captured payment has no reservation to void")
        if setup.allow_reservation_renewal:
            _forbid(setup, "auto_capture", "allow_reservation_renewal", "an automatically captured payment has no reservation")
        if setup.capture_timing is not CaptureTiming.MANUAL:
            raise SetupCombinationForbidden(
                f"Payment method {setup.code}: '{_t('auto_capture')}' cannot be combined with '{_t('capture_timing')}' = "
                f"{setup.capture_timing.value} (the PSP captures at authorization; set it to manual).",
                details={"settings": ["auto_capture", "capture_timing"], "payment_method": setup.code},
            )
    if setup.start_payment:
        for url in ("success_url", "error_url", "cancel_url"):
            if not getattr(setup, url):
                raise SetupIncomplete(
                    f"Payment method {setup.code}: '{_t('start_payment')}' needs the '{_t(url)}' (the redirect "
                    f"flow needs success, error and cancel URLs).",
                    details={"settings": ["start_payment", url], "payment_method": setup.code},
                )


def _need(setup: PaymentMethodSetup, caps: PspCapabilities, field: str, feature: Feature, psp: str) -> None:
    try:
        caps.require(feature, psp=psp)
    except NotSupported as exc:
        raise SetupOptionNotSupported(
            f"Payment method {setup.code}: '{_t(field)}' cannot be switched on: {exc.message}",
            details={"setting": field, "feature": feature.value, "psp": psp, "payment_method": setup.code},
        ) from None


def check_capabilities(setup: PaymentMethodSetup, caps: PspCapabilities) -> None:
    """Refuse every switched-on option the PSP cannot serve (names the setting and the feature)."""
    psp = setup.psp if setup.psp_account == "default" else f"{setup.psp} (account {setup.psp_account})"
    if setup.auto_capture:
        _need(setup, caps, "auto_capture", Feature.AUTO_CAPTURE, psp)
    else:
        try:
            caps.require(Feature.RESERVE, psp=psp)
        except NotSupported as exc:
            raise SetupOptionNotSupported(
                f"Payment method {setup.code}: '{_t('auto_capture')}' must be switched on: {exc.message}",
                details={"setting": "auto_capture", "feature": Feature.RESERVE.value, "psp": psp},
            ) from None
    if setup.late_capture:
        _need(setup, caps, "late_capture", Feature.CAPTURE, psp)
    if setup.auto_void:
        _need(setup, caps, "auto_void", Feature.VOID, psp)
    if setup.credit_allowed:
        _need(setup, caps, "credit_allowed", Feature.CREDIT, psp)
    if setup.start_payment:
        _need(setup, caps, "start_payment", Feature.PAY_BY_LINK, psp)
    if setup.recurring:
        _need(setup, caps, "recurring", Feature.RECURRING, psp)
    if setup.allow_cart_update and not caps.declares(Feature.CART_UPDATE_BEFORE_RESERVATION):
        _need(setup, caps, "allow_cart_update", Feature.CART_UPDATE_WHILE_RESERVED, psp)
    if setup.allow_reservation_renewal:
        _need(setup, caps, "allow_reservation_renewal", Feature.RESERVATION_RENEWAL, psp)
    if setup.without_cart:
        _need(setup, caps, "without_cart", Feature.NO_CART, psp)
    if setup.advanced_import:
        _need(setup, caps, "advanced_import", Feature.PAYMENT_LOOKUP, psp)
    if setup.refund_timing is not RefundTiming.MANUAL and not (setup.credit_allowed and caps.declares(Feature.CREDIT)):
        _need(setup, caps, "refund_timing", Feature.REFUND, psp)


def validate_setup(setup: PaymentMethodSetup, caps: PspCapabilities) -> None:
    check_combinations(setup)
    check_capabilities(setup, caps)
