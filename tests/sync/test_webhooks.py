"""BC webhooks end to end: payweave's service app (with the ERP notification route) and the BC
sandbox both on loopback. The sandbox runs BC's validation handshake against payweave's
endpoint, delivers notifications there, and renews subscriptions by PATCH with If-Match."""
from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from payweave.core.service.app import create_app
from payweave.hooks.errors import PayweaveError
from payweave.plugins.erp_businesscentral.sandbox import Fault


def _service_app(service):
    app = create_app()
    app.state.erp_sync = service
    return app


def _subscriptions(bc):
    return bc.admin("GET", "/_sandbox/webhooks")["subscriptions"]


def _count(bc, method, entity_set):
    return sum(r["count"] for r in bc.state.stats.snapshot()["requests"]
               if r["method"] == method and r["entitySet"] == entity_set)


def test_subscriptions_pass_the_handshake_and_notifications_sync_the_change(bc, sqlite_store, serve):
    service = bc.service(sqlite_store)
    cid = bc.company.id
    endpoint = serve(_service_app(service))
    service.connect()
    url = f"{endpoint.url}/erp/{cid}/notifications"

    expiry = service.ensure_subscriptions(cid, notification_url=url)

    subs = _subscriptions(bc)
    assert sorted(s["resource"].rsplit("/", 1)[1] for s in subs) == [
        "customers", "salesCreditMemos", "salesDocuments", "salesInvoices"]
    assert {s["notificationUrl"] for s in subs} == {url}
    conn = service.connection(cid)
    assert conn.subscriptions_expire_at == expiry and conn.subscriptions_error is None
    assert expiry - bc.state.clock.now() > timedelta(days=2, hours=23)

    inv = bc.open_invoice()
    bc.pay(inv.id, "15.00")
    deliveries = bc.state.webhooks.flush()

    assert [d.status for d in deliveries if d.items] == [202]
    view = service.invoice(cid, inv.id)
    assert view.remaining == inv.total_incl - Decimal("15.00") == view.open


def test_a_failed_handshake_refuses_the_subscription_and_is_reported(bc, sqlite_store, serve):
    service = bc.service(sqlite_store)
    cid = bc.company.id
    endpoint = serve(_service_app(service))
    service.connect()
    with pytest.raises(PayweaveError):
        service.ensure_subscriptions(cid, notification_url=f"{endpoint.url}/not-a-notification-route")
    assert _subscriptions(bc) == []
    assert "validation" in (service.connection(cid).subscriptions_error or "")


def test_notifications_with_a_wrong_client_state_are_rejected(bc, sqlite_store, serve):
    service = bc.service(sqlite_store)
    cid = bc.company.id
    endpoint = serve(_service_app(service))
    service.connect()
    forged = {"value": [{"subscriptionId": "x", "clientState": "guess", "changeType": "updated",
                         "resource": f"api/v2.0/companies({cid})/salesInvoices(00000000-0000-0000-0000-000000000001)",
                         "expirationDateTime": "2026-03-09T00:00:00Z", "lastModifiedDateTime": "2026-03-02T00:00:00Z"}]}
    with httpx.Client() as http:
        assert http.post(f"{endpoint.url}/erp/{cid}/notifications", content=json.dumps(forged)).status_code == 400
        assert http.post(f"{endpoint.url}/erp/nope/notifications", content=json.dumps(forged)).status_code == 404
        for method in ("POST", "GET"):  # BC's handshake method is not pinned down (conventions.py)
            token = http.request(method, f"{endpoint.url}/erp/{cid}/notifications?validationToken=abc%20123")
            assert (token.status_code, token.text, token.headers["content-type"].split(";")[0]) == (
                200, "abc 123", "text/plain")


def test_subscriptions_are_renewed_before_they_expire(bc, sqlite_store, serve):
    service = bc.service(sqlite_store)
    cid = bc.company.id
    endpoint = serve(_service_app(service))
    service.connect()
    real_now = datetime.now(UTC)
    bc.state.clock.set(real_now - timedelta(days=2, hours=12))  # created 2.5 days ago: 12 h left
    first = service.ensure_subscriptions(cid, notification_url=f"{endpoint.url}/erp/{cid}/notifications")
    assert first is not None and abs((first - (real_now + timedelta(hours=12))).total_seconds()) < 60

    assert service.renew_subscriptions_if_due(cid) == first  # 2.5 days before expiry: nothing to do
    assert _count(bc, "PATCH", "subscriptions") == 0

    bc.state.clock.set(real_now)  # 12 h before expiry: inside the renewal margin
    renewed = service.renew_subscriptions_if_due(cid)

    assert _count(bc, "PATCH", "subscriptions") == 4  # each renewed with If-Match (and a new handshake)
    assert renewed is not None and renewed - first > timedelta(days=2)
    assert service.connection(cid).subscriptions_expire_at == renewed
    assert all(s["expirationDateTime"] >= renewed.strftime("%Y-%m-%dT%H:%M") for s in _subscriptions(bc))


def test_a_stale_etag_on_renewal_is_reread_and_retried(bc, sqlite_store, serve):
    service = bc.service(sqlite_store)
    cid = bc.company.id
    endpoint = serve(_service_app(service))
    service.connect()
    url = f"{endpoint.url}/erp/{cid}/notifications"
    real_now = datetime.now(UTC)
    bc.state.clock.set(real_now - timedelta(days=2, hours=12))
    service.ensure_subscriptions(cid, notification_url=url)
    bc.state.clock.set(real_now)

    # payweave's list of subscriptions is answered late; meanwhile someone renews one of them,
    # so the ETag payweave read is stale by the time it PATCHes
    bc.state.faults.inject(Fault(kind="delay", delay=0.8, method="GET", path=r"/api/v2\.0/subscriptions$", count=1))
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("expiry", service.ensure_subscriptions(cid)))
    worker.start()
    time.sleep(0.3)
    with bc.state.lock:
        sub = next(s for s in bc.state.webhooks.subscriptions.values() if s.entity_set == "customers")
    bc.state.webhooks.renew(sub, {})  # the concurrent renewal: new version, new ETag
    worker.join(timeout=30)

    assert bc.state.stats.snapshot()["statuses"].get("409") == 1  # Request_EntityChanged once
    assert outcome.get("expiry") is not None
    assert service.connection(cid).subscriptions_error is None
