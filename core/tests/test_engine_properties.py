"""Property tests: for random sequences of capture / void / refund / credit requests against
psp_mock configured as several PSPs, the engine never lets captured exceed reserved or
refunded exceed captured, and its store always matches psp_mock's ledger."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payweave.core.engine import PaymentMethodSetup, TxStatus
from payweave.core.testing.documents import document_event, item_line, sales_document
from payweave.hooks.errors import PayweaveError
from payweave.hooks.money import from_minor_units

PROFILES = ["full", "no_partial_capture", "no_void", "no_partial_refund", "single_capture", "minimal", "credit_only"]
OPERATIONS = ["capture", "void", "refund", "credit"]

steps = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(min_value=1, max_value=15_000), st.booleans()),
    min_size=1,
    max_size=10,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), total=st.integers(min_value=100, max_value=12_000), plan=steps)
def test_random_operation_sequences_keep_the_books_straight(engine, mock_ledger, profile, total, plan):
    code = profile.upper()
    caps = engine.capabilities("psp_mock", profile)
    options = {"credit_allowed": True} if caps.credit else {}
    engine.save_payment_method(
        PaymentMethodSetup(company_id="CRONUS", code=code, psp="psp_mock", psp_account=profile, **options)
    )
    amount = from_minor_units(total, "EUR")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, amount)])
    tx = engine.handle_event(document_event("released", doc)).transaction
    tx = engine.reserve("CRONUS", tx.id)
    ledger = mock_ledger(profile)
    accepted = 0
    for op, minor, everything in plan:
        value = None if everything else from_minor_units(minor, "EUR")
        call = {"capture": engine.capture, "void": engine.void, "refund": engine.refund, "credit": engine.credit}[op]
        try:
            call("CRONUS", tx.id, value)
            accepted += 1
        except PayweaveError as exc:
            assert exc.code in {
                "amount_not_available", "illegal_transition", "not_supported", "option_disabled",
            }, exc
        view = engine.get_transaction("CRONUS", tx.id)
        a = view.amounts
        assert Decimal(0) <= a.captured <= a.authorized
        assert a.captured + a.voided + a.expired <= a.authorized
        assert Decimal(0) <= a.refunded + a.credited <= a.captured
        assert a.capturable == a.authorized - a.captured - a.voided - a.expired
        payment = ledger.payment(view.psp_reference)
        assert payment.amount == a.authorized
        assert payment.captured == a.captured
        assert payment.released == a.voided
        assert payment.refunded == a.refunded
        assert payment.credited == a.credited
        assert all(o.status == "succeeded" for o in view.operations)
    assert len(view.operations) == accepted + 1  # + the reservation
    expected = {
        TxStatus.RESERVED, TxStatus.PARTLY_VOIDED, TxStatus.VOIDED, TxStatus.PARTLY_CAPTURED, TxStatus.CAPTURED,
        TxStatus.PARTLY_REFUNDED, TxStatus.REFUNDED, TxStatus.PARTLY_CREDITED, TxStatus.CREDITED,
    }
    assert view.status in expected
