"""API keys of BC companies: created and revoked with ``payweave keys``, checked by the service.

A key is ``pwk_<id>_<secret>``: the id names the row, the secret is shown once at creation and
stored only as ``HMAC-SHA256(api_key_pepper, "<id>.<secret>")``, compared in constant time.
Each key is bound to one company; everything the service does for a request happens in that
company (another company's ids answer 404, like ids that do not exist).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from payweave.core.errors import CoreError
from payweave.core.jobs.clock import SYSTEM_CLOCK, Clock
from payweave.core.store import Store
from payweave.core.store.service_models import ApiKeyRow

PREFIX = "pwk"
_KEY = re.compile(r"^pwk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
_COMPANY = re.compile(r"^[^\x00-\x1f]{1,64}$")
#: ``last_used_at`` is written at most this often per key (no write on every request).
TOUCH_INTERVAL = timedelta(minutes=1)


class ApiKeyNotFound(CoreError):
    code = "api_key_not_found"
    http_status = 404


class InvalidCompany(CoreError):
    code = "invalid_company"
    http_status = 422


class ApiKeyView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    company_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class CreatedApiKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: ApiKeyView
    secret: str = Field(description="The whole API key; shown once, never stored.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key and its company."""

    key_id: str
    company_id: str
    name: str

    @property
    def actor(self) -> str:
        return f"api-key:{self.key_id}"


def _digest(pepper: str, key_id: str, secret: str) -> str:
    return hmac.new(pepper.encode(), f"{key_id}.{secret}".encode(), hashlib.sha256).hexdigest()


def _view(row: ApiKeyRow) -> ApiKeyView:
    return ApiKeyView(id=row.id, company_id=row.company_id, name=row.name, created_at=row.created_at,
                      revoked_at=row.revoked_at, last_used_at=row.last_used_at)


class ApiKeys:
    def __init__(self, store: Store, pepper: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if not pepper:
            raise ValueError("the API key pepper must not be empty")
        self.store = store
        self.pepper = pepper
        self.clock = clock

    def create(self, company_id: str, *, name: str = "") -> CreatedApiKey:
        company_id = company_id.strip()
        if not _COMPANY.match(company_id):
            raise InvalidCompany("The company id must be 1 to 64 characters without control characters.",
                                 details={"company_id_length": len(company_id)})
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        row = ApiKeyRow(id=key_id, company_id=company_id, name=name[:200], secret_hash=_digest(self.pepper, key_id, secret),
                        created_at=now)
        with self.store.transaction() as s:
            s.add(row)
            s.flush()
            view = _view(row)
        return CreatedApiKey(key=view, secret=f"{PREFIX}_{key_id}_{secret}")

    def list(self, company_id: str | None = None, *, include_revoked: bool = True) -> list[ApiKeyView]:
        query = select(ApiKeyRow)
        if company_id is not None:
            query = query.where(ApiKeyRow.company_id == company_id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self.store.transaction() as s:
            return [_view(r) for r in s.scalars(query.order_by(ApiKeyRow.company_id, ApiKeyRow.created_at)).all()]

    def revoke(self, key_id: str) -> ApiKeyView:
        key_id = key_id.removeprefix(f"{PREFIX}_").split("_", 1)[0]
        with self.store.transaction() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise ApiKeyNotFound(f"There is no API key {key_id}.", details={"key_id": key_id})
            if row.revoked_at is None:
                row.revoked_at = self.clock.now()
            return _view(row)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a valid, unrevoked key; None for anything else (never says why)."""
        match = _KEY.match(presented.strip())
        if match is None:
            # spend the same HMAC work as a real check, so timing says nothing about the format
            hmac.compare_digest(_digest(self.pepper, "0" * 16, "x"), "0" * 64)
            return None
        key_id, secret = match.groups()
        expected = _digest(self.pepper, key_id, secret)
        with self.store.transaction() as s:
            row = s.get(ApiKeyRow, key_id)
            stored = row.secret_hash if row is not None else "0" * 64
            valid = hmac.compare_digest(expected, stored) and row is not None and row.revoked_at is None
            if not valid:
                return None
            assert row is not None
            now = self.clock.now()
            if row.last_used_at is None or now - row.last_used_at > TOUCH_INTERVAL:
                row.last_used_at = now
            return Principal(key_id=row.id, company_id=row.company_id, name=row.name)


__all__ = ["ApiKeyNotFound", "ApiKeyView", "ApiKeys", "CreatedApiKey", "InvalidCompany", "Principal"]
