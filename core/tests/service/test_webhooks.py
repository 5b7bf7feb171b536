"""PSP webhooks through a real uvicorn: verified by the plugin, stored once (recorded in groups,
answered once committed), applied in order after the answer, never moving a payment backwards,
and never counting a capture twice when the webhook races the synchronous answer."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from payweave.core.plugins import PspClient
from payweave.core.store.service_models import PspEventRow
from payweave.hooks.models import CaptureRequest, RefundRequest
from payweave.hooks.money import Money
from payweave.plugins.psp_mock import Fault, pending_webhooks, signed_webhook
from payweave.core.testing.documents import item_line, sales_document

from .conftest import COMPANY_A, assert_problem, authorized, document_json, put_method


def _events(service, **where):
    with service.engine.store.transaction() as s:
        query = select(PspEventRow)
        for name, value in where.items():
            query = query.where(getattr(PspEventRow, name) == value)
        return [(r.event_id, r.event_type, r.status) for r in s.scalars(query.order_by(PspEventRow.id)).all()]


def _count_events(service) -> int:
    with service.engine.store.transaction() as s:
        return s.scalar(select(func.count()).select_from(PspEventRow))


def _tx(service, tx_id):
    return service.a.get(f"/v1/transactions/{tx_id}").json()


def _account(service, name="full"):
    return service.engine.account("psp_mock", name)


def test_webhook_is_stored_once_and_repeats_are_acknowledged(service):
    put_method(service.a)
    _, tx = authorized(service.a)
    requests = list(pending_webhooks(_account(service)))
    assert [r.body for r in requests]  # payment.authorized
    first = service.deliver(requests=requests)
    again = service.deliver(requests=requests)
    assert [r.status_code for r in first + again] == [200] * (2 * len(requests))
    assert first[0].json()["events"][0]["status"] == "received"  # recorded; applied right after the answer
    assert again[0].json()["events"][0]["status"] == "duplicate"
    assert service.settled(first + again) == ["no_change", "duplicate"]  # the engine recorded the authorization already
    assert _count_events(service) == len(requests)
    assert _tx(service, tx["id"])["status"] == "reserved"


def test_the_same_webhook_delivered_20_times_concurrently_is_stored_once(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "40.00")])
    ledger = service.ledger()
    ref = tx["psp_reference"]
    # capture at the PSP outside payweave, so the webhook has something to apply
    account = _account(service)
    service.engine.plugins.psp("psp_mock").capture(account, CaptureRequest(
        idempotency_key="dashboard-1", transaction_id=tx["id"], psp_reference=ref, amount=Money.of("40.00", "EUR")))
    captured_event = ledger.last_event("payment.captured", ref)
    request = signed_webhook(account, captured_event, received_at=ledger.clock.now())
    barrier = threading.Barrier(20)

    def post(_):
        barrier.wait()
        return service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    statuses = sorted(r.json()["events"][0]["status"] for r in responses)
    assert statuses == ["duplicate"] * 19 + ["received"]
    assert sorted(service.settled(responses)) == ["applied"] + ["duplicate"] * 19
    assert _events(service, event_id=captured_event["id"]) == [(captured_event["id"], "captured", "applied")]
    view = _tx(service, tx["id"])
    assert view["amounts"]["captured"] == "40.00" and view["status"] == "captured"
    assert [h["action"] for h in view["history"]].count("captured") == 1


def test_capture_webhook_racing_the_synchronous_capture_is_counted_once(service, monkeypatch):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "90.00")])
    list(pending_webhooks(_account(service)))  # the authorization webhook is not the point here
    delivered: list = []
    threads: list[threading.Thread] = []
    original = PspClient.capture

    def capture_then_race(self, account, request):
        result = original(self, account, request)  # the PSP moved the money and sent its webhook
        webhooks = list(pending_webhooks(account))
        assert [r for r in webhooks]
        thread = threading.Thread(target=lambda: delivered.extend(service.deliver(requests=webhooks)))
        thread.start()
        time.sleep(0.4)  # the webhook is recorded now (and its applying waits), before the engine has the answer
        threads.append(thread)
        return result

    monkeypatch.setattr(PspClient, "capture", capture_then_race)
    response = service.a.post(f"/v1/transactions/{tx['id']}/capture", json={"amount": "90.00"})
    assert response.status_code == 200, response.text
    threads[0].join(10)
    assert [r.status_code for r in delivered] == [200]
    assert service.settled(delivered) == ["no_change"]
    view = _tx(service, tx["id"])
    assert view["amounts"]["captured"] == "90.00" and view["status"] == "captured"
    assert [h["action"] for h in view["history"]].count("capture") == 1
    assert "captured" not in [h["action"] for h in view["history"]]
    assert service.ledger().count("capture", tx["psp_reference"]) == 1


def test_webhook_during_an_unanswered_capture_is_deferred_and_the_retry_captures_once(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "70.00")])
    list(pending_webhooks(_account(service)))
    service.ledger().inject(Fault.TIMEOUT_AFTER, operation="capture")
    url = f"/v1/transactions/{tx['id']}/capture"
    headers = {"Idempotency-Key": "bc-cap-1"}
    lost = assert_problem(service.a.post(url, json={}, headers=headers), 503, "operation_outcome_unknown")
    assert "cannot happen twice" in lost["detail"]
    [hook] = service.deliver()
    assert service.settled([hook]) == ["deferred"]
    assert _tx(service, tx["id"])["amounts"]["captured"] == "0.00"
    retried = service.a.post(url, json={}, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["amounts"]["captured"] == "70.00"
    assert service.ledger().count("capture") == 1
    assert service.context.events.reapply_deferred() == 1
    assert [s for _, t, s in _events(service, transaction_id=tx["id"]) if t == "captured"] == ["no_change"]
    assert _tx(service, tx["id"])["amounts"]["captured"] == "70.00"


def test_out_of_order_events_never_move_the_payment_backwards(service):
    put_method(service.a, "TDS", "full")
    ledger = service.ledger()
    # a 3-D Secure payment: the customer still has to act; the PSP's word moves it on
    order = sales_document(company_id=COMPANY_A, payment_method_code="TDS", lines=[item_line(10000, "100.00")])
    waiting = service.a.post("/v1/authorizations", json={"document": document_json(order),
                                                         "payment_method_token": "requires_action"}).json()
    assert waiting["status"] == "pending"
    ref = waiting["psp_reference"]
    ledger.authorize_pending(ref)  # the customer passed 3-D Secure: payment.authorized
    account = _account(service)
    service.engine.plugins.psp("psp_mock").capture(account, CaptureRequest(
        idempotency_key="dash-cap", transaction_id=waiting["id"], psp_reference=ref, amount=Money.of("100.00", "EUR")))
    hooks = {json.loads(r.body)["type"]: r for r in pending_webhooks(account)}
    authorized_hook, captured_hook = hooks["payment.authorized"], hooks["payment.captured"]
    # delivered newest first: captured, then the late authorized
    [late_first] = service.deliver(requests=[captured_hook])
    assert service.settled([late_first]) == ["applied"]
    [late] = service.deliver(requests=[authorized_hook])
    assert service.settled([late]) == ["no_change"]
    view = _tx(service, waiting["id"])
    assert view["status"] == "captured"
    assert view["amounts"]["authorized"] == "100.00" and view["amounts"]["captured"] == "100.00"


def test_refund_webhooks_out_of_order_count_the_total_once(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "50.00")])
    service.a.post(f"/v1/transactions/{tx['id']}/capture", json={})
    account = _account(service)
    list(pending_webhooks(account))
    psp = service.engine.plugins.psp("psp_mock")
    for key, amount in (("dash-r1", "10.00"), ("dash-r2", "5.00")):
        psp.refund(account, RefundRequest(idempotency_key=key, transaction_id=tx["id"], psp_reference=tx["psp_reference"],
                                          amount=Money.of(amount, "EUR")))
    first, second = list(pending_webhooks(account))
    results = service.settled(service.deliver(requests=[second, first]))
    assert results == ["applied", "no_change"]
    view = _tx(service, tx["id"])
    assert view["amounts"]["refunded"] == "15.00" and view["status"] == "partly_refunded"


def test_signature_failures_unknown_accounts_and_unknown_types(service):
    put_method(service.a)
    _, tx = authorized(service.a)
    [good] = list(pending_webhooks(_account(service)))
    tampered = good.body.replace(b'"payment.authorized"', b'"payment.captured"')
    assert_problem(service.anonymous.post("/webhooks/psp_mock/full", content=tampered, headers=good.headers), 400,
                   "webhook_signature_invalid")
    assert_problem(service.anonymous.post("/webhooks/psp_mock/full", content=good.body,
                                          headers={"content-type": "application/json"}), 400, "webhook_signature_missing")
    assert_problem(service.anonymous.post("/webhooks/psp_mock/nowhere", content=good.body, headers=good.headers), 404,
                   "psp_account_not_found")
    assert_problem(service.anonymous.post("/webhooks/psp_nope/full", content=good.body, headers=good.headers), 404,
                   "unknown_plugin")
    assert _count_events(service) == 0
    ledger = service.ledger()
    ledger.emit("payment.dispute_opened", payment=tx["psp_reference"], currency="EUR")
    ledger.run_payout()
    ledger.delivered.add(ledger.events[0]["id"])  # skip the authorization
    responses = service.deliver()
    assert all(r.status_code == 200 for r in responses)
    kinds = list(zip([r.json()["events"][0]["type"] for r in responses], service.settled(responses), strict=True))
    assert ("unknown", "stored") in kinds
    assert _tx(service, tx["id"])["status"] == "reserved"


def test_the_webhook_route_keeps_the_services_guards(service):
    """The busiest route takes an express lane past the router; it still gets the request id, the
    body limit, the request metrics and the problem documents every other route gets, and what
    the lane does not take (other methods, names the route refuses) is answered as before."""
    put_method(service.a)
    authorized(service.a)
    [good] = list(pending_webhooks(_account(service)))
    answer = service.anonymous.post("/webhooks/psp_mock/full", content=good.body,
                                    headers={**good.headers, "X-Request-Id": "psp-delivery-1"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "psp-delivery-1"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["received"] == 1 and answer.json()["events"][0]["status"] == "received"
    refused = assert_problem(service.anonymous.post("/webhooks/psp_mock/full", content=good.body + b" ",
                                                    headers={**good.headers, "X-Request-Id": "psp-delivery-2"}),
                             400, "webhook_signature_invalid")
    assert refused["request_id"] == "psp-delivery-2"
    limit = service.context.settings.service.max_body_bytes
    assert_problem(service.anonymous.post("/webhooks/psp_mock/full", content=b"{" + b" " * limit + b"}",
                                          headers=good.headers), 413, "body_too_large")
    assert_problem(service.anonymous.post("/webhooks/psp_mock/-full", content=good.body, headers=good.headers), 422,
                   "invalid_request")
    assert_problem(service.anonymous.post("/webhooks/psp_mock/full/more", content=good.body, headers=good.headers), 404,
                   "not_found")
    assert_problem(service.anonymous.get("/webhooks/psp_mock/full"), 405, "method_not_allowed")
    assert _count_events(service) == 1
    metrics = service.anonymous.get("/metrics").text
    assert 'payweave_http_requests_total{method="POST",route="/webhooks/{psp}/{account}",status="200"}' in metrics
    assert 'payweave_http_requests_total{method="POST",route="/webhooks/{psp}/{account}",status="400"}' in metrics


def test_external_capture_and_psp_events_of_a_transaction(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "30.00")])
    account = _account(service)
    service.engine.plugins.psp("psp_mock").capture(account, CaptureRequest(
        idempotency_key="dash-2", transaction_id=tx["id"], psp_reference=tx["psp_reference"],
        amount=Money.of("12.00", "EUR"), final=False))
    responses = service.deliver()
    assert service.settled(responses) == ["no_change", "applied"]
    view = _tx(service, tx["id"])
    assert view["status"] == "partly_captured" and view["amounts"]["captured"] == "12.00"
    captured = [h for h in view["history"] if h["action"] == "captured"]
    assert captured and captured[0]["trigger"] == "webhook" and "outside payweave" in captured[0]["message"]
    events = service.a.get(f"/v1/transactions/{tx['id']}/psp-events").json()
    assert [(e["type"], e["status"]) for e in events] == [("authorized", "no_change"), ("captured", "applied")]
    assert_problem(service.b.get(f"/v1/transactions/{tx['id']}/psp-events"), 404, "transaction_not_found")


def _forged(service, raw_type: str, **data):
    """A webhook the PSP's key signed, whose figures the PSP's books do not hold (a PSP bug, a
    leaked webhook secret): not one of the ledger's own events."""
    ledger = service.ledger()
    event = {"id": f"mevt_forged_{raw_type}_{len(ledger.events)}_{time.time_ns()}", "type": raw_type,
             "created": int(ledger.clock.now().timestamp()), "data": data}
    return signed_webhook(_account(service), event, received_at=ledger.clock.now())


