"""The hooks that serve tooling: the sandbox registration (``payweave stripe-sandbox``) and the
conformance environment, used the way the core uses them."""
from __future__ import annotations

import uuid

import httpx
import pytest

from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.conformance import ConformanceEnvironment
from payweave.hooks.errors import PaymentDeclined
from payweave.hooks.models import (
    CaptureRequest,
    Customer,
    EventType,
    MandateChargeRequest,
    Money,
    PaymentLinkRequest,
    PaymentStatus,
    RefundRequest,
    ReserveRequest,
    VoidRequest,
)
from payweave.plugins.psp_stripe_like.sandbox.env import settings_from_env


def key() -> str:
    return uuid.uuid4().hex


def test_sandbox_is_registered_and_serves(manager):
    specs = {spec.command: spec for _plugin, spec in manager.sandboxes()}
    spec = specs["stripe-sandbox"]
    assert spec.default_port == 12111
    with LoopbackServer(spec.app_factory()) as server:
        assert httpx.get(f"{server.url}/_sandbox/health").json()["ok"] is True
        listed = httpx.get(f"{server.url}/v1/payment_intents", headers={"Authorization": "Bearer sk_test_cli"})
        assert listed.json()["object"] == "list"


def test_sandbox_settings_from_environment():
    settings = settings_from_env({
        "PAYWEAVE_STRIPE_SANDBOX_API_KEYS": "sk_test_a, sk_test_b",
        "PAYWEAVE_STRIPE_SANDBOX_WEBHOOK_URL": "http://127.0.0.1:8780/webhooks/psp_stripe_like",
        "PAYWEAVE_STRIPE_SANDBOX_WEBHOOK_SECRET": "whsec_env",
        "PAYWEAVE_STRIPE_SANDBOX_FEE_FIXED": "25",
    })  # fmt: skip
    assert settings.api_keys == ("sk_test_a", "sk_test_b")
    assert settings.webhook_endpoints[0].secret == "whsec_env" and settings.fee_fixed == 25
    with pytest.raises(ValueError):
        settings_from_env({"PAYWEAVE_STRIPE_SANDBOX_WEBHOOK_URL": "http://x"})


def test_conformance_environment_drives_every_feature(manager):
    psp = manager.psp("psp_stripe_like")
    caller = manager._caller("payweave_conformance_environment", "psp_stripe_like")
    with caller(account_name="conformance") as env:
        assert isinstance(env, ConformanceEnvironment)
        account = env.account
        assert all(secret not in repr(env) + repr(account) for secret in env.secrets)
        with pytest.raises(PaymentDeclined):
            psp.reserve(account, ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of("5", "EUR"),
                                                payment_method_token=env.decline_token()))  # fmt: skip
        reserved = psp.reserve(account, ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of("50", "EUR"),
                                                       payment_method_token=env.approve_token()))  # fmt: skip
        capture_key = key()
        for _ in range(2):  # the same key twice: one capture
            psp.capture(account, CaptureRequest(idempotency_key=capture_key, transaction_id="T",
                                                psp_reference=reserved.psp_reference, amount=Money.of("30", "EUR")))  # fmt: skip
        psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=reserved.psp_reference,
                                          amount=Money.of("10", "EUR")))  # fmt: skip
        assert env.ledger_moves(reserved.psp_reference) == {"captures": 1, "refunds": 1, "voids": 0, "credits": 0}
        captured = psp.parse_webhook(account, env.signed_webhook(EventType.CAPTURED, reserved.psp_reference))
        assert (captured[0].type, captured[0].psp_reference) == (EventType.CAPTURED, reserved.psp_reference)
        with pytest.raises(NotImplementedError):
            env.signed_webhook(EventType.EXPIRED, reserved.psp_reference)

        other = psp.reserve(account, ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of("9", "EUR"),
                                                    payment_method_token=env.approve_token()))  # fmt: skip
        psp.void(account, VoidRequest(idempotency_key=key(), transaction_id="T", psp_reference=other.psp_reference))
        assert env.ledger_moves(other.psp_reference)["voids"] == 1

        link = psp.create_payment_link(account, PaymentLinkRequest(
            idempotency_key=key(), transaction_id="T-L", amount=Money.of("12", "EUR"), success_url="https://s.test/ok",
            error_url="https://s.test/err", cancel_url="https://s.test/cancel"))  # fmt: skip
        assert env.complete_payment_link(link, "cancelled") is None
        reference = env.complete_payment_link(link, "paid")
        assert psp.get_payment(account, reference).status is PaymentStatus.RESERVED
        completed = psp.parse_webhook(account, env.signed_webhook(EventType.LINK_COMPLETED, reference))[0]
        assert (completed.link_id, completed.psp_reference) == (link.link_id, reference)

        customer = Customer(customer_id="C-1", email="c@example.test")
        mandate = env.create_mandate(customer)
        charged = psp.charge_mandate(account, MandateChargeRequest(idempotency_key=key(), transaction_id="T",
                                                                   mandate_reference=mandate, customer=customer,
                                                                   amount=Money.of("7", "EUR")))  # fmt: skip
        assert charged.status is PaymentStatus.CAPTURED

        expiring = psp.reserve(account, ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of("3", "EUR"),
                                                       payment_method_token=env.approve_token()))  # fmt: skip
        env.advance_time(7 * 86_400 + 1)
        assert psp.get_payment(account, expiring.psp_reference).status is PaymentStatus.EXPIRED
        assert psp.parse_webhook(account, env.signed_webhook(EventType.EXPIRED, expiring.psp_reference))[0].type is EventType.EXPIRED

        env.run_payout()
        payouts = psp.list_payouts(account, None)
        assert len(payouts) == 1 and payouts[0].net > 0
        assert {line.psp_reference for line in payouts[0].lines} == {reserved.psp_reference, charged.psp_reference}
