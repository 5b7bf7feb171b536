"""The PSP capability model: what a PSP plugin *can* do.

One typed model, graded where yes/no is too coarse (Odoo's none/full_only/partial, Hyperswitch's
capture-mode list). It says nothing about what a merchant *switched on*: that is the payment
method setup, kept by the engine. The core reads capabilities only from this model, and the
named :class:`Feature` list below is the single source for the CLI matrix, setup validation,
runtime refusal (:meth:`PspCapabilities.require`) and the conformance suite's selection.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import NotSupported
from .money import currency_exponent, normalize_currency


class CaptureMode(StrEnum):
    AUTOMATIC = "automatic"
    """The PSP captures right after authorization (AutoCapture)."""
    MANUAL = "manual"
    """Authorize now, capture later with one capture call (full, or partial if ``partial_capture``)."""
    MANUAL_MULTIPLE = "manual_multiple"
    """Authorize now, capture later in several partial captures (multicapture)."""


class RefundSupport(StrEnum):
    NONE = "none"
    FULL_ONLY = "full_only"
    PARTIAL = "partial"


class VoidSupport(StrEnum):
    NONE = "none"
    FULL = "full"
    """Only the whole remaining reservation can be voided."""
    PARTIAL = "partial"
    """Any part of the remaining reservation can be voided (the rest stays reserved)."""


class CartUpdateStage(StrEnum):
    BEFORE_RESERVATION = "before_reservation"
    """The cart of a prepared (not yet authorized) payment can change."""
    WHILE_RESERVED = "while_reserved"
    """The cart (and amount) of an authorized, uncaptured payment can change."""


class RenewalStyle(StrEnum):
    NONE = "none"
    REAUTHORIZE = "reauthorize"
    """A new reservation is made; the old one is voided by the plugin or lapses."""
    EXTEND = "extend"
    """The same reservation gets a later expiry."""


class PspCapabilities(BaseModel):
    """What a PSP (plugin + account) can do. Returned by ``psp_capabilities``.

    Example, a Stripe-like PSP::

        PspCapabilities(
            capture_modes=["automatic", "manual"], partial_capture=True,
            refund="partial", void="full", cart_update=["before_reservation"],
            credit=False, recurring=True, reservation_renewal="reauthorize",
            reservation_validity=timedelta(days=7), pay_by_link=True, no_cart=True,
        )
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    capture_modes: frozenset[CaptureMode] = Field(
        default=frozenset({CaptureMode.MANUAL}), description="How the PSP can capture (see CaptureMode)."
    )
    partial_capture: bool = Field(False, description="A manual capture may be less than the reserved amount.")
    refund: RefundSupport = Field(RefundSupport.NONE, description="Cart-dependent refunds of captured money.")
    void: VoidSupport = Field(VoidSupport.NONE, description="Cancel (release) an uncaptured reservation.")
    cart_update: frozenset[CartUpdateStage] = Field(default=frozenset(), description="Stages at which the cart may change.")
    credit: bool = Field(False, description="Cart-independent credit (refund without the original cart).")
    recurring: bool = Field(False, description="Charge a customer mandate without customer interaction.")
    reservation_renewal: RenewalStyle = Field(RenewalStyle.NONE, description="How an expiring reservation is renewed.")
    reservation_validity: timedelta | None = Field(
        None, description="How long an authorization stays capturable; None = it does not expire."
    )
    pay_by_link: bool = Field(False, description="Create a hosted payment link with success/error/cancel URLs.")
    no_cart: bool = Field(False, description="Reserve with a total only, no cart lines.")
    webhooks: bool = Field(False, description="Verify and parse incoming webhooks.")
    payouts: bool = Field(False, description="List payouts with fees for deposit reconciliation.")
    payment_lookup: bool = Field(False, description="Read a payment's current state by PSP reference (advanced import).")
    currencies: frozenset[str] | None = Field(None, description="ISO 4217 codes accepted; None = all ISO currencies.")

    @field_validator("currencies", mode="before")
    @classmethod
    def _currencies(cls, value: Any) -> Any:
        if value is None:
            return None
        codes = frozenset(normalize_currency(c) for c in value)
        for code in codes:
            currency_exponent(code)
        return codes

    @model_validator(mode="after")
    def _consistent(self) -> PspCapabilities:
        manual = self.capture_modes & {CaptureMode.MANUAL, CaptureMode.MANUAL_MULTIPLE}
        if not self.capture_modes:
            raise ValueError("capture_modes must name at least one capture mode")
        if CaptureMode.MANUAL_MULTIPLE in self.capture_modes and not self.partial_capture:
            raise ValueError("capture mode 'manual_multiple' needs partial_capture=True")
        if self.partial_capture and not manual:
            raise ValueError("partial_capture needs a manual capture mode")
        if self.reservation_renewal is not RenewalStyle.NONE and not manual:
            raise ValueError("reservation_renewal needs a manual capture mode (a reservation to renew)")
        if self.void is not VoidSupport.NONE and not manual:
            raise ValueError("void needs a manual capture mode (a reservation to release)")
        if self.reservation_validity is not None and self.reservation_validity <= timedelta(0):
            raise ValueError("reservation_validity must be positive")
        return self

    # -- derived views ---------------------------------------------------------------------
    @property
    def manual_capture(self) -> bool:
        return bool(self.capture_modes & {CaptureMode.MANUAL, CaptureMode.MANUAL_MULTIPLE})

    @property
    def multiple_captures(self) -> bool:
        return CaptureMode.MANUAL_MULTIPLE in self.capture_modes

    def declares(self, feature: Feature) -> bool:
        return feature.check(self)

    def require(self, feature: Feature, *, psp: str = "this PSP") -> None:
        """Raise :class:`NotSupported` naming ``feature`` unless the model declares it.

        The one rule that refuses an unsupported PSP operation; the core calls it before any
        plugin call, and plugins call it at the top of each hook.
        """
        if not feature.check(self):
            raise NotSupported(
                f"{psp} does not support {feature.title}.",
                details={"feature": feature.value, "psp": psp},
            )

    def require_currency(self, currency: str, *, psp: str = "this PSP") -> None:
        code = normalize_currency(currency)
        currency_exponent(code)
        if self.currencies is not None and code not in self.currencies:
            raise NotSupported(
                f"{psp} does not accept payments in {code}.",
                code="currency_not_supported",
                details={"currency": code, "psp": psp},
            )

    def matrix(self) -> dict[str, bool]:
        """Feature name -> declared, in :class:`Feature` order (for the CLI and the API)."""
        return {f.value: f.check(self) for f in Feature}


