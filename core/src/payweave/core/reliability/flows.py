"""The operations a schedule drives, each as steps a client (BC, a person, the PSP) takes.

Every step is a request with a fixed request id (what a BC extension sends as its
Idempotency-Key), so a client that saw no answer can repeat it after a crash or a timeout, and
payweave must answer with the first outcome instead of acting twice. Each flow also states its
*intent*: what must have happened exactly once at the PSP, in payweave's store and in BC when
the dust has settled (checked by :mod:`payweave.core.reliability.checker`).

Flows (the "operation kinds" of the report):

=============  ============================================================================
capture        release, authorize, 1-3 manual captures (partial / multiple / single-capture PSP)
capture_post   capture when the posted invoice arrives (capture timing "on posting")
capture_job    capture via the job queue (the worker captures)
void           partial capture then void of the rest, a partial void, or the auto-void of a
               deleted order
refund         1-3 partial refunds, or the refund of a posted credit memo (on posting / job)
credit         cart-independent credits
link           payment link: created, paid by the customer at the PSP, confirmed by webhook
writeback      capture, then the captured payment recorded in BC (customer payment, posted)
sync           BC order released -> pulled by the sync -> authorized -> posted in BC -> pulled
               -> captured on posting -> recorded in BC
=============  ============================================================================
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from payweave.hooks.models import DocumentStatus, DocumentType, SalesDocument, SyncEntity
from payweave.hooks.money import from_minor_units, quantum, to_minor_units

from .world import COMPANY, World

FLOWS = ("capture", "capture_post", "capture_job", "void", "refund", "credit", "link", "writeback", "sync")
#: currencies of the in-process flows: two decimals, none, three
CURRENCIES = ("EUR", "EUR", "JPY", "KWD")


@dataclass
class Intent:
    """What must hold for one document's payment after recovery."""

    label: str
    company: str
    document_type: str
    document_id: str
    profile: str
    currency: str
    reserved: int
    captures: list[int] = field(default_factory=list)
    released: int = 0
    """Released without capture: voids plus the rest a final partial capture gives back."""
    voids: int = 0
    refunds: list[int] = field(default_factory=list)
    credits: list[int] = field(default_factory=list)
    capture_ops: int | None = None
    """Engine capture operations expected (None: one per capture; 0 when the PSP captured itself)."""
    via_link: bool = False
    bc_invoice_id: str | None = None
    bc_invoice_total: Decimal | None = None
    writebacks: int = 0


@dataclass
class Step:
    name: str
    run: Callable[[], Any]
    points: tuple[str, ...] = ()


@dataclass
class Flow:
    kind: str
    steps: list[Step]
    intents: list[Intent]
    documents: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> list[str]:
        seen: list[str] = []
        for step in self.steps:
            for p in (f"step.{step.name}", *step.points):
                if p not in seen:
                    seen.append(p)
        for point in ("webhook.receive", "webhook.recorded"):
            if point not in seen:
                seen.append(point)  # the PSP's webhooks reach payweave in every flow
        return seen


