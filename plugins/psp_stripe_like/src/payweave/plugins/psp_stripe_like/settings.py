"""Settings of one psp_stripe_like account.

From ``PAYWEAVE_PSP_STRIPE_LIKE_*`` environment variables, ``[accounts.psp_stripe_like.<name>]``
in payweave.toml, or keyword overrides. Secrets are ``SecretStr`` and never logged.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from payweave.hooks.capabilities import CaptureMode, CartUpdateStage, PspCapabilities, RefundSupport, RenewalStyle, VoidSupport
from payweave.hooks.retry import RetryPolicy


class StripeLikeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYWEAVE_PSP_STRIPE_LIKE_", extra="forbid", frozen=True)

    api_key: SecretStr = Field(description="Secret key (sk_live_... / sk_test_...), sent as Bearer token.")
    base_url: str = Field("https://api.stripe.com", description="API base URL (the sandbox's URL in tests).")
    webhook_secret: SecretStr | None = Field(None, description="Endpoint signing secret (whsec_...).")
    webhook_secrets_previous: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Older endpoint secrets still accepted during a secret rotation (comma separated)."
    )
    webhook_tolerance_seconds: int = Field(300, ge=1, description="Webhooks signed longer ago (or ahead) are refused.")
    stripe_version: str | None = Field(None, description="Stripe-Version header to pin the API version.")
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(30.0, gt=0, description="Per-attempt read timeout; a timed-out call is retried with the same Idempotency-Key.")
    max_attempts: int = Field(3, ge=1, le=10, description="Attempts per API call on network errors, 409, 429 and 5xx.")
    retry_base_delay_seconds: float = Field(0.5, ge=0, description="First retry delay (Stripe: 0.5 s, exponential, jittered).")
    retry_max_delay_seconds: float = Field(5.0, ge=0)
    reservation_validity_seconds: int = Field(
        7 * 86400, ge=1, description="How long a card authorization stays capturable (Stripe: 7 days for online cards)."
    )
    save_cards_for_renewal: bool = Field(
        False,
        description="Reserve with a Stripe Customer and setup_future_usage=off_session so an expiring reservation "
        "can be re-authorized off-session (declares reservation renewal). Needs the customer's consent to store the card.",
    )
    currencies: Annotated[frozenset[str] | None, NoDecode] = Field(None, description="Accepted ISO codes; None = all.")

    @field_validator("webhook_secrets_previous", "currencies", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        return value.rstrip("/")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.retry_base_delay_seconds,
            max_delay=self.retry_max_delay_seconds,
        )

    def webhook_secrets(self) -> list[str]:
        secrets = [self.webhook_secret] if self.webhook_secret is not None else []
        return [s.get_secret_value() for s in (*secrets, *self.webhook_secrets_previous)]

    def capabilities(self) -> PspCapabilities:
        return PspCapabilities(
            capture_modes=frozenset({CaptureMode.AUTOMATIC, CaptureMode.MANUAL}),
            partial_capture=True,
            refund=RefundSupport.PARTIAL,
            # Stripe cancels a PaymentIntent as a whole: no partial release of a hold.
            void=VoidSupport.FULL,
            # The amount of a PaymentIntent can change until it is authorized; never after.
            cart_update=frozenset({CartUpdateStage.BEFORE_RESERVATION}),
            credit=False,
            recurring=True,
            reservation_renewal=RenewalStyle.REAUTHORIZE if self.save_cards_for_renewal else RenewalStyle.NONE,
            reservation_validity=timedelta(seconds=self.reservation_validity_seconds),
            pay_by_link=True,
            no_cart=True,
            webhooks=self.webhook_secret is not None,
            payouts=True,
            payment_lookup=True,
            currencies=self.currencies,
        )
