"""The sandbox's Entra ID token endpoint, Bearer checks, throttling and injected faults."""
from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest
from payweave.plugins.erp_businesscentral.sandbox import Fault

SCOPE = "https://api.businesscentral.dynamics.com/.default"


def token_call(env, **form):
    data = {"grant_type": "client_credentials", "client_id": env.client_id, "client_secret": env.secret, "scope": SCOPE}
    data.update(form)
    tenant = data.pop("tenant", env.state.tenant_id)
    return env.http.post(f"{env.url}/{tenant}/oauth2/v2.0/token", data=data)


def test_token_endpoint_issues_bearer_tokens(env):
    r = token_call(env)
    body = r.json()
    assert r.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert env.call("GET", "customers", auth=False, headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200


@pytest.mark.parametrize("form,status,error,aadsts", [
    ({"client_secret": "wrong"}, 401, "invalid_client", "AADSTS7000215"),
    ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", "AADSTS700016"),
    ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", "AADSTS1002012"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", "AADSTS70003"),
    ({"tenant": "00000000-0000-0000-0000-00000000abcd"}, 400, "invalid_tenant", "AADSTS90002"),
])
def test_token_endpoint_refusals(env, form, status, error, aadsts):
    r = token_call(env, **form)
    assert r.status_code == status
    assert r.json()["error"] == error and r.json()["error_description"].startswith(aadsts)


def test_api_requires_a_valid_unexpired_bearer_token(env):
    r = env.call("GET", "customers", auth=False)
    assert r.status_code == 401
    assert env.body(r)["error"]["code"] == "Authentication_InvalidCredentials"
    assert "WWW-Authenticate" in r.headers
    assert env.call("GET", "customers", auth=False, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert env.get("customers").status_code == 200
    token = env.token()
    env.state.clock.advance(3600)
    expired = env.call("GET", "customers", auth=False, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401 and "expired" in env.body(expired)["error"]["message"]
    other_tenant = f"{env.url}/v2.0/contoso.onmicrosoft.com/production/api/v2.0/companies({env.company.id})/customers"
    assert env.call("GET", other_tenant, headers={}).status_code == 401


def test_request_window_throttles_with_retry_after(env):
    env.state.throttle.requests_per_window = 3
    env.state.throttle.window_seconds = 60
    assert [env.get("items").status_code for _ in range(3)] == [200, 200, 200]
    r = env.get("items")
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    env.state.clock.advance(61)
    assert env.get("items").status_code == 200
    assert env.state.stats.statuses[429] == 1


def test_concurrency_cap_queues_then_refuses(env):
    env.state.latency_seconds = 0.3
    env.state.throttle.max_concurrent = 2
    env.state.throttle.max_queued = 0
    token = env.token()

    def one(_):
        with httpx.Client(timeout=10) as h:
            return h.get(env.path("items"), headers={"Authorization": f"Bearer {token}"}).status_code

    with cf.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(one, range(6)))
    assert codes.count(200) == 2 and codes.count(429) == 4
    env.state.throttle.max_queued = 10
    with cf.ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(one, range(6))) == [200] * 6  # the extra ones waited in the queue


def test_injected_status_fault_does_not_apply_the_request(env):
    env.state.faults.inject(Fault(kind="status", status=503, retry_after=2, count=2, method="POST"))
    cust = sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]
    before = len(env.company.tables["invoices"])
    for _ in range(2):
        r = env.call("POST", "salesInvoices", json={"customerId": cust.id})
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        assert env.body(r)["error"]["code"] == "ServiceUnavailable"
    assert len(env.company.tables["invoices"]) == before
    assert env.call("POST", "salesInvoices", json={"customerId": cust.id}).status_code == 201
    assert len(env.company.tables["invoices"]) == before + 1


def test_injected_drop_applies_then_breaks_the_response(env):
    env.state.faults.inject(Fault(kind="drop", method="POST", path=r"/salesInvoices$"))
    cust = sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]
    before = len(env.company.tables["invoices"])
    with pytest.raises(httpx.RemoteProtocolError):
        env.call("POST", "salesInvoices", json={"customerId": cust.id})
    assert len(env.company.tables["invoices"]) == before + 1


def test_injected_delay_applies_then_answers_late(env):
    env.state.faults.inject(Fault(kind="delay", delay=1.0, method="POST"))
    cust = sorted(env.company.tables["customers"].by_id.values(), key=lambda c: c.number)[0]
    before = len(env.company.tables["invoices"])
    with httpx.Client(timeout=0.3) as h, pytest.raises(httpx.ReadTimeout):
        h.post(env.path("salesInvoices"), json={"customerId": cust.id}, headers={"Authorization": f"Bearer {env.token()}"})
    assert len(env.company.tables["invoices"]) == before + 1
