"""The reconciler: the PSP's ledger, payweave's store and BC's books must tell the same story.

After a schedule settled, :func:`check_schedule` compares, for every document the flow paid:

========================  ===================================================================
``one_payment``           the document has exactly one payment transaction, and every payment
                          the PSP created during the schedule belongs to one (no orphan
                          authorization: nothing reserved or charged that payweave does not know)
``psp_matches_store``     authorized, captured, released, refunded and credited agree to the
                          minor unit between the PSP's ledger and the transaction
``intent_exactly_once``   what the client asked for happened exactly once: the captures, voids,
                          refunds and credits it requested (count and amounts) at the PSP
``keys_exactly_once``     every PSP movement carries a distinct idempotency key, and each key is
                          the key of one succeeded operation in the store
``settled``               no operation is left started/unknown/parked, no webhook deferred or
                          unmatched, no operation failed
``books_sound``           the transaction's ledger invariants and derived status hold; the PSP's
                          own books are sound for the payment
``bc_exactly_once``       BC shows exactly one posted customer payment per recorded capture, for
                          the captured amount, and the invoice's remaining amount is right
========================  ===================================================================
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from payweave.core.engine.statemachine import Ledger, derive_status, phase_of
from payweave.core.store import OperationRow, TransactionRow
from payweave.core.store.service_models import PspEventRow, ServiceOperationRow
from payweave.core.sync.models import ErpWritebackRow
from payweave.hooks.money import to_minor_units

from .flows import Flow, Intent
from .world import World

INVARIANTS = ("one_payment", "psp_matches_store", "intent_exactly_once", "keys_exactly_once", "settled", "books_sound",
              "bc_exactly_once")


@dataclass
class Snapshot:
    """How much existed before the schedule (the PSP's books and BC's ledgers only grow, in
    order, so what the schedule added is what lies after these marks)."""

    payments: dict[str, int] = field(default_factory=dict)
    movements: dict[str, int] = field(default_factory=dict)
    bc_entries: dict[str, int] = field(default_factory=dict)


def snapshot(world: World) -> Snapshot:
    snap = Snapshot()
    for profile, ledger in world.ledgers.items():
        with ledger.lock:
            snap.payments[profile] = len(ledger.payments)
            snap.movements[profile] = len(ledger.operations)
    with world.bc_state.lock:
        snap.bc_entries = {cid: len(company.cust_ledger) for cid, company in world.bc_state.companies.items()}
    return snap


@dataclass
class CheckResult:
    checked: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, invariant: str, message: str) -> None:
        self.violations.append((invariant, message))


def _m(minor: int, currency: str) -> str:
    from payweave.hooks.money import from_minor_units

    return f"{from_minor_units(minor, currency)} {currency}"


def check_schedule(world: World, flow: Flow, before: Snapshot) -> CheckResult:
    out = CheckResult()
    known_refs: set[str] = set()
    with world.engine.store.transaction() as s:
        for intent in flow.intents:
            rows = s.scalars(select(TransactionRow).where(
                TransactionRow.company_id == intent.company, TransactionRow.document_type == intent.document_type,
                TransactionRow.document_id == intent.document_id)).all()
            out.checked["one_payment"] += 1
            if len(rows) != 1:
                out.fail("one_payment", f"{intent.label}: {len(rows)} payment transactions for one document")
                known_refs.update(r.psp_reference for r in rows if r.psp_reference)
                continue
            tx = rows[0]
            if tx.psp_reference:
                known_refs.add(tx.psp_reference)
            _check_tx(world, s, intent, tx, out, before)
    # orphans: payments the PSP made during this schedule that no transaction knows
    out.checked["one_payment"] += 1
    for profile, ledger in world.ledgers.items():
        with ledger.lock:
            new = list(islice(ledger.payments.values(), before.payments.get(profile, 0), None))
        for p in new:
            if p.reference not in known_refs:
                out.fail("one_payment", f"the PSP holds payment {p.reference} ({p.status.value}, {p.amount} {p.currency}, "
                                        f"captured {p.captured}) that no transaction of the schedule knows")
    _check_bc(world, flow, before, out)
    return out


def _check_tx(world: World, s: Any, intent: Intent, tx: TransactionRow, out: CheckResult, before: Snapshot) -> None:
    cur = tx.currency
    label = f"{intent.label} (transaction {tx.id})"
    ledger = Ledger(cur, authorized=tx.authorized_minor, captured=tx.captured_minor, voided=tx.voided_minor,
                    expired=tx.expired_minor, refunded=tx.refunded_minor, credited=tx.credited_minor)
    # ---- books_sound (store side)
    out.checked["books_sound"] += 1
    try:
        ledger.check()
        expected_status = derive_status(phase_of(tx.status), ledger)
        if expected_status.value != tx.status:
            out.fail("books_sound", f"{label}: status {tx.status} but the ledger says {expected_status.value}")
    except AssertionError as exc:
        out.fail("books_sound", f"{label}: ledger invariant broken: {exc}")

    # ---- settled
    out.checked["settled"] += 1
    ops = s.scalars(select(OperationRow).where(OperationRow.company_id == tx.company_id,
                                               OperationRow.transaction_id == tx.id).order_by(OperationRow.seq)).all()
    sops = s.scalars(select(ServiceOperationRow).where(ServiceOperationRow.company_id == tx.company_id,
                                                       ServiceOperationRow.transaction_id == tx.id)).all()
    for op in [*ops, *sops]:
        if op.status not in ("succeeded", "pending"):
            out.fail("settled", f"{label}: {op.kind} operation {op.id} is {op.status}"
                                + (f" ({op.error_code}: {op.error_message})" if op.error_code else ""))
    events = s.scalars(select(PspEventRow).where(
        (PspEventRow.transaction_id == tx.id) | (PspEventRow.psp_reference == tx.psp_reference)
        if tx.psp_reference else (PspEventRow.transaction_id == tx.id))).all()
    for ev in events:
        if ev.status in ("deferred", "unmatched", "ignored"):
            out.fail("settled", f"{label}: webhook event {ev.event_id} ({ev.event_type}) left {ev.status}: {ev.note}")
    per_event = Counter(ev.event_id for ev in events)
    for event_id, n in per_event.items():
        if n > 1:
            out.fail("settled", f"{label}: webhook event {event_id} stored {n} times")

    # ---- the PSP's side
    if not tx.psp_reference:
        out.fail("psp_matches_store", f"{label}: no PSP reference (status {tx.status})")
        return
    ledger_at_psp = world.ledgers[intent.profile]
    with ledger_at_psp.lock:
        payment = ledger_at_psp.payments.get(tx.psp_reference)
        moves = [m for m in ledger_at_psp.operations[before.movements.get(intent.profile, 0):]
                 if m.payment_reference == tx.psp_reference]
        psp_problems = _psp_books(payment, moves) if payment is not None else []
    out.checked["books_sound"] += 1
    for problem in psp_problems:
        out.fail("books_sound", f"{label}: the PSP's books: {problem}")
    out.checked["psp_matches_store"] += 1
    if payment is None:
        out.fail("psp_matches_store", f"{label}: the PSP has no payment {tx.psp_reference}")
        return

    def minor(value: Decimal) -> int:
        return to_minor_units(value, cur)

    pairs = {
        "authorized": (minor(payment.amount), tx.authorized_minor),
        "captured": (minor(payment.captured), tx.captured_minor),
        "released": (minor(payment.released + payment.lapsed), tx.voided_minor + tx.expired_minor),
        "refunded": (minor(payment.refunded), tx.refunded_minor),
        "credited": (minor(payment.credited), tx.credited_minor),
    }
    for name, (at_psp, in_store) in pairs.items():
        if at_psp != in_store:
            out.fail("psp_matches_store", f"{label}: {name} {_m(at_psp, cur)} at the PSP, {_m(in_store, cur)} in payweave")

    # ---- intent_exactly_once
    out.checked["intent_exactly_once"] += 1
    by_kind: dict[str, list[int]] = {}
    for m in moves:
        by_kind.setdefault(m.kind, []).append(minor(m.amount))
    wanted = {
        "reserve": [intent.reserved],
        "capture": sorted(intent.captures),
        "refund": sorted(intent.refunds),
        "credit": sorted(intent.credits),
    }
    for kind, amounts in wanted.items():
        got = sorted(by_kind.get(kind, []))
        if got != sorted(amounts):
            out.fail("intent_exactly_once", f"{label}: {kind} movements at the PSP {[_m(a, cur) for a in got]}, "
                                            f"intended {[_m(a, cur) for a in amounts]}")
    voids = by_kind.get("void", [])
    if len(voids) != intent.voids:
        out.fail("intent_exactly_once", f"{label}: {len(voids)} voids at the PSP, intended {intent.voids}")
    released = sum(by_kind.get("void", [])) + sum(by_kind.get("release", []))
    if released != intent.released:
        out.fail("intent_exactly_once", f"{label}: {_m(released, cur)} released at the PSP, intended {_m(intent.released, cur)}")
    succeeded = Counter(op.kind for op in ops if op.status == "succeeded")
    expected_ops = {
        "capture": len(intent.captures) if intent.capture_ops is None else intent.capture_ops,
        "refund": len(intent.refunds),
        "credit": len(intent.credits),
        "void": intent.voids,
        "reserve": 0 if intent.via_link else 1,
    }
    for kind, n in expected_ops.items():
        if succeeded.get(kind, 0) != n:
            out.fail("intent_exactly_once", f"{label}: {succeeded.get(kind, 0)} succeeded {kind} operations in payweave, "
                                            f"intended {n}")

    # ---- keys_exactly_once
    out.checked["keys_exactly_once"] += 1
    keyed = [m for m in moves if m.idempotency_key and m.kind != "release"]
    counts = Counter((m.kind, m.idempotency_key) for m in keyed)
    for (kind, key), n in counts.items():
        if n > 1:
            out.fail("keys_exactly_once", f"{label}: {n} {kind} movements at the PSP with idempotency key {key}")
    store_keys = {op.idempotency_key for op in ops if op.status == "succeeded"}
    for m in keyed:
        if m.idempotency_key not in store_keys:
            out.fail("keys_exactly_once", f"{label}: PSP {m.kind} of {m.amount} (key {m.idempotency_key}) matches no "
                                          f"succeeded operation in payweave")


def _psp_books(p: Any, moves: list[Any]) -> list[str]:
    """The mock PSP's own invariants for one payment (``MockLedger.invariant_violations``,
    restricted to it: the whole ledger is too big to re-check after every schedule)."""
    problems: list[str] = []
    for name in ("captured", "released", "lapsed", "refunded", "credited"):
        if getattr(p, name) < 0:
            problems.append(f"{p.reference}: {name} {getattr(p, name)} < 0")
    if p.captured + p.released + p.lapsed > p.amount:
        problems.append(f"{p.reference}: captured {p.captured} + released {p.released} + lapsed {p.lapsed} > authorized {p.amount}")
    if p.refunded + p.credited > p.captured:
        problems.append(f"{p.reference}: refunded {p.refunded} + credited {p.credited} > captured {p.captured}")
    for kind, total in (("capture", p.captured), ("refund", p.refunded)):
        moved = sum((m.amount for m in moves if m.kind == kind), Decimal(0))
        if moved != total:
            problems.append(f"{p.reference}: {kind} movements {moved} != {kind}d {total}")
    return problems


def _check_bc(world: World, flow: Flow, before: Snapshot, out: CheckResult) -> None:
    from payweave.core.reconcile import payment_key

    targets = [i for i in flow.intents if i.writebacks]
    if not targets:
        return
    with world.bc_state.lock:
        entries: list[Any] = []
        invoices: dict[str | None, Any] = {}
        for cid in {i.company for i in targets}:
            company = world.bc_state.companies[cid]
            entries += company.cust_ledger[before.bc_entries.get(cid, 0):]
            invoices.update({i.bc_invoice_id: company.tables["invoices"].by_id.get(i.bc_invoice_id)
                             for i in targets if i.company == cid})
    with world.engine.store.transaction() as s:
        for intent in targets:
            out.checked["bc_exactly_once"] += 1
            tx = s.scalars(select(TransactionRow).where(TransactionRow.company_id == intent.company,
                                                        TransactionRow.document_type == intent.document_type,
                                                        TransactionRow.document_id == intent.document_id)).first()
            if tx is None:
                out.fail("bc_exactly_once", f"{intent.label}: no transaction to record in BC")
                continue
            captures = s.scalars(select(OperationRow).where(OperationRow.transaction_id == tx.id,
                                                            OperationRow.kind == "capture",
                                                            OperationRow.status == "succeeded")).all()
            base = payment_key(tx.id, intent.bc_invoice_id or "")
            rows = s.scalars(select(ErpWritebackRow).where(
                ErpWritebackRow.company_id == intent.company, ErpWritebackRow.kind == "payment",
                (ErpWritebackRow.source_key == base) | ErpWritebackRow.source_key.startswith(f"{base}:"))).all()
            numbers = {row.document_number: row for row in rows}
            mine = [e for e in entries if e.applied_to_id == intent.bc_invoice_id and e.source == "api"]
            per_number = Counter(e.document_number for e in mine)
            for number, row in numbers.items():
                if per_number.get(number, 0) != 1:
                    out.fail("bc_exactly_once", f"{intent.label}: BC shows {per_number.get(number, 0)} customer payments "
                                                f"{number} (intended exactly 1)")
                if row.status != "posted":
                    out.fail("bc_exactly_once", f"{intent.label}: write-back {row.document_number} is {row.status} in payweave "
                                                f"({row.last_error_code}: {row.last_error})")
            recorded = sum(to_minor_units(abs(Decimal(e.amount)), tx.currency) for e in mine)
            if recorded != tx.captured_minor:
                out.fail("bc_exactly_once", f"{intent.label}: BC records {_m(recorded, tx.currency)} paid on invoice "
                                            f"{intent.bc_invoice_id}, payweave captured {_m(tx.captured_minor, tx.currency)}")
            strangers = [e.document_number for e in mine if e.document_number not in numbers]
            if strangers:
                out.fail("bc_exactly_once", f"{intent.label}: BC payments {strangers} are not payweave's write-backs")
            if not numbers:
                out.fail("bc_exactly_once", f"{intent.label}: no write-back for the payment")
            _ = captures
            invoice = invoices.get(intent.bc_invoice_id)
            if invoice is not None and intent.bc_invoice_total is not None:
                captured = sum(op.amount_minor or 0 for op in captures)
                remaining = to_minor_units(invoice.remaining, tx.currency)
                total = to_minor_units(intent.bc_invoice_total, tx.currency)
                if remaining != total - captured:
                    out.fail("bc_exactly_once", f"{intent.label}: BC invoice {invoice.number} has {_m(remaining, tx.currency)} "
                                                f"remaining, expected {_m(total - captured, tx.currency)}")


__all__ = ["INVARIANTS", "CheckResult", "Snapshot", "check_schedule", "snapshot"]
