"""The sandbox ledger: every resource, composed from the per-resource mixins."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .balance import BalanceMixin
from .base import Ctx, Ids
from .checkout import CheckoutMixin
from .clock import SandboxClock
from .customers import CustomersMixin
from .errors import invalid
from .params import Params
from .payments import PaymentsMixin
from .settings import SandboxSettings


class Ledger(PaymentsMixin, CustomersMixin, CheckoutMixin, BalanceMixin):
    def __init__(self, settings: SandboxSettings, clock: SandboxClock, ids: Ids):
        super().__init__(settings, clock, ids)
        for endpoint in settings.webhook_endpoints:
            self._new_webhook_endpoint(endpoint.url, list(endpoint.enabled_events), secret=endpoint.secret)

    def _tick_resources(self, now: int) -> None:
        self._tick_payments(now)
        self._tick_checkout(now)
        self._tick_balance(now)

    # ================================================================ Events
    def retrieve_event(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only(set())
        return self.render(self.get("event", "event", id))

    def list_events(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        kind = p.str("type")
        types = set(p.str_list("types"))
        if kind is not None and types:
            raise invalid("You may only specify one of these parameters: type, types.", param="types")

        def matches(event: dict[str, Any]) -> bool:
            if kind is not None:
                if kind.endswith(".*"):
                    return event["type"].startswith(kind[:-1])
                return event["type"] == kind
            return not types or event["type"] in types

        return self.list_response("event", p, "/v1/events", matches, extra={"type", "types"})

    # ================================================================ Webhook endpoints
    def _new_webhook_endpoint(self, url: str, events: list[str], *, secret: str | None = None,
                              description: str | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        endpoint = self.store(
            {
                "id": self.ids.new("we"),
                "object": "webhook_endpoint",
                "api_version": None,
                "application": None,
                "created": self.now(),
                "description": description,
                "enabled_events": events,
                "livemode": False,
                "metadata": metadata or {},
                "status": "enabled",
                "url": url,
            }
        )
        self.internal[endpoint["id"]]["secret"] = secret or "whsec_" + self.ids.new("x", 32)[2:]
        return endpoint

    def endpoint_secret(self, endpoint_id: str) -> str:
        return self.internal[endpoint_id]["secret"]

    def _endpoint_params(self, p: Params, *, creating: bool) -> dict[str, Any]:
        url = p.str("url", required=creating, max_length=5000)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise invalid(f"Invalid URL: {url}", param="url", code="url_invalid")
        events = p.str_list("enabled_events")
        if creating and not events:
            raise invalid("Missing required param: enabled_events.", param="enabled_events", code="parameter_missing")
        return {
            "url": url,
            "enabled_events": events or None,
            "description": p.str("description"),
            "metadata": p.metadata(),
            "disabled": p.bool("disabled"),
        }

    def create_webhook_endpoint(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only({"url", "enabled_events", "description", "metadata", "api_version", "expand", "connect"})
        fields = self._endpoint_params(p, creating=True)
        p.str("api_version")
        p.bool("connect")
        endpoint = self._new_webhook_endpoint(fields["url"], fields["enabled_events"], description=fields["description"],
                                              metadata=fields["metadata"])  # fmt: skip
        body = self.render(endpoint, p.expand())
        body["secret"] = self.endpoint_secret(endpoint["id"])  # only shown on creation, as in Stripe
        return body

    def retrieve_webhook_endpoint(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("webhook_endpoint", "webhook endpoint", id), p.expand())

    def update_webhook_endpoint(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        endpoint = self.get("webhook_endpoint", "webhook endpoint", id)
        p.only({"url", "enabled_events", "description", "metadata", "disabled", "expand"})
        fields = self._endpoint_params(p, creating=False)
        for key in ("url", "enabled_events", "description"):
            if fields[key] is not None:
                endpoint[key] = fields[key]
        if fields["metadata"] is not None:
            endpoint["metadata"] = {**endpoint["metadata"], **fields["metadata"]} if fields["metadata"] else {}
        if fields["disabled"] is not None:
            endpoint["status"] = "disabled" if fields["disabled"] else "enabled"
        return self.render(endpoint, p.expand())

    def delete_webhook_endpoint(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        self.get("webhook_endpoint", "webhook endpoint", id)
        p.only(set())
        del self.objects[id]
        self.order["webhook_endpoint"].remove(id)
        return {"id": id, "object": "webhook_endpoint", "deleted": True}

    def list_webhook_endpoints(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        return self.list_response("webhook_endpoint", p, "/v1/webhook_endpoints")
