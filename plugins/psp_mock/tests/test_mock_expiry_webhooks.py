"""Reservation expiry on the mock PSP's clock, and signed webhooks."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from payweave.core.plugins import PspClient
from payweave.hooks.errors import InvalidRequest, NotSupported, WebhookVerificationFailed
from payweave.hooks.models import Account, EventType, PaymentStatus, WebhookRequest
from payweave.hooks.money import Money
from payweave.plugins.psp_mock import MockClock, MockLedger, ledger_for, pending_webhooks, signed_webhook
from payweave.plugins.psp_mock.testing import capture_request, refund_request, reserve_request
from payweave.plugins.psp_mock.webhooks import SIGNATURE_HEADER, signature


# ---------------------------------------------------------------- clock and expiry
def test_expiry_is_computed_from_reservation_validity(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(reservation_validity_seconds=3600)
    ledger = ledger_for(account)
    ledger.clock.freeze(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    res = psp.reserve(account, reserve_request("10.00"))
    assert res.expires_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    ledger.advance(3599)
    psp.capture(account, capture_request(res.psp_reference, "4.00", final=False))
    ledger.advance(1)
    assert ledger.payment(res.psp_reference).status is PaymentStatus.CAPTURED  # partly captured, rest lapsed
    assert ledger.payment(res.psp_reference).lapsed == Money.of("6.00", "EUR").amount
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(res.psp_reference, "1.00"))


def test_expired_reservation_cannot_be_captured(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    res = psp.reserve(account, reserve_request("10.00"))
    ledger.clock.advance(timedelta(days=7))  # without a sweep: expiry is applied lazily too
    with pytest.raises(InvalidRequest) as info:
        psp.capture(account, capture_request(res.psp_reference, "10.00"))
    assert info.value.code == "reservation_expired"
    found = psp.get_payment(account, res.psp_reference)
    assert found.status is PaymentStatus.EXPIRED
    assert ledger.count("expire") == 1 and ledger.last_event("payment.expired") is not None
    assert ledger.invariant_violations() == []


def test_no_validity_means_no_expiry(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(reservation_validity_seconds=0)
    res = psp.reserve(account, reserve_request("10.00"))
    assert res.expires_at is None
    ledger_for(account).advance(days=365)
    psp.capture(account, capture_request(res.psp_reference, "10.00"))


def test_clock_only_moves_forward() -> None:
    clock = MockClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.frozen and clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    clock.advance(timedelta(hours=1))
    assert clock.now() == datetime(2026, 1, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    clock.unfreeze()
    assert not clock.frozen and clock.now() >= datetime(2026, 1, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- webhooks
def _captured_webhook(psp: PspClient, account: Account, ledger: MockLedger, currency: str = "EUR", amount: str = "10.00") -> tuple[str, WebhookRequest]:
    ref = psp.reserve(account, reserve_request(amount, currency)).psp_reference
    psp.capture(account, capture_request(ref, amount, currency))
    event = ledger.last_event("payment.captured", ref)
    return ref, signed_webhook(account, event, received_at=ledger.clock.now())


def test_webhook_round_trip(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref, webhook = _captured_webhook(psp, account, ledger)
    [event] = psp.parse_webhook(account, webhook)
    assert event.type is EventType.CAPTURED and event.psp_reference == ref
    assert event.amount == Money.of("10.00", "EUR") and event.total_captured == Money.of("10.00", "EUR")
    assert event.event_id == ledger.last_event("payment.captured")["id"]


def test_webhook_amounts_in_minor_units_per_currency(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    _, webhook = _captured_webhook(psp, account, ledger, "KWD", "1.005")
    assert json.loads(webhook.body)["data"]["amount_minor"] == 1005
    [event] = psp.parse_webhook(account, webhook)
    assert event.amount == Money.of("1.005", "KWD")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda w: w.model_copy(update={"body": w.body.replace(b"captured", b"refunded")}),
        lambda w: w.model_copy(update={"headers": {k: v for k, v in w.headers.items() if k != SIGNATURE_HEADER}}),
        lambda w: w.model_copy(update={"headers": {**w.headers, SIGNATURE_HEADER: "v1=abc"}}),
        lambda w: w.model_copy(update={"headers": {**w.headers, SIGNATURE_HEADER: "garbage"}}),
        lambda w: w.model_copy(update={"received_at": w.received_at + timedelta(seconds=301)}),
    ],
    ids=["body-changed", "no-header", "no-timestamp", "malformed", "stale"],
)
def test_webhook_verification_refuses(psp: PspClient, account: Account, ledger: MockLedger, tamper) -> None:  # noqa: ANN001
    _, webhook = _captured_webhook(psp, account, ledger)
    psp.parse_webhook(account, webhook)  # the untampered one passes
    with pytest.raises(WebhookVerificationFailed):
        psp.parse_webhook(account, tamper(webhook))


def test_webhook_signed_with_another_secret_is_refused(psp: PspClient, make_account) -> None:  # noqa: ANN001
    signer = make_account(webhook_secret="whsec_one_secret_value")
    verifier = make_account(webhook_secret="whsec_another_secret")
    ledger = ledger_for(signer)
    _, webhook = _captured_webhook(psp, signer, ledger)
    with pytest.raises(WebhookVerificationFailed):
        psp.parse_webhook(verifier, webhook)


def test_webhook_secret_rotation_accepts_any_matching_v1(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    _, webhook = _captured_webhook(psp, account, ledger)
    t = json.loads(webhook.body)["created"]
    good = signature(account.settings.webhook_secret.get_secret_value(), t, webhook.body)
    rotated = webhook.model_copy(update={"headers": {SIGNATURE_HEADER: f"t={t},v1={'0' * 64},v1={good}"}})
    assert psp.parse_webhook(account, rotated)


def test_webhook_future_timestamp_is_accepted(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    _, webhook = _captured_webhook(psp, account, ledger)
    early = webhook.model_copy(update={"received_at": webhook.received_at - timedelta(days=3)})
    assert psp.parse_webhook(account, early)


def test_unknown_event_types_are_kept_as_unknown(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    event = ledger.emit("payment.dispute_opened", payment=ref)
    [parsed] = psp.parse_webhook(account, signed_webhook(account, event, received_at=ledger.clock.now()))
    assert parsed.type is EventType.UNKNOWN and parsed.raw_type == "payment.dispute_opened"


def test_signed_non_json_body_is_invalid_request(psp: PspClient, account: Account) -> None:
    secret = account.settings.webhook_secret.get_secret_value()
    now = datetime.now(UTC)
    t = int(now.timestamp())
    body = b"not json"
    request = WebhookRequest(headers={SIGNATURE_HEADER: f"t={t},v1={signature(secret, t, body)}"}, body=body, received_at=now)
    with pytest.raises(InvalidRequest):
        psp.parse_webhook(account, request)


def test_every_state_change_emits_a_verifiable_event(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    psp.refund(account, refund_request(ref, "3.00"))
    delivered = [e for w in pending_webhooks(account) for e in psp.parse_webhook(account, w)]
    assert [e.type for e in delivered] == [EventType.AUTHORIZED, EventType.CAPTURED, EventType.REFUNDED]
    assert delivered[-1].total_refunded == Money.of("3.00", "EUR")
    assert list(pending_webhooks(account)) == [], "delivered events are not sent again"


def test_webhooks_refused_without_the_capability(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(webhooks=False)
    with pytest.raises(NotSupported):
        psp.parse_webhook(account, WebhookRequest(headers={}, body=b"", received_at=datetime.now(UTC)))


def test_deliver_webhooks_posts_signed_events_over_loopback(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    from payweave.core.testing.loopback import LoopbackServer
    from payweave.plugins.psp_mock import deliver_webhooks

    received: list[WebhookRequest] = []

    async def app(scope, receive, send):  # noqa: ANN001 - a minimal ASGI webhook sink
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        received.append(WebhookRequest(headers=headers, body=body, received_at=datetime.now(UTC)))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    with LoopbackServer(app, lifespan="off") as server:
        assert deliver_webhooks(account, server.url + "/webhooks/psp_mock") == [204, 204]
    types = [e.type for w in received for e in psp.parse_webhook(account, w)]
    assert types == [EventType.AUTHORIZED, EventType.CAPTURED]
