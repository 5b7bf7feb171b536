"""BC webhooks: handshake on create and renew, 3-day expiry, batched notifications, the
collection rule, deletion on a bad answer, retry on 5xx; and the connector's side of it."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from payweave.hooks.errors import WebhookVerificationFailed
from payweave.hooks.models import SyncEntity
from payweave.plugins.erp_businesscentral import bcjson
from payweave.plugins.erp_businesscentral.client import parse_bc_datetime
from payweave.plugins.erp_businesscentral.sandbox import SandboxState, seed
from payweave.plugins.erp_businesscentral.subscriptions import delete_subscriptions, parse_notification


def subscribe(env, subscriber, entity_set="customers", client_state="s3cret", companion=False):
    api = "payweave/payments/v1.0" if companion else "v2.0"
    return env.call("POST", "/subscriptions", companion=companion, json={
        "notificationUrl": subscriber.url, "resource": f"/api/{api}/companies({env.company.id})/{entity_set}",
        "clientState": client_state})


def flush(env):
    r = env.http.post(f"{env.url}/_sandbox/webhooks/flush")
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def rename_customer(env, name="Renamed"):
    cust = sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]
    env.ok("PATCH", f"customers({cust.id})", json={"displayName": name}, headers={"If-Match": "*"})
    return cust


def test_create_runs_the_handshake_and_expires_in_three_days(env, subscriber):
    r = subscribe(env, subscriber)
    assert r.status_code == 201, r.text
    sub = env.body(r)
    assert len(subscriber.handshakes) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", sub["subscriptionId"])
    assert sub["clientState"] == "s3cret" and sub["notificationUrl"] == subscriber.url
    expires = parse_bc_datetime(sub["expirationDateTime"])
    assert expires - env.state.clock.now() == pytest.approx(timedelta(days=3), abs=timedelta(seconds=5))
    listed = env.ok("GET", "/subscriptions")["value"]
    assert [s["subscriptionId"] for s in listed] == [sub["subscriptionId"]]


def test_failed_handshake_creates_nothing(env, subscriber):
    subscriber.echo = False
    r = subscribe(env, subscriber)
    assert r.status_code == 400 and "validation token" in r.text
    assert env.ok("GET", "/subscriptions")["value"] == []
    bad = env.call("POST", "/subscriptions", json={"notificationUrl": subscriber.url,
                                                   "resource": f"/api/v2.0/companies({env.company.id})/customerPayments"})
    assert bad.status_code == 400 and "does not support webhooks" in bad.text


def test_change_is_notified_after_flush(env, subscriber):
    sub = env.body(subscribe(env, subscriber))
    cust = rename_customer(env)
    assert subscriber.notifications == []  # batched: nothing before the window (manual mode: flush)
    deliveries = flush(env)
    assert [d["outcome"] for d in deliveries] == ["delivered"]
    (item,) = subscriber.items()
    assert item["subscriptionId"] == sub["subscriptionId"] and item["clientState"] == "s3cret"
    assert item["changeType"] == "updated"
    assert item["resource"] == f"api/v2.0/companies({env.company.id})/customers({cust.id})"
    assert item["expirationDateTime"] == sub["expirationDateTime"]
    row = env.ok("GET", f"customers({cust.id})")
    assert item["lastModifiedDateTime"] == row["lastModifiedDateTime"]
    assert flush(env) == []


def test_line_change_notifies_the_document_header(env, subscriber):
    subscribe(env, subscriber, "salesInvoices")
    draft = next(d for d in env.company.tables["invoices"].by_id.values() if not d.posted)
    line = env.ok("GET", f"salesInvoices({draft.id})/salesInvoiceLines")["value"][0]
    env.ok("PATCH", f"salesInvoices({draft.id})/salesInvoiceLines({line['id']})", json={"quantity": 7},
           headers={"If-Match": line["@odata.etag"]})
    flush(env)
    assert [(i["changeType"], i["resource"].rsplit("(", 1)[1]) for i in subscriber.items()] == [("updated", f"{draft.id})")]


def test_renewal_needs_if_match_and_repeats_the_handshake(env, subscriber):
    sub = env.body(subscribe(env, subscriber))
    path = f"/subscriptions('{sub['subscriptionId']}')"
    env.state.clock.advance(timedelta(days=2))
    assert env.call("PATCH", path, json={"clientState": "new"}).status_code == 400
    r = env.call("PATCH", path, json={"clientState": "new"}, headers={"If-Match": sub["@odata.etag"]})
    assert r.status_code == 200, r.text
    renewed = env.body(r)
    assert len(subscriber.handshakes) == 2
    assert parse_bc_datetime(renewed["expirationDateTime"]) - parse_bc_datetime(sub["expirationDateTime"]) \
        == pytest.approx(timedelta(days=2), abs=timedelta(seconds=5))
    stale = env.call("PATCH", path, json={}, headers={"If-Match": sub["@odata.etag"]})
    assert stale.status_code == 409
    assert env.call("DELETE", path, headers={"If-Match": renewed["@odata.etag"]}).status_code == 204
    assert env.ok("GET", "/subscriptions")["value"] == []


def test_expired_subscription_is_not_notified(env, subscriber):
    subscribe(env, subscriber)
    env.state.clock.advance(timedelta(days=3, seconds=1))
    rename_customer(env)
    flush(env)
    assert subscriber.notifications == []
    assert env.ok("GET", "/subscriptions")["value"] == []


def test_bad_answer_deletes_the_subscription_but_5xx_is_retried(env, subscriber):
    subscribe(env, subscriber)
    subscriber.status = 503
    rename_customer(env, "A")
    assert [d["outcome"] for d in flush(env)] == ["retry"]
    assert len(env.ok("GET", "/subscriptions")["value"]) == 1
    subscriber.status = 200
    assert [d["outcome"] for d in flush(env)] == ["delivered"]
    assert len(subscriber.notifications) == 2  # the same change, delivered again
    subscriber.status = 410
    rename_customer(env, "B")
    assert [d["outcome"] for d in flush(env)] == ["deleted"]
    assert env.ok("GET", "/subscriptions")["value"] == []


def test_more_changes_than_the_threshold_become_one_collection_item(env, subscriber):
    env.state.webhook_collection_threshold = 3
    sub = env.body(subscribe(env, subscriber, "items"))
    items = list(env.company.tables["items"].by_id.values())[:5]
    first_lm = None
    for it in items:
        row = env.ok("PATCH", f"items({it.id})", json={"unitPrice": 1}, headers={"If-Match": "*"})
        first_lm = first_lm or row["lastModifiedDateTime"]
    flush(env)
    (item,) = subscriber.items()
    assert item["changeType"] == "collection" and item["subscriptionId"] == sub["subscriptionId"]
    assert item["resource"].startswith(f"api/v2.0/companies({env.company.id})/items?$filter=lastModifiedDateTime")
    # the collection URL is a valid delta query that returns at least the changed records
    found = env.ok("GET", f"{env.api_root}/{item['resource'][len('api/v2.0/'):]}".replace("%20", " "))["value"]
    assert {it.id for it in items} <= {r["id"] for r in found}


def test_background_thread_delivers_after_the_window(subscriber, env_for):
    from payweave.plugins.erp_businesscentral.sandbox import SandboxClock

    state = SandboxState(webhook_delivery="thread", webhook_delay_seconds=0.1, clock=SandboxClock())
    seed(state, seed=3, customers=2, items=2, invoices_per_year=2, years=1, orders=0, credit_memos=0,
         return_orders=0, draft_invoices=0)
    company = next(iter(state.companies.values()))
    with env_for(state, company) as env:
        assert subscribe(env, subscriber).status_code == 201
        rename_customer(env)
        deadline = time.monotonic() + 5
        while not subscriber.notifications and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(subscriber.items()) == 1


def test_companion_documents_can_be_subscribed(env, subscriber):
    r = subscribe(env, subscriber, "salesDocuments", companion=True)
    assert r.status_code == 201, r.text
    order = next(iter(env.company.tables["orders"].by_id.values()))
    action = "reopen" if order.release == "Released" else "release"
    assert env.http.post(f"{env.url}/_sandbox/companies/{env.company.id}/documents/{order.id}/{action}").status_code == 200
    flush(env)
    assert [i["resource"] for i in subscriber.items()] == [
        f"api/payweave/payments/v1.0/companies({env.company.id})/salesDocuments({order.id})"]


def test_connector_ensures_subscriptions_and_parses_notifications(env, subscriber):
    connector = env.connector(wall_clock=env.state.clock.now)
    expiry = connector.ensure_subscriptions(subscriber.url, "cs-1")
    assert len(subscriber.handshakes) == 4  # customers, salesInvoices, salesCreditMemos, salesDocuments
    assert expiry == min(parse_bc_datetime(s["expirationDateTime"])
                         for s in env.ok("GET", "/subscriptions")["value"])
    # calling again while far from expiry changes nothing; close to expiry it renews
    assert connector.ensure_subscriptions(subscriber.url, "cs-1") == expiry
    assert len(subscriber.handshakes) == 4
    env.state.clock.advance(timedelta(days=2, hours=1))
    renewed = connector.ensure_subscriptions(subscriber.url, "cs-1")
    assert len(subscriber.handshakes) == 8 and renewed > expiry
    rename_customer(env)
    order = next(iter(env.company.tables["orders"].by_id.values()))
    action = "reopen" if order.release == "Released" else "release"
    assert env.http.post(f"{env.url}/_sandbox/companies/{env.company.id}/documents/{order.id}/{action}").status_code == 200
    flush(env)
    raw = bcjson.dumps(subscriber.notifications[-1]).encode()
    assert connector.entities_for_notification(raw, "cs-1") == [SyncEntity.CUSTOMERS, SyncEntity.DOCUMENT_EVENTS]
    with pytest.raises(WebhookVerificationFailed):
        parse_notification(raw, "other-secret")
    assert delete_subscriptions(connector.client, subscriber.url) == 4
    assert env.ok("GET", "/subscriptions")["value"] == []
    assert env.ok("GET", "/subscriptions", companion=True)["value"] == []