class Ctx:
    """One schedule's helpers: ids and amounts from the schedule's random generator."""

    def __init__(self, world: World, rng: random.Random, seed: int, flow: str = "") -> None:
        self.world = world
        self.rng = rng
        self.seed = seed
        self.flow = flow

    @property
    def engine(self) -> Any:
        return self.world.engine  # the current process's engine (it changes on a restart)

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def rid(self, step: str) -> str:
        return f"rel:{self.flow}:{self.seed}:{step}"

    def amount(self, currency: str) -> int:
        """A total in minor units, at the currency's scale (no float ever)."""
        exponent = {"EUR": 2, "JPY": 0, "KWD": 3, "USD": 2}[currency]
        major = self.rng.choice([self.rng.randint(1, 20), self.rng.randint(20, 2000), self.rng.randint(2000, 250000)])
        minor = self.rng.randint(0, 10**exponent - 1) if exponent else 0
        return major * 10**exponent + minor

    def split(self, total: int, parts: int) -> list[int]:
        if parts <= 1 or total < parts:
            return [total]
        cuts = sorted(self.rng.sample(range(1, total), parts - 1))
        return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]

    def document(self, code: str, currency: str, total_minor: int, *, company: str = COMPANY,
                 document_type: DocumentType = DocumentType.SALES_ORDER, document_id: str | None = None) -> SalesDocument:
        from payweave.core.testing.documents import item_line, sales_document

        total = from_minor_units(total_minor, currency)
        lines = [item_line(10000, total, currency=currency)]
        if total_minor > 3 and self.rng.random() < 0.4:  # two lines that add up to the same total
            first = (total / 3).quantize(quantum(currency), rounding=ROUND_DOWN)
            lines = [item_line(10000, first, currency=currency), item_line(20000, total - first, currency=currency)]
        return sales_document(document_type, company_id=company, document_id=document_id or self.uid(),
                              number=f"REL-{self.seed}", lines=lines, payment_method_code=code, currency=currency)

    def tx_id(self, doc: SalesDocument) -> str:
        view = self.engine.transaction_for_document(doc.company_id, doc.document_type, doc.document_id)
        if view is None:
            raise LookupError(f"no transaction for {doc.document_type.value} {doc.document_id}")
        return view.id

    # ---- steps shared by the flows -------------------------------------------------------------
    def release(self, doc: SalesDocument) -> Step:
        from payweave.core.testing.documents import document_event

        event = document_event("released", doc, event_id=self.rid(f"released:{doc.document_id}"))
        return Step("release", lambda: self.engine.handle_event(event), ())

    def authorize(self, doc: SalesDocument) -> Step:
        def run() -> Any:
            return self.engine.reserve(doc.company_id, self.tx_id(doc), request_id=self.rid("authorize"))

        return Step("authorize", run, ("psp.reserve.before", "psp.reserve.after"))

    def capture(self, doc: SalesDocument, minor: int, n: int) -> Step:
        def run() -> Any:
            amount = from_minor_units(minor, doc.currency)
            return self.engine.capture(doc.company_id, self.tx_id(doc), amount, request_id=self.rid(f"capture-{n}"))

        return Step(f"capture-{n}", run, ("psp.capture.before", "psp.capture.after"))

    def refund(self, doc: SalesDocument, minor: int, n: int) -> Step:
        def run() -> Any:
            amount = from_minor_units(minor, doc.currency)
            return self.engine.refund(doc.company_id, self.tx_id(doc), amount, request_id=self.rid(f"refund-{n}"))

        return Step(f"refund-{n}", run, ("psp.refund.before", "psp.refund.after"))

    def credit(self, doc: SalesDocument, minor: int, n: int) -> Step:
        def run() -> Any:
            amount = from_minor_units(minor, doc.currency)
            return self.engine.credit(doc.company_id, self.tx_id(doc), amount, request_id=self.rid(f"credit-{n}"))

        return Step(f"credit-{n}", run, ("psp.credit.before", "psp.credit.after"))

    def void(self, doc: SalesDocument, minor: int | None, n: int) -> Step:
        def run() -> Any:
            amount = None if minor is None else from_minor_units(minor, doc.currency)
            return self.engine.void(doc.company_id, self.tx_id(doc), amount, request_id=self.rid(f"void-{n}"))

        return Step(f"void-{n}", run, ("psp.void.before", "psp.void.after"))

    def event(self, name: str, event_type: str, doc: SalesDocument, points: tuple[str, ...], **fields: Any) -> Step:
        from payweave.core.testing.documents import document_event

        event = document_event(event_type, doc, event_id=self.rid(name), **fields)
        return Step(name, lambda: self.engine.handle_event(event), points)

    def run_jobs(self, name: str = "worker") -> Step:
        def run() -> int:
            total = 0
            for _ in range(20):
                ran = self.world.proc.worker.run_once()
                total += ran
                if ran == 0:
                    break
            return total

        return Step(name, run, ())


def _intent(ctx: Ctx, label: str, doc: SalesDocument, profile: str, reserved: int, **kw: Any) -> Intent:
    return Intent(label=label, company=doc.company_id, document_type=doc.document_type.value, document_id=doc.document_id,
                  profile=profile, currency=doc.currency, reserved=reserved, **kw)