def test_signed_events_the_psps_books_contradict_move_nothing(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "80.00")])
    list(pending_webhooks(_account(service)))  # the authorization's own event: not under test
    ref = tx["psp_reference"]
    assert service.a.post(f"/v1/transactions/{tx['id']}/capture", json={"amount": "50.00"}).status_code == 200
    list(pending_webhooks(_account(service)))
    before = _tx(service, tx["id"])
    assert before["amounts"]["captured"] == "50.00" and before["amounts"]["authorized"] == "80.00"
    forged = [
        _forged(service, "payment.expired", payment=ref, note="anything"),
        _forged(service, "payment.voided", payment=ref, currency="EUR", amount_minor=3000),
        _forged(service, "payment.captured", payment=ref, currency="EUR", total_captured_minor=8000),
        _forged(service, "payment.captured", payment=ref, currency="EUR", amount_minor=1000),
        _forged(service, "payment.refunded", payment=ref, currency="EUR", total_refunded_minor=2000),
        _forged(service, "payment.refunded", payment=ref, currency="EUR", amount_minor=100),
    ]
    assert service.settled(service.deliver(requests=forged)) == ["ignored"] * len(forged)
    after = _tx(service, tx["id"])
    assert after["amounts"] == before["amounts"] and after["status"] == before["status"]
    notes = [e for e in service.a.get(f"/v1/transactions/{tx['id']}/psp-events").json() if e["status"] == "ignored"]
    assert len(notes) == len(forged)
    assert all("the PSP's books show the payment partly captured: 80.00 EUR authorized, 50.00 EUR captured, "
               "0.00 EUR paid back, 30.00 EUR still reserved" in e["note"] for e in notes), notes

    # what the PSP's books do show is applied: the reservation really expires at the PSP
    service.ledger().advance(days=8)
    [expiry] = [r for r in pending_webhooks(_account(service)) if json.loads(r.body)["type"] == "payment.expired"]
    assert service.settled(service.deliver(requests=[expiry])) == ["applied"]
    view = _tx(service, tx["id"])
    assert view["amounts"]["captured"] == "50.00" and view["amounts"]["expired"] == "30.00", view["amounts"]
    assert view["amounts"]["capturable"] == "0.00"


def test_a_change_made_at_the_psp_waits_while_its_books_cannot_be_read(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "30.00")])
    list(pending_webhooks(_account(service)))
    service.engine.plugins.psp("psp_mock").capture(_account(service), CaptureRequest(
        idempotency_key="dash-books", transaction_id=tx["id"], psp_reference=tx["psp_reference"],
        amount=Money.of("30.00", "EUR")))
    ledger = service.ledger()
    ledger.inject(Fault.UNAVAILABLE, "get_payment", times=20)  # down for every applier that tries
    responses = service.deliver()
    assert service.settled(responses) == ["deferred"]
    assert _tx(service, tx["id"])["amounts"]["captured"] == "0.00"
    [event] = service.a.get(f"/v1/transactions/{tx['id']}/psp-events").json()
    assert "could not be read" in event["note"] and "temporarily_unavailable" in event["note"], event
    ledger.clear_faults()
    assert service.context.events.reapply_deferred() >= 1  # the maintenance sweep: the PSP answers now
    assert _tx(service, tx["id"])["amounts"]["captured"] == "30.00"
    assert service.settled(responses) == ["applied"]
