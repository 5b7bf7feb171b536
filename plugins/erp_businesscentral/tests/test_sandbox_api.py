"""The sandbox speaks BC API v2.0: URLs, collections, paging, $filter/$expand/$select, ETags,
error bodies (all over real HTTP)."""
from __future__ import annotations

import re
from decimal import Decimal

from payweave.plugins.erp_businesscentral.sandbox.model import fmt_ms

CORRELATION = re.compile(r"  CorrelationId:  [0-9a-f-]{36}\.$")


def all_pages(env, path, page_size, **kw):
    pages = []
    url = env.path(path, kw.pop("companion", False))
    r = env.call("GET", url, headers={"Prefer": f"odata.maxpagesize={page_size}"}, **kw)
    while True:
        assert r.status_code == 200, r.text
        body = env.body(r)
        pages.append(body)
        link = body.get("@odata.nextLink")
        if not link:
            return pages
        r = env.call("GET", link, headers={"Prefer": f"odata.maxpagesize={page_size}"})


def test_companies_and_url_forms(env):
    body = env.ok("GET", "/companies")
    assert body["@odata.context"].endswith("/api/v2.0/$metadata#companies")
    row = body["value"][0]
    assert row["id"] == env.company.id and row["name"] == env.company.name
    assert row["@odata.etag"].startswith('W/"')
    # the tenant segment is optional, and ?company= is the alternative to companies(..)
    no_tenant = f"{env.url}/v2.0/production/api/v2.0/companies({env.company.id})/customers"
    assert env.call("GET", no_tenant).status_code == 200
    alt = env.call("GET", f"{env.api_root}/customers", params={"company": env.company.id})
    assert alt.status_code == 200 and len(env.body(alt)["value"]) == 8
    missing = env.call("GET", f"{env.api_root}/companies(00000000-0000-0000-0000-000000000001)/customers")
    assert missing.status_code == 404 and env.body(missing)["error"]["code"] == "Internal_CompanyNotFound"


def test_error_bodies_are_bc_shaped(env):
    r = env.get("nonsenseEntities")
    assert r.status_code == 404
    err = env.body(r)["error"]
    assert err["code"] == "BadRequest_NotFound"
    assert err["message"].startswith("No HTTP resource was found that matches the request URI")
    assert CORRELATION.search(err["message"])
    r = env.get("customers(6b7d6a1e-0000-4000-8000-000000000000)")
    assert r.status_code == 404 and env.body(r)["error"]["code"] == "BadRequest_ResourceNotFound"


