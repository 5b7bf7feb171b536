"""BC webhook subscriptions (reference §6), from the subscriber's side.

* :func:`ensure_subscriptions` creates missing subscriptions and renews those expiring within
  ``renew_within`` (PATCH with If-Match; BC repeats the validation handshake), and returns the
  earliest expiry so the caller can schedule the next renewal (they last 3 days).
* :func:`handshake_token` answers BC's validation call: return the ``validationToken`` query
  value as ``text/plain`` with status 200.
* :func:`parse_notification` checks ``clientState`` (constant-time) and returns the
  notification items; :func:`entities_to_sync` maps them to what to delta-poll now.
  A ``collection`` item means "more than 1,000 changes": poll that entity set.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from payweave.hooks.errors import WebhookVerificationFailed
from payweave.hooks.models import SyncEntity

from . import bcjson
from .client import BCClient, BCCompany, parse_bc_datetime
from .errors import BCError, BCNotFound

#: standard API sets this connector syncs, and the companion set -> SyncEntity
STANDARD_RESOURCES: dict[str, SyncEntity] = {
    "customers": SyncEntity.CUSTOMERS,
    "salesInvoices": SyncEntity.INVOICES,
    "salesCreditMemos": SyncEntity.CREDIT_MEMOS,
}
COMPANION_RESOURCES: dict[str, SyncEntity] = {"salesDocuments": SyncEntity.DOCUMENT_EVENTS}

_RESOURCE_RE = re.compile(r"companies\((?P<company>[0-9a-fA-F-]{36})\)/(?P<set>[A-Za-z]+)")


@dataclass(frozen=True)
class Notification:
    subscription_id: str
    client_state: str
    resource: str
    change_type: str  # created | updated | deleted | collection
    last_modified: datetime | None
    company_id: str | None
    entity_set: str | None


def _resource(api: str, company_id: str, entity_set: str) -> str:
    return f"/api/{api}/companies({company_id})/{entity_set}"


def _norm(resource: str) -> str:
    return resource.strip().lstrip("/").lower()


def ensure_subscriptions(company: BCCompany, notification_url: str, client_state: str, *,
                         renew_within: timedelta = timedelta(days=1), include_companion: bool = True,
                         now: datetime | None = None) -> datetime | None:
    client = company.client
    now = now or datetime.now(UTC)
    plans = [("v2.0", client.api_root(), s) for s in STANDARD_RESOURCES]
    if include_companion:
        plans += [(client.settings.companion_api_path, client.companion_root(), s) for s in COMPANION_RESOURCES]
    earliest: datetime | None = None
    existing_by_root: dict[str, list[dict[str, Any]]] = {}
    for api, root, entity_set in plans:
        if root not in existing_by_root:
            existing_by_root[root] = list(client.iter_entities(f"{root}/subscriptions"))
        wanted = _resource(api, company.id, entity_set)
        match = next((s for s in existing_by_root[root]
                      if _norm(s.get("resource", "")) == _norm(wanted) and s.get("notificationUrl") == notification_url),
                     None)
        if match is None:
            created = bcjson.loads(client.request(
                "POST", f"{root}/subscriptions",
                body={"notificationUrl": notification_url, "resource": wanted, "clientState": client_state},
            ).content)
            expiry = parse_bc_datetime(created["expirationDateTime"])
        else:
            expiry = parse_bc_datetime(match["expirationDateTime"])
            if expiry - now <= renew_within or match.get("clientState") != client_state:
                renewed = bcjson.loads(client.request(
                    "PATCH", f"{root}/subscriptions('{match['subscriptionId']}')",
                    body={"notificationUrl": notification_url, "clientState": client_state},
                    headers={"If-Match": match["@odata.etag"]},
                ).content)
                expiry = parse_bc_datetime(renewed["expirationDateTime"])
        earliest = expiry if earliest is None or expiry < earliest else earliest
    return earliest


def delete_subscriptions(client: BCClient, notification_url: str) -> int:
    """Delete every subscription (standard and companion) that delivers to ``notification_url``."""
    deleted = 0
    for root in (client.api_root(), client.companion_root()):
        for sub in list(client.iter_entities(f"{root}/subscriptions")):
            if sub.get("notificationUrl") != notification_url:
                continue
            try:
                client.request("DELETE", f"{root}/subscriptions('{sub['subscriptionId']}')",
                               headers={"If-Match": sub["@odata.etag"]})
                deleted += 1
            except BCNotFound:
                pass
    return deleted


def handshake_token(query: dict[str, str]) -> str | None:
    """The body to answer BC's validation request with (None when it is not one)."""
    token = query.get("validationToken")
    return token if token else None


def parse_notification(body: bytes, client_state: str) -> list[Notification]:
    try:
        data = bcjson.loads(body)
    except ValueError:
        raise WebhookVerificationFailed("The BC notification is not valid JSON.") from None
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise WebhookVerificationFailed("The BC notification has no 'value' items.")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise WebhookVerificationFailed("A BC notification item is not an object.")
        state = str(item.get("clientState") or "")
        if not hmac.compare_digest(state.encode(), client_state.encode()):
            raise WebhookVerificationFailed("The BC notification carries a wrong clientState.")
        resource = str(item.get("resource") or "")
        m = _RESOURCE_RE.search(resource)
        lm = item.get("lastModifiedDateTime")
        try:
            last_modified = parse_bc_datetime(str(lm)) if lm else None
        except ValueError:
            last_modified = None
        out.append(Notification(
            subscription_id=str(item.get("subscriptionId") or ""), client_state=state, resource=resource,
            change_type=str(item.get("changeType") or ""), last_modified=last_modified,
            company_id=m.group("company").lower() if m else None, entity_set=m.group("set") if m else None,
        ))
    return out


def entities_to_sync(notifications: list[Notification]) -> list[SyncEntity]:
    """Which entities to delta-poll now (in a stable order, each once)."""
    wanted: list[SyncEntity] = []
    for n in notifications:
        entity = STANDARD_RESOURCES.get(n.entity_set or "") or COMPANION_RESOURCES.get(n.entity_set or "")
        if entity is not None and entity not in wanted:
            wanted.append(entity)
    return wanted


__all__ = ["Notification", "ensure_subscriptions", "delete_subscriptions", "handshake_token", "parse_notification",
           "entities_to_sync", "BCError"]