# =============================================================================================== flows
def flow_capture(ctx: Ctx) -> Flow:
    rng = ctx.rng
    code, profile = rng.choice([("FULL", "full"), ("SINGLE", "single"), ("NOPARTIAL", "nopartial")])
    cur = rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    doc = ctx.document(code, cur, total)
    released = 0
    if profile == "full":
        # everything, or only part of it (the rest stays reserved), in one to three captures
        target = total if rng.random() < 0.7 or total < 2 else rng.randint(1, total - 1)
        parts = ctx.split(target, rng.randint(1, 3))
    elif profile == "single":
        part = total if rng.random() < 0.5 or total < 2 else rng.randint(1, total - 1)
        parts, released = [part], total - part  # a single-capture PSP releases the rest
    else:
        parts = [total]
    steps = [ctx.release(doc), ctx.authorize(doc)] + [ctx.capture(doc, p, i) for i, p in enumerate(parts)]
    intent = _intent(ctx, "capture", doc, profile, total, captures=parts, released=released)
    return Flow("capture", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_capture_post(ctx: Ctx) -> Flow:
    from payweave.core.testing.documents import posted_invoice

    cur = ctx.rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    doc = ctx.document("POSTING", cur, total)
    invoice = posted_invoice(doc, document_id=ctx.uid(), number=f"REL-INV-{ctx.seed}")
    steps = [ctx.release(doc), ctx.authorize(doc),
             ctx.event("posted", "posted", invoice, ("psp.capture.before", "psp.capture.after"),
                       posted_document_id=invoice.document_id, posted_document_number=invoice.number)]
    intent = _intent(ctx, "capture on posting", doc, "full", total, captures=[total])
    return Flow("capture_post", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_capture_job(ctx: Ctx) -> Flow:
    from payweave.core.testing.documents import posted_invoice

    cur = ctx.rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    doc = ctx.document("JOBQ", cur, total)
    invoice = posted_invoice(doc, document_id=ctx.uid(), number=f"REL-INV-{ctx.seed}")
    worker = ctx.run_jobs("worker")
    worker.points = ("psp.capture.before", "psp.capture.after")
    steps = [ctx.release(doc), ctx.authorize(doc),
             ctx.event("posted", "posted", invoice, (), posted_document_id=invoice.document_id,
                       posted_document_number=invoice.number),
             worker]
    intent = _intent(ctx, "capture via job queue", doc, "full", total, captures=[total])
    return Flow("capture_job", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_void(ctx: Ctx) -> Flow:
    rng = ctx.rng
    cur = rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    variant = rng.choice(["capture_then_void", "partial_void", "full_void", "deleted"])
    if total < 3:
        variant = "full_void"
    if variant == "deleted":
        doc = ctx.document("VOID", cur, total)
        steps = [ctx.release(doc), ctx.authorize(doc),
                 ctx.event("deleted", "deleted", doc, ("psp.void.before", "psp.void.after"))]
        intent = _intent(ctx, "void on deletion", doc, "full", total, released=total, voids=1)
    else:
        doc = ctx.document("FULL", cur, total)
        steps = [ctx.release(doc), ctx.authorize(doc)]
        if variant == "capture_then_void":
            part = rng.randint(1, total - 1)
            steps += [ctx.capture(doc, part, 0), ctx.void(doc, None, 0)]
            intent = _intent(ctx, "capture then void the rest", doc, "full", total, captures=[part],
                             released=total - part, voids=1)
        elif variant == "partial_void":
            part = rng.randint(1, total - 1)
            steps += [ctx.void(doc, part, 0), ctx.capture(doc, total - part, 0)]
            intent = _intent(ctx, "partial void, capture the rest", doc, "full", total, captures=[total - part],
                             released=part, voids=1)
        else:
            steps += [ctx.void(doc, None, 0)]
            intent = _intent(ctx, "void everything", doc, "full", total, released=total, voids=1)
    return Flow("void", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_refund(ctx: Ctx) -> Flow:
    from payweave.core.testing.documents import credit_memo, item_line, posted_invoice

    rng = ctx.rng
    cur = rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    variant = rng.choice(["manual", "manual", "on_posting", "job_queue"])
    if variant == "manual":
        doc = ctx.document("FULL", cur, total)
        refundable = total
        parts = ctx.split(rng.randint(1, refundable), rng.randint(1, 3))
        steps = [ctx.release(doc), ctx.authorize(doc), ctx.capture(doc, total, 0)]
        steps += [ctx.refund(doc, p, i) for i, p in enumerate(parts)]
        intent = _intent(ctx, "partial refunds", doc, "full", total, captures=[total], refunds=parts)
        return Flow("refund", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])
    code = "POSTING" if variant == "on_posting" else "JOBQ"
    doc = ctx.document(code, cur, total)
    invoice = posted_invoice(doc, document_id=ctx.uid(), number=f"REL-INV-{ctx.seed}")
    back = rng.randint(1, total)
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, from_minor_units(back, cur), currency=cur)],
                       company_id=doc.company_id, document_id=ctx.uid(), number=f"REL-CM-{ctx.seed}",
                       payment_method_code=code, currency=cur)
    steps = [ctx.release(doc), ctx.authorize(doc),
             ctx.event("posted", "posted", invoice, ("psp.capture.before", "psp.capture.after"),
                       posted_document_id=invoice.document_id, posted_document_number=invoice.number)]
    if variant == "job_queue":
        steps.append(ctx.run_jobs("capture-worker"))
        steps[-1].points = ("psp.capture.before", "psp.capture.after")
    steps.append(ctx.event("memo-posted", "posted", memo,
                           ("psp.refund.before", "psp.refund.after") if variant == "on_posting" else ()))
    if variant == "job_queue":
        steps.append(ctx.run_jobs("refund-worker"))
        steps[-1].points = ("psp.refund.before", "psp.refund.after")
    intent = _intent(ctx, f"credit memo refunded ({variant})", doc, "full", total, captures=[total], refunds=[back])
    return Flow("refund", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_credit(ctx: Ctx) -> Flow:
    rng = ctx.rng
    cur = rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    doc = ctx.document("FULL", cur, total)
    parts = ctx.split(rng.randint(1, total), rng.randint(1, 2))
    steps = [ctx.release(doc), ctx.authorize(doc), ctx.capture(doc, total, 0)]
    steps += [ctx.credit(doc, p, i) for i, p in enumerate(parts)]
    intent = _intent(ctx, "credits", doc, "full", total, captures=[total], credits=parts)
    return Flow("credit", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def flow_link(ctx: Ctx) -> Flow:
    rng = ctx.rng
    auto = rng.random() < 0.4
    code, profile = ("AUTOLINK", "auto") if auto else ("LINK", "full")
    cur = rng.choice(CURRENCIES)
    total = ctx.amount(cur)
    doc = ctx.document(code, cur, total)
    world = ctx.world
    ledger = world.ledgers[profile]

    def create() -> Any:
        return world.proc.links.create(doc, request_id=ctx.rid("link"))

    def customer_pays() -> Any:
        view = world.proc.links.create(doc, request_id=ctx.rid("link"))  # the link (repeating the request)
        link = ledger.links[view.psp_link_id]
        if link.status == "open":
            ledger.complete_link(view.psp_link_id)
        return link.payment_reference

    def confirm() -> Any:
        # what the PSP sends now, and again what payweave did not take before (the PSP retries)
        batch, world.redeliver = world.pending_webhooks() + world.redeliver, []
        for delivery in batch:
            if not world.deliver(delivery):
                world.redeliver.append(delivery)
        view = ctx.engine.transaction_for_document(doc.company_id, doc.document_type, doc.document_id)
        if view is None or view.status.value in ("prepared", "pending"):
            from payweave.hooks.errors import TemporarilyUnavailable

            raise TemporarilyUnavailable("the PSP's confirmation has not been applied yet")
        return view

    steps = [Step("create-link", create, ("psp.create_payment_link.before", "psp.create_payment_link.after")),
             Step("customer-pays", customer_pays, ()),
             Step("confirm", confirm, ("webhook.receive",))]
    if auto:
        intent = _intent(ctx, "payment link, auto capture", doc, profile, total, captures=[total], capture_ops=0,
                         via_link=True)
    else:
        steps.append(ctx.capture(doc, total, 0))
        intent = _intent(ctx, "payment link, then capture", doc, profile, total, captures=[total], via_link=True)
    return Flow("link", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def _bc_invoice(ctx: Ctx, total_minor: int, currency: str) -> Any:
    """A posted invoice in the BC sandbox over exactly ``total_minor`` (no tax), in BC's LCY."""
    from payweave.plugins.erp_businesscentral.sandbox.state import LineSpec

    state, company = ctx.world.bc_state, ctx.world.bc_company
    with state.lock:
        local = [c for c in sorted(company.tables["customers"].by_id.values(), key=lambda c: c.number) if not c.currency]
        customer = local[ctx.rng.randrange(min(2, len(local)))]
        item = sorted(company.tables["items"].by_id.values(), key=lambda i: i.number)[0]
        draft = state.create_document(company, "invoice", customer, [
            LineSpec(number=item.number, quantity=Decimal(1), unit_price=from_minor_units(total_minor, currency),
                     tax_percent=Decimal(0))])
        return state.post_document(company, draft)


def flow_writeback(ctx: Ctx) -> Flow:
    """A direct sales invoice posted in BC, paid through payweave in one or two captures; each
    capture is recorded in BC by the product's reconciliation (``record_captured_payments``),
    which the erp_sync job also runs after every sync."""
    rng = ctx.rng
    world = ctx.world
    cid = world.bc_company_id
    cur = world.bc_company.lcy
    total = ctx.amount(cur)
    invoice = _bc_invoice(ctx, total, cur)
    doc = ctx.document("MANUAL", cur, total, company=cid, document_type=DocumentType.SALES_INVOICE,
                       document_id=invoice.id)
    posted = doc.model_copy(update={"status": DocumentStatus.POSTED})
    parts = ctx.split(total, rng.randint(1, 2))
    points = ("erp.record_payment.before", "erp.record_payment.after")
    steps = [ctx.release(doc), ctx.authorize(doc),
             ctx.event("posted", "posted", posted, (), posted_document_id=invoice.id,
                       posted_document_number=invoice.number),
             _pull(ctx, "pull-invoice")]
    for i, part in enumerate(parts):
        steps += [ctx.capture(doc, part, i), _writeback_step(ctx, doc, f"writeback-{i}", points)]
    intent = _intent(ctx, "captures recorded in BC", doc, "full", total, captures=parts, bc_invoice_id=invoice.id,
                     bc_invoice_total=invoice.total_incl, writebacks=1)
    return Flow("writeback", steps, [intent], [(doc.company_id, doc.document_type.value, doc.document_id)])


def _pull(ctx: Ctx, name: str) -> Step:
    world = ctx.world

    def run() -> Any:
        return world.proc.sync.run_sync(world.bc_company_id, entities=[SyncEntity.DOCUMENT_EVENTS, SyncEntity.INVOICES])

    return Step(name, run, ("erp.read_changes.page",))


def _writeback_step(ctx: Ctx, doc: SalesDocument | Callable[[], SalesDocument], name: str,
                    points: tuple[str, ...]) -> Step:
    """Record what was captured on the document's posted invoice in BC: the product's own
    reconciliation, repeated until nothing is pending (it adds only what is missing)."""
    from payweave.core.reconcile import record_captured_payments

    world = ctx.world

    def run() -> Any:
        document = doc() if callable(doc) else doc
        view = ctx.engine.get_transaction(document.company_id, ctx.tx_id(document))
        out = record_captured_payments(ctx.engine, world.proc.sync, world.bc_company_id)
        pending = [wb for wb in world.proc.sync.writebacks(world.bc_company_id) if wb.status == "pending"]
        if pending:
            from payweave.hooks.errors import TemporarilyUnavailable

            raise TemporarilyUnavailable(f"write-back {pending[0].document_number} is pending")
        return view, out

    return Step(name, run, points)


def flow_sync(ctx: Ctx) -> Flow:
    from payweave.plugins.erp_businesscentral.sandbox.state import LineSpec

    world = ctx.world
    state, company, cid = world.bc_state, world.bc_company, world.bc_company_id
    holder: dict[str, Any] = {}
    qty = Decimal(ctx.rng.randint(1, 4))

    def bc_creates_order() -> Any:
        if "order" not in holder:
            with state.lock:
                customer = [c for c in sorted(company.tables["customers"].by_id.values(), key=lambda c: c.number)
                            if not c.currency][0]
                item = sorted(company.tables["items"].by_id.values(), key=lambda i: i.number)[ctx.rng.randrange(3)]
                holder["order"] = state.create_document(company, "order", customer,
                                                        [LineSpec(number=item.number, quantity=qty)],
                                                        payment_method_code="PAYWEAVE", release=True)
        return holder["order"]

    def order_doc() -> SalesDocument:
        order = holder["order"]
        cur = order.currency or company.lcy
        return ctx.document("PAYWEAVE", cur, 1, company=cid, document_id=order.id)

    def pull(name: str) -> Step:
        def run() -> Any:
            report = world.proc.sync.run_sync(cid, entities=[SyncEntity.DOCUMENT_EVENTS, SyncEntity.INVOICES])
            world.proc.sync.dispatch_document_events(cid)
            return report

        return Step(name, run, ("erp.read_changes.page", "psp.capture.before", "psp.capture.after"))

    def authorize() -> Any:
        doc = order_doc()
        return ctx.engine.reserve(cid, ctx.tx_id(doc), request_id=ctx.rid("authorize"))

    def bc_posts_order() -> Any:
        if "invoice" not in holder:
            with state.lock:
                holder["invoice"] = state.post_document(company, holder["order"])
        return holder["invoice"]

    def captured() -> Any:
        view = ctx.engine.get_transaction(cid, ctx.tx_id(order_doc()))
        if view.amounts.captured <= 0:
            from payweave.hooks.errors import TemporarilyUnavailable

            raise TemporarilyUnavailable("the posting has not been pulled and captured yet")
        return view

    steps = [
        Step("bc-order-released", bc_creates_order),
        pull("pull-release"),
        Step("authorize", authorize, ("psp.reserve.before", "psp.reserve.after")),
        Step("bc-posts-order", bc_posts_order),
        pull("pull-posting"),
        Step("captured", captured),
        _pull(ctx, "pull-invoice"),
        _writeback_step(ctx, order_doc, "writeback", ("erp.record_payment.before", "erp.record_payment.after")),
    ]
    flow = Flow("sync", steps, [])
    flow.notes.append("intent is completed once BC created the order")

    def finish(intent_list: list[Intent]) -> None:
        order, invoice = holder.get("order"), holder.get("invoice")
        if order is None or invoice is None:
            return
        cur = order.currency or company.lcy
        total = to_minor_units(invoice.total_incl, cur)
        intent_list.append(Intent(label="BC order pulled, captured on posting, recorded in BC", company=cid,
                                  document_type=DocumentType.SALES_ORDER.value, document_id=order.id, profile="full",
                                  currency=cur, reserved=to_minor_units(order.total_incl, cur), captures=[total],
                                  bc_invoice_id=invoice.id, bc_invoice_total=invoice.total_incl, writebacks=1))
        flow.documents.append((cid, DocumentType.SALES_ORDER.value, order.id))

    flow.finish = finish  # type: ignore[attr-defined]
    return flow


BUILDERS: dict[str, Callable[[Ctx], Flow]] = {
    "capture": flow_capture,
    "capture_post": flow_capture_post,
    "capture_job": flow_capture_job,
    "void": flow_void,
    "refund": flow_refund,
    "credit": flow_credit,
    "link": flow_link,
    "writeback": flow_writeback,
    "sync": flow_sync,
}
#: How often each flow is drawn (the BC flows cost more real HTTP).
WEIGHTS: dict[str, int] = {"capture": 16, "capture_post": 10, "capture_job": 8, "void": 12, "refund": 14, "credit": 8,
                           "link": 12, "writeback": 10, "sync": 10}

__all__ = ["BUILDERS", "FLOWS", "WEIGHTS", "Ctx", "Flow", "Intent", "Step"]
