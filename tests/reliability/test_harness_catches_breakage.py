"""The reliability harness can fail: each test breaks one guarantee on purpose (a PSP that forgets
idempotency keys, an engine that replays with a new key, an engine that forgets a call it made,
a BC plugin that does not find its earlier entry, an event applier that counts a capture twice)
and the checks must report it, naming the invariant. A checker that passed these would prove
nothing.

Also here: targeted combinations of the failures payment platforms' users report most (the
webhook racing the synchronous answer while the process dies, duplicated and reordered webhooks
during an unknown outcome), on SQLite and PostgreSQL.
"""
from __future__ import annotations

import uuid
from collections import Counter

import pytest

from payweave.core.engine.service import PaymentEngine
from payweave.core.reliability.faults import FaultKind
from payweave.core.reliability.schedule import ScheduleRunner
from payweave.core.store import OperationRow
from payweave.plugins.psp_mock.ledger import MockLedger

SEEDS = range(9101, 9106)


def _violations(runner: ScheduleRunner, flow: str, faults: list[tuple[str, FaultKind]], seeds=SEEDS) -> Counter[str]:
    found: Counter[str] = Counter()
    for seed in seeds:
        outcome = runner.run(seed, flow=flow, faults=faults)
        found.update(invariant for invariant, _ in outcome.violations)
    return found


def test_the_unbroken_system_passes_the_same_schedules(runner: ScheduleRunner) -> None:
    for flow, faults in (("capture", [("psp.capture.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS)]),
                         ("writeback", [("erp.record_payment.before", FaultKind.BC_DROP_AFTER_APPLY)]),
                         ("refund", [("psp.refund.after", FaultKind.CRASH)])):
        assert not _violations(runner, flow, faults), flow


def test_a_psp_that_forgets_idempotency_keys_is_caught(runner: ScheduleRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    original = MockLedger.idempotent

    def forgetful(self, operation, key, fingerprint, check, apply, *, fault=None):  # type: ignore[no-untyped-def]
        self._idempotency.pop(key, None)  # a replay moves money again
        return original(self, operation, key, fingerprint, check, apply, fault=fault)

    monkeypatch.setattr(MockLedger, "idempotent", forgetful)
    found = _violations(runner, "capture", [("psp.capture.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS)])
    assert found["keys_exactly_once"] and found["intent_exactly_once"], found


def test_an_engine_that_replays_with_a_new_key_is_caught(runner: ScheduleRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    original = PaymentEngine._call

    def new_key(self, op_id, *, recovering=False, fresh=None):  # type: ignore[no-untyped-def]
        if fresh is None:
            with self.store.transaction() as s:
                op = s.get(OperationRow, op_id)
                op.idempotency_key = f"{op.idempotency_key}-{uuid.uuid4().hex[:6]}"
                op.request = {**op.request, "idempotency_key": op.idempotency_key}
        return original(self, op_id, recovering=recovering, fresh=fresh)

    monkeypatch.setattr(PaymentEngine, "_call", new_key)
    found = _violations(runner, "refund", [("psp.refund.after", FaultKind.CRASH)])
    assert found["intent_exactly_once"] and found["keys_exactly_once"], found


def test_an_engine_that_forgets_a_call_it_made_is_caught(runner: ScheduleRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def forget(self, company_id, tx_id, pending=None):  # type: ignore[no-untyped-def]
        with self.store.transaction() as s:  # unfinished calls are given up instead of replayed
            for op in s.query(OperationRow).filter(OperationRow.transaction_id == tx_id,
                                                   OperationRow.status.in_(("started", "unknown"))):
                op.status = "failed"

    monkeypatch.setattr(PaymentEngine, "_recover_transaction", forget)
    monkeypatch.setattr(PaymentEngine, "_settle", lambda self, op: self.get_transaction(op.company_id, op.transaction_id))
    found = _violations(runner, "capture", [("psp.capture.after", FaultKind.CRASH)])
    assert found["psp_matches_store"] and found["settled"], found


def test_a_bc_plugin_that_posts_twice_is_caught(runner: ScheduleRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from payweave.plugins.erp_businesscentral import writeback

    monkeypatch.setattr(writeback, "gl_entries", lambda company, number, document_type=None: [])
    found = _violations(runner, "writeback", [("erp.record_payment.before", FaultKind.BC_DROP_AFTER_APPLY)])
    assert found["bc_exactly_once"], found


def test_an_event_applier_that_counts_a_capture_twice_is_caught(runner: ScheduleRunner,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from payweave.core.engine import psp_events

    monkeypatch.setattr(psp_events.PspEvents, "_claim", lambda self, *a, **k: None)  # never "already recorded"
    original_captured = psp_events.PspEvents._on_captured

    def without_totals(self, s, tx, row, event, now):  # type: ignore[no-untyped-def]
        return original_captured(self, s, tx, row, event.model_copy(update={"total_captured": None}), now)

    monkeypatch.setattr(psp_events.PspEvents, "_on_captured", without_totals)
    found = _violations(runner, "capture", [("psp.capture.after", FaultKind.WEBHOOK_RACE)])
    assert found, found


# ------------------------------------------------------------------------------------------ combinations
@pytest.mark.parametrize("flow,faults", [
    # the PSP's webhook races the synchronous answer, and the process that made the call dies
    ("capture", [("psp.capture.after", FaultKind.WEBHOOK_RACE), ("psp.capture.after", FaultKind.CRASH)]),
    # the answer is lost, the webhook arrives while the outcome is unknown, the database drops
    ("capture", [("psp.capture.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS), ("webhook.receive", FaultKind.DB_DROP)]),
    # the authorization's answer is lost while its webhook overtakes it
    ("capture_job", [("psp.reserve.after", FaultKind.WEBHOOK_RACE), ("psp.reserve.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS)]),
    # refunds whose answers are lost, one after the other
    ("refund", [("psp.refund.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS), ("psp.refund.before", FaultKind.PSP_429)]),
    # a link paid at the PSP while payweave crashes receiving the confirmation
    ("link", [("webhook.receive", FaultKind.CRASH), ("psp.create_payment_link.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS)]),
    # BC answers 429 and then applies a post whose answer is lost; payweave crashes after BC posted
    ("writeback", [("erp.record_payment.before", FaultKind.BC_429), ("erp.record_payment.after", FaultKind.CRASH)]),
    # the sync pulls the posting while BC throttles, and the capture's answer is lost
    ("sync", [("erp.read_changes.page", FaultKind.BC_503), ("psp.capture.after", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS)]),
])
def test_failure_combinations_move_money_exactly_once(runner: ScheduleRunner, flow: str,
                                                      faults: list[tuple[str, FaultKind]]) -> None:
    for seed in (31, 32):
        outcome = runner.run(seed, flow=flow, faults=faults)
        assert len(outcome.faults) == len(faults), (seed, outcome.faults)
        assert not outcome.violations, (seed, outcome.faults, outcome.violations)


def test_every_capture_of_an_invoice_reaches_bc(runner: ScheduleRunner) -> None:
    """Regression: the reconciliation recorded only the first capture of a payment on an invoice
    (one write-back key per transaction and invoice); a second capture never reached BC."""
    world = runner.world
    for seed in range(40, 46):
        outcome = runner.run(seed, flow="writeback", faults=[])
        assert not outcome.violations, (seed, outcome.violations)
    keys = [w.source_key for w in world.proc.sync.writebacks(world.bc_company_id) if w.kind == "payment"]
    assert any(key.endswith(":2") for key in keys), keys  # some payments were captured (and recorded) twice
    assert all(w.status == "posted" for w in world.proc.sync.writebacks(world.bc_company_id))
