"""The demo's flows. Each drives the product the way the real world would and checks the outcome
against the PSP's ledger and Business Central itself:

* BC users act in BC (the sandbox's admin endpoints); their actions reach payweave through the
  companion API: BC's webhook tells payweave, a job of the in-process worker syncs the changes
  and hands the document events to the engine (DESIGN 5a, pull);
* the BC extension calls payweave's HTTP API with its API key (push): authorizations, payment
  links, mandates, document events;
* customers use the PSP's hosted page and come back through payweave's ``/pay`` redirect; the
  PSP tells payweave through signed webhooks;
* time moves through the clocks (payweave's and the PSP's), so the scheduler's late capture fires;
* what payweave collected is written to BC by the reconciliation (:mod:`payweave.core.reconcile`)
  and read back through BC's API.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column
from sqlalchemy import select

from payweave.core.cli.sync_cmd import ProgressBars
from payweave.core.reconcile import record_captured_payments
from payweave.core.service.apikeys import ApiKeys
from payweave.core.store import HistoryRow, JobRow
from payweave.core.sync import InvoiceNotFound, WritebackView
from payweave.core.sync.models import ErpDocumentEventRow
from payweave.hooks.models import DocumentType, SalesDocument

from .errors import DemoFailed
from .output import FlowRecord, Narrator, fmt
from .stack import BC_PLUGIN, COMPANY, MOCK, STRIPE, DemoStack

T = TypeVar("T")

SHOP = "https://shop.cronus.example"
PAYMENT_METHODS: list[tuple[str, dict[str, Any], str]] = [
    ("PW-CARD", {"psp": MOCK, "description": "Card on file (psp_mock)", "capture_timing": "on_posting",
                 "refund_timing": "on_posting", "auto_void": True},
     "capture on posting, automatic PSP cancellation (void)"),
    ("PW-LINK", {"psp": STRIPE, "description": "Pay by link (Stripe-shaped)", "auto_capture": True,
                 "start_payment": True, "refund_timing": "on_posting", "success_url": f"{SHOP}/payment/success",
                 "error_url": f"{SHOP}/payment/error", "cancel_url": f"{SHOP}/payment/cancel"},
     "Start Payment (payment link), AutoCapture, refund on posting"),
    ("PW-SUB", {"psp": STRIPE, "description": "Subscription (mandate)", "recurring": True},
     "recurring payments on customer mandates"),
    ("PW-LATE", {"psp": MOCK, "description": "Reserve now, capture late (psp_mock)", "late_capture": True},
     "late automatic capture shortly before the reservation expires"),
]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail loudly after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


class DemoFlows:
    def __init__(self, stack: DemoStack, out: Narrator) -> None:
        self.stack = stack
        self.out = out
        self.records: list[FlowRecord] = []
        self.writebacks: list[WritebackView] = []
        self.customers: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.flows_run = 0

    def flow(self, number: int, title: str) -> None:
        self.flows_run += 1
        self.out.section(number, title)

    # ================================================================== helpers
    @property
    def api(self) -> Any:
        return self.stack.api

    def call(self, method: str, path: str, expected: int, body: Any = None) -> Any:
        response = self.api.request(method, path, json=body)
        if response.status_code != expected:
            raise DemoFailed(f"{method} {path} answered {response.status_code} instead of {expected}: {response.text[:800]}")
        return response.json()

    def document(self, document_type: DocumentType, document_id: str) -> SalesDocument:
        """The document as the BC extension sends it (read through the companion API)."""
        plugins = self.stack.engine.plugins
        account = plugins.account(BC_PLUGIN, "default", company_id=self.stack.bc_company_id)
        doc = plugins.erp(BC_PLUGIN).read_document(account, document_type, document_id)
        if doc is None:
            raise DemoFailed(f"BC's companion API has no {document_type.value} {document_id}")
        return doc

    @staticmethod
    def document_json(document: SalesDocument) -> dict[str, Any]:
        data = document.model_dump(mode="json")
        data.pop("company_id")
        return data

    def pulled(self, document_id: str, event_type: str, *, status: str | None = "dispatched") -> ErpDocumentEventRow:
        """Wait until BC's event of the document came through the sync and the engine handled it."""
        def probe() -> ErpDocumentEventRow | None:
            with self.stack.engine.store.transaction() as s:
                row = s.scalars(select(ErpDocumentEventRow).where(
                    ErpDocumentEventRow.company_id == COMPANY, ErpDocumentEventRow.document_id == document_id.lower(),
                    ErpDocumentEventRow.event_type == event_type, ErpDocumentEventRow.status != "pending",
                ).order_by(ErpDocumentEventRow.id.desc())).first()
                if row is not None:
                    s.expunge(row)
                return row

        row = wait_for(f"BC's '{event_type}' event of document {document_id} to reach payweave", probe)
        if status is not None and row.status != status:
            raise DemoFailed(f"the '{event_type}' event of {row.document_number} was {row.status}, not {status}: "
                             f"[{row.last_error_code}] {row.last_error}")
        return row

    @staticmethod
    def actions(row: ErpDocumentEventRow) -> str:
        acts = (row.result or {}).get("actions", [])
        parts = []
        for a in acts:
            text = a["action"].replace("_", " ")
            if a.get("amount") is not None:
                text += f" {fmt(a['amount'])}"
            parts.append(text)
        return ", ".join(parts) or "recorded"

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/transactions/{tx_id}", 200)

    def wait_tx(self, tx_id: str, statuses: set[str], what: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(what, lambda: (lambda v: v if v["status"] in statuses else None)(self.tx(tx_id)), timeout)

    def synced_invoice(self, invoice_id: str, number: str) -> None:
        def probe() -> bool:
            try:
                return self.stack.sync.invoice(COMPANY, invoice_id).erp_status not in ("", "Draft")
            except InvoiceNotFound:
                return False

        wait_for(f"posted invoice {number} to be synced from BC", probe)

    def write_back(self, invoice_id: str, number: str) -> WritebackView:
        """Reconciliation: the captured payment becomes a posted customer payment in BC."""
        self.synced_invoice(invoice_id, number)

        def written() -> list[WritebackView] | None:
            # the erp_sync job that brought the invoice in records the payment (reconciliation);
            # asking again here is harmless (idempotent) and covers a job that has not run yet
            record_captured_payments(self.stack.engine, self.stack.sync, COMPANY)
            found = [w for w in self.stack.sync.writebacks(COMPANY)
                     if w.kind == "payment" and w.invoice_id == invoice_id and w.status == "posted"]
            return found or None

        mine = wait_for(f"the payment on invoice {number} to be recorded in BC", written)
        expect(len(mine) == 1, f"expected one payment write-back for invoice {number}, got {len(mine)}")
        wb = mine[0]
        expect(wb.status == "posted", f"write-back {wb.document_number} is {wb.status}: {wb.last_error}")
        self.writebacks.append(wb)
        bc_invoice = self.stack.bc_api.invoice(invoice_id)
        self.out.say("payweave", f"records the payment in BC: customer payment {wb.document_number} over "
                     f"{fmt(wb.amount, wb.currency)} applied to invoice {number}, posted")
        expect(bc_invoice["status"] == "Paid" and _dec(bc_invoice["remainingAmount"]) == 0,
               f"BC shows invoice {number} as {bc_invoice['status']} with {bc_invoice['remainingAmount']} remaining")
        self.out.ok(f"BC API: invoice {number} status {bc_invoice['status']}, remainingAmount "
                    f"{fmt(bc_invoice['remainingAmount'])}")
        return wb

    def mock_ledger(self) -> Any:
        from payweave.plugins.psp_mock import ledger_for

        return ledger_for(self.stack.engine.account(MOCK, "default"))

    # ================================================================== setup
    def connect(self) -> None:
        stack, out = self.stack, self.out
        seeded = stack.bc_seed
        out.section(1, "Connect Business Central")
        out.say("bcdata", f"company {stack.bc_state.companies[stack.bc_company_id].name}: {seeded.customers} customers, "
                f"{seeded.invoices} posted invoices over {stack.sizes.years} year(s) ({seeded.open_invoices} open), "
                f"{seeded.credit_memos} credit memos, {seeded.orders} sales orders")
        out.say("payweave", f"connects through the Entra app ({stack.bc_client_id}): status Pending, the last "
                "12 months first, then the history")
        started = time.monotonic()
        progress = Progress(
            TextColumn("  {task.description}", table_column=Column(width=34, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=16), TextColumn("{task.fields[records]:>6} records"),
            TextColumn("{task.fields[pages]:>3} pages"), TimeElapsedColumn(), console=out.console, transient=False,
        )
        with progress:
            view = stack.sync.connect(plugin=BC_PLUGIN, company_id=COMPANY, progress=ProgressBars(progress))
        expect(view.status == "connected", f"the connection is {view.status}: {view.status_reason}")
        status = stack.sync.status(COMPANY)
        counts = status.counts
        expect(counts["invoices"] >= seeded.invoices, f"only {counts['invoices']} of {seeded.invoices} invoices synced")
        history = next((c for c in status.cursors if c.stream == "history" and c.entity == "invoices"), None)
        out.ok(f"Connected in {time.monotonic() - started:.1f} s: {counts['customers']} customers, {counts['invoices']} "
               f"invoices ({counts['invoice_lines']} lines), {counts['credit_memos']} credit memos, {counts['pdfs']} "
               f"invoice PDFs; {history.records if history else 0} invoices came from the history")
        if stack.sizes.years <= 1:
            out.note("--fast: the sandbox holds only the last 12 months, so the history phase has nothing to read")
        expiry = stack.sync.ensure_subscriptions(COMPANY)
        out.say("payweave", f"subscribes to BC's webhooks at {stack.sync.notification_url(COMPANY)} "
                f"(until {expiry:%Y-%m-%d %H:%M} UTC); BC validated the URL with its handshake" if expiry else
                "BC offers no webhooks; delta polling only")

    def set_up(self) -> None:
        stack, out = self.stack, self.out
        out.section(2, "Set up accounts, payment methods and the BC extension's API key")
        settings = stack.settings
        created = ApiKeys(stack.engine.store, settings.api_key_pepper.get_secret_value(), clock=stack.clock).create(
            COMPANY, name="BC extension (demo)")
        api = stack.open_api(created.secret)
        me = self.call("GET", "/v1/me", 200)
        out.say("payweave", f"creates an API key for the BC extension: company {me['company_id']}, key id {created.key.id} "
                "(the secret is shown once and stored hashed)")
        choices = self.call("GET", "/v1/account-setup/choices", 200)
        setup = self.call("PUT", "/v1/account-setup", 200,
                          {"payments_account": "10900", "bank_account": "CHECKING", "fee_account": "60800"})
        pay, bank, fee = setup["payments_account"], setup["bank_account"], setup["fee_account"]
        out.say("ext", f"GET /v1/account-setup/choices: {len(choices)} accounts in BC; PUT /v1/account-setup: payments "
                f"recorded against {pay['number']} {pay['name']}, payouts to bank account {bank['number']}, fees to "
                f"{fee['number']} {fee['name']}")
        for code, body, what in PAYMENT_METHODS:
            response = api.put(f"/v1/payment-methods/{code}", json=body)
            if response.status_code != 200:
                raise DemoFailed(f"PUT /v1/payment-methods/{code}: {response.status_code} {response.text}")
            out.say("ext", f"PUT /v1/payment-methods/{code:<8} {body['psp']:<16} {what}")
        customers = [c for c in stack.bc_api.company.entities("customers") if not c.get("currencyCode")
                     or c.get("currencyCode") == "USD"]
        self.customers = sorted(customers, key=lambda c: c["number"])
        items = [i for i in stack.bc_api.company.entities("items") if _dec(i["unitPrice"]) >= 20]
        self.items = sorted(items, key=lambda i: i["number"])
        expect(len(self.customers) >= 5 and len(self.items) >= 5, "the BC sandbox has too few customers or items")

    # ================================================================== flows
    def sales_order(self) -> None:
        stack, out = self.stack, self.out
        self.flow(3, "Sales order: reserved, partly cancelled (void), captured on posting")
        cust = self.customers[0]
        a, b, c = self.items[0], self.items[1], self.items[2]
        order = stack.bc_user.create("Order", cust["number"], [
            {"type": "Item", "number": a["number"], "quantity": 4},
            {"type": "Item", "number": b["number"], "quantity": 2},
            {"type": "Item", "number": c["number"], "quantity": 1},
        ], payment_method="PW-CARD")
        stack.bc_user.act(order["id"], "release")
        total = _dec(order["totalAmountIncludingTax"])
        out.say("bc", f"creates sales order {order['number']} for {cust['displayName']} (3 lines, {fmt(total, 'USD')}, "
                "payment method PW-CARD -> psp_mock) and releases it")
        event = self.pulled(order["id"], "released")
        out.say("pull", f"released -> {self.actions(event)}")
        doc = self.document(DocumentType.SALES_ORDER, order["id"])
        tx = self.call("POST", "/v1/authorizations", 200, {"document": self.document_json(doc)})
        tx_id = tx["id"]
        expect(tx["status"] == "reserved" and _dec(tx["amounts"]["authorized"]) == total,
               f"the order's authorization is {tx['status']} over {tx['amounts']['authorized']}")
        out.say("ext", f"on release: POST /v1/authorizations (card on file) -> transaction {tx_id} reserved "
                f"{fmt(total, 'USD')} at psp_mock ({tx['psp_reference']})")

        line = next(ln for ln in order["lines"] if ln["number"] == a["number"])
        stack.bc_user.act(order["id"], "partialCancel", {"lines": [{"lineId": line["id"], "quantity": 1}]})
        remaining = _dec(stack.bc_user.get(order["id"])["totalAmountIncludingTax"])
        excess = total - remaining
        out.say("bc", f"cancels 3 of the 4 x {a['displayName']}: the order now totals {fmt(remaining, 'USD')}")
        event = self.pulled(order["id"], "partly_cancelled")
        out.say("pull", f"partly cancelled -> {self.actions(event)} (Automatic PSP Cancellation)")
        view = self.tx(tx_id)
        expect(_dec(view["amounts"]["voided"]) == excess,
               f"voided {view['amounts']['voided']} instead of the excess {excess}")

        posted = stack.bc_user.act(order["id"], "post")
        assert posted is not None
        out.say("bc", f"posts the order: posted invoice {posted['number']} over {fmt(posted['totalAmountIncludingTax'], 'USD')}")
        event = self.pulled(order["id"], "posted")
        out.say("pull", f"posted -> {self.actions(event)} (capture timing: on posting)")
        view = self.tx(tx_id)
        expect(view["status"] == "captured" and _dec(view["amounts"]["captured"]) == remaining,
               f"after posting the payment is {view['status']}, captured {view['amounts']['captured']}")
        ledger = self.mock_ledger()
        ref = view["psp_reference"]
        moves = (ledger.total("reserve", "USD", ref), ledger.total("void", "USD", ref), ledger.total("capture", "USD", ref))
        expect(moves == (total, excess, remaining), f"psp_mock's ledger shows reserve/void/capture {moves}")
        out.ok(f"psp_mock ledger of {ref}: reserved {fmt(total)}, voided {fmt(excess)}, captured {fmt(remaining)}")
        wb = self.write_back(posted["id"], posted["number"])
        self.records.append(FlowRecord(
            "sales order", f"order {order['number']}\ninvoice {posted['number']}", MOCK, tx_id, view["status"],
            f"reserved {fmt(total)}\nvoided {fmt(excess)}\ncaptured {fmt(remaining)}",
            f"payment {wb.document_number}\ninvoice Paid"))

    def payment_link(self) -> dict[str, Any]:
        stack, out = self.stack, self.out
        self.flow(4, "Sales invoice paid through a payment link")
        cust = self.customers[1]
        inv = stack.bc_user.create("Invoice", cust["number"], [
            {"type": "Item", "number": self.items[3]["number"], "quantity": 2},
            {"type": "Item", "number": self.items[4]["number"], "quantity": 1},
            {"type": "Resource", "number": "SHIPPING", "quantity": 1},
        ], payment_method="PW-LINK")
        total = _dec(inv["totalAmountIncludingTax"])
        out.say("bc", f"creates sales invoice {inv['number']} for {cust['displayName']} ({fmt(total, 'USD')}, "
                "incl. shipping; payment method PW-LINK -> Stripe-shaped PSP) and chooses Start Payment")
        doc = self.document(DocumentType.SALES_INVOICE, inv["id"])
        link = self.call("POST", "/v1/payment-links", 201, {"document": self.document_json(doc)})
        tx_id = link["transaction_id"]
        out.say("ext", f"POST /v1/payment-links -> {link['url']} (transaction {tx_id} {link['transaction_status']}); "
                "BC e-mails it to the customer")
        page = stack.anonymous.get(link["url"])
        expect(page.status_code == 200, f"the hosted payment page answered {page.status_code}")
        done = stack.stripe.control(f"/checkout/{link['psp_link_id']}/complete", {"payment_method": "pm_card_visa"})
        redirect = done["redirect_url"]
        expect(redirect.startswith(f"{stack.pw_url}/pay/{link['id']}/success"), f"the PSP redirected to {redirect}")
        back = stack.anonymous.get(redirect.replace(stack.pw_url, ""), follow_redirects=False)
        expect(back.status_code == 303, f"payweave's success redirect answered {back.status_code}")
        out.say("customer", f"opens the link, pays {fmt(total, 'USD')} with a Visa card on the hosted page and is sent "
                f"back to payweave's /pay/.../success")
        out.say("payweave", f"303 -> {back.headers['location']}")
        out.note("the redirect never decides the payment's status; the PSP's signed webhook does")
        view = self.wait_tx(tx_id, {"captured"}, "the payment link's payment to be captured (signed webhooks)")
        events = self.call("GET", f"/v1/transactions/{tx_id}/psp-events", 200)
        kinds = ", ".join(f"{e['type']} ({e['status'].replace('_', ' ')})" for e in events)
        out.say("psp", f"signed webhooks to /webhooks/{STRIPE}/default: {kinds}")
        pi = view["psp_reference"]
        expect(stack.stripe.moved(pi, "capture") == total, f"the PSP captured {stack.stripe.moved(pi, 'capture')}")
        out.ok(f"PSP journal of {pi}: captured {fmt(total, 'USD')} (AutoCapture)")

        posted = stack.bc_user.act(inv["id"], "post")
        assert posted is not None
        out.say("bc", f"posts the invoice: {posted['number']}")
        event = self.pulled(inv["id"], "posted")
        out.say("pull", f"posted -> {self.actions(event)}")
        wb = self.write_back(inv["id"], posted["number"])
        record = FlowRecord("payment link", f"invoice {posted['number']}", STRIPE, tx_id, view["status"],
                            f"captured {fmt(total)}", f"payment {wb.document_number}\ninvoice Paid")
        self.records.append(record)
        return {"invoice": posted, "tx_id": tx_id, "customer": cust, "total": total, "record": record,
                "lines": posted["lines"]}

    def credit_memo(self, paid: dict[str, Any]) -> None:
        stack, out = self.stack, self.out
        self.flow(5, "Credit memo: partial refund on posting")
        invoice, cust = paid["invoice"], paid["customer"]
        line = next(ln for ln in paid["lines"] if ln["type"] == "Item")
        memo = stack.bc_user.create("Credit Memo", cust["number"], [
            {"type": "Item", "number": line["number"], "quantity": 1},
        ], payment_method="PW-LINK", appliesToInvoiceId=invoice["id"])
        total = _dec(memo["totalAmountIncludingTax"])
        posted = stack.bc_user.act(memo["id"], "post")
        assert posted is not None
        out.say("bc", f"credits 1 x {line['description']} of invoice {invoice['number']}: credit memo {posted['number']} "
                f"over {fmt(total, 'USD')}, posted")
        event = self.pulled(memo["id"], "posted")
        out.say("pull", f"posted -> {self.actions(event)} (refund timing: on posting)")
        view = self.tx(paid["tx_id"])
        expect(_dec(view["amounts"]["refunded"]) == total and view["status"] == "partly_refunded",
               f"the payment is {view['status']} with {view['amounts']['refunded']} refunded")
        pi = view["psp_reference"]
        expect(stack.stripe.moved(pi, "refund") == total, f"the PSP refunded {stack.stripe.moved(pi, 'refund')}")
        out.ok(f"PSP journal of {pi}: refunded {fmt(total, 'USD')} of {fmt(paid['total'], 'USD')}; transaction "
               f"{view['status'].replace('_', ' ')}")
        record = paid["record"]
        record.flow += " + credit memo"
        record.documents += f"\ncredit memo {posted['number']}"
        record.status = view["status"]
        record.amounts += f"\nrefunded {fmt(total)}"

    def recurring(self) -> None:
        stack, out = self.stack, self.out
        self.flow(6, "Recurring charge on a customer mandate")
        cust = self.customers[2]
        customer = stack.stripe.api("POST", "/v1/customers", {
            "name": cust["displayName"], "email": cust.get("email") or None, "metadata": {"bc_customer": cust["number"]}})
        setup = stack.stripe.api("POST", "/v1/setup_intents", {
            "customer": customer["id"], "payment_method": "pm_card_visa", "usage": "off_session", "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}}})
        out.say("customer", f"{cust['displayName']} signs a mandate at the PSP (card saved for off-session charges): "
                f"{setup['mandate']}")
        inv = stack.bc_user.create("Invoice", cust["number"], [
            {"type": "Resource", "number": "CONSULT", "quantity": 4, "description": "Service plan, monthly"},
        ], payment_method="PW-SUB")
        doc = self.document(DocumentType.SALES_INVOICE, inv["id"])
        mandate = self.call("POST", "/v1/mandates", 201, {
            "payment_method_code": "PW-SUB", "customer": doc.customer.model_dump(mode="json"),
            "mandate_reference": setup["mandate"], "description": "Service plan"})
        out.say("ext", f"POST /v1/mandates -> mandate {mandate['id']} registered for payment method PW-SUB")
        total = _dec(inv["totalAmountIncludingTax"])
        out.say("bc", f"creates the monthly invoice {inv['number']} ({fmt(total, 'USD')}, payment method PW-SUB -> "
                "Stripe-shaped PSP)")
        tx = self.call("POST", f"/v1/mandates/{mandate['id']}/charges", 201, {"document": self.document_json(doc)})
        expect(tx["status"] == "captured" and _dec(tx["amounts"]["captured"]) == total,
               f"the mandate charge is {tx['status']}, captured {tx['amounts']['captured']}")
        out.say("ext", f"POST /v1/mandates/{{id}}/charges -> transaction {tx['id']} captured {fmt(total, 'USD')} "
                "without the customer")
        pi = tx["psp_reference"]
        expect(stack.stripe.moved(pi, "capture") == total, f"the PSP captured {stack.stripe.moved(pi, 'capture')}")
        out.ok(f"PSP journal of {pi}: off-session charge captured {fmt(total, 'USD')}")
        posted = stack.bc_user.act(inv["id"], "post")
        assert posted is not None
        out.say("bc", f"posts the invoice: {posted['number']}")
        event = self.pulled(inv["id"], "posted")
        out.say("pull", f"posted -> {self.actions(event)}")
        wb = self.write_back(inv["id"], posted["number"])
        self.records.append(FlowRecord("recurring (mandate)", f"invoice {posted['number']}", STRIPE, tx["id"],
                                       tx["status"], f"captured {fmt(total)}",
                                       f"payment {wb.document_number}\ninvoice Paid"))

    def refused(self) -> None:
        stack, out = self.stack, self.out
        self.flow(7, "A document payweave refuses: an unsupported BC feature")
        cust = self.customers[3]
        order = stack.bc_user.create("Order", cust["number"], [
            {"type": "Item", "number": self.items[0]["number"], "quantity": 2},
        ], payment_method="PW-CARD", invoiceDiscountAmount="25")
        stack.bc_user.act(order["id"], "release")
        out.say("bc", f"creates sales order {order['number']} with an invoice discount of 25.00 and payment method "
                "PW-CARD, and releases it")
        doc = self.document(DocumentType.SALES_ORDER, order["id"])
        response = self.api.post("/v1/document-events", json={
            "event_id": f"bc-ext-{uuid.uuid4()}", "type": "released", "document": self.document_json(doc),
            "occurred_at": datetime.now(UTC).isoformat()})
        expect(response.status_code == 422, f"the release was answered {response.status_code}: {response.text[:300]}")
        problem = response.json()
        expect(response.headers["content-type"].startswith("application/problem+json"), "the refusal is no problem document")
        expect(problem["code"] == "document_feature_unsupported" and "Invoice Discount" in problem["detail"],
               f"unexpected refusal {problem}")
        out.say("ext", f"POST /v1/document-events (released) -> {response.status_code} {problem['title']}")
        out.refusal(problem["code"], problem["detail"])
        event = self.pulled(order["id"], "released", status="refused")
        expect(event.last_error_code == problem["code"], f"the pulled event was refused with {event.last_error_code}")
        out.say("pull", f"the same release, pulled from BC: refused [{event.last_error_code}]; no payment was made")
        found = self.call("GET", f"/v1/transactions?document_number={order['number']}", 200)
        expect(found == [], f"a refused document has transactions: {found}")
        self.records.append(FlowRecord("refused document", f"order {order['number']}", "(no PSP call)", "-",
                                       "refused", "no payment", "nothing"))

    def payout(self) -> None:
        stack, out = self.stack, self.out
        self.flow(8, "Payout recorded as a deposit in BC, with the PSP's fees")
        stack.stripe.control("/clock", {"advance_seconds": 2 * 86400 + 60})
        out.say("clock", "2 days pass at the PSP: the captured funds become available")
        run = stack.stripe.control("/payouts/run", {"outcome": "paid"})
        payouts = run["payouts"]
        expect(len(payouts) == 1, f"the PSP made {len(payouts)} payouts")
        out.say("psp", f"pays out {payouts[0]['id']}: {fmt(Decimal(payouts[0]['amount']) / 100, 'USD')} to the "
                "merchant's bank account (signed payout.paid webhook to payweave)")
        deposits = stack.sync.record_payouts(COMPANY, STRIPE)
        expect(len(deposits) == 1 and deposits[0].status == "posted",
               f"deposits: {[(d.document_number, d.status, d.last_error) for d in deposits]}")
        wb = deposits[0]
        self.writebacks.append(wb)
        payout = wb_payout = None
        for p in stack.engine.plugins.psp(STRIPE).list_payouts(stack.engine.account(STRIPE, "default"), None):
            if p.payout_id == wb.source_key:
                payout = wb_payout = p
        assert payout is not None and wb_payout is not None
        out.say("payweave", f"records deposit {wb.document_number}: gross {fmt(payout.gross)}, fees {fmt(payout.fee)}, "
                f"net {fmt(payout.net, payout.currency)} ({len(payout.lines)} PSP transactions)")
        numbers = stack.bc_api.account_numbers()
        booked: dict[str, Decimal] = {}
        for entry in stack.bc_api.gl_entries(wb.document_number):
            number = numbers.get(str(entry.get("accountId", "")).lower()) or str(entry.get("accountNumber", ""))
            booked[number] = booked.get(number, Decimal(0)) + _dec(entry["debitAmount"]) - _dec(entry["creditAmount"])
        want = {"10100": payout.net, "60800": payout.fee, "10900": -payout.gross}
        expect(booked == want, f"BC's G/L entries of {wb.document_number} are {booked}, expected {want}")
        out.ok(f"BC G/L entries of {wb.document_number}: bank 10100 +{fmt(payout.net)}, fees 60800 +{fmt(payout.fee)}, "
               f"clearing 10900 {fmt(-payout.gross)}")
        self.records.append(FlowRecord("payout", f"{len(payout.lines)} PSP transactions", STRIPE, payout.payout_id,
                                       payout.status,
                                       f"gross {fmt(payout.gross)}\nfees {fmt(payout.fee)}\nnet {fmt(payout.net)}",
                                       f"deposit {wb.document_number}\nbank, fees, clearing"))

    def late_capture(self) -> None:
        stack, out = self.stack, self.out
        self.flow(9, "Late automatic capture fired by the scheduler")
        cust = self.customers[4]
        order = stack.bc_user.create("Order", cust["number"], [
            {"type": "Item", "number": self.items[5 % len(self.items)]["number"], "quantity": 3},
        ], payment_method="PW-LATE")
        stack.bc_user.act(order["id"], "release")
        total = _dec(order["totalAmountIncludingTax"])
        out.say("bc", f"creates sales order {order['number']} for {cust['displayName']} ({fmt(total, 'USD')}, payment "
                "method PW-LATE -> psp_mock) and releases it; shipping will take a while")
        event = self.pulled(order["id"], "released")
        out.say("pull", f"released -> {self.actions(event)}")
        doc = self.document(DocumentType.SALES_ORDER, order["id"])
        tx = self.call("POST", "/v1/authorizations", 200, {"document": self.document_json(doc)})
        expect(tx["status"] == "reserved" and tx["expires_at"], f"the authorization is {tx['status']}")
        expires = datetime.fromisoformat(tx["expires_at"])
        out.say("ext", f"POST /v1/authorizations -> transaction {tx['id']} reserved {fmt(total, 'USD')}; the "
                f"reservation expires {expires:%Y-%m-%d %H:%M} UTC")
        with stack.engine.store.transaction() as s:
            job = s.scalars(select(JobRow).where(JobRow.transaction_id == tx["id"], JobRow.kind == "late_capture",
                                                 JobRow.status == "pending")).first()
            expect(job is not None, "no late-capture job was scheduled")
            assert job is not None
            job_id, due = job.id, job.due_at
        out.say("scheduler", f"late-capture job {job_id} due {due:%Y-%m-%d %H:%M} UTC "
                f"({stack.settings.jobs.late_capture_margin_seconds / 3600:.0f} h before the reservation expires)")
        step = due - stack.clock.now() + timedelta(seconds=30)
        stack.clock.advance(step)
        self.mock_ledger().advance(seconds=step.total_seconds())
        days, rest = divmod(int(step.total_seconds()), 86400)
        out.say("clock", f"{days} days {rest // 3600} hours pass on payweave's clock and the PSP's")

        def job_done() -> Any:
            with stack.engine.store.transaction() as s:
                row = s.get(JobRow, job_id)
                return row.status if row is not None and row.status in ("done", "failed") else None

        outcome = wait_for("the late-capture job to run", job_done)
        expect(outcome == "done", f"the late-capture job {job_id} {outcome}")
        view = self.tx(tx["id"])
        expect(view["status"] == "captured" and _dec(view["amounts"]["captured"]) == total,
               f"after the late capture the payment is {view['status']}, captured {view['amounts']['captured']}")
        with stack.engine.store.transaction() as s:
            trigger = s.scalars(select(HistoryRow.trigger).where(
                HistoryRow.transaction_id == tx["id"], HistoryRow.action.like("capture%"),
                HistoryRow.outcome == "ok")).all()
        expect("late_capture" in trigger, f"the capture's trigger was {trigger}")
        out.say("scheduler", f"the in-process worker ran job {job_id}: captured {fmt(total, 'USD')} before the "
                "reservation expired")
        ref = view["psp_reference"]
        expect(self.mock_ledger().total("capture", "USD", ref) == total, "psp_mock's ledger shows no capture")
        out.ok(f"psp_mock ledger of {ref}: captured {fmt(total)} (trigger late_capture)")
        self.records.append(FlowRecord("late capture", f"order {order['number']}\n(not invoiced yet)", MOCK, tx["id"],
                                       view["status"], f"reserved {fmt(total)}\ncaptured {fmt(total)}",
                                       "nothing yet\n(order not invoiced)"))

    # ================================================================== closing checks
    def final_checks(self) -> None:
        stack = self.stack
        again = record_captured_payments(stack.engine, stack.sync, COMPANY)
        expect(again == [], f"a second reconciliation wrote {len(again)} more payment(s) to BC")
        failed_jobs = stack.engine.jobs.counts().get("failed", 0)
        expect(failed_jobs == 0, f"{failed_jobs} job(s) failed (see `payweave jobs`)")
        stack.stripe.control("/webhooks/flush", {})  # what is still queued goes out now

        def settled() -> tuple[list[dict[str, Any]]] | None:
            found = stack.stripe.deliveries()
            return (found,) if all(d["state"] in ("delivered", "failed") for d in found) else None

        (deliveries,) = wait_for("the PSP's webhooks to be delivered", settled)
        bad = [d for d in deliveries if d["state"] != "delivered"]
        expect(not bad, f"the PSP could not deliver {len(bad)} webhook(s) to payweave: {bad[:2]}")
        with stack.engine.store.transaction() as s:
            stuck = s.scalars(select(ErpDocumentEventRow).where(ErpDocumentEventRow.status == "pending")).all()
        expect(not stuck, f"{len(stuck)} BC document event(s) still wait to be handled")


__all__ = ["PAYMENT_METHODS", "DemoFlows", "expect", "wait_for"]