def test_paging_follows_opaque_nextlink_and_returns_every_record_once(env):
    expected = set(env.company.tables["invoices"].by_id)
    pages = all_pages(env, "salesInvoices", 7)
    ids = [row["id"] for p in pages for row in p["value"]]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert all(len(p["value"]) <= 7 for p in pages) and len(pages) == -(-len(expected) // 7)
    assert "$skiptoken=" in pages[0]["@odata.nextLink"]
    assert "@odata.nextLink" not in pages[-1]


def test_paging_never_skips_a_record_changed_mid_way(env):
    first = env.call("GET", "customers", headers={"Prefer": "odata.maxpagesize=3"})
    seen = [row["id"] for row in env.body(first)["value"]]
    remaining = [c for c in env.company.tables["customers"].by_id.values() if c.id not in seen]
    victim = remaining[-1]
    row = env.ok("GET", f"customers({victim.id})")
    env.ok("PATCH", f"customers({victim.id})", json={"displayName": "Renamed Ltd."}, headers={"If-Match": row["@odata.etag"]})
    link = env.body(first)["@odata.nextLink"]
    while link:
        body = env.body(env.call("GET", link, headers={"Prefer": "odata.maxpagesize=3"}))
        seen += [r["id"] for r in body["value"]]
        link = body.get("@odata.nextLink")
    assert set(seen) == set(env.company.tables["customers"].by_id)


def test_maxpagesize_is_capped_at_20000(env):
    r = env.call("GET", "items", headers={"Prefer": "odata.maxpagesize=50000"})
    assert r.status_code == 200
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=20000"


def test_delta_filter_on_unquoted_lastmodifieddatetime(env):
    invoices = sorted(env.company.tables["invoices"].by_id.values(), key=lambda d: d.lm)
    pivot = invoices[len(invoices) // 2].lm
    stamp = fmt_ms(pivot)
    got_gt = {r["id"] for p in all_pages(env, "salesInvoices", 10, params={"$filter": f"lastModifiedDateTime gt {stamp}"})
              for r in p["value"]}
    assert got_gt == {d.id for d in invoices if d.lm > pivot}
    got_range = env.body(env.get("salesInvoices", params={
        "$filter": f"lastModifiedDateTime ge {stamp} and lastModifiedDateTime le {stamp}"}))["value"]
    assert {r["id"] for r in got_range} == {d.id for d in invoices if d.lm == pivot}
    quoted = env.get("salesInvoices", params={"$filter": f"lastModifiedDateTime gt '{stamp}'"})
    assert quoted.status_code == 400
    assert "incompatible types" in env.body(quoted)["error"]["message"]


def test_filter_on_status_number_id_with_and_or(env):
    invoices = list(env.company.tables["invoices"].by_id.values())
    open_ids = {r["id"] for r in env.ok("GET", "salesInvoices", params={"$filter": "status eq 'Open'"})["value"]}
    assert open_ids and open_ids == {d.id for d in invoices if d.posted and d.remaining > 0} | {
        d.id for d in invoices if not d.posted and d.release in ("Released", "Pending Prepayment")}
    a, b = invoices[0], invoices[1]
    both = env.ok("GET", "salesInvoices", params={"$filter": f"number eq '{a.number}' or id eq {b.id}"})["value"]
    assert {r["id"] for r in both} == {a.id, b.id}
    none = env.ok("GET", "salesInvoices", params={"$filter": f"number eq '{a.number}' and id eq {b.id}"})["value"]
    assert none == []
    paid = env.ok("GET", "salesInvoices", params={"$filter": "status eq 'Paid' and remainingAmount gt 0"})["value"]
    assert paid == []
    bad = env.get("salesInvoices", params={"$filter": "colour eq 'red'"})
    assert bad.status_code == 400 and "Could not find a property named 'colour'" in bad.text
    broken = env.get("salesInvoices", params={"$filter": "status eq"})
    assert broken.status_code == 400
    bad_date = env.get("salesInvoices", params={"$filter": "lastModifiedDateTime gt 2026-13-45T00:00:00Z"})
    assert bad_date.status_code == 400 and "Edm.DateTimeOffset" in bad_date.text


def test_expand_lines_select_top_skip(env):
    body = env.ok("GET", "salesInvoices", params={"$expand": "salesInvoiceLines", "$top": "3"})
    assert len(body["value"]) == 3 and "@odata.nextLink" not in body
    for inv in body["value"]:
        lines = inv["salesInvoiceLines"]
        assert lines and all(ln["documentId"] == inv["id"] for ln in lines)
        assert sum(Decimal(str(ln["netAmountIncludingTax"])) for ln in lines) == Decimal(str(inv["totalAmountIncludingTax"]))
        for ln in lines:
            assert ln["@odata.etag"].startswith('W/"')
    skipped = env.ok("GET", "salesInvoices", params={"$top": "2", "$skip": "1"})["value"]
    assert [r["id"] for r in skipped] == [r["id"] for r in body["value"][1:3]]
    sel = env.ok("GET", "customers", params={"$select": "number,displayName"})["value"][0]
    assert set(sel) == {"@odata.etag", "number", "displayName"}
    assert env.get("salesInvoices", params={"$expand": "bogus"}).status_code == 400
    nested = env.ok("GET", f"salesInvoices({body['value'][0]['id']})/salesInvoiceLines")
    assert [ln["id"] for ln in nested["value"]] == [ln["id"] for ln in body["value"][0]["salesInvoiceLines"]]


def test_etag_required_stale_rejected_star_accepted(env):
    cust = next(iter(env.company.tables["customers"].by_id.values()))
    row = env.ok("GET", f"customers({cust.id})")
    r = env.call("PATCH", f"customers({cust.id})", json={"displayName": "A"})
    assert r.status_code == 400 and env.body(r)["error"]["code"] == "BadRequest_InvalidToken"
    ok = env.call("PATCH", f"customers({cust.id})", json={"displayName": "B"}, headers={"If-Match": row["@odata.etag"]})
    assert ok.status_code == 200 and env.body(ok)["displayName"] == "B"
    assert env.body(ok)["@odata.etag"] != row["@odata.etag"] and ok.headers["ETag"] == env.body(ok)["@odata.etag"]
    stale = env.call("PATCH", f"customers({cust.id})", json={"displayName": "C"}, headers={"If-Match": row["@odata.etag"]})
    assert stale.status_code == 409
    assert env.body(stale)["error"]["code"] == "Request_EntityChanged"
    assert env.body(stale)["error"]["message"].startswith("Another user has already changed the record.")
    star = env.call("PATCH", f"customers({cust.id})", json={"displayName": "D"}, headers={"If-Match": "*"})
    assert star.status_code == 200
    assert env.call("DELETE", f"items({next(iter(env.company.tables['items'].by_id))})").status_code == 400
    assert cust.name == "D"


def test_read_only_and_unknown_properties_are_refused(env):
    cust = next(iter(env.company.tables["customers"].by_id.values()))
    r = env.call("PATCH", f"customers({cust.id})", json={"balanceDue": 5}, headers={"If-Match": "*"})
    assert r.status_code == 400 and env.body(r)["error"]["code"] == "BadRequest_InvalidOperation"
    r = env.call("PATCH", f"customers({cust.id})", json={"favouriteColour": "red"}, headers={"If-Match": "*"})
    assert r.status_code == 400 and "does not exist on type 'Microsoft.NAV.customer'" in r.text
    r = env.call("PATCH", f"customers({cust.id})", json={"creditLimit": "100"}, headers={"If-Match": "*"})
    assert r.status_code == 400 and "Edm.Decimal" in r.text
    assert env.call("POST", "accounts", json={"number": "1"}).status_code == 405


def test_decimals_are_json_numbers_with_exact_digits(env):
    text = env.get("items", params={"$top": "1"}).text
    item = next(iter(env.company.tables["items"].by_id.values()))
    row = env.ok("GET", f"items({item.id})")
    assert row["unitPrice"] == item.unit_price  # parsed as Decimal: exact
    assert '"unitPrice":"' not in text
