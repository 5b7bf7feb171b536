"""Customers, PaymentMethods, SetupIntents and mandates (saved cards for recurring charges)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .base import Ctx, LedgerBase
from .cards import TEST_CARDS, TestCard
from .errors import StripeError, invalid, missing, state_error
from .params import Params

CUSTOMER_FIELDS = {"email", "name", "description", "metadata", "phone", "payment_method", "invoice_settings", "expand"}
SETUP_CREATE = {
    "customer", "payment_method", "usage", "confirm", "metadata", "description", "payment_method_types",
    "automatic_payment_methods", "return_url", "mandate_data", "expand",
}  # fmt: skip
SETUP_CONFIRM = {"payment_method", "mandate_data", "return_url", "expand"}
_CLAUSE = re.compile(
    r"^(?:metadata\[['\"](?P<meta>[^'\"]+)['\"]\]|(?P<field>email|name|phone)):['\"](?P<value>[^'\"]*)['\"]$"
)
SETUP_CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


class CustomersMixin(LedgerBase):
    # ================================================================ PaymentMethods
    def resolve_payment_method(self, value: str, param: str) -> str:
        """Validate a PaymentMethod reference (a saved ``pm_...`` or a test name like ``pm_card_visa``)."""
        if value in TEST_CARDS or self.find("payment_method", value) is not None:
            return value
        raise missing("PaymentMethod", value, param=param)

    def materialize_payment_method(self, value: str) -> dict[str, Any]:
        """Return the PaymentMethod; a test name creates a fresh ``pm_...`` like Stripe test mode."""
        if value not in TEST_CARDS:
            return self.objects[value]
        card = TEST_CARDS[value]
        year = dt.datetime.fromtimestamp(self.now(), dt.UTC).year
        pm = self.store(
            {
                "id": self.ids.new("pm"),
                "object": "payment_method",
                "allow_redisplay": "unspecified",
                "billing_details": {"address": None, "email": None, "name": None, "phone": None},
                "card": {
                    "brand": card.brand,
                    "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
                    "country": card.country,
                    "display_brand": card.brand,
                    "exp_month": 12,
                    "exp_year": year + 3,
                    "funding": card.funding,
                    "last4": card.last4,
                    "networks": {"available": [card.brand], "preferred": None},
                },
                "created": self.now(),
                "customer": None,
                "livemode": False,
                "metadata": {},
                "type": "card",
            }
        )
        self.internal[pm["id"]]["card"] = card
        return pm

    def test_card(self, pm_id: str) -> TestCard:
        return self.internal[pm_id]["card"]

    def attach_payment_method(self, pm: dict[str, Any], customer_id: str, ctx: Ctx) -> None:
        pm["customer"] = customer_id
        self.emit("payment_method.attached", pm, ctx)

    def _decline_on_save(self, value: str) -> None:
        """Saving a card the issuer declines fails with a card error (before anything changes)."""
        card = TEST_CARDS[value] if value in TEST_CARDS else self.test_card(value)
        if card.decline is not None and card.declines_on_setup:
            raise StripeError(
                402, "card_error", card.decline.message, code=card.decline.code, decline_code=card.decline.decline_code,
            )  # fmt: skip

    def retrieve_payment_method(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("payment_method", "PaymentMethod", id), p.expand())

    def update_payment_method(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pm = self.get("payment_method", "PaymentMethod", id)
        p.only({"metadata", "expand", "allow_redisplay"})
        metadata = p.metadata()
        allow = p.enum("allow_redisplay", ("always", "limited", "unspecified"))
        expand = p.expand()
        if metadata is not None:
            pm["metadata"] = {**pm["metadata"], **metadata} if metadata else {}
        if allow is not None:
            pm["allow_redisplay"] = allow
        self.emit("payment_method.updated", pm, ctx)
        return self.render(pm, expand)

    def attach_payment_method_api(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        if id not in TEST_CARDS:
            self.get("payment_method", "PaymentMethod", id)
        p.only({"customer", "expand"})
        customer = p.str("customer", required=True)
        expand = p.expand()
        self.get("customer", "customer", customer or "", param="customer")
        existing = self.find("payment_method", id)
        if existing is not None and existing["customer"] not in (None, customer):
            raise invalid(
                "The payment method you provided has already been attached to a customer.", param="payment_method"
            )
        self._decline_on_save(id)
        pm = self.materialize_payment_method(id)
        if pm["customer"] is None:
            assert customer is not None
            self.attach_payment_method(pm, customer, ctx)
        return self.render(pm, expand)

    def detach_payment_method(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pm = self.get("payment_method", "PaymentMethod", id)
        p.only({"expand"})
        expand = p.expand()
        if pm["customer"] is None:
            raise state_error("The payment method you provided is not attached to a customer so detachment is impossible.",
                              code="payment_method_unexpected_state")  # fmt: skip
        pm["customer"] = None
        self.internal[pm["id"]].update(setup_done=False, consumed=True)
        for mandate_id in self.order["mandate"]:
            mandate = self.objects[mandate_id]
            if mandate["payment_method"] == pm["id"] and mandate["status"] == "active":
                mandate["status"] = "inactive"
                self.emit("mandate.updated", mandate, ctx, previous_attributes={"status": "active"})
        self.emit("payment_method.detached", pm, ctx)
        return self.render(pm, expand)

    def list_payment_methods(self, p: Params, ctx: Ctx, id: str | None = None) -> dict[str, Any]:
        customer = id or p.str("customer")
        if id is not None:
            self.get("customer", "customer", id)
        p.enum("type", ("card",))
        url = f"/v1/customers/{id}/payment_methods" if id else "/v1/payment_methods"
        return self.list_response(
            "payment_method",
            p,
            url,
            lambda o: o["customer"] is not None and (customer is None or o["customer"] == customer),
            extra={"customer", "type"},
        )

    # ================================================================ Customers
    def _customer_fields(self, p: Params) -> dict[str, Any]:
        p.only(CUSTOMER_FIELDS)
        fields: dict[str, Any] = {}
        for key in ("email", "name", "description", "phone"):
            if p.has(key):
                fields[key] = p.str(key, max_length=512)
        metadata = p.metadata()
        if metadata is not None:
            fields["metadata"] = metadata
        settings = p.sub("invoice_settings", {"default_payment_method"})
        default_pm = settings.str("default_payment_method")
        if default_pm is not None:
            self.resolve_payment_method(default_pm, "invoice_settings[default_payment_method]")
            fields["default_payment_method"] = default_pm
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
            fields["payment_method"] = pm_value
        return fields

    def create_customer(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        fields = self._customer_fields(p)
        expand = p.expand()
        if "default_payment_method" in fields and fields["default_payment_method"] != fields.get("payment_method"):
            raise invalid("The default payment method must be attached to this customer.",
                          param="invoice_settings[default_payment_method]")  # fmt: skip
        if "payment_method" in fields:
            self._check_owner_for_save(fields["payment_method"], "")
            self._decline_on_save(fields["payment_method"])
        customer = self.store(
            {
                "id": self.ids.new("cus", 14),
                "object": "customer",
                "address": None,
                "balance": 0,
                "created": self.now(),
                "currency": None,
                "default_source": None,
                "delinquent": False,
                "description": fields.get("description"),
                "email": fields.get("email"),
                "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
                "livemode": False,
                "metadata": fields.get("metadata", {}),
                "name": fields.get("name"),
                "phone": fields.get("phone"),
                "shipping": None,
            }
        )
        self.emit("customer.created", customer, ctx)
        self._customer_payment_methods(customer, fields, ctx)
        return self.render(customer, expand)

    def _customer_payment_methods(self, customer: dict[str, Any], fields: dict[str, Any], ctx: Ctx) -> None:
        if "payment_method" in fields:
            pm = self.materialize_payment_method(fields["payment_method"])
            if pm["customer"] is None:
                self.attach_payment_method(pm, customer["id"], ctx)
        if "default_payment_method" in fields:
            value = fields["default_payment_method"]
            if value == fields.get("payment_method"):
                value = pm["id"]
            customer["invoice_settings"]["default_payment_method"] = value

    def _check_owner_for_save(self, value: str, customer_id: str, *, required: bool = False) -> None:
        pm = self.find("payment_method", value)
        owner = pm["customer"] if pm is not None else None
        if owner not in (None, customer_id) or (required and owner != customer_id):
            raise invalid("The payment method must be attached to this customer.", param="invoice_settings[default_payment_method]"
                          if required else "payment_method")  # fmt: skip

    def retrieve_customer(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        if self.internal[id].get("deleted"):
            return {"id": id, "object": "customer", "deleted": True}
        return self.render(self.get("customer", "customer", id), p.expand())

    def update_customer(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        customer = self.get("customer", "customer", id)
        fields = self._customer_fields(p)
        expand = p.expand()
        if "payment_method" in fields:
            self._check_owner_for_save(fields["payment_method"], id)
            self._decline_on_save(fields["payment_method"])
        if "default_payment_method" in fields and fields["default_payment_method"] != fields.get("payment_method"):
            self._check_owner_for_save(fields["default_payment_method"], id, required=True)
        previous: dict[str, Any] = {}
        for key in ("email", "name", "description", "phone", "metadata"):
            if key in fields and customer[key] != fields[key]:
                previous[key] = customer[key]
                customer[key] = (
                    ({**customer["metadata"], **fields[key]} if fields[key] else {}) if key == "metadata" else fields[key]
                )
        self._customer_payment_methods(customer, fields, ctx)
        self.emit("customer.updated", customer, ctx, previous_attributes=previous)
        return self.render(customer, expand)

    def delete_customer(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        customer = self.get("customer", "customer", id)
        p.only(set())
        del self.objects[id]
        self.order["customer"].remove(id)
        self.internal[id]["deleted"] = True
        for pm_id in self.order["payment_method"]:
            if self.objects[pm_id]["customer"] == id:
                self.objects[pm_id]["customer"] = None
        self.emit("customer.deleted", customer, ctx)
        return {"id": id, "object": "customer", "deleted": True}

    def search_customers(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        """``GET /v1/customers/search``: Stripe's search language, the subset of clauses
        ``field:'value'`` (email, name, phone, metadata['key']) joined by ``AND``."""
        p.only({"query", "limit", "page", "expand"})
        query = p.str("query", required=True) or ""
        limit = p.int("limit", minimum=1, maximum=100) or 10
        if p.str("page") is not None:
            raise invalid("The sandbox returns every search result on the first page.", param="page")
        clauses = []
        for part in re.split(r"\s+AND\s+", query.strip()):
            match = _CLAUSE.match(part.strip())
            if match is None:
                raise invalid(f"Invalid search query: {part!r} (the sandbox supports field:'value' AND ...).",
                              param="query")  # fmt: skip
            clauses.append((match.group("meta"), match.group("field"), match.group("value")))

        def hit(customer: dict[str, Any]) -> bool:
            for meta, field_name, value in clauses:
                actual = customer["metadata"].get(meta) if meta is not None else customer.get(field_name)
                if actual != value:
                    return False
            return True

        found = [self.objects[i] for i in reversed(self.order["customer"]) if hit(self.objects[i])]
        return {
            "object": "search_result",
            "data": [self.render(c, [e[len("data."):] for e in p.expand() if e.startswith("data.")]) for c in found[:limit]],
            "has_more": len(found) > limit,
            "next_page": None,
            "url": "/v1/customers/search",
        }

    def list_customers(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        email = p.str("email")
        return self.list_response(
            "customer", p, "/v1/customers", lambda o: email is None or o["email"] == email, extra={"email"}
        )

    # ================================================================ SetupIntents
    def _mandate_data(self, p: Params) -> dict[str, Any] | None:
        data = p.sub("mandate_data", {"customer_acceptance"})
        if not data.tree:
            return None
        acceptance = data.sub("customer_acceptance", {"type", "accepted_at", "online", "offline"})
        kind = acceptance.enum("type", ("online", "offline"), required=True)
        online = acceptance.sub("online", {"ip_address", "user_agent"})
        result: dict[str, Any] = {"type": kind, "accepted_at": acceptance.int("accepted_at", minimum=0)}
        if kind == "online":
            result["online"] = {"ip_address": online.str("ip_address", required=True),
                                "user_agent": online.str("user_agent", required=True)}  # fmt: skip
        else:
            result["offline"] = {}
        return result

    def setup_intent(self, object_id: str) -> dict[str, Any]:
        return self.get("setup_intent", "setup_intent", object_id)

    def create_setup_intent(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only(SETUP_CREATE)
        customer = p.str("customer")
        if customer is not None:
            self.get("customer", "customer", customer, param="customer")
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
        usage = p.enum("usage", ("on_session", "off_session"), default="off_session")
        confirm = p.bool("confirm", default=False)
        metadata = p.metadata() or {}
        description = p.str("description", max_length=1000)
        p.str_list("payment_method_types")
        p.sub("automatic_payment_methods", {"enabled", "allow_redirects"})
        return_url = p.str("return_url")
        mandate_data = self._mandate_data(p)
        expand = p.expand()
        if confirm and pm_value is None:
            raise invalid("You cannot confirm this SetupIntent because it's missing a payment method.",
                          code="setup_intent_unexpected_state")  # fmt: skip
        self._check_pm_owner(pm_value, customer)  # type: ignore[attr-defined]
        # ---- execution
        pm_id = self.materialize_payment_method(pm_value)["id"] if pm_value is not None else None
        si = self.store(
            {
                "id": self.ids.new("seti"),
                "object": "setup_intent",
                "cancellation_reason": None,
                "client_secret": None,
                "created": self.now(),
                "customer": customer,
                "description": description,
                "last_setup_error": None,
                "latest_attempt": None,
                "livemode": False,
                "mandate": None,
                "metadata": metadata,
                "next_action": None,
                "payment_method": pm_id,
                "payment_method_types": ["card"],
                "status": "requires_confirmation" if pm_id else "requires_payment_method",
                "usage": usage,
            }
        )
        si["client_secret"] = f"{si['id']}_secret_{self.ids.new('s', 16)[2:]}"
        self.internal[si["id"]].update(return_url=return_url, mandate_data=mandate_data)
        self.emit("setup_intent.created", si, ctx)
        if confirm:
            self._confirm_setup(si, ctx)
        return self.render(si, expand)

    def retrieve_setup_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand", "client_secret"})
        return self.render(self.setup_intent(id), p.expand())

    def list_setup_intents(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        customer = p.str("customer")
        payment_method = p.str("payment_method")
        return self.list_response(
            "setup_intent",
            p,
            "/v1/setup_intents",
            lambda o: (customer is None or o["customer"] == customer)
            and (payment_method is None or o["payment_method"] == payment_method),
            extra={"customer", "payment_method"},
        )

    def confirm_setup_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        si = self.setup_intent(id)
        p.only(SETUP_CONFIRM)
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
        mandate_data = self._mandate_data(p)
        return_url = p.str("return_url")
        expand = p.expand()
        self._check_pm_owner(pm_value, si["customer"])  # type: ignore[attr-defined]
        if si["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise state_error(
                f"This SetupIntent's status is {si['status']}; it cannot be confirmed.",
                code="setup_intent_unexpected_state",
                setup_intent=self.snapshot(si),
            )
        if pm_value is not None:
            si["payment_method"] = self.materialize_payment_method(pm_value)["id"]
        if si["payment_method"] is None:
            raise state_error("You cannot confirm this SetupIntent because it's missing a payment method.",
                              code="setup_intent_unexpected_state", setup_intent=self.snapshot(si))  # fmt: skip
        if mandate_data is not None:
            self.internal[si["id"]]["mandate_data"] = mandate_data
        if return_url is not None:
            self.internal[si["id"]]["return_url"] = return_url
        self._confirm_setup(si, ctx)
        return self.render(si, expand)

    def _confirm_setup(self, si: dict[str, Any], ctx: Ctx) -> None:
        pm = self.objects[si["payment_method"]]
        card = self.test_card(pm["id"])
        if card.decline is not None and card.declines_on_setup:
            error = {
                "type": "card_error",
                "code": card.decline.code,
                "decline_code": card.decline.decline_code,
                "message": card.decline.message,
                "payment_method": self.snapshot(pm),
            }
            si.update(status="requires_payment_method", last_setup_error=error, payment_method=None)
            self.emit("setup_intent.setup_failed", si, ctx)
            raise StripeError(
                402, "card_error", card.decline.message, code=card.decline.code,
                decline_code=card.decline.decline_code, setup_intent=self.snapshot(si),
                payment_method=self.snapshot(pm),
            )  # fmt: skip
        if card.authentication in ("always", "setup"):
            si.update(
                status="requires_action",
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"{ctx.base_url}/_sandbox/authenticate/{si['id']}",
                        "return_url": self.internal[si["id"]].get("return_url"),
                    },
                },
            )
            self.emit("setup_intent.requires_action", si, ctx)
            return
        self._setup_succeeded(si, ctx)

    def _setup_succeeded(self, si: dict[str, Any], ctx: Ctx) -> None:
        pm = self.objects[si["payment_method"]]
        self.internal[pm["id"]]["setup_done"] = True
        if si["customer"] is not None and pm["customer"] is None:
            self.attach_payment_method(pm, si["customer"], ctx)
        if si["usage"] == "off_session":
            acceptance = self.internal[si["id"]].get("mandate_data") or {"type": "offline", "offline": {}}
            mandate = self.store(
                {
                    "id": self.ids.new("mandate"),
                    "object": "mandate",
                    "customer_acceptance": {
                        "accepted_at": acceptance.get("accepted_at") or self.now(),
                        **{k: v for k, v in acceptance.items() if k != "accepted_at"},
                    },
                    "livemode": False,
                    "multi_use": {},
                    "on_behalf_of": None,
                    "payment_method": pm["id"],
                    "payment_method_details": {"card": {}, "type": "card"},
                    "status": "active",
                    "type": "multi_use",
                }
            )
            self.internal[mandate["id"]]["customer"] = si["customer"]
            si["mandate"] = mandate["id"]
        si.update(status="succeeded", next_action=None, last_setup_error=None)
        self.record("setup", object=si["id"], payment_method=pm["id"], customer=si["customer"], mandate=si["mandate"])
        self.emit("setup_intent.succeeded", si, ctx)

    def authenticate_setup_intent(self, object_id: str, outcome: str, ctx: Ctx) -> dict[str, Any]:
        si = self.setup_intent(object_id)
        if si["status"] != "requires_action":
            raise state_error(f"This SetupIntent has status {si['status']}; nothing to authenticate.",
                              code="setup_intent_unexpected_state")  # fmt: skip
        if outcome == "succeed":
            self._setup_succeeded(si, ctx)
        else:
            pm = self.objects[si["payment_method"]]
            si.update(
                status="requires_payment_method",
                payment_method=None,
                next_action=None,
                last_setup_error={
                    "type": "invalid_request_error",
                    "code": "setup_intent_authentication_failure",
                    "message": "The latest attempt to set up the payment method has failed because authentication failed.",
                    "payment_method": self.snapshot(pm),
                },
            )
            self.emit("setup_intent.setup_failed", si, ctx)
        return self.snapshot(si)

    def cancel_setup_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        si = self.setup_intent(id)
        p.only({"cancellation_reason", "expand"})
        reason = p.enum("cancellation_reason", ("abandoned", "duplicate", "requested_by_customer"))
        expand = p.expand()
        if si["status"] not in SETUP_CANCELABLE:
            raise state_error(
                f"You cannot cancel this SetupIntent because it has a status of {si['status']}.",
                code="setup_intent_unexpected_state",
                setup_intent=self.snapshot(si),
            )
        si.update(status="canceled", cancellation_reason=reason, next_action=None)
        self.emit("setup_intent.canceled", si, ctx)
        return self.render(si, expand)

    # ================================================================ Mandates
    def retrieve_mandate(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("mandate", "mandate", id), p.expand())
