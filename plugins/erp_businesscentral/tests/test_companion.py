"""The companion custom API (api/payweave/payments/v1.0): sales documents with payment method,
release status, lines and the unsupported-feature fields, plus the documentEvents change log
that makes release/reopen/change/partial cancel/post/delete visible to a poller."""
from __future__ import annotations

from decimal import Decimal

from payweave.hooks.models import (
    DocumentEventType,
    DocumentLineType,
    DocumentStatus,
    DocumentType,
    ResourceSubtype,
    SyncCursor,
    SyncEntity,
)
from payweave.plugins.erp_businesscentral import bcjson


def admin(env, method, path, json=None):
    r = env.http.request(method, f"{env.url}/_sandbox/companies/{env.company.id}/{path}", json=json)
    assert r.status_code < 300, r.text
    return bcjson.loads(r.content) if r.content else None


def customer(env):
    return sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]


def events(env, after=0):
    return env.ok("GET", "documentEvents", companion=True,
                  params={"$filter": f"sequenceNumber gt {after}"})["value"]


def test_sales_documents_cover_all_four_types_with_their_fields(env):
    rows = env.ok("GET", "salesDocuments", companion=True, params={"$expand": "salesDocumentLines"})["value"]
    types = {r["documentType"] for r in rows}
    assert types == {"Order", "Invoice", "Return Order", "Credit Memo"}
    order = next(r for r in rows if r["documentType"] == "Order")
    for name in ("paymentMethodCode", "status", "invoiceDiscountAmount", "paymentDiscountPercent", "prepaymentPercent",
                 "combineShipments", "pricesIncludeTax", "totalAmountIncludingTax", "lastModifiedDateTime"):
        assert name in order
    assert order["status"] in ("Open", "Released")
    assert {r["status"] for r in rows if r["documentType"] == "Invoice"} >= {"Posted", "Open"}
    ret = next(r for r in rows if r["documentType"] == "Return Order")
    assert ret["appliesToInvoiceId"] != "00000000-0000-0000-0000-000000000000"
    line = order["salesDocumentLines"][0]
    assert {"type", "number", "quantity", "unitPrice", "lineDiscountPercent", "lineDiscountAmount", "taxPercent",
            "amountExcludingTax", "amountIncludingTax", "payweaveSubtype"} <= set(line)
    only_orders = env.ok("GET", "salesDocuments", companion=True,
                         params={"$filter": "documentType eq 'Order'"})["value"]
    assert len(only_orders) == len(env.company.tables["orders"])


