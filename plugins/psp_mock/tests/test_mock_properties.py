"""Property: whatever sequence of operations (valid, invalid, replayed, faulted) the engine
sends, the mock PSP's books never show more captured than reserved or more refunded than
captured, and every stored amount matches the movements that made it."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payweave.core.plugins import PluginManager
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import CartUpdateRequest
from payweave.plugins.psp_mock import PROFILES, Fault, reset_ledger
from payweave.plugins.psp_mock.testing import (
    capture_request,
    cart_of,
    credit_request,
    refund_request,
    reserve_request,
    void_request,
)

amounts = st.integers(min_value=1, max_value=5000).map(lambda cents: Decimal(cents).scaleb(-2))
operation = st.one_of(
    st.tuples(st.just("reserve"), amounts, st.booleans()),
    st.tuples(st.just("capture"), amounts, st.booleans()),
    st.tuples(st.just("void"), st.one_of(st.none(), amounts), st.booleans()),
    st.tuples(st.just("refund"), amounts, st.booleans()),
    st.tuples(st.just("credit"), amounts, st.booleans()),
    st.tuples(st.just("cart"), amounts, st.booleans()),
    st.tuples(st.just("replay"), st.none(), st.booleans()),
    st.tuples(st.just("fault"), st.sampled_from(list(Fault)), st.booleans()),
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=4), st.booleans()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profile=st.sampled_from(sorted(PROFILES)), ops=st.lists(operation, min_size=1, max_size=30), pick=st.randoms(use_true_random=False))
def test_ledger_invariants_hold_for_any_sequence(manager: PluginManager, profile: str, ops: list, pick) -> None:  # noqa: ANN001
    psp = manager.psp("psp_mock")
    account = manager.account("psp_mock", "hypothesis", profile=profile)
    ledger = reset_ledger(account)
    refs: list[str] = []
    sent: list = []
    try:
        for kind, value, flag in ops:
            ref = pick.choice(refs) if refs else "mpay_none"
            try:
                if kind == "reserve":
                    request = reserve_request(value, capture=flag)
                    refs.append(psp.reserve(account, request).psp_reference)
                elif kind == "capture":
                    request = capture_request(ref, value, final=flag)
                    psp.capture(account, request)
                elif kind == "void":
                    request = void_request(ref, value)
                    psp.void(account, request)
                elif kind == "refund":
                    request = refund_request(ref, value)
                    psp.refund(account, request)
                elif kind == "credit":
                    request = credit_request(ref, value)
                    psp.credit(account, request)
                elif kind == "cart":
                    request = CartUpdateRequest(
                        idempotency_key=f"cart-{len(sent)}-{ref}", transaction_id="t", psp_reference=ref,
                        stage="while_reserved" if flag else "before_reservation", cart=cart_of(value),
                    )
                    psp.update_cart(account, request)
                elif kind == "replay" and sent:
                    request = pick.choice(sent)
                    method = {
                        "ReserveRequest": psp.reserve, "CaptureRequest": psp.capture, "VoidRequest": psp.void,
                        "RefundRequest": psp.refund, "CreditRequest": psp.credit, "CartUpdateRequest": psp.update_cart,
                    }[type(request).__name__]
                    method(account, request)
                    continue
                elif kind == "fault":
                    ledger.inject(value)
                    continue
                elif kind == "advance":
                    ledger.advance(days=value * 2)
                    continue
                else:
                    continue
                sent.append(request)
            except PayweaveError:
                if kind not in {"replay", "fault", "advance"}:
                    sent.append(request)
            assert ledger.invariant_violations() == [], (profile, ops)
        for payment in ledger.payments.values():
            assert payment.captured <= payment.amount
            assert payment.refunded + payment.credited <= payment.captured
    finally:
        reset_ledger(account)
