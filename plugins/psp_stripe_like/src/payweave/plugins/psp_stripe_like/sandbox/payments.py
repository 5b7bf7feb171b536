"""PaymentIntents, Charges and Refunds."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payweave.hooks.money import MoneyError, currency_exponent, from_minor_units

from .base import Ctx, LedgerBase
from .cards import AUTHENTICATION_REQUIRED, Decline, TestCard
from .errors import StripeError, invalid, state_error
from .params import Params

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing")
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")

PI_CREATE = {
    "amount", "currency", "capture_method", "customer", "payment_method", "confirm", "off_session",
    "setup_future_usage", "metadata", "description", "expand", "payment_method_types",
    "automatic_payment_methods", "payment_method_options", "return_url", "receipt_email",
    "statement_descriptor", "statement_descriptor_suffix", "mandate", "error_on_requires_action",
}  # fmt: skip
PI_CONFIRM = {
    "payment_method", "off_session", "setup_future_usage", "return_url", "expand", "mandate",
    "error_on_requires_action", "receipt_email", "payment_method_options",
}  # fmt: skip
PI_UPDATE = {
    "amount", "currency", "capture_method", "customer", "payment_method", "setup_future_usage",
    "metadata", "description", "expand", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
}  # fmt: skip


def parse_currency(p: Params, key: str = "currency", *, required: bool = True) -> str | None:
    value = p.str(key, required=required)
    if value is None:
        return None
    try:
        currency_exponent(value)
    except MoneyError:
        raise invalid(
            f"Invalid currency: {value.lower()}. Stripe currencies are three-letter ISO codes.", param=p.name(key)
        ) from None
    return value.lower()


def fmt(amount: int, currency: str) -> str:
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


class PaymentsMixin(LedgerBase):
    if TYPE_CHECKING:  # provided by the sibling mixins in Ledger
        def resolve_payment_method(self, value: str, param: str) -> str: ...  # type: ignore[empty-body]
        def materialize_payment_method(self, value: str) -> dict[str, Any]: ...  # type: ignore[empty-body]
        def test_card(self, pm_id: str) -> TestCard: ...  # type: ignore[empty-body]
        def attach_payment_method(self, pm: dict[str, Any], customer_id: str, ctx: Ctx) -> None: ...
        def create_balance_transaction(self, **kw: Any) -> dict[str, Any]: ...  # type: ignore[empty-body]

    # ================================================================ PaymentIntents
    def _customer_param(self, p: Params) -> str | None:
        customer = p.str("customer")
        if customer is not None:
            self.get("customer", "customer", customer, param="customer")
        return customer

    def _check_pm_owner(self, pm_value: str | None, customer: str | None, param: str = "payment_method") -> None:
        """A saved PaymentMethod may only be used with the Customer it is attached to, and one
        that was used without a Customer (or detached) may not be used again."""
        if pm_value is None:
            return
        pm = self.find("payment_method", pm_value)
        if pm is None:
            return
        if pm["customer"] is None and self.internal[pm["id"]].get("consumed"):
            raise invalid(
                "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
                "shared with a connected account without Customer attachment, or was detached from a Customer. "
                "It may not be used again. To use a PaymentMethod multiple times, you must attach it to a "
                "Customer first.",
                param=param,
            )
        if pm["customer"] is None:
            return
        if customer is None:
            raise invalid(
                f"The provided PaymentMethod {pm_value} is attached to a Customer; pass that Customer "
                "(customer) to use it.",
                param=param,
            )
        if pm["customer"] != customer:
            raise invalid(f"The provided PaymentMethod {pm_value} belongs to a different Customer.", param=param)

    def _off_session(self, p: Params) -> bool | None:
        value = p.str("off_session")
        if value is None:
            return None
        if value in ("true", "one_off", "recurring"):
            return True
        if value == "false":
            return False
        raise invalid(f"Invalid off_session: {value}", param="off_session")

    def _pm_options(self, p: Params) -> dict[str, Any]:
        options = p.sub("payment_method_options", {"card"})
        card = options.sub("card", {"request_incremental_authorization", "capture_method", "setup_future_usage"})
        result: dict[str, Any] = {}
        incremental = card.enum("request_incremental_authorization", ("if_available", "never"))
        if incremental is not None:
            result["request_incremental_authorization"] = incremental
        card_capture = card.enum("capture_method", ("manual",))
        if card_capture is not None:
            result["capture_method"] = card_capture
        return result

    def create_payment_intent(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only(PI_CREATE)
        amount = p.amount("amount", required=True)
        currency = parse_currency(p)
        capture_method = p.enum("capture_method", CAPTURE_METHODS, default="automatic_async")
        customer = self._customer_param(p)
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
        confirm = p.bool("confirm", default=False)
        off_session = self._off_session(p)
        setup_future_usage = p.enum("setup_future_usage", ("on_session", "off_session"))
        metadata = p.metadata() or {}
        description = p.str("description", max_length=1000)
        expand = p.expand()
        card_options = self._pm_options(p)
        p.sub("automatic_payment_methods", {"enabled", "allow_redirects"})
        p.str_list("payment_method_types")
        return_url = p.str("return_url")
        receipt_email = p.str("receipt_email")
        statement_descriptor = p.str("statement_descriptor", max_length=22)
        p.str("statement_descriptor_suffix", max_length=22)
        mandate = p.str("mandate")
        error_on_requires_action = p.bool("error_on_requires_action", default=False)
        if off_session is not None and not confirm:
            raise invalid("You can only pass in `off_session` when `confirm` is set to true.", param="off_session")
        if confirm and pm_value is None:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either "
                "update the PaymentIntent with a payment method and then confirm it again, or confirm it again "
                "directly with a payment method.",
                code="payment_intent_unexpected_state",
            )
        if setup_future_usage is not None and off_session:
            raise invalid("You cannot use `setup_future_usage` with `off_session`.", param="setup_future_usage")
        self._check_pm_owner(pm_value, customer)
        if mandate is not None:
            self._check_mandate(mandate, pm_value)
        if card_options.get("capture_method") == "manual":
            capture_method = "manual"

        # ---- execution starts here: everything below is stored for idempotent replays
        pm_id = self.materialize_payment_method(pm_value)["id"] if pm_value is not None else None
        pi = self.store(
            {
                "id": self.ids.new("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_capturable": 0,
                "amount_details": {"tip": {}},
                "amount_received": 0,
                "application": None,
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": capture_method,
                "client_secret": None,
                "confirmation_method": "automatic",
                "created": self.now(),
                "currency": currency,
                "customer": customer,
                "description": description,
                "last_payment_error": None,
                "latest_charge": None,
                "livemode": False,
                "metadata": metadata,
                "next_action": None,
                "payment_method": pm_id,
                "payment_method_options": {"card": dict(card_options)} if card_options else {"card": {}},
                "payment_method_types": ["card"],
                "receipt_email": receipt_email,
                "setup_future_usage": setup_future_usage,
                "statement_descriptor": statement_descriptor,
                "status": "requires_confirmation" if pm_id else "requires_payment_method",
            }
        )
        pi["client_secret"] = f"{pi['id']}_secret_{self.ids.new('s', 16)[2:]}"
        self.internal[pi["id"]].update(return_url=return_url, mandate=mandate)
        self.record("create", object=pi["id"], payment_intent=pi["id"], amount=amount, currency=currency)
        self.emit("payment_intent.created", pi, ctx)
        if confirm:
            self._confirm(pi, off_session=bool(off_session), error_on_requires_action=error_on_requires_action, ctx=ctx)
        return self.render(pi, expand)

    def _check_mandate(self, mandate_id: str, pm_value: str | None) -> None:
        mandate = self.get("mandate", "mandate", mandate_id, param="mandate")
        if mandate["status"] != "active":
            raise invalid(f"The mandate {mandate_id} is not active.", param="mandate")
        if pm_value is not None and mandate["payment_method"] != pm_value:
            raise invalid(f"The mandate {mandate_id} does not belong to PaymentMethod {pm_value}.", param="mandate")

    def payment_intent(self, object_id: str, param: str | None = None) -> dict[str, Any]:
        return self.get("payment_intent", "payment_intent", object_id, param=param)

    def retrieve_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand", "client_secret"})
        return self.render(self.payment_intent(id), p.expand())

    def update_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pi = self.payment_intent(id)
        p.only(PI_UPDATE)
        amount = p.amount("amount")
        currency = parse_currency(p, required=False)
        capture_method = p.enum("capture_method", CAPTURE_METHODS)
        customer = self._customer_param(p)
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
        setup_future_usage = p.enum("setup_future_usage", ("on_session", "off_session"))
        metadata = p.metadata()
        description = p.str("description", max_length=1000)
        expand = p.expand()
        receipt_email = p.str("receipt_email")
        p.str("statement_descriptor", max_length=22)
        p.str("statement_descriptor_suffix", max_length=22)
        self._check_pm_owner(pm_value, customer or pi["customer"])
        if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            if set(p.tree) - {"metadata", "description", "expand", "receipt_email"}:
                raise state_error(
                    f"This PaymentIntent's amount, currency or payment method could not be updated because it "
                    f"has a status of {pi['status']}.",
                    payment_intent=self.snapshot(pi),
                )
        previous: dict[str, Any] = {}

        def change(field: str, value: Any) -> None:
            if value is not None and pi[field] != value:
                previous[field] = pi[field]
                pi[field] = value

        change("amount", amount)
        change("currency", currency)
        change("capture_method", capture_method)
        change("customer", customer)
        change("setup_future_usage", setup_future_usage)
        change("description", description)
        change("receipt_email", receipt_email)
        if metadata is not None:
            previous["metadata"] = pi["metadata"]
            pi["metadata"] = {**pi["metadata"], **metadata} if metadata else {}
        if pm_value is not None:
            change("payment_method", self.materialize_payment_method(pm_value)["id"])
            if pi["status"] == "requires_payment_method":
                pi["status"] = "requires_confirmation"
        if pi["status"] == "requires_action" and {"amount", "currency", "payment_method"} & set(previous):
            # The customer authenticated another amount: the payment must be confirmed again.
            pi.update(status="requires_confirmation", next_action=None)
        if previous:
            self.emit("payment_intent.updated", pi, ctx, previous_attributes=previous)
        return self.render(pi, expand)

    def list_payment_intents(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        customer = p.str("customer")
        return self.list_response(
            "payment_intent",
            p,
            "/v1/payment_intents",
            lambda o: customer is None or o["customer"] == customer,
            extra={"customer"},
        )

    def confirm_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pi = self.payment_intent(id)
        p.only(PI_CONFIRM)
        pm_value = p.str("payment_method")
        if pm_value is not None:
            self.resolve_payment_method(pm_value, "payment_method")
        off_session = self._off_session(p)
        setup_future_usage = p.enum("setup_future_usage", ("on_session", "off_session"))
        return_url = p.str("return_url")
        expand = p.expand()
        mandate = p.str("mandate")
        error_on_requires_action = p.bool("error_on_requires_action", default=False)
        p.str("receipt_email")
        card_options = self._pm_options(p)
        self._check_pm_owner(pm_value, pi["customer"])
        if mandate is not None:
            self._check_mandate(mandate, pm_value or pi["payment_method"])
        # ---- execution
        if pi["status"] not in CONFIRMABLE:
            raise state_error(
                f"This PaymentIntent's status is {pi['status']}, but it must be one of "
                f"{', '.join(CONFIRMABLE)} to be confirmed.",
                payment_intent=self.snapshot(pi),
            )
        if pm_value is not None:
            pi["payment_method"] = self.materialize_payment_method(pm_value)["id"]
        if pi["payment_method"] is None:
            raise state_error(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                payment_intent=self.snapshot(pi),
            )
        if setup_future_usage is not None:
            pi["setup_future_usage"] = setup_future_usage
        if card_options:
            pi["payment_method_options"]["card"].update(card_options)
            if card_options.get("capture_method") == "manual":
                pi["capture_method"] = "manual"
        if return_url is not None:
            self.internal[pi["id"]]["return_url"] = return_url
        if mandate is not None:
            self.internal[pi["id"]]["mandate"] = mandate
        self._confirm(pi, off_session=bool(off_session), error_on_requires_action=error_on_requires_action, ctx=ctx)
        return self.render(pi, expand)

    # ---------------------------------------------------------------- the issuer
    def _confirm(self, pi: dict[str, Any], *, off_session: bool, error_on_requires_action: bool, ctx: Ctx) -> None:
        pm_id = pi["payment_method"]
        card = self.test_card(pm_id)
        self.internal[pi["id"]]["off_session"] = off_session
        if card.decline is not None:
            self._fail_payment(pi, card.decline, ctx)
        needs_auth = card.authentication == "always" or (
            card.authentication == "setup" and not self.internal[pm_id].get("setup_done")
        )
        if needs_auth and off_session:
            self._fail_payment(pi, AUTHENTICATION_REQUIRED, ctx)
        if needs_auth:
            if error_on_requires_action:
                self._fail_payment(pi, AUTHENTICATION_REQUIRED, ctx)
            pi["status"] = "requires_action"
            pi["next_action"] = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"{ctx.base_url}/_sandbox/authenticate/{pi['id']}",
                    "return_url": self.internal[pi["id"]].get("return_url"),
                },
            }
            self.emit("payment_intent.requires_action", pi, ctx)
            return
        self._authorize(pi, ctx)

    def _card_details(self, pm_id: str) -> dict[str, Any]:
        card = self.objects[pm_id]["card"]
        return {
            "brand": card["brand"],
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "funding": card["funding"],
            "last4": card["last4"],
            "network": card["brand"],
        }

    def _new_charge(self, pi: dict[str, Any], **fields: Any) -> dict[str, Any]:
        charge = {
            "id": self.ids.new("ch"),
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "balance_transaction": None,
            "calculated_statement_descriptor": "PAYWEAVE SANDBOX",
            "captured": False,
            "created": self.now(),
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi["description"],
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "outcome": None,
            "paid": False,
            "payment_intent": pi["id"],
            "payment_method": pi["payment_method"],
            "payment_method_details": {"type": "card", "card": self._card_details(pi["payment_method"])},
            "receipt_url": None,
            "refunded": False,
            "status": "pending",
        }
        charge.update(fields)
        return self.store(charge)

    def _fail_payment(self, pi: dict[str, Any], decline: Decline, ctx: Ctx, *, error_type: str = "card_error") -> None:
        pm = self.objects[pi["payment_method"]]
        charge = self._new_charge(
            pi,
            status="failed",
            failure_code=decline.code,
            failure_message=decline.message,
            outcome={
                "network_status": "declined_by_network",
                "reason": decline.decline_code,
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            },
        )
        error = {
            "type": error_type,
            "code": decline.code,
            "decline_code": decline.decline_code,
            "message": decline.message,
            "charge": charge["id"],
            "payment_method": self.snapshot(pm),
            "doc_url": f"https://docs.stripe.com/error-codes/{decline.code.replace('_', '-')}",
        }
        pi.update(
            status="requires_payment_method",
            last_payment_error=error,
            latest_charge=charge["id"],
            payment_method=None,
            next_action=None,
        )
        self.record("decline", object=charge["id"], payment_intent=pi["id"], amount=pi["amount"],
                    currency=pi["currency"], decline_code=decline.decline_code)  # fmt: skip
        self.emit("charge.failed", charge, ctx)
        self.emit("payment_intent.payment_failed", pi, ctx)
        raise StripeError(
            402,
            error_type,
            decline.message,
            code=decline.code,
            decline_code=decline.decline_code,
            charge=charge["id"],
            payment_intent=self.snapshot(pi),
            payment_method=self.snapshot(pm),
        )

    def _authorize(self, pi: dict[str, Any], ctx: Ctx) -> None:
        pm_id = pi["payment_method"]
        card = self.test_card(pm_id)
        manual = pi["capture_method"] == "manual"
        now = self.now()
        details = self._card_details(pm_id)
        if manual:
            off_session = self.internal[pi["id"]].get("off_session", False)
            validity = (
                self.settings.mit_visa_authorization_validity_seconds
                if off_session and card.brand == "visa"
                else self.settings.authorization_validity_seconds
            )
            details["capture_before"] = now + validity
            wants_incremental = pi["payment_method_options"]["card"].get("request_incremental_authorization") == "if_available"
            details["incremental_authorization"] = {
                "status": "available" if wants_incremental and card.incremental_authorization else "unavailable"
            }
        charge = self._new_charge(
            pi,
            status="succeeded",
            paid=True,
            outcome={
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            payment_method_details={"type": "card", "card": details},
        )
        pi.update(latest_charge=charge["id"], last_payment_error=None, next_action=None)
        self.record("authorize", object=charge["id"], payment_intent=pi["id"], amount=pi["amount"], currency=pi["currency"])
        if pi["setup_future_usage"] is not None:
            self.internal[pm_id]["setup_done"] = True
            if pi["customer"] is not None and self.objects[pm_id]["customer"] is None:
                self.attach_payment_method(self.objects[pm_id], pi["customer"], ctx)
        if self.objects[pm_id]["customer"] is None:
            self.internal[pm_id]["consumed"] = True
        self.emit("charge.succeeded", charge, ctx)
        if manual:
            pi.update(status="requires_capture", amount_capturable=pi["amount"])
            self.internal[pi["id"]]["capture_before"] = details["capture_before"]
            self.emit("payment_intent.amount_capturable_updated", pi, ctx)
        else:
            self._capture(pi, charge, pi["amount"], ctx, asynchronous=pi["capture_method"] == "automatic_async")
            self.emit("payment_intent.succeeded", pi, ctx)

    def _capture(self, pi: dict[str, Any], charge: dict[str, Any], amount: int, ctx: Ctx, *, asynchronous: bool) -> None:
        charge.update(captured=True, amount_captured=amount)
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        self.internal[pi["id"]].pop("capture_before", None)
        self.record("capture", object=charge["id"], payment_intent=pi["id"], amount=amount, currency=pi["currency"])

        def settle() -> None:
            txn = self.create_balance_transaction(
                amount=amount, currency=charge["currency"], type="charge", source=charge["id"], fee_applies=True,
                description=pi["description"],
            )  # fmt: skip
            previous = {"balance_transaction": charge["balance_transaction"]}
            charge["balance_transaction"] = txn["id"]
            if asynchronous:
                self.emit("charge.updated", charge, None, previous_attributes=previous)

        if asynchronous:
            # automatic_async: the balance transaction arrives after the response (charge.updated).
            self.defer(self.now(), settle)
        else:
            settle()

    def capture_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pi = self.payment_intent(id)
        p.only({"amount_to_capture", "metadata", "expand", "final_capture", "statement_descriptor",
                "statement_descriptor_suffix"})  # fmt: skip
        amount_to_capture = p.amount("amount_to_capture")
        metadata = p.metadata()
        expand = p.expand()
        final_capture = p.bool("final_capture", default=True)
        p.str("statement_descriptor", max_length=22)
        p.str("statement_descriptor_suffix", max_length=22)
        if not final_capture:
            raise invalid("Multicapture is not enabled for this sandbox account.", param="final_capture")
        # ---- execution
        if pi["status"] != "requires_capture":
            raise state_error(
                f"This PaymentIntent could not be captured because it has a status of {pi['status']}. Only a "
                "PaymentIntent with one of the following statuses may be captured: requires_capture.",
                payment_intent=self.snapshot(pi),
            )
        amount = pi["amount_capturable"] if amount_to_capture is None else amount_to_capture
        if amount > pi["amount_capturable"]:
            raise StripeError(
                400,
                "invalid_request_error",
                f"The amount to capture ({fmt(amount, pi['currency'])}) is greater than the amount capturable "
                f"({fmt(pi['amount_capturable'], pi['currency'])}).",
                code="amount_too_large",
                param="amount_to_capture",
                payment_intent=self.snapshot(pi),
            )
        if metadata is not None:
            pi["metadata"] = {**pi["metadata"], **metadata} if metadata else {}
        charge = self.objects[pi["latest_charge"]]
        self._capture(pi, charge, amount, ctx, asynchronous=False)
        if amount < pi["amount"]:
            self.record("release", object=charge["id"], payment_intent=pi["id"], amount=pi["amount"] - amount,
                        currency=pi["currency"])  # fmt: skip
        self.emit("charge.captured", charge, ctx)
        self.emit("payment_intent.succeeded", pi, ctx)
        return self.render(pi, expand)

    def increment_authorization(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pi = self.payment_intent(id)
        p.only({"amount", "description", "metadata", "expand", "statement_descriptor"})
        amount = p.amount("amount", required=True)
        metadata = p.metadata()
        description = p.str("description")
        expand = p.expand()
        p.str("statement_descriptor", max_length=22)
        if pi["status"] != "requires_capture":
            raise state_error(
                f"This PaymentIntent's authorization cannot be incremented because it has a status of {pi['status']}.",
                payment_intent=self.snapshot(pi),
            )
        charge = self.objects[pi["latest_charge"]]
        card = charge["payment_method_details"]["card"]
        if card.get("incremental_authorization", {}).get("status") != "available":
            raise state_error(
                "Incremental authorization is not available for this PaymentIntent; create it with "
                "payment_method_options[card][request_incremental_authorization]=if_available on a supporting card.",
                code="incremental_authorization_not_available",
                payment_intent=self.snapshot(pi),
            )
        assert amount is not None
        if amount <= pi["amount"]:
            raise invalid(
                f"The new amount ({fmt(amount, pi['currency'])}) must be greater than the currently authorized "
                f"amount ({fmt(pi['amount'], pi['currency'])}).",
                param="amount",
                stored=True,
            )
        previous = {"amount": pi["amount"], "amount_capturable": pi["amount_capturable"]}
        self.record("increment", object=charge["id"], payment_intent=pi["id"], amount=amount - pi["amount"],
                    currency=pi["currency"])  # fmt: skip
        pi.update(amount=amount, amount_capturable=amount)
        charge["amount"] = amount
        if metadata is not None:
            pi["metadata"] = {**pi["metadata"], **metadata} if metadata else {}
        if description is not None:
            pi["description"] = description
        self.emit("payment_intent.amount_capturable_updated", pi, ctx, previous_attributes=previous)
        return self.render(pi, expand)

    def cancel_payment_intent(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        pi = self.payment_intent(id)
        p.only({"cancellation_reason", "expand"})
        reason = p.enum("cancellation_reason", CANCELLATION_REASONS)
        expand = p.expand()
        if pi["status"] not in CANCELABLE:
            raise state_error(
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
                f"PaymentIntent with one of the following statuses may be canceled: {', '.join(CANCELABLE)}.",
                payment_intent=self.snapshot(pi),
            )
        self._cancel(pi, reason, ctx)
        return self.render(pi, expand)

    def _cancel(self, pi: dict[str, Any], reason: str | None, ctx: Ctx | None, *, expired: bool = False) -> None:
        released = pi["amount_capturable"]
        pi.update(
            status="canceled",
            cancellation_reason=reason,
            canceled_at=self.now(),
            amount_capturable=0,
            next_action=None,
        )
        self.internal[pi["id"]].pop("capture_before", None)
        charge = self.objects.get(pi["latest_charge"] or "")
        if released and charge is not None and charge["status"] == "succeeded" and not charge["captured"]:
            # Releasing an uncaptured hold shows on the charge as a refund without money movement.
            refund = self._new_refund(
                charge, released, reason="expired_uncaptured_charge" if expired else None, metadata={}, money_moves=False
            )
            charge.update(amount_refunded=released, refunded=True)
            self.record("expire" if expired else "void", object=charge["id"], payment_intent=pi["id"],
                        amount=released, currency=pi["currency"], refund=refund["id"])  # fmt: skip
            if expired:
                self.emit("charge.expired", charge, ctx)
            else:
                self.emit("charge.refunded", charge, ctx)
        else:
            self.record("cancel", object=pi["id"], payment_intent=pi["id"], amount=0, currency=pi["currency"])
        self.emit("payment_intent.canceled", pi, ctx)

    def _tick_payments(self, now: int) -> None:
        for pi_id in list(self.order["payment_intent"]):
            capture_before = self.internal[pi_id].get("capture_before")
            if capture_before is not None and capture_before <= now:
                pi = self.objects[pi_id]
                if pi["status"] == "requires_capture":
                    self._cancel(pi, "automatic", None, expired=True)

    # ---------------------------------------------------------------- 3DS (sandbox-only)
    def authenticate(self, object_id: str, outcome: str, ctx: Ctx) -> dict[str, Any]:
        """The customer completes (or fails) the 3DS challenge of a PaymentIntent or SetupIntent."""
        if outcome not in ("succeed", "fail"):
            raise invalid("outcome must be succeed or fail", param="outcome")
        if object_id.startswith("seti_"):
            return self.authenticate_setup_intent(object_id, outcome, ctx)  # type: ignore[attr-defined]
        pi = self.payment_intent(object_id)
        if pi["status"] != "requires_action":
            raise state_error(f"This PaymentIntent has status {pi['status']}; nothing to authenticate.")
        if outcome == "succeed":
            self.internal[pi["payment_method"]]["setup_done"] = True
            self._authorize(pi, ctx)
            return self.snapshot(pi)
        pm = self.objects[pi["payment_method"]]
        pi.update(
            status="requires_payment_method",
            payment_method=None,
            next_action=None,
            last_payment_error={
                "type": "invalid_request_error",
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
                "payment_method": self.snapshot(pm),
            },
        )
        self.emit("payment_intent.payment_failed", pi, ctx)
        return self.snapshot(pi)

    # ================================================================ Charges
    def retrieve_charge(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("charge", "charge", id), p.expand())

    def list_charges(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        payment_intent = p.str("payment_intent")
        customer = p.str("customer")
        return self.list_response(
            "charge",
            p,
            "/v1/charges",
            lambda o: (payment_intent is None or o["payment_intent"] == payment_intent)
            and (customer is None or o["customer"] == customer),
            extra={"payment_intent", "customer"},
        )

    # ================================================================ Refunds
    def _new_refund(
        self, charge: dict[str, Any], amount: int, *, reason: str | None, metadata: dict[str, str], money_moves: bool
    ) -> dict[str, Any]:
        refund = self.store(
            {
                "id": self.ids.new("re"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": None,
                "charge": charge["id"],
                "created": self.now(),
                "currency": charge["currency"],
                "destination_details": {"card": {"type": "refund" if money_moves else "reversal"}, "type": "card"},
                "failure_balance_transaction": None,
                "failure_reason": None,
                "metadata": metadata,
                "payment_intent": charge["payment_intent"],
                "reason": reason,
                "receipt_number": None,
                "status": "succeeded",
            }
        )
        if money_moves:
            txn = self.create_balance_transaction(
                amount=-amount, currency=charge["currency"], type="refund", source=refund["id"], fee_applies=False,
                description="REFUND FOR CHARGE",
            )  # fmt: skip
            refund["balance_transaction"] = txn["id"]
        return refund

    def create_refund(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only({"payment_intent", "charge", "amount", "reason", "metadata", "expand", "instructions_email"})
        pi_id = p.str("payment_intent")
        charge_id = p.str("charge")
        amount = p.amount("amount")
        reason = p.enum("reason", REFUND_REASONS)
        metadata = p.metadata() or {}
        expand = p.expand()
        p.str("instructions_email")
        if pi_id is None and charge_id is None:
            raise invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if pi_id is not None and charge_id is not None:
            raise invalid("You may only specify one of these parameters: payment_intent, charge.", param="charge")
        if pi_id is not None:
            pi = self.payment_intent(pi_id, param="payment_intent")
            charge = self.objects.get(pi["latest_charge"] or "")
        else:
            charge = self.get("charge", "charge", charge_id or "", param="charge")
            pi = self.objects[charge["payment_intent"]]
        # ---- execution
        if charge is None or charge["status"] != "succeeded":
            raise state_error(
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                payment_intent=self.snapshot(pi),
            )
        if not charge["captured"]:
            if pi["status"] == "requires_capture":
                raise state_error(
                    f"Charge {charge['id']} has not been captured; cancel the PaymentIntent {pi['id']} to release "
                    "the authorization instead of refunding it.",
                    code="charge_not_refundable",
                    payment_intent=self.snapshot(pi),
                )
            raise state_error(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        refundable = charge["amount_captured"] - charge["amount_refunded"]
        if refundable <= 0:
            raise state_error(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        amount = refundable if amount is None else amount
        if amount > refundable:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Refund amount ({fmt(amount, charge['currency'])}) is greater than unrefunded amount on charge "
                f"({fmt(refundable, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        refund = self._new_refund(charge, amount, reason=reason, metadata=metadata, money_moves=True)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        self.record("refund", object=refund["id"], charge=charge["id"], payment_intent=pi["id"], amount=amount,
                    currency=charge["currency"])  # fmt: skip
        self.emit("refund.created", refund, ctx)
        self.emit("charge.refunded", charge, ctx, previous_attributes=previous)
        return self.render(refund, expand)

    def retrieve_refund(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("refund", "refund", id), p.expand())

    def update_refund(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        refund = self.get("refund", "refund", id)
        p.only({"metadata", "expand"})
        metadata = p.metadata()
        expand = p.expand()
        if metadata is not None:
            refund["metadata"] = {**refund["metadata"], **metadata} if metadata else {}
            self.emit("refund.updated", refund, ctx)
        return self.render(refund, expand)

    def list_refunds(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        payment_intent = p.str("payment_intent")
        charge = p.str("charge")
        return self.list_response(
            "refund",
            p,
            "/v1/refunds",
            lambda o: (payment_intent is None or o["payment_intent"] == payment_intent)
            and (charge is None or o["charge"] == charge),
            extra={"payment_intent", "charge"},
        )
