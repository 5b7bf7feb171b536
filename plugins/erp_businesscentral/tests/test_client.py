"""The API client against the sandbox: tokens, paging, deltas, throttling and retries,
client-side limits, typed errors, request counting, secrets."""
from __future__ import annotations

import concurrent.futures as cf
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from payweave.hooks.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    InvalidRequest,
    RemoteNotFound,
    TemporarilyUnavailable,
)
from payweave.hooks.retry import RetryPolicy
from payweave.plugins.erp_businesscentral.client import BCClient, delta_filter, parse_bc_datetime
from payweave.plugins.erp_businesscentral.errors import (
    BCAmbiguousWrite,
    BCAuthenticationError,
    BCConcurrencyError,
    BCMissingETag,
    BCNotFound,
    BCRequestError,
    BCUnavailable,
)
from payweave.plugins.erp_businesscentral.sandbox import Fault


class RecordingSleep:
    """Really sleeps, and remembers for how long (to check Retry-After was honoured)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(seconds)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_with(env, *, sleep=None, clock=None, policy=None, **settings) -> BCClient:
    c = BCClient(env.settings(**settings), policy=policy or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
                 sleep=sleep or time.sleep, clock=clock or time.monotonic)
    env._clients.append(c)
    return c


def test_token_is_cached_and_refreshed_before_expiry(env):
    clock = FakeMonotonic()
    client = client_with(env, clock=clock, token_refresh_margin_seconds=300)
    company = client.company()
    for _ in range(3):
        list(company.entities("items"))
    assert client.tokens.fetches == 1
    assert env.state.stats.token_requests[env.client_id] == 1
    clock.now += 3599 - 300 - 1  # still inside the cached lifetime
    list(company.entities("items"))
    assert client.tokens.fetches == 1
    clock.now += 2  # within the refresh margin: a new token before the old one expires
    list(company.entities("items"))
    assert client.tokens.fetches == 2


def test_revoked_token_is_replaced_once_transparently(env):
    client = client_with(env)
    list(client.company().entities("items"))
    env.state.revoke_tokens()
    assert len(list(client.company().entities("items"))) == len(env.company.tables["items"])
    assert client.tokens.fetches == 2
    assert client.stats.statuses[401] == 1


def test_wrong_secret_is_an_authentication_error_without_the_secret(env):
    client = client_with(env, client_secret="definitely-wrong-secret")
    with pytest.raises(BCAuthenticationError) as info:
        list(client.company().entities("items"))
    assert isinstance(info.value, AuthenticationFailed)
    assert "AADSTS7000215" in info.value.message
    assert "definitely-wrong-secret" not in str(info.value) and "definitely-wrong-secret" not in repr(client.settings)


def test_paging_streams_pages_and_follows_nextlink(env):
    client = client_with(env)
    pages = client.company().pages("salesInvoices", page_size=9)
    first = next(pages)  # a generator: one request so far
    assert len(first.values) == 9 and first.next_link and client.stats.total == 1
    rest = list(pages)
    ids = [r["id"] for p in [first, *rest] for r in p.values]
    assert sorted(ids) == sorted(env.company.tables["invoices"].by_id)
    assert client.stats.by_entity() == {"salesInvoices": 1 + len(rest)}
    assert rest[-1].next_link is None
    assert all(p.url == prev.next_link for prev, p in zip([first, *rest], rest, strict=False))


def test_delta_reads_by_last_modified(env):
    client = client_with(env)
    rows = list(client.company().entities("customers"))
    stamps = sorted(parse_bc_datetime(r["lastModifiedDateTime"]) for r in rows)
    since = stamps[len(stamps) // 2]
    got = [r for p in client.company().changed("customers", since=since) for r in p.values]
    assert {r["id"] for r in got} == {r["id"] for r in rows if parse_bc_datetime(r["lastModifiedDateTime"]) >= since}
    until = stamps[-1]
    window = [r for p in client.company().changed("customers", since=since, until=until) for r in p.values]
    assert all(parse_bc_datetime(r["lastModifiedDateTime"]) < until for r in window)
    assert delta_filter(since, None) == f"lastModifiedDateTime ge {since.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z"


def test_429_retry_after_is_honoured(env):
    sleep = RecordingSleep()
    client = client_with(env, sleep=sleep)
    env.state.faults.inject(Fault(kind="status", status=429, retry_after=1, count=1))
    started = time.monotonic()
    assert len(list(client.company().entities("items"))) == len(env.company.tables["items"])
    assert sleep.calls == [1.0] and time.monotonic() - started >= 1.0
    assert client.stats.statuses[429] == 1 and client.stats.retries == 1


def test_rate_window_429_from_the_server_is_waited_out(env):
    sleep = RecordingSleep()
    client = client_with(env, sleep=sleep)
    list(client.company().entities("items"))  # token + one request
    env.state.throttle.requests_per_window = 1
    env.state.throttle.window_seconds = 1
    env.state.clock.unfreeze()
    rows = list(client.company().entities("items"))
    assert len(rows) == len(env.company.tables["items"])
    assert sleep.calls and sleep.calls[0] >= 1.0


def test_503_and_429_without_retry_after_back_off_exponentially(env):
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=5, base_delay=0.02, max_delay=1.0, jitter=False)
    client = client_with(env, sleep=sleep, policy=policy)
    env.state.faults.inject(Fault(kind="status", status=503, count=2))
    env.state.faults.inject(Fault(kind="status", status=429, count=1))
    list(client.company().entities("items"))
    assert sleep.calls == [0.02, 0.04, 0.08]
    assert client.stats.retries == 3


def test_retries_are_bounded(env):
    client = client_with(env, policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01))
    env.state.faults.inject(Fault(kind="status", status=502, count=5))
    with pytest.raises(BCUnavailable) as info:
        list(client.company().entities("items"))
    assert isinstance(info.value, TemporarilyUnavailable)
    assert info.value.status == 502 and info.value.bc_code == "BadGateway"
    assert client.stats.total == 3


def test_too_long_retry_after_gives_up_immediately(env):
    client = client_with(env, max_retry_after=5)
    env.state.faults.inject(Fault(kind="status", status=503, retry_after=600, count=1))
    with pytest.raises(TemporarilyUnavailable) as info:
        list(client.company().entities("items"))
    assert info.value.retry_after == timedelta(seconds=600)


def test_client_limiter_keeps_bc_from_throttling(env):
    env.state.latency_seconds = 0.15
    env.state.throttle.max_concurrent = 5
    env.state.throttle.max_queued = 0  # any 6th concurrent request would get 429
    client = client_with(env, max_concurrent_requests=5)
    company = client.company()
    item_ids = list(env.company.tables["items"].by_id)
    with cf.ThreadPoolExecutor(12) as pool:
        rows = list(pool.map(lambda i: company.get(f"items({i})"), item_ids))
    assert [r["id"] for r in rows] == item_ids
    assert env.state.stats.statuses[429] == 0 and client.stats.retries == 0
    assert client.limiter.peak_in_flight == 5
    # the same burst without the limiter is throttled by the sandbox
    token = env.token()

    def raw(i):
        with httpx.Client(timeout=10) as h:
            return h.get(env.path(f"items({i})"), headers={"Authorization": f"Bearer {token}"}).status_code

    with cf.ThreadPoolExecutor(12) as pool:
        assert 429 in set(pool.map(raw, item_ids))


def test_client_window_limit_spaces_requests(env):
    client = client_with(env, max_requests_per_window=3, window_seconds=0.4)
    company = client.company()
    started = time.monotonic()
    for _ in range(5):
        company.get(f"items({next(iter(env.company.tables['items'].by_id))})")
    assert time.monotonic() - started >= 0.4
    assert client.limiter.waited_seconds > 0


def test_bc_errors_become_typed_errors(env):
    client = client_with(env)
    company = client.company()
    with pytest.raises(BCNotFound) as nf:
        client.get_json(company.url("customers(6b7d6a1e-0000-4000-8000-000000000000)"))
    assert isinstance(nf.value, RemoteNotFound) and nf.value.bc_code == "BadRequest_ResourceNotFound"
    assert company.get("customers(6b7d6a1e-0000-4000-8000-000000000000)") is None
    cust = next(iter(env.company.tables["customers"].by_id.values()))
    row = company.get(f"customers({cust.id})")
    company.update(f"customers({cust.id})", row["@odata.etag"], {"displayName": "First"})
    with pytest.raises(BCConcurrencyError) as cc:
        company.update(f"customers({cust.id})", row["@odata.etag"], {"displayName": "Second"})
    assert isinstance(cc.value, ConcurrencyConflict) and cc.value.status == 409
    assert cc.value.bc_message == "Another user has already changed the record."
    assert len(cc.value.correlation_id) == 36
    with pytest.raises(BCMissingETag):
        client.request("PATCH", company.url(f"customers({cust.id})"), body={"displayName": "X"})
    with pytest.raises(BCRequestError) as dialog:
        company.create("salesInvoices", {"externalDocumentNumber": "no customer"})
    assert isinstance(dialog.value, InvalidRequest)
    assert dialog.value.bc_code == "Application_DialogException"
    assert dialog.value.bc_message == 'A "customerNumber" or a "customerId" must be provided.'


def test_a_write_with_a_lost_response_is_never_repeated_blindly(env):
    client = client_with(env)
    company = client.company()
    cust = next(iter(env.company.tables["customers"].by_id.values()))
    env.state.faults.inject(Fault(kind="drop", method="POST", path=r"/salesInvoices$"))
    before = len(env.company.tables["invoices"])
    with pytest.raises(BCAmbiguousWrite):
        company.create("salesInvoices", {"customerId": cust.id})
    assert len(env.company.tables["invoices"]) == before + 1  # applied once, not retried
    assert client.stats.requests[("POST", "salesInvoices")] == 1
    env.state.faults.inject(Fault(kind="status", status=503, count=1, method="POST"))
    company.create("salesInvoices", {"customerId": cust.id})  # 503 = not applied: retried
    assert len(env.company.tables["invoices"]) == before + 2


def test_decimals_round_trip_exactly(env):
    client = client_with(env)
    company = client.company()
    item = next(iter(env.company.tables["items"].by_id.values()))
    row = company.get(f"items({item.id})")
    updated = company.update(f"items({item.id})", row["@odata.etag"], {"unitPrice": Decimal("1234.5678")})
    assert updated["unitPrice"] == Decimal("1234.5678") and isinstance(updated["unitPrice"], Decimal)
    assert item.unit_price == Decimal("1234.5678")
    with pytest.raises(TypeError):
        company.update(f"items({item.id})", "*", {"unitPrice": 1.5})
