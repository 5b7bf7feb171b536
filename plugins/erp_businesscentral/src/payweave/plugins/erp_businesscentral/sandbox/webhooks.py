"""BC webhooks in the sandbox: subscriptions, the validation handshake, batched notifications.

Rules (reference §6): create and renew run the handshake (the subscriber must answer 200 with
the ``validationToken`` as plain text); subscriptions expire after 3 days; notifications are
batched (first change + ``webhook_delay_seconds``, BC: 30 s); more than
``webhook_collection_threshold`` (BC: 1,000) changes for one subscription in a batch become one
``collection`` item; a subscriber answering 408, 429 or 5xx (or not answering) is retried for up
to 36 hours, any other non-2xx answer deletes the subscription.

Delivery runs in a background thread (``webhook_delivery="thread"``) or only on
:meth:`WebhookManager.flush` (``"manual"``) for deterministic tests.
"""
from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from .. import bcjson
from ..conventions import (
    WEBHOOK_COLLECTION_FILTER_FIELD,
    WEBHOOK_HANDSHAKE_METHOD,
    WEBHOOK_RESOURCE_LEADING_SLASH,
)
from .errors import MISSING_ETAG, BCApiError, entity_changed
from .model import fmt_ms

if TYPE_CHECKING:
    from .state import SandboxState

EXPIRY_SECONDS = 3 * 24 * 3600
RETRY_HORIZON_SECONDS = 36 * 3600
MAX_SUBSCRIPTIONS = 200

WEBHOOK_SETS: dict[str, frozenset[str]] = {
    "v2.0": frozenset({
        "accounts", "companyInformation", "countriesRegions", "currencies", "customerPaymentJournals", "customers",
        "dimensions", "employees", "generalLedgerEntries", "itemCategories", "items", "journals", "paymentMethods",
        "paymentTerms", "purchaseInvoices", "salesCreditMemos", "salesInvoices", "salesOrders", "salesQuotes",
        "shipmentMethods", "unitsOfMeasure", "vendors",
    }),
    "payweave/payments/v1.0": frozenset({"salesDocuments"}),
}

_RESOURCE_RE = re.compile(
    r"^/?(?:.*?/)?api/(?P<api>v2\.0|payweave/payments/v1\.0)/companies\((?P<company>[0-9a-fA-F-]{36})\)/(?P<set>[A-Za-z]+)/?$"
)


@dataclass
class Subscription:
    id: str
    notification_url: str
    resource: str
    api: str
    company_id: str
    entity_set: str
    client_state: str
    user_id: str
    created_ms: int
    lm_ms: int
    expires_ms: int
    ver: int = 1

    @property
    def etag(self) -> str:
        raw = f"{self.ver};{self.lm_ms};".encode()
        return 'W/"' + base64.b64encode(raw).decode() + '"'

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.etag": self.etag,
            "subscriptionId": self.id,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "userId": self.user_id,
            "lastModifiedDateTime": fmt_ms(self.lm_ms),
            "clientState": self.client_state,
            "expirationDateTime": fmt_ms(self.expires_ms),
            "timestamp": self.lm_ms * 10_000,
            "systemCreatedAt": fmt_ms(self.created_ms),
            "systemCreatedBy": self.user_id,
            "systemModifiedAt": fmt_ms(self.lm_ms),
            "systemModifiedBy": self.user_id,
        }


@dataclass
class _Pending:
    first_at: float
    items: dict[tuple[str, str], int] = field(default_factory=dict)  # (entity id, changeType) -> lm ms
    next_attempt: float = 0.0
    first_failure: float | None = None


@dataclass
class Delivery:
    url: str
    status: int | None
    subscription_ids: list[str]
    items: list[dict[str, Any]]
    outcome: str  # "delivered" | "retry" | "deleted" | "expired"


async def handshake(url: str, *, timeout: float = 10.0) -> tuple[bool, str]:
    """Call ``url?validationToken=...``; succeed on 200 with exactly the token as body."""
    token = secrets.token_urlsafe(24)
    sep = "&" if "?" in url else "?"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.request(WEBHOOK_HANDSHAKE_METHOD, f"{url}{sep}validationToken={quote(token)}")
    except httpx.HTTPError as exc:
        return False, f"The notification URL could not be reached ({type(exc).__name__})."
    if response.status_code != 200:
        return False, f"The notification URL answered {response.status_code} to the validation request."
    body = response.text.strip()
    if body.startswith('"') and body.endswith('"'):
        body = body[1:-1]
    if body != token:
        return False, "The notification URL did not return the validation token."
    return True, ""


