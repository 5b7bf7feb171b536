"""Settings of the ERP sync: ``PAYWEAVE_SYNC_*`` environment variables (or keyword arguments)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: BC's hard maximum of entities per page (reference §7; 413 above it).
MAX_PAGE_SIZE = 20_000


class SyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYWEAVE_SYNC_", extra="ignore", frozen=True)

    page_size: int = Field(1000, ge=1, le=MAX_PAGE_SIZE, description="Records per page asked of the ERP.")
    recent_days: int = Field(365, ge=1, description="The initial sync's first window: changes of the last N days.")
    delta_overlap_seconds: float = Field(
        5.0, ge=0,
        description="Each delta re-reads this much before the last high-water mark, so a record whose "
        "lastModifiedDateTime was stamped before a slow commit became visible is not missed (re-reads are "
        "idempotent).",
    )
    poll_interval_seconds: float = Field(900.0, gt=0, description="Delta polling interval without webhooks.")
    poll_interval_with_webhooks_seconds: float = Field(
        3600.0, gt=0, description="Fallback delta polling interval while webhook subscriptions are active."
    )
    subscription_renew_margin_seconds: float = Field(
        20 * 3600.0, gt=0,
        description="Renew subscriptions this long before they expire (BC: after 3 days; the BC plugin renews "
        "those expiring within a day, so keep this below 24 h).",
    )
    pdfs: Literal["all", "open", "none"] = Field(
        "open",
        description="Which posted invoices get their PDF stored: all, only open (unpaid) ones, or none. Each PDF "
        "costs about three ERP requests, which counts against BC's 6,000 requests per 5 minutes.",
    )
    pdf_max_attempts: int = Field(3, ge=1, description="Give up on an invoice's PDF after this many failures.")
    lease_seconds: float = Field(120.0, gt=0, description="A sync run's lease, renewed on every page commit.")
    document_events: bool = Field(True, description="Pull companion-API document events (DESIGN 5a) in deltas.")
    writeback_lease_seconds: float = Field(
        900.0, gt=0,
        description="How long one worker owns a write-back call; longer than the plugin's worst case (its own "
        "bounded retries), so a second worker never records the same entry at the same time.",
    )