def test_order_lifecycle_is_visible_as_events(env):
    cust = customer(env)
    doc = admin(env, "POST", "documents", {
        "documentType": "Order", "customerNumber": cust.number, "paymentMethodCode": "PAYWEAVE",
        "lines": [{"type": "Item", "number": "1000", "quantity": 4, "unitPrice": "25.00"},
                  {"type": "Resource", "number": "SHIPPING", "quantity": 1},
                  {"type": "Resource", "number": "VOUCHER", "quantity": 1},
                  {"type": "Comment", "description": "Leave at the door"}]})
    row = env.ok("GET", f"salesDocuments({doc['id']})", companion=True, params={"$expand": "salesDocumentLines"})
    assert row["status"] == "Open" and row["paymentMethodCode"] == "PAYWEAVE"
    subtypes = [(ln["type"], ln["payweaveSubtype"]) for ln in row["salesDocumentLines"]]
    assert subtypes == [("Item", "None"), ("Resource", "Shipping"), ("Resource", "Voucher"), ("Comment", "None")]
    assert row["totalAmountExcludingTax"] == Decimal("100") + Decimal("9.9") - Decimal("10")
    admin(env, "POST", f"documents/{doc['id']}/release")
    item_line = doc["lines"][0]["id"]
    admin(env, "POST", f"documents/{doc['id']}/partialCancel", {"lines": [{"lineId": item_line, "quantity": 3}]})
    admin(env, "POST", f"documents/{doc['id']}/reopen")
    admin(env, "PATCH", f"documents/{doc['id']}", {"addLines": [{"type": "Item", "number": "1001", "quantity": 1}]})
    admin(env, "POST", f"documents/{doc['id']}/release")
    posted = admin(env, "POST", f"documents/{doc['id']}/post")
    log = [e for e in events(env) if e["documentId"] == doc["id"]]
    assert [e["eventType"] for e in log] == ["Created", "Released", "Partially Cancelled", "Reopened", "Modified",
                                            "Released", "Posted"]
    seqs = [e["sequenceNumber"] for e in log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert log[2]["totalAmountIncludingTax"] < log[1]["totalAmountIncludingTax"]
    assert log[-1]["postedDocumentId"] == posted["id"] and log[-1]["postedDocumentType"] == "Invoice"
    assert log[-1]["paymentMethodCode"] == "PAYWEAVE" and log[-1]["customerNumber"] == cust.number
    # after posting the order is gone and a posted invoice with the order id exists
    assert env.get(f"salesDocuments({doc['id']})", companion=True).status_code == 404
    inv = env.ok("GET", f"salesDocuments({posted['id']})", companion=True)
    assert inv["status"] == "Posted" and inv["orderId"] == doc["id"] and inv["documentType"] == "Invoice"


def test_deleting_a_document_is_an_event_and_posting_is_not_a_deletion(env):
    cust = customer(env)
    start = max([e["sequenceNumber"] for e in events(env)], default=0)
    doc = admin(env, "POST", "documents", {"documentType": "Order", "customerNumber": cust.number,
                                           "lines": [{"number": "1000", "quantity": 1}]})
    admin(env, "POST", f"documents/{doc['id']}/delete")
    assert [e["eventType"] for e in events(env, start)] == ["Created", "Deleted"]
    inv = admin(env, "POST", "documents", {"documentType": "Invoice", "customerNumber": cust.number,
                                           "lines": [{"number": "1000", "quantity": 1}], "post": True})
    kinds = [e["eventType"] for e in events(env, start) if e["documentId"] == inv["id"]]
    assert kinds == ["Created", "Posted"]  # a draft invoice keeps its id when posted


def test_events_page_by_sequence_number(env):
    seeded = len(env.company.events)
    assert seeded >= len(env.company.tables["orders"])  # the seed logged its open documents
    cust = customer(env)
    for _ in range(5):
        admin(env, "POST", "documents", {"documentType": "Order", "customerNumber": cust.number,
                                         "lines": [{"number": "1000", "quantity": 1}]})
    seqs, link = [], env.path("documentEvents", True)
    while link:
        body = env.body(env.call("GET", link, headers={"Prefer": "odata.maxpagesize=2"}))
        assert len(body["value"]) <= 2
        seqs += [e["sequenceNumber"] for e in body["value"]]
        link = body.get("@odata.nextLink")
    assert seqs == list(range(1, seeded + 6))
    assert [e["sequenceNumber"] for e in events(env, seeded + 3)] == [seeded + 4, seeded + 5]


def test_connector_maps_documents_and_events_to_contract_models(env):
    connector = env.connector(shipping_item_numbers=("1003",))
    cust = customer(env)
    doc = admin(env, "POST", "documents", {
        "documentType": "Order", "customerNumber": cust.number, "paymentMethodCode": "PAYWEAVE",
        "invoiceDiscountAmount": "5", "lines": [{"number": "1000", "quantity": 2}, {"number": "1003", "quantity": 1},
                                               {"type": "Resource", "number": "VOUCHER", "quantity": 1}]})
    got = connector.read_document(DocumentType.SALES_ORDER, doc["id"])
    assert got.document_type is DocumentType.SALES_ORDER and got.status is DocumentStatus.OPEN
    assert got.payment_method_code == "PAYWEAVE" and got.invoice_discount_amount == Decimal(5)
    assert [ln.type for ln in got.lines] == [DocumentLineType.ITEM, DocumentLineType.ITEM, DocumentLineType.RESOURCE]
    assert [ln.is_shipping_item for ln in got.lines] == [False, True, False]
    assert got.lines[2].resource_subtype is ResourceSubtype.VOUCHER
    assert got.total_including_tax == doc["totalAmountIncludingTax"]
    assert connector.read_document(DocumentType.SALES_INVOICE, doc["id"]) is None
    admin(env, "POST", f"documents/{doc['id']}/release")
    posted = admin(env, "POST", f"documents/{doc['id']}/post")
    gone = admin(env, "POST", "documents", {"documentType": "Order", "customerNumber": cust.number,
                                            "lines": [{"number": "1000", "quantity": 1}]})
    admin(env, "POST", f"documents/{gone['id']}/delete")
    pages = list(connector.read_changes(SyncEntity.DOCUMENT_EVENTS, SyncCursor(), page_size=3))
    evs = [e for p in pages for e in p.records]
    mine = [e for e in evs if e.document.document_id == doc["id"]]
    assert [e.type for e in mine] == [DocumentEventType.CHANGED, DocumentEventType.RELEASED, DocumentEventType.POSTED]
    post = mine[-1]
    assert post.posted_document_id == posted["id"] and post.document.status is DocumentStatus.POSTED
    assert post.document.document_type is DocumentType.SALES_ORDER and post.document.lines
    deleted = [e for e in evs if e.document.document_id == gone["id"]]
    assert [e.type for e in deleted] == [DocumentEventType.CHANGED, DocumentEventType.DELETED]
    assert deleted[-1].document.customer.number == cust.number
    # every page carries the log position; resuming from it yields only newer events
    assert all(p.next_cursor is not None and p.next_cursor.page_token.startswith("seq:") for p in pages)
    admin(env, "POST", "documents", {"documentType": "Order", "customerNumber": cust.number,
                                     "lines": [{"number": "1000", "quantity": 1}]})
    newer = [e for p in connector.read_changes(SyncEntity.DOCUMENT_EVENTS, pages[-1].next_cursor, 50) for e in p.records]
    assert len(newer) == 1 and newer[0].type is DocumentEventType.CHANGED


def test_pending_approval_maps_to_in_review_and_blocks_posting(env):
    cust = customer(env)
    doc = admin(env, "POST", "documents", {"documentType": "Invoice", "customerNumber": cust.number,
                                           "lines": [{"number": "1000", "quantity": 1}]})
    admin(env, "POST", f"documents/{doc['id']}/requestApproval")
    assert env.ok("GET", f"salesInvoices({doc['id']})")["status"] == "In Review"
    assert env.ok("GET", f"salesDocuments({doc['id']})", companion=True)["status"] == "Pending Approval"
    r = env.call("POST", f"salesInvoices({doc['id']})/Microsoft.NAV.post")
    assert r.status_code == 400 and "must be approved and released" in r.text
    got = env.connector().read_document(DocumentType.SALES_INVOICE, doc["id"])
    assert got.status is DocumentStatus.PENDING_APPROVAL


def test_connector_lists_documents_by_payment_method(env):
    cust = customer(env)
    mine = admin(env, "POST", "documents", {"documentType": "Order", "customerNumber": cust.number,
                                            "paymentMethodCode": "PW-CARD", "lines": [{"number": "1000", "quantity": 1}]})
    docs = [d for page in env.connector().sales_documents(payment_method_codes=frozenset({"PW-CARD"}), page_size=2)
            for d in page]
    assert [d.document_id for d in docs] == [mine["id"]]
    everything = [d for page in env.connector().sales_documents(page_size=25) for d in page]
    assert len(everything) == sum(len(env.company.tables[t]) for t in ("orders", "invoices", "returnOrders",
                                                                       "creditMemos"))
