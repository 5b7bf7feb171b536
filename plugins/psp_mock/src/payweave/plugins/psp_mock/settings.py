"""Settings of one psp_mock account: a capability *profile* plus per-field overrides.

One plugin stands for many PSPs: ``profile`` picks a named capability set (``full`` by
default) and every capability field can be overridden on its own, from the environment
(``PAYWEAVE_PSP_MOCK_PROFILE=no_void``, ``PAYWEAVE_PSP_MOCK_REFUND=full_only``,
``PAYWEAVE_PSP_MOCK_CAPTURE_MODES=manual,automatic``), from ``[accounts.psp_mock.<name>]`` in
payweave.toml, or as keyword overrides (``manager.account("psp_mock", refund="none")``).
An inconsistent combination (``capture_modes=automatic`` with ``void=full``) is refused when
the settings are built, with the contract's own message.
"""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from payweave.hooks.capabilities import (
    CaptureMode,
    CartUpdateStage,
    PspCapabilities,
    RefundSupport,
    RenewalStyle,
    VoidSupport,
)

ProfileName = Literal[
    "full",
    "no_partial_capture",
    "no_void",
    "no_partial_refund",
    "no_cart_update_after_reservation",
    "auto_capture",
    "minimal",
]

_FULL: dict[str, Any] = {
    "capture_modes": frozenset({CaptureMode.AUTOMATIC, CaptureMode.MANUAL, CaptureMode.MANUAL_MULTIPLE}),
    "partial_capture": True,
    "refund": RefundSupport.PARTIAL,
    "void": VoidSupport.PARTIAL,
    "cart_update": frozenset({CartUpdateStage.BEFORE_RESERVATION, CartUpdateStage.WHILE_RESERVED}),
    "credit": True,
    "recurring": True,
    "reservation_renewal": RenewalStyle.REAUTHORIZE,
    "reservation_validity": timedelta(days=7),
    "pay_by_link": True,
    "no_cart": True,
    "webhooks": True,
    "payouts": True,
    "payment_lookup": True,
}

#: Named capability sets. Each is a complete ``PspCapabilities`` keyword set.
PROFILES: dict[str, dict[str, Any]] = {
    # Every feature, partial everything, several captures, 7-day reservations.
    "full": _FULL,
    # One capture per reservation, always the full amount (a classic card acquirer).
    "no_partial_capture": {
        **_FULL,
        "capture_modes": frozenset({CaptureMode.AUTOMATIC, CaptureMode.MANUAL}),
        "partial_capture": False,
    },
    # Reservations cannot be released; they lapse.
    "no_void": {**_FULL, "void": VoidSupport.NONE},
    # Only the whole captured amount can be refunded; only whole reservations voided.
    "no_partial_refund": {**_FULL, "refund": RefundSupport.FULL_ONLY, "void": VoidSupport.FULL},
    # The cart can change only before the customer authorized.
    "no_cart_update_after_reservation": {
        **_FULL,
        "cart_update": frozenset({CartUpdateStage.BEFORE_RESERVATION}),
    },
    # Captures immediately; no reservations, so no void, renewal or partial capture.
    "auto_capture": {
        "capture_modes": frozenset({CaptureMode.AUTOMATIC}),
        "refund": RefundSupport.PARTIAL,
        "cart_update": frozenset({CartUpdateStage.BEFORE_RESERVATION}),
        "credit": True,
        "recurring": True,
        "pay_by_link": True,
        "no_cart": True,
        "webhooks": True,
        "payouts": True,
        "payment_lookup": True,
    },
    # Reserve and capture the full amount; nothing else.
    "minimal": {
        "capture_modes": frozenset({CaptureMode.MANUAL}),
        "reservation_validity": timedelta(days=7),
    },
}

#: Capability fields that can be overridden one by one.
CAPABILITY_FIELDS = (
    "capture_modes",
    "partial_capture",
    "refund",
    "void",
    "cart_update",
    "credit",
    "recurring",
    "reservation_renewal",
    "pay_by_link",
    "no_cart",
    "webhooks",
    "payouts",
    "payment_lookup",
    "currencies",
)


def _split(value: Any) -> Any:
    """Accept ``"manual,automatic"`` (CLI / env) as well as a list or JSON list."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return value


class MockPspSettings(BaseSettings):
    """One psp_mock account. Every capability field left at None comes from ``profile``."""

    model_config = SettingsConfigDict(env_prefix="PAYWEAVE_PSP_MOCK_", extra="forbid", frozen=True)

    profile: ProfileName = Field("full", description="Named capability set (see PROFILES).")

    capture_modes: Annotated[frozenset[CaptureMode] | None, NoDecode] = None
    partial_capture: bool | None = None
    refund: RefundSupport | None = None
    void: VoidSupport | None = None
    cart_update: Annotated[frozenset[CartUpdateStage] | None, NoDecode] = None
    credit: bool | None = None
    recurring: bool | None = None
    reservation_renewal: RenewalStyle | None = None
    reservation_validity_seconds: int | None = Field(
        None, ge=0, description="Reservation lifetime; 0 = reservations never expire; None = the profile's."
    )
    pay_by_link: bool | None = None
    no_cart: bool | None = None
    webhooks: bool | None = None
    payouts: bool | None = None
    payment_lookup: bool | None = None
    currencies: Annotated[frozenset[str] | None, NoDecode] = Field(None, description="Accepted ISO codes; None = all.")

    api_key: SecretStr = Field(SecretStr("sk_mock_default_key"), description="'sk_mock_invalid' is refused.")
    webhook_secret: SecretStr = Field(SecretStr("whsec_mock_default_secret"), description="HMAC key of webhooks.")
    webhook_tolerance_seconds: int = Field(300, ge=1, description="Webhooks signed longer ago are refused.")
    fee_percent: Decimal = Field(Decimal("1.4"), ge=0, description="Fee on each captured amount, in percent.")
    fee_fixed_minor: int = Field(25, ge=0, description="Fixed fee per capture, in the currency's minor units.")
    payout_delay_days: int = Field(2, ge=0, description="Arrival date of a payout, days after it was made.")
    link_validity_seconds: int = Field(86400, ge=1, description="Default lifetime of a payment link.")

    _capabilities: PspCapabilities = PrivateAttr()

    @field_validator("capture_modes", "cart_update", "currencies", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("fee_percent", mode="before")
    @classmethod
    def _no_float_fee(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("fee_percent must be a decimal string, not a float")
        return value

    @model_validator(mode="after")
    def _build_capabilities(self) -> MockPspSettings:
        values = dict(PROFILES[self.profile])
        for name in CAPABILITY_FIELDS:
            override = getattr(self, name)
            if override is not None:
                values[name] = override
        if self.reservation_validity_seconds is not None:
            seconds = self.reservation_validity_seconds
            values["reservation_validity"] = timedelta(seconds=seconds) if seconds else None
        try:
            caps = PspCapabilities(**values)
        except ValidationError as exc:
            raise ValueError(
                f"profile {self.profile!r} with these overrides is not a valid capability model: "
                f"{exc.errors()[0]['msg']}"
            ) from None
        self._capabilities = caps
        return self

    def capabilities(self) -> PspCapabilities:
        return self._capabilities
