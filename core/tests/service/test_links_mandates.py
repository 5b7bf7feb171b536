"""Start Payment (payment links and the customer's redirects) and recurring payments on mandates,
through a real uvicorn with psp_mock."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from payweave.core.testing.documents import CUSTOMER, item_line, sales_document
from payweave.plugins.psp_mock import Fault

from .conftest import (
    CANCEL_URL,
    COMPANY_A,
    ERROR_URL,
    SUCCESS_URL,
    assert_problem,
    document_json,
    put_method,
)


@pytest.fixture
def link_method(service):
    def make(code: str = "LINK", profile: str = "full", **options):
        return put_method(service.a, code, profile, start_payment=True, success_url=SUCCESS_URL, error_url=ERROR_URL,
                          cancel_url=CANCEL_URL, **options)

    return make


def _link(service, code="LINK", amount="120.00", headers=None, **body):
    order = sales_document(company_id=COMPANY_A, payment_method_code=code, lines=[item_line(10000, amount)])
    response = service.a.post("/v1/payment-links", json={"document": document_json(order), **body}, headers=headers or {})
    assert response.status_code == 201, response.text
    return order, response.json()


def _return(service, link_id, outcome, query=""):
    response = service.anonymous.get(f"/pay/{link_id}/{outcome}{query}", follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {k: v[0] for k, v in parse_qs(parts.query).items()}


def _tx(service, tx_id):
    return service.a.get(f"/v1/transactions/{tx_id}").json()


def test_payment_link_is_created_once_and_the_psp_decides_the_outcome(service, link_method):
    link_method()
    order, link = _link(service, headers={"Idempotency-Key": "link-1"})
    assert link["status"] == "open" and link["url"].startswith("https://pay.psp-mock.invalid/")
    assert link["transaction_status"] == "pending" and link["amount"] == "120.00"
    ledger = service.ledger()
    psp_link = ledger.links[link["psp_link_id"]]
    assert psp_link.success_url == f"{service.url}/pay/{link['id']}/success"
    assert psp_link.cancel_url.endswith("/cancel") and psp_link.error_url.endswith("/error")
    again = service.a.post("/v1/payment-links", json={"document": document_json(order)}, headers={"Idempotency-Key": "link-1"})
    assert again.json() == link and again.headers["idempotent-replayed"] == "true"
    same_document = service.a.post("/v1/payment-links", json={"document": document_json(order)})
    assert same_document.json()["id"] == link["id"]
    assert len(ledger.links) == 1

    # the customer claims success without paying: the query string and the path decide nothing
    target, params = _return(service, link["id"], "success", "?status=paid&amount=120.00")
    assert target == "https://shop.example/paid"
    assert params["order"] == "1" and params["payweave_status"] == "pending"
    assert params["payweave_transaction"] == link["transaction_id"]
    assert _tx(service, link["transaction_id"])["status"] == "pending"

    # the customer pays; coming back, payweave asks the PSP (lookup), which confirms
    ledger.complete_link(link["psp_link_id"])
    target, params = _return(service, link["id"], "success")
    assert params["payweave_status"] == "reserved"
    view = _tx(service, link["transaction_id"])
    assert view["status"] == "reserved" and view["amounts"]["authorized"] == "120.00"
    returned = [h for h in view["history"] if h["action"] == "customer_returned"]
    assert len(returned) == 2 and all("not the redirect" in h["message"] for h in returned)

    # the webhooks arrive afterwards and change nothing more; the link is completed
    statuses = service.settled(service.deliver())
    assert statuses == ["no_change", "no_change"]
    assert service.a.get(f"/v1/payment-links/{link['id']}").json()["status"] == "completed"
    captured = service.a.post(f"/v1/transactions/{link['transaction_id']}/capture", json={}).json()
    assert captured["status"] == "captured" and ledger.count("capture") == 1


def test_webhook_alone_completes_an_auto_capture_link(service, link_method):
    link_method("AUTO", "full", auto_capture=True)
    _, link = _link(service, "AUTO", amount="45.00")
    service.ledger().complete_link(link["psp_link_id"])
    responses = service.deliver()
    types = [r.json()["events"][0]["type"] for r in responses]
    assert list(zip(types, service.settled(responses), strict=True)) == [("captured", "applied"), ("link_completed", "no_change")]
    view = _tx(service, link["transaction_id"])
    assert view["status"] == "captured" and view["amounts"]["captured"] == "45.00"


def test_cancel_and_error_returns_redirect_without_changing_the_payment(service, link_method):
    link_method()
    _, link = _link(service)
    target, params = _return(service, link["id"], "cancel")
    assert target == CANCEL_URL and params["payweave_status"] == "pending"
    target, _ = _return(service, link["id"], "error")
    assert target == ERROR_URL
    assert _tx(service, link["transaction_id"])["status"] == "pending"
    assert_problem(service.anonymous.get("/pay/00000000-0000-0000-0000-000000000000/success", follow_redirects=False),
                   404, "payment_link_not_found")
    assert service.anonymous.get(f"/pay/{link['id']}/paid", follow_redirects=False).status_code == 422


def test_expired_link_fails_the_payment_and_a_new_link_can_follow(service, link_method, time_machine):
    link_method()
    order, link = _link(service, expires_at=(time_machine.clock.now() + timedelta(hours=1)).isoformat())
    time_machine.advance(timedelta(hours=2))
    service.ledger().expire_due()
    [hook] = service.deliver()
    assert service.settled([hook]) == ["applied"]
    assert _tx(service, link["transaction_id"])["status"] == "failed"
    target, params = _return(service, link["id"], "success")
    assert target == ERROR_URL and params["payweave_status"] == "failed"
    fresh = service.a.post("/v1/payment-links", json={"document": document_json(order)})
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["transaction_id"] != link["transaction_id"]


def test_link_refusals(service, link_method):
    put_method(service.a, "NOLINK", "full")
    order = sales_document(company_id=COMPANY_A, payment_method_code="NOLINK")
    problem = assert_problem(service.a.post("/v1/payment-links", json={"document": document_json(order)}), 422,
                             "option_disabled")
    assert "Start Payment" in problem["detail"]
    missing = service.a.put("/v1/payment-methods/HALF", json={"psp": "psp_mock", "start_payment": True,
                                                              "success_url": SUCCESS_URL})
    assert "Error URL" in assert_problem(missing, 422, "setup_incomplete")["detail"]


def test_link_creation_timeout_is_replayed_with_the_same_key(service, link_method):
    link_method()
    service.ledger().inject(Fault.TIMEOUT_AFTER, operation="create_payment_link")
    order = sales_document(company_id=COMPANY_A, payment_method_code="LINK")
    headers = {"Idempotency-Key": "link-timeout"}
    assert_problem(service.a.post("/v1/payment-links", json={"document": document_json(order)}, headers=headers), 503,
                   "operation_outcome_unknown")
    retried = service.a.post("/v1/payment-links", json={"document": document_json(order)}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "open"
    assert len(service.ledger().links) == 1


# ------------------------------------------------------------------------------ mandates
@pytest.fixture
def mandate(service):
    put_method(service.a, "SUB", "full", recurring=True)
    reference = service.ledger().create_mandate(CUSTOMER.customer_id)
    response = service.a.post("/v1/mandates", json={"payment_method_code": "sub", "mandate_reference": reference,
                                                    "customer": CUSTOMER.model_dump(mode="json")})
    assert response.status_code == 201, response.text
    return response.json()


def _charge(service, mandate_id, headers=None, **doc):
    order = sales_document(company_id=COMPANY_A, payment_method_code="SUB", **doc)
    return order, service.a.post(f"/v1/mandates/{mandate_id}/charges", json={"document": document_json(order)},
                                 headers=headers or {})


def test_mandate_registration_and_charge_once(service, mandate):
    assert mandate["status"] == "active" and mandate["payment_method_code"] == "SUB"
    again = service.a.post("/v1/mandates", json={"payment_method_code": "SUB", "mandate_reference": mandate["mandate_reference"],
                                                 "customer": CUSTOMER.model_dump(mode="json")})
    assert again.json()["id"] == mandate["id"]
    assert [m["id"] for m in service.a.get("/v1/mandates", params={"customer_id": CUSTOMER.customer_id}).json()] == [mandate["id"]]
    headers = {"Idempotency-Key": "charge-2026-01"}
    order, charged = _charge(service, mandate["id"], headers, lines=[item_line(10000, "29.90")])
    assert charged.status_code == 201, charged.text
    tx = charged.json()
    assert tx["status"] == "captured" and tx["amounts"]["captured"] == "29.90"
    repeat = service.a.post(f"/v1/mandates/{mandate['id']}/charges", json={"document": document_json(order)}, headers=headers)
    assert repeat.json()["id"] == tx["id"] and repeat.headers["idempotent-replayed"] == "true"
    same_document = service.a.post(f"/v1/mandates/{mandate['id']}/charges", json={"document": document_json(order)})
    assert tx["id"] in assert_problem(same_document, 409, "illegal_transition")["detail"]  # one payment per document
    assert service.ledger().count("capture") == 1
    assert "mandate_charged" in [h["action"] for h in service.a.get(f"/v1/transactions/{tx['id']}/history").json()]
    refunded = service.a.post(f"/v1/transactions/{tx['id']}/refund", json={"amount": "9.90"}).json()
    assert refunded["amounts"]["refunded"] == "9.90"


def test_mandate_charge_timeout_is_replayed_and_charges_once(service, mandate):
    service.ledger().inject(Fault.TIMEOUT_AFTER, operation="charge_mandate")
    headers = {"Idempotency-Key": "charge-timeout"}
    order, lost = _charge(service, mandate["id"], headers)
    assert_problem(lost, 503, "operation_outcome_unknown")
    retried = service.a.post(f"/v1/mandates/{mandate['id']}/charges", json={"document": document_json(order)}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "captured"
    assert service.ledger().count("capture") == 1


def test_mandate_refusals(service, mandate):
    declining = service.ledger().create_mandate(CUSTOMER.customer_id, "decline")
    registered = service.a.post("/v1/mandates", json={"payment_method_code": "SUB", "mandate_reference": declining,
                                                      "customer": CUSTOMER.model_dump(mode="json")}).json()
    _, declined = _charge(service, registered["id"])
    problem = assert_problem(declined, 402, "payment_declined")
    assert problem["details"]["decline_code"] == "insufficient_funds"
    failed = service.a.get("/v1/transactions", params={"status": "failed"}).json()
    assert len(failed) == 1
    other = CUSTOMER.model_copy(update={"customer_id": "cust-20000", "number": "20000"})
    _, mismatch = _charge(service, mandate["id"], customer=other)
    assert "20000" in assert_problem(mismatch, 422, "mandate_mismatch")["detail"]
    put_method(service.a, "CARD", "full")
    wrong_method = sales_document(company_id=COMPANY_A, payment_method_code="CARD")
    assert_problem(service.a.post(f"/v1/mandates/{mandate['id']}/charges", json={"document": document_json(wrong_method)}),
                   422, "mandate_mismatch")
    assert service.a.post(f"/v1/mandates/{mandate['id']}/revoke").json()["status"] == "revoked"
    _, revoked = _charge(service, mandate["id"])
    assert_problem(revoked, 409, "mandate_revoked")
    not_recurring = service.a.post("/v1/mandates", json={"payment_method_code": "CARD", "mandate_reference": "m-x",
                                                         "customer": CUSTOMER.model_dump(mode="json")})
    assert "Recurring Payment" in assert_problem(not_recurring, 422, "option_disabled")["detail"]
    assert_problem(service.a.get("/v1/mandates/nope"), 404, "mandate_not_found")
