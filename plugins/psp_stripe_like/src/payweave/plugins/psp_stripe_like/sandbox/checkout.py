"""Checkout Sessions (hosted pay-by-link) and the sandbox's stand-in for the hosted page."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .base import Ctx, LedgerBase
from .errors import StripeError, invalid, state_error
from .params import MAX_AMOUNT, Params
from .payments import CAPTURE_METHODS, parse_currency

SESSION_CREATE = {
    "mode", "line_items", "success_url", "cancel_url", "client_reference_id", "metadata", "customer",
    "customer_email", "expires_at", "payment_intent_data", "setup_intent_data", "currency",
    "payment_method_types", "expand", "locale", "ui_mode", "submit_type",
}  # fmt: skip


def _url(p: Params, key: str) -> str | None:
    value = p.str(key, max_length=5000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"Not a valid URL: {value}", param=key, code="url_invalid")
    return value


class CheckoutMixin(LedgerBase):
    if TYPE_CHECKING:  # provided by the sibling mixins in Ledger
        def create_payment_intent(self, p: Params, ctx: Ctx) -> dict[str, Any]: ...  # type: ignore[empty-body]
        def create_setup_intent(self, p: Params, ctx: Ctx) -> dict[str, Any]: ...  # type: ignore[empty-body]
        def create_customer(self, p: Params, ctx: Ctx) -> dict[str, Any]: ...  # type: ignore[empty-body]
        def confirm_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]: ...  # type: ignore[empty-body]
        def authenticate(self, object_id: str, outcome: str, ctx: Ctx) -> dict[str, Any]: ...  # type: ignore[empty-body]

    def checkout_session(self, object_id: str) -> dict[str, Any]:
        return self.get("checkout.session", "checkout.session", object_id)

    def create_checkout_session(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only(SESSION_CREATE)
        mode = p.enum("mode", ("payment", "setup", "subscription"), required=True)
        if mode == "subscription":
            raise invalid("The sandbox does not support subscription mode.", param="mode")
        success_url = _url(p, "success_url")
        cancel_url = _url(p, "cancel_url")
        client_reference_id = p.str("client_reference_id", max_length=200)
        metadata = p.metadata() or {}
        customer = p.str("customer")
        if customer is not None:
            self.get("customer", "customer", customer, param="customer")
        customer_email = p.str("customer_email", max_length=800)
        if customer and customer_email:
            raise invalid("You may only specify one of these parameters: customer, customer_email.", param="customer_email")
        expires_at = p.int("expires_at")
        now = self.now()
        if expires_at is not None and not (now + 1800 <= expires_at <= now + 86_400):
            raise invalid("The `expires_at` timestamp must be between 30 minutes and 24 hours from now.", param="expires_at")
        p.str_list("payment_method_types")
        p.str("locale")
        p.enum("ui_mode", ("hosted",))
        p.enum("submit_type", ("auto", "book", "donate", "pay"))
        expand = p.expand()
        pid = p.sub("payment_intent_data", {"capture_method", "setup_future_usage", "metadata", "description",
                                            "receipt_email", "statement_descriptor"})  # fmt: skip
        intent_data: dict[str, Any] = {
            "capture_method": pid.enum("capture_method", CAPTURE_METHODS),
            "setup_future_usage": pid.enum("setup_future_usage", ("on_session", "off_session")),
            "metadata": pid.metadata(),
            "description": pid.str("description", max_length=1000),
        }
        pid.str("receipt_email")
        pid.str("statement_descriptor", max_length=22)
        sid = p.sub("setup_intent_data", {"metadata", "description"})
        setup_data = {"metadata": sid.metadata(), "description": sid.str("description")}
        items: list[dict[str, Any]] = []
        currency = parse_currency(p, required=False)
        for item in p.sub_list("line_items", {"price", "price_data", "quantity"}):
            if item.str("price") is not None:
                raise invalid(f"No such price: '{item.str('price')}'", param=item.name("price"), code="resource_missing")
            price_data = item.sub("price_data", {"currency", "unit_amount", "product_data", "tax_behavior"})
            if not price_data.tree:
                raise invalid(f"Missing required param: {item.name('price_data')}.", param=item.name("price_data"),
                              code="parameter_missing")  # fmt: skip
            item_currency = parse_currency(price_data)
            unit_amount = price_data.amount("unit_amount", required=True, minimum=0)
            product = price_data.sub("product_data", {"name", "description", "metadata"})
            name = product.str("name", required=True, max_length=250)
            product.str("description")
            product.metadata()
            price_data.enum("tax_behavior", ("exclusive", "inclusive", "unspecified"))
            quantity = item.int("quantity", required=True, minimum=1, maximum=999_999)
            if currency is not None and item_currency != currency:
                raise invalid("All line items must use the same currency.", param=price_data.name("currency"))
            currency = item_currency
            assert unit_amount is not None and quantity is not None
            items.append({"name": name, "currency": item_currency, "unit_amount": unit_amount, "quantity": quantity})
        if mode == "payment":
            if not items:
                raise invalid("line_items is required in payment mode.", param="line_items", code="parameter_missing")
        elif items:
            raise invalid("line_items cannot be used in setup mode.", param="line_items")
        total = sum(i["unit_amount"] * i["quantity"] for i in items)
        if mode == "payment" and not 1 <= total <= MAX_AMOUNT:
            raise invalid("The total of the line items must be at least 1 and at most 99999999 minor units.",
                          param="line_items", code="amount_too_small" if total < 1 else "amount_too_large")  # fmt: skip
        # ---- execution
        session_id = self.ids.new("cs_test", 58)
        base = (self.settings.public_url or ctx.base_url).rstrip("/")
        session = self.store(
            {
                "id": session_id,
                "object": "checkout.session",
                "amount_subtotal": total if mode == "payment" else None,
                "amount_total": total if mode == "payment" else None,
                "cancel_url": cancel_url,
                "client_reference_id": client_reference_id,
                "created": now,
                "currency": currency,
                "customer": customer,
                "customer_details": {"email": customer_email} if customer_email else None,
                "customer_email": customer_email,
                "expires_at": expires_at if expires_at is not None else now + self.settings.checkout_session_ttl_seconds,
                "livemode": False,
                "metadata": metadata,
                "mode": mode,
                "payment_intent": None,
                "payment_method_types": ["card"],
                "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
                "setup_intent": None,
                "status": "open",
                "success_url": success_url,
                "ui_mode": "hosted",
                "url": f"{base}/_sandbox/checkout/{session_id}",
            }
        )
        line_items = []
        for item in items:
            amount = item["unit_amount"] * item["quantity"]
            line_items.append(
                {
                    "id": self.ids.new("li"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": item["currency"],
                    "description": item["name"],
                    "price": {
                        "id": self.ids.new("price"),
                        "object": "price",
                        "currency": item["currency"],
                        "product": self.ids.new("prod", 14),
                        "type": "one_time",
                        "unit_amount": item["unit_amount"],
                    },
                    "quantity": item["quantity"],
                }
            )
        self.internal[session_id].update(line_items=line_items, intent_data=intent_data, setup_data=setup_data)
        return self.render(session, expand)

    def retrieve_checkout_session(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.checkout_session(id), p.expand())

    def list_checkout_sessions(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        payment_intent = p.str("payment_intent")
        customer = p.str("customer")
        status = p.enum("status", ("open", "complete", "expired"))
        return self.list_response(
            "checkout.session",
            p,
            "/v1/checkout/sessions",
            lambda o: (payment_intent is None or o["payment_intent"] == payment_intent)
            and (customer is None or o["customer"] == customer)
            and (status is None or o["status"] == status),
            extra={"payment_intent", "customer", "status"},
        )

    def list_checkout_line_items(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        self.checkout_session(id)
        p.only({"limit", "starting_after", "ending_before", "expand"})
        limit = p.int("limit", minimum=1, maximum=100) or 10
        items = self.internal[id]["line_items"]
        start = 0
        after = p.str("starting_after")
        if after is not None:
            start = next((i + 1 for i, li in enumerate(items) if li["id"] == after), len(items))
        page = items[start : start + limit]
        return {
            "object": "list",
            "data": [self.snapshot(li) for li in page],
            "has_more": start + limit < len(items),
            "url": f"/v1/checkout/sessions/{id}/line_items",
        }

    def expire_checkout_session(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        session = self.checkout_session(id)
        p.only({"expand"})
        expand = p.expand()
        if session["status"] != "open":
            raise state_error(
                f"This Checkout Session has status {session['status']}; only open sessions can be expired.",
                code="checkout_session_unexpected_state",
            )
        self._expire_session(session, ctx)
        return self.render(session, expand)

    def _expire_session(self, session: dict[str, Any], ctx: Ctx | None) -> None:
        session.update(status="expired", url=None)
        self.emit("checkout.session.expired", session, ctx)

    def _tick_checkout(self, now: int) -> None:
        for session_id in self.order["checkout.session"]:
            session = self.objects[session_id]
            if session["status"] == "open" and session["expires_at"] <= now:
                self._expire_session(session, None)

    # ---------------------------------------------------------------- the hosted page (sandbox-only)
    def complete_checkout_session(
        self, session_id: str, payment_method: str, authentication: str, ctx: Ctx
    ) -> tuple[int, dict[str, Any]]:
        """The customer pays on the hosted page. Returns (HTTP status, body with ``redirect_url``)."""
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise state_error(f"This Checkout Session is {session['status']}.", code="checkout_session_unexpected_state")
        internal = self.internal[session_id]
        customer = session["customer"]
        intent_data = internal["intent_data"]
        wants_customer = session["mode"] == "setup" or intent_data.get("setup_future_usage") is not None
        if customer is None and wants_customer:
            email = session["customer_email"]
            customer = self.create_customer(Params({"email": email} if email else {}), ctx)["id"]
            session["customer"] = customer
        try:
            if session["mode"] == "payment":
                intent = self._checkout_payment(session, payment_method, customer, ctx)
                if intent["status"] == "requires_action":
                    intent = self.authenticate(intent["id"], authentication, ctx)
                if intent["status"] not in ("succeeded", "requires_capture", "processing"):
                    error = intent["last_payment_error"] or {"type": "card_error", "message": "The payment failed."}
                    return 402, {"error": error, "redirect_url": None, "checkout_session": self.snapshot(session)}
                session.update(payment_intent=intent["id"], payment_status="paid" if intent["status"] == "succeeded" else "unpaid")
            else:
                tree: dict[str, Any] = {"customer": customer, "payment_method": payment_method, "usage": "off_session",
                                        "confirm": "true"}  # fmt: skip
                setup_data = internal["setup_data"]
                if setup_data.get("metadata"):
                    tree["metadata"] = setup_data["metadata"]
                if setup_data.get("description"):
                    tree["description"] = setup_data["description"]
                intent = self.create_setup_intent(Params(tree), ctx)
                if intent["status"] == "requires_action":
                    intent = self.authenticate(intent["id"], authentication, ctx)
                if intent["status"] != "succeeded":
                    return 402, {"error": intent["last_setup_error"], "redirect_url": None,
                                 "checkout_session": self.snapshot(session)}  # fmt: skip
                session["setup_intent"] = intent["id"]
        except StripeError as exc:
            return exc.status, {**exc.body(), "redirect_url": None, "checkout_session": self.snapshot(session)}
        session.update(status="complete", url=None)
        if session["customer_details"] is None and customer is not None:
            session["customer_details"] = {"email": self.objects[customer]["email"]}
        self.record("checkout_complete", object=session_id, payment_intent=session["payment_intent"],
                    amount=session["amount_total"], currency=session["currency"])  # fmt: skip
        self.emit("checkout.session.completed", session, ctx)
        redirect = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id) if session["success_url"] else None
        return 200, {"redirect_url": redirect, "checkout_session": self.snapshot(session)}

    def _checkout_payment(self, session: dict[str, Any], payment_method: str, customer: str | None, ctx: Ctx) -> dict[str, Any]:
        internal = self.internal[session["id"]]
        existing = internal.get("payment_intent")
        if existing is not None:
            # A failed attempt before: the page reuses its PaymentIntent.
            return self.confirm_payment_intent(Params({"payment_method": payment_method}), ctx, existing)
        data = internal["intent_data"]
        tree: dict[str, Any] = {
            "amount": str(session["amount_total"]),
            "currency": session["currency"],
            "payment_method": payment_method,
        }
        if customer is not None:
            tree["customer"] = customer
        for key in ("capture_method", "setup_future_usage", "description"):
            if data.get(key):
                tree[key] = data[key]
        if data.get("metadata"):
            tree["metadata"] = data["metadata"]
        intent = self.create_payment_intent(Params(tree), ctx)
        internal["payment_intent"] = intent["id"]
        return self.confirm_payment_intent(Params({}), ctx, intent["id"])

    def cancel_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The customer leaves the hosted page through its back link (the session stays open)."""
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise state_error(f"This Checkout Session is {session['status']}.", code="checkout_session_unexpected_state")
        return {"redirect_url": session["cancel_url"], "checkout_session": self.snapshot(session)}
