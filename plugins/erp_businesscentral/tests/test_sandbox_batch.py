"""The sandbox's ``$orderby`` and JSON ``$batch`` (reference §5, §7), and the client's use of them."""
from __future__ import annotations

from datetime import datetime

import pytest
from payweave.hooks.errors import InvalidRequest, RemoteNotFound
from payweave.hooks.models import SyncCursor, SyncEntity
from payweave.hooks.retry import RetryPolicy
from payweave.plugins.erp_businesscentral.client import BatchOperation
from payweave.plugins.erp_businesscentral.sandbox import Fault


def _all(env, path: str, page_size: int) -> list[dict]:
    rows, url = [], env.path(path)
    while url:
        body = env.ok("GET", url, headers={"Prefer": f"odata.maxpagesize={page_size}"})
        rows += body["value"]
        url = body.get("@odata.nextLink")
    return rows


# ------------------------------------------------------------------------------------------ $orderby
def test_orderby_last_modified_desc_pages_newest_first_with_a_keyset_token(env):
    rows = _all(env, "salesInvoices?$orderby=lastModifiedDateTime desc", 7)
    keys = [(r["lastModifiedDateTime"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    assert len(rows) == len(_all(env, "salesInvoices", 50)) and len({r["id"] for r in rows}) == len(rows)


def test_orderby_combines_with_a_filter_and_other_properties_sort_in_memory(env):
    asc = _all(env, "salesInvoices?$filter=status eq 'Open'&$orderby=lastModifiedDateTime asc", 5)
    assert [r["lastModifiedDateTime"] for r in asc] == sorted(r["lastModifiedDateTime"] for r in asc)
    assert asc and all(r["status"] == "Open" for r in asc)
    by_number = _all(env, "customers?$orderby=number desc", 3)
    assert [r["number"] for r in by_number] == sorted((r["number"] for r in by_number), reverse=True)


@pytest.mark.parametrize("orderby", ["nope desc", "number sideways", "number desc extra"])
def test_orderby_refuses_unknown_properties_and_bad_syntax(env, orderby):
    r = env.get(f"customers?$orderby={orderby}")
    assert r.status_code == 400 and env.body(r)["error"]["code"] == "BadRequest"


def test_a_record_changed_during_a_newest_first_read_is_not_repeated(env):
    """Keyset paging: a record touched between two pages moves to the front, behind the
    reader; it is neither read twice nor does it shift the next page."""
    first = env.ok("GET", "customers?$orderby=lastModifiedDateTime desc", headers={"Prefer": "odata.maxpagesize=3"})
    seen = {r["id"] for r in first["value"]}
    later = _all(env, "customers?$orderby=lastModifiedDateTime desc", 1000)[3:]
    env.ok("PATCH", f"customers({later[0]['id']})", json={"displayName": "Renamed"}, headers={"If-Match": "*"})
    rest = _all(env, first["@odata.nextLink"], 3)
    ids = [r["id"] for r in rest]
    assert later[0]["id"] not in ids and not seen & set(ids)
    assert ids == [r["id"] for r in later[1:]]


# ------------------------------------------------------------------------------------------ $batch
def _batch(env, requests: list[dict], **headers: str):
    return env.http.post(f"{env.api_root}/$batch", json={"requests": requests},
                         headers={"Authorization": f"Bearer {env.token()}", **headers})


def test_batch_runs_relative_operations_and_answers_each_with_its_status(env):
    cid = env.company.id
    r = _batch(env, [
        {"id": "a", "method": "GET", "url": f"companies({cid})/customers?$top=2"},
        {"id": "b", "method": "GET", "url": f"companies({cid})/nope"},
        {"id": "c", "method": "GET", "url": f"{env.api_root}/companies({cid})/salesInvoices?$top=1",
         "headers": {"Prefer": "odata.maxpagesize=1"}},
        {"id": "d", "method": "GET", "url": f"{env.companion_root}/companies({cid})/documentEvents"},
        {"id": "e", "method": "PATCH", "url": f"companies({cid})/customers({env.company.id})", "body": {}},
    ])
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert [x["id"] for x in r.json()["responses"]] == ["a", "b", "c", "d", "e"]
    assert by_id["a"]["status"] == 200 and len(by_id["a"]["body"]["value"]) == 2
    assert by_id["a"]["headers"]["odata-version"] == "4.0"
    assert by_id["b"]["status"] == 404 and by_id["b"]["body"]["error"]["code"] == "BadRequest_NotFound"
    assert by_id["c"]["status"] == 200 and len(by_id["c"]["body"]["value"]) == 1
    # another API's URL cannot go in a v2.0 batch; an unknown key is that operation's 404
    assert by_id["d"]["status"] == 404
    assert by_id["e"]["status"] == 404
    stats = env.state.stats.snapshot()
    assert [(x["method"], x["entitySet"], x["count"]) for x in stats["requests"]] == [("POST", "$batch", 1)]
    assert sum(x["count"] for x in stats["batchOperations"]) == 5


def test_batch_writes_apply_with_etags_like_single_requests(env):
    cid = env.company.id
    customer = env.ok("GET", "customers?$top=1")["value"][0]
    r = _batch(env, [
        {"id": "1", "method": "PATCH", "url": f"companies({cid})/customers({customer['id']})",
         "headers": {"If-Match": customer["@odata.etag"]}, "body": {"displayName": "Batch Renamed"}},
        {"id": "2", "method": "PATCH", "url": f"companies({cid})/customers({customer['id']})",
         "headers": {"If-Match": customer["@odata.etag"]}, "body": {"displayName": "Stale"}},
    ])
    first, second = r.json()["responses"]
    assert first["status"] == 200 and first["body"]["displayName"] == "Batch Renamed" and "etag" not in first
    assert second["status"] in (409, 412) and second["body"]["error"]["code"] == "Request_EntityChanged"
    assert env.ok("GET", f"customers({customer['id']})")["displayName"] == "Batch Renamed"


@pytest.mark.parametrize("body,message", [
    ({"requests": [{"id": str(i), "method": "GET", "url": "companies"} for i in range(101)]}, "at most 100"),
    ({"requests": []}, "at least one request"),
    ({"nope": 1}, "at least one request"),
    ({"requests": [{"id": "1", "method": "GET", "url": "companies"},
                   {"id": "1", "method": "GET", "url": "companies"}]}, "more than one request"),
    ({"requests": [{"method": "GET", "url": "companies"}]}, "no id"),
    ({"requests": [{"id": "1", "method": "GET", "url": "companies", "atomicityGroup": "g"}]}, "does not implement"),
])
def test_batch_refuses_malformed_or_oversized_batches_as_a_whole(env, body, message):
    r = env.http.post(f"{env.api_root}/$batch", json=body, headers={"Authorization": f"Bearer {env.token()}"})
    assert r.status_code == 400 and message in r.json()["error"]["message"]
    assert env.state.stats.snapshot()["batchOperations"] == []


def test_batch_refuses_transactional_and_multipart_batches_and_nesting(env):
    r = _batch(env, [{"id": "1", "method": "GET", "url": "companies"}], Isolation="snapshot")
    assert r.status_code == 400 and "Isolation" in r.json()["error"]["message"]
    r = env.http.post(f"{env.api_root}/$batch", content=b"--b\r\n", headers={
        "Authorization": f"Bearer {env.token()}", "Content-Type": "multipart/mixed; boundary=b"})
    assert r.status_code == 400
    r = _batch(env, [{"id": "1", "method": "POST", "url": "$batch", "body": {"requests": []}}])
    assert r.json()["responses"][0]["status"] == 400
    assert env.call("GET", "/$batch").status_code == 405
    assert env.http.post(f"{env.api_root}/$batch", json={"requests": []}).status_code == 401


def test_client_batch_retries_only_the_operations_answered_retryably(env):
    client = env.client(policy=RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0))
    company = client.company()
    env.state.faults.inject(Fault(kind="status", status=503, retry_after=0, method="GET", path=r"/salesInvoices$"))
    ops = [BatchOperation("GET", company.list_url("customers")), BatchOperation("GET", company.list_url("salesInvoices"))]
    customers, invoices = client.batch(ops)
    assert customers.ok and invoices.ok and invoices.body["value"]
    assert client.stats.snapshot()["by_entity"] == {"POST $batch": 2} and client.stats.retries == 1
    ops = [*ops, BatchOperation("GET", company.list_url("salesInvoices(00000000-0000-0000-0000-00000000abcd)"))]
    *_, missing = client.batch(ops)
    with pytest.raises(RemoteNotFound):
        missing.raise_for_status()


def test_client_batch_splits_more_than_100_operations(env):
    client = env.client()
    results = client.batch([BatchOperation("GET", "companies") for _ in range(150)])
    assert len(results) == 150 and all(r.ok for r in results)
    assert client.stats.snapshot()["by_entity"] == {"POST $batch": 2}


def test_connector_reads_every_delta_stream_in_one_batch_and_pages_on(env):
    connector = env.connector(page_size=4)
    since = datetime(2000, 1, 1).astimezone()
    cursors = {e: SyncCursor(since=since) for e in (SyncEntity.CUSTOMERS, SyncEntity.INVOICES,
                                                     SyncEntity.CREDIT_MEMOS, SyncEntity.DOCUMENT_EVENTS)}
    pages = list(connector.read_many_changes(cursors, page_size=4))
    got = {e: sum(len(p.records) for p in pages if p.entity is e) for e in cursors}
    assert got[SyncEntity.INVOICES] == len(env.state.companies[env.company.id].tables["invoices"])
    assert got[SyncEntity.CUSTOMERS] == len(env.company.tables["customers"])
    for entity in (SyncEntity.CUSTOMERS, SyncEntity.INVOICES, SyncEntity.CREDIT_MEMOS):
        mine = [p for p in pages if p.entity is entity]
        assert mine[-1].next_cursor is None and all(p.next_cursor for p in mine[:-1])
    rounds = max(len([p for p in pages if p.entity is e]) for e in (SyncEntity.CUSTOMERS, SyncEntity.INVOICES))
    by_entity = connector.client.stats.snapshot()["by_entity"]
    assert by_entity["POST $batch"] == rounds
    # the companion API's event log is another API root: read on its own, never in the batch
    assert {k for k in by_entity if k.startswith("GET")} <= {"GET documentEvents", "GET salesDocuments"}
    assert sum(p.requests for p in pages) == connector.client.stats.total
    with pytest.raises(Exception, match="payments"):
        list(connector.read_many_changes({SyncEntity.PAYMENTS: SyncCursor()}, page_size=4))


def test_connector_batch_reports_a_refused_token_as_invalid_request(env):
    connector = env.connector()
    bad = SyncCursor(page_token=env.path("salesInvoices?$skiptoken=garbage"))
    with pytest.raises(InvalidRequest):
        list(connector.read_many_changes({SyncEntity.INVOICES: bad, SyncEntity.CUSTOMERS: SyncCursor()}, 50))
