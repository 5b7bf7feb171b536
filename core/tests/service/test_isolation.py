"""A key of company A can neither read nor change anything of company B: another company's ids
answer 404, exactly like ids that do not exist, and nothing changes."""
from __future__ import annotations

from payweave.core.testing.documents import sales_document

from .conftest import COMPANY_A, COMPANY_B, assert_problem, authorized, document_json, put_method


def test_transactions_of_another_company_are_404_and_unchanged(service):
    put_method(service.a)
    _, tx = authorized(service.a)
    tx_id = tx["id"]
    assert_problem(service.b.get(f"/v1/transactions/{tx_id}"), 404, "transaction_not_found")
    assert_problem(service.b.get(f"/v1/transactions/{tx_id}/history"), 404, "transaction_not_found")
    for operation in ("capture", "void", "refund", "credit"):
        assert_problem(service.b.post(f"/v1/transactions/{tx_id}/{operation}", json={}), 404, "transaction_not_found")
    assert service.b.get("/v1/transactions").json() == []
    assert [t["id"] for t in service.a.get("/v1/transactions").json()] == [tx_id]
    after = service.a.get(f"/v1/transactions/{tx_id}").json()
    assert after["status"] == "reserved" and after["amounts"]["captured"] == "0.00"
    assert service.ledger().count("capture") == 0 and service.ledger().count("void") == 0


def test_setup_is_per_company(service):
    put_method(service.a, "CARD")
    assert service.b.get("/v1/payment-methods").json() == []
    assert_problem(service.b.get("/v1/payment-methods/CARD"), 404, "payment_method_not_found")
    assert_problem(service.b.delete("/v1/payment-methods/CARD"), 404, "payment_method_not_found")
    # B's documents with A's payment-method code are not payweave documents for B
    order = sales_document(company_id=COMPANY_B, payment_method_code="CARD")
    assert_problem(service.b.post("/v1/authorizations", json={"document": document_json(order)}), 422,
                   "document_not_payweave")


def test_a_body_naming_another_company_is_refused_as_not_found(service):
    put_method(service.a, "CARD")
    order = document_json(sales_document(company_id=COMPANY_A, payment_method_code="CARD"))
    order["company_id"] = COMPANY_A
    assert_problem(service.b.post("/v1/authorizations", json={"document": order}), 404, "company_not_found")
    setup = {"psp": "psp_mock", "psp_account": "full", "company_id": COMPANY_A}
    assert_problem(service.b.put("/v1/payment-methods/CARD", json=setup), 404, "company_not_found")
    assert service.a.post("/v1/authorizations", json={"document": order}).status_code == 200


def test_idempotency_keys_are_per_company(service):
    put_method(service.a, "CARD")
    put_method(service.b, "CARD")
    headers = {"Idempotency-Key": "same-key"}
    doc_a = sales_document(company_id=COMPANY_A, payment_method_code="CARD")
    doc_b = sales_document(company_id=COMPANY_B, payment_method_code="CARD")
    first = service.a.post("/v1/authorizations", json={"document": document_json(doc_a)}, headers=headers)
    second = service.b.post("/v1/authorizations", json={"document": document_json(doc_b)}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert first.json()["company_id"] == COMPANY_A and second.json()["company_id"] == COMPANY_B


def test_links_and_mandates_of_another_company_are_404(service):
    put_method(service.a, "LINK", "full", start_payment=True, success_url="https://a.example/ok",
               error_url="https://a.example/error", cancel_url="https://a.example/cancel")
    put_method(service.a, "SUB", "full", recurring=True)
    order = sales_document(company_id=COMPANY_A, payment_method_code="LINK")
    link = service.a.post("/v1/payment-links", json={"document": document_json(order)})
    assert link.status_code == 201, link.text
    assert_problem(service.b.get(f"/v1/payment-links/{link.json()['id']}"), 404, "payment_link_not_found")
    mandate = service.a.post("/v1/mandates", json={"payment_method_code": "SUB", "mandate_reference": "mmd_1",
                                                   "customer": {"customer_id": "cust-10000"}})
    assert mandate.status_code == 201, mandate.text
    mandate_id = mandate.json()["id"]
    assert_problem(service.b.get(f"/v1/mandates/{mandate_id}"), 404, "mandate_not_found")
    assert_problem(service.b.post(f"/v1/mandates/{mandate_id}/revoke"), 404, "mandate_not_found")
    doc_b = sales_document(company_id=COMPANY_B, payment_method_code="SUB")
    assert_problem(service.b.post(f"/v1/mandates/{mandate_id}/charges", json={"document": document_json(doc_b)}), 404,
                   "mandate_not_found")
    assert service.b.get("/v1/mandates").json() == []
    assert service.a.get(f"/v1/mandates/{mandate_id}").json()["status"] == "active"
    assert COMPANY_A != COMPANY_B
