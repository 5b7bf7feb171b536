"""Settings of one Business Central connection (one company in one environment).

From the environment (``PAYWEAVE_BC_TENANT_ID=...``), the config file, or keyword arguments.
The token and API URLs are settings so the bundled sandbox can stand in for Entra ID and BC:
``token_url="http://127.0.0.1:8765/{tenant}/oauth2/v2.0/token"``,
``api_base_url="http://127.0.0.1:8765"``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .conventions import CUSTOMER_PAYMENT_AMOUNT_SIGN

DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
DEFAULT_API_BASE_URL = "https://api.businesscentral.dynamics.com"
DEFAULT_SCOPE = "https://api.businesscentral.dynamics.com/.default"


class BusinessCentralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYWEAVE_BC_", extra="forbid", frozen=True)

    tenant_id: str = Field(description="Entra tenant id (GUID) or domain.")
    environment: str = Field("production", description="BC environment name.")
    company_id: str = Field("", description="The BC company (GUID) this connection syncs; empty until picked.")
    client_id: str = Field(description="Entra application (client) id.")
    client_secret: SecretStr = Field(description="Entra client secret.")
    token_url: str = Field(DEFAULT_TOKEN_URL, description="Token endpoint; '{tenant}' is replaced.")
    api_base_url: str = Field(DEFAULT_API_BASE_URL, description="BC API host (sandbox: the loopback URL).")
    scope: str = DEFAULT_SCOPE
    include_tenant_in_url: bool = Field(True, description="Use /v2.0/{tenant}/{env}/... (safe for multi-tenant apps).")
    companion_api_path: str = Field("payweave/payments/v1.0", description="publisher/group/version of the companion API.")

    # HTTP behaviour
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    write_timeout: float = 60.0
    pool_timeout: float = 60.0
    max_attempts: int = Field(5, ge=1, le=20, description="Attempts per request incl. the first (429/5xx/timeouts).")
    max_retry_after: float = Field(120.0, description="Longest Retry-After honoured before giving up.")
    max_concurrent_requests: int = Field(5, ge=1, description="Client-side cap (BC: 5 concurrent per user).")
    max_requests_per_window: int = Field(6000, ge=1, description="Client-side cap (BC: 6,000 per 5 minutes).")
    window_seconds: float = Field(300.0, gt=0)
    page_size: int = Field(1000, ge=1, le=20000, description="Prefer: odata.maxpagesize.")
    token_refresh_margin_seconds: float = Field(300.0, ge=0, description="Refresh the token this long before expiry.")

    # write-back
    payment_amount_sign: Literal[-1, 1] = Field(
        CUSTOMER_PAYMENT_AMOUNT_SIGN,
        description="Sign of customer payment amounts on journal lines (-1: a credit, as BC's cash receipts; "
        "unconfirmed in the reference, so it is this one setting: PAYWEAVE_BC_PAYMENT_AMOUNT_SIGN).",
    )
    payments_journal_code: str = Field("PAYWEAVE", max_length=10, description="Customer payment journal batch.")
    deposits_journal_code: str = Field("PAYWEAVE", max_length=10, description="General journal batch for deposits.")
    shipping_item_numbers: tuple[str, ...] = Field((), description="Item numbers that are shipping costs.")

    @field_validator("api_base_url", "token_url")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("payments_journal_code", "deposits_journal_code")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()
