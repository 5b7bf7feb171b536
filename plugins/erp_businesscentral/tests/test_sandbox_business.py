"""BC business behaviour in the sandbox: posting, shipAndInvoice, credit memos, PDFs, customer
payments and general journals posted through journals({id})/Microsoft.NAV.post."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from payweave.plugins.erp_businesscentral.conventions import CUSTOMER_PAYMENT_AMOUNT_SIGN


def first_customer(env):
    return sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]


def open_invoice(env, minimum=Decimal("50")):
    return next(d for d in sorted(env.company.tables["invoices"].by_id.values(), key=lambda d: d.number)
                if d.posted and d.remaining >= minimum and d.remaining == d.total_incl)


def item_number(env):
    return sorted(env.company.tables["items"].by_id.values(), key=lambda i: i.number)[0].number


def test_draft_invoice_deep_insert_then_post_keeps_id(env):
    cust = first_customer(env)
    body = env.ok("POST", "salesInvoices", json={
        "customerNumber": cust.number, "externalDocumentNumber": "EXT-1",
        "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": item_number(env), "quantity": 3,
                               "unitPrice": Decimal("19.99"), "discountPercent": 10}],
    })
    assert body["status"] == "Draft" and body["number"].startswith("S-INV")
    assert body["customerId"] == cust.id and body["remainingAmount"] == body["totalAmountIncludingTax"]
    inv_id = body["id"]
    lines = env.ok("GET", f"salesInvoices({inv_id})/salesInvoiceLines")["value"]
    assert lines[0]["discountAmount"] == Decimal("6")  # round(59.97 * 10%) = 6.00
    assert lines[0]["amountExcludingTax"] == Decimal("53.97")
    r = env.call("POST", f"salesInvoices({inv_id})/Microsoft.NAV.post")
    assert r.status_code == 204 and r.content == b""
    posted = env.ok("GET", f"salesInvoices({inv_id})")
    assert posted["id"] == inv_id and posted["status"] == "Open" and posted["number"].startswith("PS-INV")
    assert posted["remainingAmount"] == posted["totalAmountIncludingTax"] == body["totalAmountIncludingTax"]
    again = env.call("POST", f"salesInvoices({inv_id})/Microsoft.NAV.post")
    assert again.status_code == 400
    assert env.body(again)["error"]["message"].startswith("The action can be applied to a draft invoice only.")
    gl = env.ok("GET", "generalLedgerEntries", params={"$filter": f"documentNumber eq '{posted['number']}'"})["value"]
    assert sum(e["debitAmount"] for e in gl) == sum(e["creditAmount"] for e in gl) == posted["totalAmountIncludingTax"]


def test_create_invoice_needs_a_customer(env):
    r = env.call("POST", "salesInvoices", json={"externalDocumentNumber": "X"})
    assert r.status_code == 400
    err = env.body(r)["error"]
    assert err["code"] == "Application_DialogException"
    assert err["message"].startswith('A "customerNumber" or a "customerId" must be provided.')
    r = env.call("POST", "salesInvoices", json={"customerNumber": "NOPE"})
    assert 'The "customerNumber" does not match to a Customer.' in env.body(r)["error"]["message"]


def test_line_changes_recompute_header_and_need_open_status(env):
    cust = first_customer(env)
    inv = env.ok("POST", "salesInvoices", json={"customerId": cust.id})
    assert inv["totalAmountIncludingTax"] == 0
    line = env.ok("POST", f"salesInvoices({inv['id']})/salesInvoiceLines",
                  json={"lineObjectNumber": item_number(env), "quantity": 2, "unitPrice": 100})
    env.ok("PATCH", f"salesInvoices({inv['id']})/salesInvoiceLines({line['id']})", json={"quantity": 5},
           headers={"If-Match": line["@odata.etag"]})
    after = env.ok("GET", f"salesInvoices({inv['id']})")
    assert after["totalAmountExcludingTax"] == Decimal(500)
    assert after["lastModifiedDateTime"] >= inv["lastModifiedDateTime"]
    doc = env.company.tables["invoices"].get(inv["id"])
    env.state.release(env.company, doc)
    r = env.call("POST", f"salesInvoices({inv['id']})/salesInvoiceLines", json={"lineObjectNumber": item_number(env)})
    assert r.status_code == 400 and "Status must be equal to 'Open'" in r.text


def test_ship_and_invoice_creates_invoice_with_order_id(env):
    order = next(iter(env.company.tables["orders"].by_id.values()))
    total = order.total_incl
    r = env.call("POST", f"salesOrders({order.id})/Microsoft.NAV.shipAndInvoice")
    assert r.status_code == 204
    assert env.get(f"salesOrders({order.id})").status_code == 404
    found = env.ok("GET", "salesInvoices", params={"$filter": f"orderId eq {order.id}"})["value"]
    assert len(found) == 1
    inv = found[0]
    assert inv["orderNumber"] == order.number and inv["status"] == "Open"
    assert inv["totalAmountIncludingTax"] == total == inv["remainingAmount"]


def test_credit_memo_posted_against_invoice_lowers_remaining(env):
    inv = open_invoice(env)
    before = inv.remaining
    acc = env.state.find_by_number(env.company, "accounts", "40100")
    cm = env.ok("POST", "salesCreditMemos", json={
        "customerId": inv.customer.id, "invoiceId": inv.id,
        "salesCreditMemoLines": [{"lineType": "Account", "accountId": acc.id, "quantity": 1, "unitPrice": 20}]})
    assert cm["invoiceNumber"] == inv.number and cm["status"] == "Draft"
    assert env.call("POST", f"salesCreditMemos({cm['id']})/Microsoft.NAV.post").status_code == 204
    row = env.ok("GET", f"salesInvoices({inv.id})")
    assert row["remainingAmount"] == before - Decimal(20)
    cm_row = env.ok("GET", f"salesCreditMemos({cm['id']})")
    assert cm_row["status"] == "Paid" and cm_row["number"].startswith("PS-CR")


def test_pdf_document_is_a_valid_pdf(env):
    inv = open_invoice(env)
    coll = env.ok("GET", f"salesInvoices({inv.id})/pdfDocument")
    item = coll["value"][0]
    assert item["id"] == inv.id and item["parentType"] == "Sales Invoice"
    link = item["content@odata.mediaReadLink"]
    assert link.endswith(f"salesInvoices({inv.id})/pdfDocument({inv.id})/content")
    r = env.call("GET", link)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = r.content
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\n(\d+)\n", pdf).group(1))
    assert pdf[startxref:startxref + 4] == b"xref"
    offsets = [int(x) for x in re.findall(rb"(\d{10}) 00000 n ", pdf)]
    for n, off in enumerate(offsets, start=1):
        assert pdf[off:].startswith(f"{n} 0 obj".encode())
    assert inv.number.encode() in pdf


def _payment_journal(env, code="PAYTEST"):
    clearing = env.state.find_by_number(env.company, "accounts", "10900")
    return env.ok("POST", "customerPaymentJournals", json={"code": code, "balancingAccountId": clearing.id}), clearing


def test_customer_payment_journal_posts_and_pays_invoice(env):
    inv = open_invoice(env)
    journal, clearing = _payment_journal(env)
    assert journal["balancingAccountNumber"] == "10900"
    partial = (inv.remaining / 2).quantize(Decimal("0.01"))
    line = env.ok("POST", f"customerPaymentJournals({journal['id']})/customerPayments", json={
        "appliesToInvoiceNumber": inv.number, "amount": CUSTOMER_PAYMENT_AMOUNT_SIGN * partial})
    assert line["documentNumber"]  # filled from the batch's number series
    assert line["customerId"] == inv.bill_to.id  # filled from the invoice
    assert line["appliesToInvoiceId"] == inv.id and line["journalDisplayName"] == "PAYTEST"
    assert env.call("POST", f"journals({journal['id']})/Microsoft.NAV.post").status_code == 204
    after = env.ok("GET", f"salesInvoices({inv.id})")
    assert after["remainingAmount"] == inv.total_incl - partial and after["status"] == "Open"
    assert env.ok("GET", f"customerPaymentJournals({journal['id']})/customerPayments")["value"] == []
    gl = env.ok("GET", "generalLedgerEntries", params={
        "$filter": f"documentNumber eq '{line['documentNumber']}' and documentType eq 'Payment'"})["value"]
    by_account = {e["accountNumber"]: e for e in gl}
    assert by_account["10900"]["debitAmount"] == partial and by_account["13100"]["creditAmount"] == partial
    rest = inv.remaining
    env.ok("POST", f"customerPaymentJournals({journal['id']})/customerPayments", json={
        "appliesToInvoiceId": inv.id, "amount": CUSTOMER_PAYMENT_AMOUNT_SIGN * rest, "documentNumber": "pw-2"})
    env.ok("POST", f"journals({journal['id']})/Microsoft.NAV.post")
    paid = env.ok("GET", f"salesInvoices({inv.id})")
    assert paid["status"] == "Paid" and paid["remainingAmount"] == 0
    empty = env.call("POST", f"journals({journal['id']})/Microsoft.NAV.post")
    assert empty.status_code == 400 and env.body(empty)["error"]["message"].startswith("There is nothing to post.")
    assert [e.document_number for e in env.state.posted_payments(env.company, invoice_id=inv.id)] == [
        line["documentNumber"], "PW-2"]
    assert inv.bill_to.balance == env.state.customer_balance(env.company, inv.bill_to)


def test_customer_payment_validation_messages(env):
    journal, _ = _payment_journal(env)
    lines = f"customerPaymentJournals({journal['id']})/customerPayments"
    draft = next(d for d in env.company.tables["invoices"].by_id.values() if not d.posted)
    r = env.call("POST", lines, json={"appliesToInvoiceId": draft.id, "amount": -1})
    assert env.body(r)["error"]["message"].startswith(
        'The "appliesToInvoiceId" should be the ID of an Open, Paid, Corrective, or Canceled Invoice.')
    r = env.call("POST", lines, json={"customerId": "6b7d6a1e-0000-4000-8000-000000000000", "amount": -1})
    assert env.body(r)["error"]["message"].startswith('The "customerId" does not match to a Customer.')
    c1, c2 = sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[:2]
    r = env.call("POST", lines, json={"customerId": c1.id, "customerNumber": c2.number, "amount": -1})
    assert env.body(r)["error"]["message"].startswith("The customer values do not match to a specific Customer.")
    flat = env.get("customerPayments")
    assert env.body(flat)["error"]["message"].startswith(
        "You must specify a journal batch ID or a journal ID to get a journal line.")
    via_filter = env.get("customerPayments", params={"$filter": f"journalId eq {journal['id']}"})
    assert via_filter.status_code == 200
    inv = open_invoice(env)
    env.ok("POST", lines, json={"appliesToInvoiceId": inv.id, "amount": -CUSTOMER_PAYMENT_AMOUNT_SIGN * Decimal(5)})
    wrong_sign = env.call("POST", f"journals({journal['id']})/Microsoft.NAV.post")
    assert wrong_sign.status_code == 400
    word = "negative" if CUSTOMER_PAYMENT_AMOUNT_SIGN < 0 else "positive"
    assert f"Amount must be {word} in Gen. Journal Line" in env.body(wrong_sign)["error"]["message"]
    assert inv.remaining == inv.total_incl  # nothing was posted
    too_long = env.call("POST", lines, json={"appliesToInvoiceId": inv.id, "amount": -1, "documentNumber": "X" * 21})
    assert env.body(too_long)["error"]["code"] == "Application_StringExceededLength"


def test_general_journal_deposit_lines_balance_per_document(env):
    journal = env.ok("POST", "journals", json={"code": "DEP", "displayName": "Deposits"})
    bank = env.state.find_by_number(env.company, "bankAccounts", "CHECKING")
    accounts = {n: env.state.find_by_number(env.company, "accounts", n) for n in ("10900", "60800")}
    lines = f"journals({journal['id']})/journalLines"
    env.ok("POST", lines, json={"documentNumber": "DEP1", "accountType": "Bank Account", "accountId": bank.id,
                                "amount": Decimal("97.10")})
    env.ok("POST", lines, json={"documentNumber": "DEP1", "accountType": "G/L Account", "accountNumber": "60800",
                                "amount": Decimal("2.90")})
    unbalanced = env.call("POST", f"journals({journal['id']})/Microsoft.NAV.post")
    assert unbalanced.status_code == 400 and "DEP1 is out of balance by 100.00" in unbalanced.text
    env.ok("POST", lines, json={"documentNumber": "DEP1", "accountType": "G/L Account",
                                "accountId": accounts["10900"].id, "amount": Decimal("-100.00")})
    assert env.call("POST", f"journals({journal['id']})/Microsoft.NAV.post").status_code == 204
    gl = env.ok("GET", "generalLedgerEntries", params={"$filter": "documentNumber eq 'DEP1'"})["value"]
    assert {(e["accountNumber"], e["debitAmount"], e["creditAmount"]) for e in gl} == {
        ("10100", Decimal("97.1"), 0), ("60800", Decimal("2.9"), 0), ("10900", 0, Decimal(100))}
    assert env.ok("GET", f"accounts({accounts['60800'].id})")["netChange"] == Decimal("2.9")
    bad = env.call("POST", lines, json={"accountType": "Planet", "amount": 1})
    assert env.body(bad)["error"]["code"] == "Application_EvaluateException"
    assert "'Planet' is not an option" in bad.text


def test_user_payment_and_credit_through_admin_endpoints(env):
    inv = open_invoice(env)
    r = env.http.post(f"{env.url}/_sandbox/companies/{env.company.id}/invoices/{inv.id}/payments", json={"amount": "10.00"})
    assert r.status_code == 201, r.text
    r = env.http.post(f"{env.url}/_sandbox/companies/{env.company.id}/invoices/{inv.id}/credits", json={"amount": "5"})
    assert r.status_code == 201, r.text
    row = env.ok("GET", f"salesInvoices({inv.id})")
    assert row["remainingAmount"] == inv.total_incl - Decimal("15")
    ledger = env.http.get(f"{env.url}/_sandbox/companies/{env.company.id}/customerLedgerEntries").json()["value"]
    assert [e["documentType"] for e in ledger][-2:] == ["Payment", "Credit Memo"]


@pytest.mark.parametrize("kind,set_name", [("invoice", "salesInvoices"), ("order", "salesOrders")])
def test_delete_unposted_document(env, kind, set_name):
    doc = next(d for d in env.company.tables[{"invoice": "invoices", "order": "orders"}[kind]].by_id.values()
               if not d.posted)
    row = env.ok("GET", f"{set_name}({doc.id})")
    assert env.call("DELETE", f"{set_name}({doc.id})", headers={"If-Match": row["@odata.etag"]}).status_code == 204
    assert env.get(f"{set_name}({doc.id})").status_code == 404
