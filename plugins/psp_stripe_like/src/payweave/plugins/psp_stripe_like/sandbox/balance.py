"""Balance transactions (with fees), the balance, and payouts (settlement)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from .base import Ctx, LedgerBase
from .errors import invalid
from .params import Params

PAYOUT_FAILURES = {
    "account_closed": "The bank account has been closed.",
    "account_frozen": "The bank account has been frozen.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "invalid_account_number": "The bank account number seems to be invalid.",
    "no_account": "The bank account details on file are probably incorrect.",
}
PAYOUT_ELIGIBLE = ("charge", "refund", "adjustment", "payment", "payment_refund")


def compute_fee(amount: int, percent_bps: int, fixed: int) -> int:
    """``amount * percent_bps / 10000`` rounded half up, plus ``fixed`` (all integer minor units)."""
    if amount <= 0:
        return 0
    return (amount * percent_bps + 5_000) // 10_000 + fixed


class BalanceMixin(LedgerBase):
    def create_balance_transaction(
        self, *, amount: int, currency: str, type: str, source: str, fee_applies: bool, description: str | None = None
    ) -> dict[str, Any]:
        now = self.now()
        fee = compute_fee(amount, self.settings.fee_percent_bps, self.settings.fee_fixed) if fee_applies else 0
        available_on = now + self.settings.balance_available_after_seconds if type in ("charge", "payment") else now
        txn = self.store(
            {
                "id": self.ids.new("txn"),
                "object": "balance_transaction",
                "amount": amount,
                "available_on": available_on,
                "created": now,
                "currency": currency,
                "description": description,
                "exchange_rate": None,
                "fee": fee,
                "fee_details": (
                    [{"amount": fee, "application": None, "currency": currency, "description": "Stripe processing fees",
                      "type": "stripe_fee"}] if fee else []
                ),  # fmt: skip
                "net": amount - fee,
                "reporting_category": {
                    "charge": "charge",
                    "refund": "refund",
                    "payout": "payout",
                    "payout_failure": "payout_reversal",
                }.get(type, type),
                "source": source,
                "status": "available" if available_on <= now else "pending",
                "type": type,
            }
        )
        self.record("balance_transaction", object=txn["id"], source=source, type=type, amount=amount, fee=fee,
                    currency=currency)  # fmt: skip
        return txn

    def _tick_balance(self, now: int) -> None:
        for txn_id in self.order["balance_transaction"]:
            txn = self.objects[txn_id]
            if txn["status"] == "pending" and txn["available_on"] <= now:
                txn["status"] = "available"
        for payout_id in self.order["payout"]:
            payout = self.objects[payout_id]
            if payout["status"] == "in_transit" and payout["arrival_date"] <= now:
                self._payout_paid(payout, None)

    # ---------------------------------------------------------------- API
    def retrieve_balance_transaction(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("balance_transaction", "balance transaction", id), p.expand())

    def list_balance_transactions(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        payout_id = p.str("payout")
        if payout_id is not None:
            self.get("payout", "payout", payout_id, param="payout")
        kind = p.str("type")
        source = p.str("source")
        currency = p.str("currency")
        return self.list_response(
            "balance_transaction",
            p,
            "/v1/balance_transactions",
            lambda o: (
                payout_id is None
                or self.internal[o["id"]].get("payout") == payout_id
                or o["source"] == payout_id
            )
            and (kind is None or o["type"] == kind)
            and (source is None or o["source"] == source)
            and (currency is None or o["currency"] == currency.lower()),
            extra={"payout", "type", "source", "currency"},
        )

    def retrieve_balance(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        p.only(set())
        available: dict[str, int] = defaultdict(int)
        pending: dict[str, int] = defaultdict(int)
        for txn_id in self.order["balance_transaction"]:
            txn = self.objects[txn_id]
            (available if txn["status"] == "available" else pending)[txn["currency"]] += txn["net"]
        currencies = sorted(set(available) | set(pending))
        return {
            "object": "balance",
            "available": [{"amount": available[c], "currency": c, "source_types": {"card": available[c]}} for c in currencies],
            "pending": [{"amount": pending[c], "currency": c, "source_types": {"card": pending[c]}} for c in currencies],
            "livemode": False,
        }

    def retrieve_payout(self, p: Params, ctx: Ctx, id: str) -> dict[str, Any]:
        p.only({"expand"})
        return self.render(self.get("payout", "payout", id), p.expand())

    def list_payouts(self, p: Params, ctx: Ctx) -> dict[str, Any]:
        status = p.enum("status", ("pending", "paid", "failed", "canceled", "in_transit"))
        return self.list_response(
            "payout", p, "/v1/payouts", lambda o: status is None or o["status"] == status, extra={"status"}
        )

    # ---------------------------------------------------------------- the payout run (sandbox-only)
    def run_payouts(self, ctx: Ctx, *, currency: str | None, outcome: str, failure_code: str) -> list[dict[str, Any]]:
        """Pay out, per currency, every available balance transaction not yet in a payout.

        ``outcome``: ``paid`` (arrives now), ``in_transit`` (paid when the clock reaches
        ``arrival_date``), or ``failed`` (the funds come back with a ``payout_failure``
        transaction and the included transactions wait for the next run).
        """
        if outcome not in ("paid", "in_transit", "failed"):
            raise invalid("outcome must be paid, in_transit or failed", param="outcome")
        if failure_code not in PAYOUT_FAILURES:
            raise invalid(f"failure_code must be one of {', '.join(PAYOUT_FAILURES)}", param="failure_code")
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for txn_id in self.order["balance_transaction"]:
            txn = self.objects[txn_id]
            if (
                txn["status"] == "available"
                and txn["type"] in PAYOUT_ELIGIBLE
                and self.internal[txn_id].get("payout") is None
                and (currency is None or txn["currency"] == currency.lower())
            ):
                groups[txn["currency"]].append(txn)
        payouts = []
        now = self.now()
        for cur, txns in sorted(groups.items()):
            total = sum(t["net"] for t in txns)
            if total <= 0:
                continue  # a negative or empty balance waits for more charges
            payout = self.store(
                {
                    "id": self.ids.new("po"),
                    "object": "payout",
                    "amount": total,
                    "arrival_date": now if outcome == "paid" else now + self.settings.payout_arrival_seconds,
                    "automatic": True,
                    "balance_transaction": None,
                    "created": now,
                    "currency": cur,
                    "description": "STRIPE PAYOUT",
                    "destination": "ba_sandbox_bank_account",
                    "failure_balance_transaction": None,
                    "failure_code": None,
                    "failure_message": None,
                    "livemode": False,
                    "metadata": {},
                    "method": "standard",
                    "reconciliation_status": "in_progress",
                    "source_type": "card",
                    "statement_descriptor": None,
                    "status": "pending",
                    "type": "bank_account",
                }
            )
            txn = self.create_balance_transaction(amount=-total, currency=cur, type="payout", source=payout["id"],
                                                  fee_applies=False, description="STRIPE PAYOUT")  # fmt: skip
            payout["balance_transaction"] = txn["id"]
            for included in txns:
                self.internal[included["id"]]["payout"] = payout["id"]
            self.record("payout", object=payout["id"], amount=total, currency=cur, transactions=len(txns))
            self.emit("payout.created", payout, ctx)
            if outcome == "failed":
                self._payout_failed(payout, failure_code, ctx)
            else:
                payout["status"] = "in_transit"
                self.emit("payout.updated", payout, ctx, previous_attributes={"status": "pending"})
                if outcome == "paid":
                    self._payout_paid(payout, ctx)
            payouts.append(self.snapshot(payout))
        return payouts

    def _payout_paid(self, payout: dict[str, Any], ctx: Ctx | None) -> None:
        payout.update(status="paid", reconciliation_status="completed")
        self.emit("payout.paid", payout, ctx)
        self.emit("payout.reconciliation_completed", payout, ctx)

    def _payout_failed(self, payout: dict[str, Any], failure_code: str, ctx: Ctx | None) -> None:
        txn = self.create_balance_transaction(amount=payout["amount"], currency=payout["currency"], type="payout_failure",
                                              source=payout["id"], fee_applies=False,
                                              description="STRIPE PAYOUT FAILURE")  # fmt: skip
        for txn_id in self.order["balance_transaction"]:
            if self.internal[txn_id].get("payout") == payout["id"]:
                self.internal[txn_id]["payout"] = None  # back into the balance for the next payout
        payout.update(
            status="failed",
            failure_balance_transaction=txn["id"],
            failure_code=failure_code,
            failure_message=PAYOUT_FAILURES[failure_code],
            reconciliation_status="not_applicable",
        )
        self.record("payout_failed", object=payout["id"], amount=payout["amount"], currency=payout["currency"])
        self.emit("payout.failed", payout, ctx)
