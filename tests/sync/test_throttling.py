"""BC's limits during a sync (reference §7): the sandbox throttles like BC (requests per sliding
window, 429 with Retry-After); the sync still completes, and the client-side limiter, set to
BC's numbers, never lets BC throttle at all."""
from __future__ import annotations

from payweave.plugins.erp_businesscentral.sandbox import Fault


def test_a_429_with_retry_after_is_waited_out(bc, sqlite_store):
    bc.state.throttle.requests_per_window = 3  # the initial sync makes about five requests
    bc.state.throttle.window_seconds = 1.0
    # a single retry per request: only waiting the announced Retry-After (not the short
    # exponential first backoff of 0.25 s) gets the retried request out of the window
    service = bc.service(sqlite_store, account={"max_attempts": 2}, page_size=50, pdfs="none")

    view = service.connect()

    assert view.status == "connected"
    assert int(bc.state.stats.snapshot()["statuses"].get("429", 0)) >= 1
    bc.assert_mirrored(sqlite_store)


def test_the_client_limiter_keeps_the_sync_under_bcs_limit(bc, sqlite_store):
    bc.state.throttle.requests_per_window = 8
    bc.state.throttle.window_seconds = 1.0
    # one request of margin: the client counts a request when it sends it, BC when it arrives
    service = bc.service(sqlite_store, page_size=50, pdfs="none",
                         account={"max_requests_per_window": 7, "window_seconds": 1.0})

    service.connect()

    assert "429" not in bc.state.stats.snapshot()["statuses"]
    bc.assert_mirrored(sqlite_store)


def test_unavailable_bc_keeps_the_company_pending_and_the_next_run_resumes(bc, sqlite_store):
    service = bc.service(sqlite_store, account={"max_attempts": 2}, page_size=10, pdfs="none")
    cid = bc.company.id
    # BC answers 503 to the invoices of the history window for longer than the retries last
    bc.state.faults.inject(Fault(kind="status", status=503, retry_after=0, method="GET",
                                 path=r"/salesInvoices$", count=4))
    faults_before = bc.state.faults.pending
    try:
        service.connect()
    except Exception as exc:  # noqa: BLE001 - the typed error is checked below
        error = exc
    else:
        raise AssertionError("the sync should have stopped at the unavailable window")
    assert getattr(error, "retryable", False)
    assert bc.state.faults.pending < faults_before
    view = service.connection(cid)
    assert view.status == "pending" and "retry" in (view.status_reason or "")
    assert view.last_sync_outcome == "retry"

    bc.state.faults.clear()
    report = service.run_sync(cid)

    assert report.status == "connected"
    bc.assert_mirrored(sqlite_store)