_CHECKS: dict[str, tuple[str, Callable[[PspCapabilities], bool]]] = {
    "reserve": ("reservations (authorize, capture later)", lambda c: c.manual_capture),
    "auto_capture": ("automatic capture", lambda c: CaptureMode.AUTOMATIC in c.capture_modes),
    "capture": ("capture of a reservation", lambda c: c.manual_capture),
    "partial_capture": ("partial capture", lambda c: c.partial_capture),
    "multiple_captures": ("several captures of one reservation", lambda c: c.multiple_captures),
    "void": ("voiding a reservation", lambda c: c.void is not VoidSupport.NONE),
    "partial_void": ("partial void", lambda c: c.void is VoidSupport.PARTIAL),
    "refund": ("refunds", lambda c: c.refund is not RefundSupport.NONE),
    "partial_refund": ("partial refunds", lambda c: c.refund is RefundSupport.PARTIAL),
    "credit": ("cart-independent credits", lambda c: c.credit),
    "cart_update_before_reservation": (
        "cart updates before reservation",
        lambda c: CartUpdateStage.BEFORE_RESERVATION in c.cart_update,
    ),
    "cart_update_while_reserved": (
        "cart updates while reserved",
        lambda c: CartUpdateStage.WHILE_RESERVED in c.cart_update,
    ),
    "recurring": ("recurring charges on mandates", lambda c: c.recurring),
    "reservation_renewal": ("reservation renewal", lambda c: c.reservation_renewal is not RenewalStyle.NONE),
    "pay_by_link": ("payment links", lambda c: c.pay_by_link),
    "no_cart": ("payments without a cart", lambda c: c.no_cart),
    "webhooks": ("webhooks", lambda c: c.webhooks),
    "payouts": ("payout reports", lambda c: c.payouts),
    "payment_lookup": ("payment lookup by reference", lambda c: c.payment_lookup),
}


class Feature(StrEnum):
    """Named, checkable PSP features. ``Feature.PARTIAL_REFUND.check(caps)``."""

    RESERVE = "reserve"
    AUTO_CAPTURE = "auto_capture"
    CAPTURE = "capture"
    PARTIAL_CAPTURE = "partial_capture"
    MULTIPLE_CAPTURES = "multiple_captures"
    VOID = "void"
    PARTIAL_VOID = "partial_void"
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    CREDIT = "credit"
    CART_UPDATE_BEFORE_RESERVATION = "cart_update_before_reservation"
    CART_UPDATE_WHILE_RESERVED = "cart_update_while_reserved"
    RECURRING = "recurring"
    RESERVATION_RENEWAL = "reservation_renewal"
    PAY_BY_LINK = "pay_by_link"
    NO_CART = "no_cart"
    WEBHOOKS = "webhooks"
    PAYOUTS = "payouts"
    PAYMENT_LOOKUP = "payment_lookup"

    @property
    def title(self) -> str:
        return _CHECKS[self.value][0]

    def check(self, caps: PspCapabilities) -> bool:
        return bool(_CHECKS[self.value][1](caps))


assert set(_CHECKS) == {f.value for f in Feature}, "every Feature needs exactly one check"