class WebhookManager:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._lock = threading.RLock()
        self._deliver_lock = threading.Lock()
        self.subscriptions: dict[str, Subscription] = {}
        self._index: dict[tuple[str, str, str], list[str]] = {}
        self._pending: dict[str, _Pending] = {}
        self.deliveries: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ subscriptions
    def parse_resource(self, api: str, resource: str) -> tuple[str, str]:
        m = _RESOURCE_RE.match(resource or "")
        if not m or m.group("api") != api:
            raise BCApiError(400, "BadRequest", f"The resource '{resource}' is not a valid API resource for webhooks.")
        company_id = m.group("company").lower()
        self.state.company(company_id)
        entity_set = m.group("set")
        if entity_set not in WEBHOOK_SETS[api]:
            raise BCApiError(400, "BadRequest", f"The entity set '{entity_set}' does not support webhooks.")
        return company_id, entity_set

    def _expired(self, sub: Subscription) -> bool:
        return sub.expires_ms <= self.state.now_ms()

    def _drop(self, sub_id: str) -> None:
        sub = self.subscriptions.pop(sub_id, None)
        self._pending.pop(sub_id, None)
        if sub is not None:
            key = (sub.api, sub.company_id, sub.entity_set)
            ids = self._index.get(key, [])
            if sub_id in ids:
                ids.remove(sub_id)

    def _sweep(self) -> None:
        for sub in [s for s in self.subscriptions.values() if self._expired(s)]:
            self._drop(sub.id)

    def new_subscription(self, api: str, body: dict[str, Any], user_id: str) -> Subscription:
        """Validate a create request (the handshake runs afterwards, then :meth:`add`)."""
        for key in body:
            if key not in ("notificationUrl", "resource", "clientState", "subscriptionId", "@odata.etag"):
                raise BCApiError(400, "BadRequest", f"The property '{key}' does not exist on type 'Microsoft.NAV.subscriptions'.")
        url = body.get("notificationUrl")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise BCApiError(400, "BadRequest", "The notificationUrl must be an absolute http(s) URL.")
        client_state = body.get("clientState", "") or ""
        if not isinstance(client_state, str) or len(client_state) > 2048:
            raise BCApiError(400, "Application_StringExceededLength",
                             "The length of the clientState must be less than or equal to 2048 characters.")
        company_id, entity_set = self.parse_resource(api, body.get("resource", ""))
        now = self.state.now_ms()
        with self._lock:
            self._sweep()
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise BCApiError(400, "Application_DialogException",
                                 f"You have reached the maximum number of webhook subscriptions ({MAX_SUBSCRIPTIONS}).")
            for sub in self.subscriptions.values():
                if sub.notification_url == url and (sub.api, sub.company_id, sub.entity_set) == (api, company_id, entity_set):
                    raise BCApiError(400, "Internal_EntityWithSameKeyExists",
                                     "A subscription for this notification URL and resource already exists.")
        return Subscription(
            id=secrets.token_hex(16), notification_url=url, resource=body["resource"], api=api, company_id=company_id,
            entity_set=entity_set, client_state=client_state, user_id=user_id, created_ms=now, lm_ms=now,
            expires_ms=now + EXPIRY_SECONDS * 1000,
        )

    def add(self, sub: Subscription) -> Subscription:
        with self._lock:
            self.subscriptions[sub.id] = sub
            self._index.setdefault((sub.api, sub.company_id, sub.entity_set), []).append(sub.id)
        return sub

    def get(self, sub_id: str) -> Subscription:
        with self._lock:
            self._sweep()
            sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise BCApiError(404, "Internal_RecordNotFound",
                             f"The subscription does not exist. Identification fields and values: Subscription Id='{sub_id}'")
        return sub

    def list(self, api: str) -> list[Subscription]:
        with self._lock:
            self._sweep()
            return [s for s in self.subscriptions.values() if s.api == api]

    def check_etag(self, sub: Subscription, if_match: str | None) -> None:
        if not if_match:
            raise MISSING_ETAG
        if if_match.strip() != "*" and if_match.strip() != sub.etag:
            raise entity_changed(self.state.stale_etag_status)

    def renew(self, sub: Subscription, body: dict[str, Any]) -> Subscription:
        for key in body:
            if key not in ("notificationUrl", "clientState", "resource", "subscriptionId", "@odata.etag"):
                raise BCApiError(400, "BadRequest", f"The property '{key}' does not exist on type 'Microsoft.NAV.subscriptions'.")
        if "resource" in body and body["resource"] != sub.resource:
            self.parse_resource(sub.api, body["resource"])
        now = self.state.now_ms()
        with self._lock:
            if "notificationUrl" in body:
                sub.notification_url = body["notificationUrl"]
            if "clientState" in body:
                sub.client_state = body["clientState"] or ""
            sub.expires_ms = now + EXPIRY_SECONDS * 1000
            sub.lm_ms = now
            sub.ver += 1
        return sub

    def delete(self, sub: Subscription) -> None:
        with self._lock:
            self._drop(sub.id)

    # ------------------------------------------------------------------ changes
    def record(self, api: str, company_id: str, entity_set: str, entity_id: str, change: str, lm_ms: int) -> None:
        with self._lock:
            ids = self._index.get((api, company_id, entity_set))
            if not ids:
                return
            now = time.monotonic()
            for sub_id in ids:
                pending = self._pending.get(sub_id)
                if pending is None:
                    pending = self._pending[sub_id] = _Pending(first_at=now)
                key = (entity_id, change)
                pending.items[key] = max(lm_ms, pending.items.get(key, 0))

    def pending_count(self) -> int:
        with self._lock:
            return sum(len(p.items) for p in self._pending.values())

    def _items_for(self, sub: Subscription, items: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
        base = f"{'/' if WEBHOOK_RESOURCE_LEADING_SLASH else ''}api/{sub.api}/companies({sub.company_id})/{sub.entity_set}"
        expires = fmt_ms(sub.expires_ms)
        if len(items) > self.state.webhook_collection_threshold:
            first = min(items.values())
            since = fmt_ms(first - 1)
            return [{
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "expirationDateTime": expires,
                "resource": f"{base}?$filter={quote(WEBHOOK_COLLECTION_FILTER_FIELD + ' gt ' + since, safe='$:')}",
                "changeType": "collection",
                "lastModifiedDateTime": fmt_ms(max(items.values())),
            }]
        ordered = sorted(items.items(), key=lambda kv: kv[1])
        return [{
            "subscriptionId": sub.id,
            "clientState": sub.client_state,
            "expirationDateTime": expires,
            "resource": f"{base}({entity_id})",
            "changeType": change,
            "lastModifiedDateTime": fmt_ms(lm),
        } for (entity_id, change), lm in ordered]

    def flush(self, *, force: bool = True) -> list[Delivery]:
        """Deliver pending notifications: all of them (``force``) or those whose batching
        window and retry delay have passed. Returns what was attempted."""
        with self._deliver_lock:
            now = time.monotonic()
            groups: dict[str, list[tuple[Subscription, dict[tuple[str, str], int]]]] = {}
            expired: list[Delivery] = []
            with self._lock:
                for sub_id, pending in list(self._pending.items()):
                    sub = self.subscriptions.get(sub_id)
                    if sub is None:
                        del self._pending[sub_id]
                        continue
                    if self._expired(sub):
                        self._drop(sub_id)
                        expired.append(Delivery(sub.notification_url, None, [sub_id], [], "expired"))
                        continue
                    if not force and (now - pending.first_at < self.state.webhook_delay_seconds or now < pending.next_attempt):
                        continue
                    if not pending.items:
                        continue
                    groups.setdefault(sub.notification_url, []).append((sub, dict(pending.items)))
            results = expired
            if not groups:
                return results
            with httpx.Client(timeout=10.0) as http:
                self._deliver(http, groups, now, results)
            return results

    def _deliver(self, http: httpx.Client, groups: dict[str, list[tuple[Subscription, dict[tuple[str, str], int]]]],
                 now: float, results: list[Delivery]) -> None:
        for url, group in groups.items():
            items = [item for sub, snap in group for item in self._items_for(sub, snap)]
            status: int | None
            try:
                response = http.post(url, content=bcjson.dumps({"value": items}).encode(),
                                       headers={"Content-Type": "application/json"})
                status = response.status_code
            except httpx.HTTPError:
                status = None
            ids = [sub.id for sub, _ in group]
            with self._lock:
                if status is not None and 200 <= status < 300:
                    outcome = "delivered"
                    for sub, snap in group:
                        pending = self._pending.get(sub.id)
                        if pending is None:
                            continue
                        for key, lm in snap.items():
                            if pending.items.get(key) == lm:
                                del pending.items[key]
                        if not pending.items:
                            del self._pending[sub.id]
                        else:
                            pending.first_at = time.monotonic()
                elif status is None or status in (408, 429) or status >= 500:
                    outcome = "retry"
                    for sub, _ in group:
                        pending = self._pending.get(sub.id)
                        if pending is None:
                            continue
                        pending.first_failure = pending.first_failure or now
                        pending.next_attempt = time.monotonic() + self.state.webhook_retry_seconds
                        if time.monotonic() - pending.first_failure > RETRY_HORIZON_SECONDS:
                            del self._pending[sub.id]
                else:
                    outcome = "deleted"
                    for sub_id in ids:
                        self._drop(sub_id)
            delivery = Delivery(url, status, ids, items, outcome)
            self.deliveries.append(delivery)
            results.append(delivery)


    # ------------------------------------------------------------------ background delivery
    def start(self) -> None:
        if self.state.webhook_delivery != "thread" or (self._thread and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bc-sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            interval = max(0.01, min(0.25, self.state.webhook_delay_seconds / 4))
            if self._stop.wait(interval):
                return
            try:
                self.flush(force=False)
            except Exception:  # pragma: no cover - keep delivering after a subscriber bug
                time.sleep(interval)
