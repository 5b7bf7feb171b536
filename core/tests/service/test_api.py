"""The BC-facing API (/v1) through a real uvicorn: setup, document events, manual capture, void,
refund and credit, transactions and history, idempotent POSTs, refusals as problem details."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.testing.documents import item_line, posted_invoice, sales_document

from .conftest import COMPANY_A, assert_problem, authorized, document_json, event_json, put_method


# ------------------------------------------------------------------------------ authentication
def test_requests_without_a_valid_key_are_401(service):
    assert_problem(service.anonymous.get("/v1/transactions"), 401, "not_authenticated")
    bad = service.client("pwk_0123456789abcdef_" + "x" * 43)
    assert_problem(bad.get("/v1/me"), 401, "not_authenticated")
    assert_problem(service.client("not-a-key").get("/v1/me"), 401, "not_authenticated")
    response = service.anonymous.get("/v1/me")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_key_names_its_company_and_revoked_keys_stop_working(service):
    created = service.keys.create(COMPANY_A, name="temp")
    client = service.client(created.secret)
    assert client.get("/v1/me").json() == {"company_id": COMPANY_A, "api_key_id": created.key.id, "api_key_name": "temp"}
    x_api_key = service.anonymous.get("/v1/me", headers={"X-API-Key": created.secret})
    assert x_api_key.status_code == 200
    service.keys.revoke(created.key.id)
    assert_problem(client.get("/v1/me"), 401, "not_authenticated")


def test_keys_are_stored_hashed(service):
    from payweave.core.store.service_models import ApiKeyRow

    created = service.keys.create(COMPANY_A)
    secret_part = created.secret.split("_", 2)[2]
    with service.engine.store.transaction() as s:
        row = s.get(ApiKeyRow, created.key.id)
        assert secret_part not in row.secret_hash and len(row.secret_hash) == 64


# ------------------------------------------------------------------------------ setup
def test_payment_method_setup_crud_and_refusals(service):
    body = put_method(service.a, "card", "full", capture_timing="on_posting", auto_void=True)
    assert body["code"] == "CARD" and body["company_id"] == COMPANY_A and body["auto_void"] is True
    assert service.a.get("/v1/payment-methods/CARD").json() == body
    assert [m["code"] for m in service.a.get("/v1/payment-methods").json()] == ["CARD"]
    refused = service.a.put("/v1/payment-methods/BAD", json={"psp": "psp_mock", "psp_account": "no_void", "auto_void": True})
    problem = assert_problem(refused, 422, "setup_option_not_supported")
    assert "Automatic PSP Cancellation" in problem["detail"] and problem["details"]["setting"] == "auto_void"
    forbidden = service.a.put("/v1/payment-methods/BAD", json={"psp": "psp_mock", "recurring": True,
                                                               "allow_reservation_renewal": True})
    assert_problem(forbidden, 422, "setup_combination_forbidden")
    assert_problem(service.a.put("/v1/payment-methods/X", json={"psp": "no_such_psp"}), 404, "unknown_plugin")
    assert service.a.delete("/v1/payment-methods/CARD").json() == {"deleted": True}
    assert_problem(service.a.get("/v1/payment-methods/CARD"), 404, "payment_method_not_found")


def test_account_setup_needs_a_connected_erp_and_psp_accounts(service):
    # the full path (choices from BC, validation, shared with write-back) is tests/sync/test_account_setup_api.py
    assert_problem(service.a.get("/v1/account-setup"), 404, "account_setup_missing")
    refused = service.a.put("/v1/account-setup", json={"payments_account": "2910", "bank_account": "BANK1",
                                                       "fee_account": "7800"})
    assert_problem(refused, 404, "erp_connection_not_found")
    accounts = {(a["psp"], a["account"]): a["features"] for a in service.a.get("/v1/psp-accounts").json()}
    assert accounts[("psp_mock", "full")]["partial_capture"] is True
    assert accounts[("psp_mock", "no_void")]["void"] is False


# ------------------------------------------------------------------------------ document events
def test_release_then_post_captures_on_posting(service):
    put_method(service.a, "CARD", "full", capture_timing="on_posting")
    order = sales_document(company_id=COMPANY_A, payment_method_code="CARD")
    released = service.a.post("/v1/document-events", json=event_json("released", order))
    assert released.status_code == 200, released.text
    tx_id = released.json()["transaction"]["id"]
    assert released.json()["actions"][0]["action"] == "prepared"
    reserved = service.a.post("/v1/authorizations", json={"document": document_json(order)}).json()
    assert reserved["id"] == tx_id and reserved["status"] == "reserved"
    posted = service.a.post("/v1/document-events", json=event_json("posted", posted_invoice(order)))
    assert posted.status_code == 200, posted.text
    assert posted.json()["transaction"]["status"] == "captured"
    assert service.ledger().count("capture") == 1
    again = service.a.post("/v1/document-events", json={**event_json("posted", posted_invoice(order)),
                                                        "event_id": posted.json()["event_id"]})
    assert again.json()["replayed"] is True and service.ledger().count("capture") == 1


def test_document_refusals_name_the_field(service):
    put_method(service.a)
    order = sales_document(company_id=COMPANY_A, payment_method_code="CARD", invoice_discount_amount="5.00")
    problem = assert_problem(service.a.post("/v1/document-events", json=event_json("released", order)), 422,
                             "document_feature_unsupported")
    assert "Invoice Discount" in problem["detail"] or "invoice discount" in problem["detail"].lower()
    not_ours = sales_document(company_id=COMPANY_A, payment_method_code="CASH")
    assert_problem(service.a.post("/v1/document-events", json=event_json("released", not_ours)), 422, "document_not_payweave")


def test_check_document_returns_the_cart(service):
    put_method(service.a)
    order = sales_document(company_id=COMPANY_A, payment_method_code="CARD", lines=[item_line(10000, "50.00", tax="19")])
    cart = service.a.post("/v1/documents/check", json=document_json(order)).json()
    assert cart["total_gross"] == "59.50" and cart["currency"] == "EUR"


# ------------------------------------------------------------------------------ manual operations
def test_manual_capture_void_refund_credit(service):
    put_method(service.a, "CARD", "full", credit_allowed=True)
    _, tx = authorized(service.a, lines=[item_line(10000, "100.00")])
    tx_id = tx["id"]
    captured = service.a.post(f"/v1/transactions/{tx_id}/capture", json={"amount": "60.00"}).json()
    assert captured["status"] == "partly_captured" and captured["amounts"]["captured"] == "60.00"
    voided = service.a.post(f"/v1/transactions/{tx_id}/void", json={"reason": "order reduced"}).json()
    assert voided["status"] == "captured" and voided["amounts"]["voided"] == "40.00"
    refunded = service.a.post(f"/v1/transactions/{tx_id}/refund", json={"amount": "10.00", "reason": "damaged"}).json()
    assert refunded["status"] == "partly_refunded" and refunded["amounts"]["refunded"] == "10.00"
    credited = service.a.post(f"/v1/transactions/{tx_id}/credit", json={"amount": "5.00"}).json()
    assert credited["amounts"]["credited"] == "5.00" and credited["amounts"]["refundable"] == "45.00"
    full = service.a.get(f"/v1/transactions/{tx_id}").json()
    assert [o["kind"] for o in full["operations"]] == ["reserve", "capture", "void", "refund", "credit"]
    history = service.a.get(f"/v1/transactions/{tx_id}/history").json()
    assert [h["action"] for h in history if h["outcome"] == "ok" and not h["action"].endswith("_requested")] == [
        "prepared", "reserve", "capture", "void", "refund", "credit"]
    ledger = service.ledger()
    assert ledger.moves(tx["psp_reference"]) == {"captures": 1, "refunds": 1, "voids": 1, "credits": 1}


def test_engine_refusals_are_problem_details_with_the_engines_sentence(service):
    put_method(service.a, "CARD", "no_partial_capture")
    _, tx = authorized(service.a, "CARD", lines=[item_line(10000, "100.00")])
    tx_id = tx["id"]
    over = assert_problem(service.a.post(f"/v1/transactions/{tx_id}/capture", json={"amount": "150.00"}), 422,
                          "amount_not_available")
    assert over["detail"].startswith("Cannot capture 150.00 EUR: only 100.00 EUR is still reserved")
    partial = assert_problem(service.a.post(f"/v1/transactions/{tx_id}/capture", json={"amount": "10.00"}), 422,
                             "not_supported")
    assert "partial capture" in partial["detail"]
    nothing = assert_problem(service.a.post(f"/v1/transactions/{tx_id}/refund", json={}), 409, "illegal_transition")
    assert "Nothing can be refunded" in nothing["detail"]
    assert service.ledger("no_partial_capture").count("capture") == 0


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        ("10.001", "more decimals than EUR allows"),
        ("-5.00", "greater than 0"),
        ("0", "greater than 0"),
        (10.5, "must not be floats"),
        ("ten", "not a number"),
        ("1e400", "less than or equal"),
    ],
)
def test_bad_amounts_are_422_not_500(service, amount, fragment):
    put_method(service.a)
    _, tx = authorized(service.a)
    problem = service.a.post(f"/v1/transactions/{tx['id']}/capture", json={"amount": amount})
    assert problem.status_code == 422, problem.text
    assert fragment in problem.json()["detail"]
    assert service.ledger().count("capture") == 0


def test_unknown_currency_and_malformed_json(service):
    put_method(service.a)
    document = document_json(sales_document(company_id=COMPANY_A, payment_method_code="CARD"))
    document["currency"] = "XYZ"
    problem = assert_problem(service.a.post("/v1/authorizations", json={"document": document}), 422, "invalid_request")
    assert "ISO 4217" in problem["detail"]
    assert_problem(service.a.post("/v1/authorizations", content=b'{"document": ', headers={"content-type": "application/json"}),
                   400, "malformed_json")
    assert_problem(service.a.post("/v1/authorizations", json={"document": 7}), 422, "invalid_request")


def test_oversized_body_is_413(service):
    big = {"document": {"x": "y" * 1_100_000}}
    assert_problem(service.a.post("/v1/authorizations", json=big), 413, "body_too_large")


def test_transactions_list_filters_and_unknown_ids(service):
    put_method(service.a)
    _, first = authorized(service.a)
    doc, second = authorized(service.a)
    service.a.post(f"/v1/transactions/{second['id']}/capture", json={})
    listed = service.a.get("/v1/transactions").json()
    assert [t["id"] for t in listed][:2] == [second["id"], first["id"]] or {t["id"] for t in listed} == {first["id"], second["id"]}
    captured = service.a.get("/v1/transactions", params={"status": "captured"}).json()
    assert [t["id"] for t in captured] == [second["id"]]
    by_number = service.a.get("/v1/transactions", params={"document_number": doc.number}).json()
    assert [t["id"] for t in by_number] == [second["id"]]
    assert_problem(service.a.get("/v1/transactions/00000000-0000-0000-0000-000000000000"), 404, "transaction_not_found")
    assert service.a.get("/v1/transactions", params={"limit": 0}).status_code == 422


# ------------------------------------------------------------------------------ idempotency
def test_repeated_post_with_the_same_key_returns_the_first_answer_without_capturing_again(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "80.00")])
    url = f"/v1/transactions/{tx['id']}/capture"
    headers = {"Idempotency-Key": "bc-capture-42"}
    first = service.a.post(url, json={"amount": "30.00"}, headers=headers)
    second = service.a.post(url, json={"amount": "30.00"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
    assert service.ledger().count("capture") == 1
    assert service.a.get(f"/v1/transactions/{tx['id']}").json()["amounts"]["captured"] == "30.00"
    reused = assert_problem(service.a.post(url, json={"amount": "31.00"}, headers=headers), 422, "idempotency_key_reused")
    assert "different request" in reused["detail"]
    # another company may use the same key for its own request
    assert service.b.get("/v1/me").status_code == 200
    assert_problem(service.a.post(url, json={}, headers={"Idempotency-Key": "bad key with spaces"}), 422,
                   "invalid_idempotency_key")


def test_a_refusal_is_replayed_too(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "20.00")])
    url = f"/v1/transactions/{tx['id']}/capture"
    headers = {"Idempotency-Key": "too-much"}
    first = assert_problem(service.a.post(url, json={"amount": "25.00"}, headers=headers), 422, "amount_not_available")
    second = service.a.post(url, json={"amount": "25.00"}, headers=headers)
    assert second.status_code == 422 and second.json()["detail"] == first["detail"]
    assert second.headers["idempotent-replayed"] == "true"


def test_metrics_count_operations_and_backlog(service):
    put_method(service.a)
    _, tx = authorized(service.a)
    service.a.post(f"/v1/transactions/{tx['id']}/capture", json={"amount": "1000.00"})
    service.context.install_metrics()
    text = service.anonymous.get("/metrics").text
    assert 'payweave_operations_total{operation="authorize",outcome="ok"}' in text
    assert 'payweave_operations_total{operation="capture",outcome="amount_not_available"}' in text
    assert 'payweave_plugin_call_seconds_count{hook="psp_reserve",outcome="ok",plugin="psp_mock"}' in text
    assert "payweave_job_backlog{" in text


def test_readiness_pings_the_store(service):
    ready = service.anonymous.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {"store": "ok"}}


def test_amounts_are_decimal_strings(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "0.10", quantity=3)])
    assert tx["amount"] == "0.30" and Decimal(tx["amounts"]["authorized"]) == Decimal("0.30")
