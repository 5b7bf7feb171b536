"""The dashboard over plain HTTP (httpx against the real service on loopback): login and its
failures, sessions, CSRF refusals, company isolation, the payment-method validation endpoint,
transaction filters and job actions."""
from __future__ import annotations

import base64
import html
import json
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest

from payweave.core.engine import PaymentMethodSetup, TxStatus
from payweave.core.errors import PaymentMethodNotFound
from payweave.core.jobs.queue import JobKind, JobStatus
from payweave.core.sync.jobs import service_for_engine
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document
from payweave.hooks.models import DocumentType

from .conftest import COMPANY_A, COMPANY_B, BcDashboard, Dashboard, hidden


def _method(dash: Dashboard, company: str, code: str = "CARD", **options: object) -> None:
    dash.engine.save_payment_method(PaymentMethodSetup(company_id=company, code=code, psp="psp_mock", **options))


def _order(dash: Dashboard, company: str, amount: str = "100.00", *, code: str = "CARD", number: str | None = None,
           reserve: bool = False, **kw: object):
    doc = sales_document(company_id=company, payment_method_code=code, lines=[item_line(10000, amount)],
                         number=number, **kw)
    result = dash.engine.handle_event(document_event("released", doc))
    tx = result.transaction
    assert tx is not None
    if reserve:
        tx = dash.engine.reserve(company, tx.id)
    return doc, tx


def _failed_job(dash: Dashboard, company: str, message: str = "The PSP refused the capture.") -> int:
    queue = dash.engine.jobs
    with dash.engine.store.transaction() as s:
        job_id = queue.enqueue(s, company_id=company, kind=JobKind.CAPTURE, payload={"transaction_id": "none"},
                               max_attempts=1).id
    claimed = [j for j in queue.claim("test-worker") if j.id == job_id]
    assert claimed, "the job was not claimable"
    assert queue.fail(claimed[0], code="payment_declined", message=message, retryable=False) is JobStatus.FAILED
    return job_id


# ------------------------------------------------------------------------------------------- login
def test_pages_need_a_login_and_say_where_to_go(dashboard: Dashboard) -> None:
    client = dashboard.client()
    assert client.get("/").headers["location"] == "/ui"
    response = client.get("/ui/transactions?status=captured")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Ftransactions%3Fstatus%3Dcaptured"
    problem = client.post("/ui/payment-methods/validate", data={"code": "X"})
    assert problem.status_code == 401
    assert problem.json()["message"] == "Log in with your API key to use the dashboard."
    login = client.get("/ui/login?next=/ui/jobs")
    assert login.status_code == 200
    assert 'name="next" value="/ui/jobs"' in login.text
    # a foreign target is never followed after login
    assert 'value="/ui"' in client.get("/ui/login?next=https://evil.example/").text
    # the reason shown is one of the dashboard's own sentences, never text from the link
    assert "Your session has ended; log in again." in client.get("/ui/login?reason=expired").text
    assert "Call 555" not in client.get("/ui/login?reason=Call+555+now").text


def test_login_failures_are_refused_with_a_reason(dashboard: Dashboard) -> None:
    client = dashboard.client()
    page = client.get("/ui/login")
    token = hidden(page.text, "login_token")
    cookie = page.headers["set-cookie"]
    assert "pw_login=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")

    wrong = client.post("/ui/login", data={"api_key": "pwk_0123456789abcdef_" + "x" * 40, "login_token": token})
    assert wrong.status_code == 401
    assert "The API key is not valid or was revoked." in wrong.text
    assert "pw_session" not in wrong.headers.get("set-cookie", "")

    empty = client.post("/ui/login", data={"api_key": " ", "login_token": hidden(wrong.text, "login_token")})
    assert empty.status_code == 422 and "Enter your API key" in empty.text

    # without the login form's token (a cross-site login attempt)
    stranger = dashboard.client()
    forged = stranger.post("/ui/login", data={"api_key": dashboard.key_a, "login_token": "made-up"})
    assert forged.status_code == 403
    assert "The login form expired or was not sent by this site" in forged.text
    assert "pw_session" not in forged.headers.get("set-cookie", "")

    # a login posted from another site is refused even with a valid form token
    elsewhere = client.post("/ui/login", data={"api_key": dashboard.key_a, "login_token": hidden(empty.text, "login_token")},
                            headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "pw_session" not in elsewhere.headers.get("set-cookie", "")

    # a revoked key cannot log in
    dashboard.keys.revoke(dashboard.key_b)
    revoked = client.post("/ui/login", data={"api_key": dashboard.key_b,
                                             "login_token": hidden(elsewhere.text, "login_token")})
    assert revoked.status_code == 401

    ok = client.post("/ui/login", data={"api_key": dashboard.key_a, "login_token": hidden(revoked.text, "login_token")})
    assert ok.status_code == 303
    session = ok.headers["set-cookie"]
    assert "pw_session=" in session and "HttpOnly" in session and "Path=/ui" in session
    assert "samesite=strict" in session.lower()
    page = client.get("/ui/integrations")
    assert page.status_code == 200 and f"Company <strong>{COMPANY_A}</strong>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"


def test_a_session_ends_when_its_key_is_revoked_or_the_cookie_is_altered(dashboard: Dashboard) -> None:
    client, _ = dashboard.login(dashboard.key_a)
    cookie = client.cookies.get("pw_session")
    assert cookie is not None
    body, mac = cookie.split(".")
    tampered = dashboard.client()
    # the same payload claiming another company, with the old signature
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["c"] = COMPANY_B
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":"), sort_keys=True).encode()).rstrip(b"=")
    tampered.cookies.set("pw_session", f"{forged.decode()}.{mac}", domain="127.0.0.1", path="/ui")
    response = tampered.get("/ui/transactions")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Ftransactions&reason=invalid"

    dashboard.keys.revoke(dashboard.key_a)
    after = client.get("/ui/transactions")
    assert after.status_code == 303
    assert after.headers["location"].endswith("&reason=revoked")


def test_logout_clears_the_session(dashboard: Dashboard) -> None:
    client, csrf = dashboard.login(dashboard.key_a)
    out = client.post("/ui/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"].startswith("/ui/login")
    assert 'pw_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/ui/jobs").status_code == 303


def test_an_api_key_header_works_without_a_session(dashboard: Dashboard) -> None:
    client = dashboard.client(headers={"Authorization": f"Bearer {dashboard.key_a}"})
    page = client.get("/ui/payment-methods")
    assert page.status_code == 200 and f"<strong>{COMPANY_A}</strong>" in page.text
    # no ambient credentials, so no CSRF token is needed
    saved = client.post("/ui/payment-methods", data={"code": "card", "psp": "psp_mock:default", "mode": "new"})
    assert saved.status_code == 303
    assert dashboard.engine.get_payment_method(COMPANY_A, "CARD").psp == "psp_mock"
    bad = dashboard.client(headers={"X-API-Key": "pwk_nope"})
    assert bad.get("/ui/jobs").status_code == 303


# ------------------------------------------------------------------------------------------- CSRF
def test_posts_without_the_csrf_token_change_nothing(dashboard: Dashboard) -> None:
    client, csrf = dashboard.login(dashboard.key_a)
    form = {"code": "CARD", "psp": "psp_mock:default", "mode": "new"}
    missing = client.post("/ui/payment-methods", data=form)
    assert missing.status_code == 403
    assert "missing its security token" in missing.text
    wrong = client.post("/ui/payment-methods", data={**form, "csrf_token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    foreign = client.post("/ui/payment-methods", data={**form, "csrf_token": csrf},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "came from another site" in foreign.text
    referred = client.post("/ui/payment-methods", data={**form, "csrf_token": csrf},
                           headers={"Referer": "https://evil.example/pay.html"})
    assert referred.status_code == 403
    validate = client.post("/ui/payment-methods/validate", data=form)
    assert validate.status_code == 403 and validate.json()["code"] == "csrf_failed"
    with pytest.raises(PaymentMethodNotFound):
        dashboard.engine.get_payment_method(COMPANY_A, "CARD")
    # the token of another session is not this session's token
    _, other_csrf = dashboard.login(dashboard.key_b)
    assert client.post("/ui/payment-methods", data={**form, "csrf_token": other_csrf}).status_code == 403
    same_site = client.post("/ui/payment-methods", data={**form, "csrf_token": csrf},
                            headers={"Origin": dashboard.url})
    assert same_site.status_code == 303
    assert dashboard.engine.get_payment_method(COMPANY_A, "CARD").code == "CARD"


# ------------------------------------------------------------------------------------------- isolation
def test_another_companys_records_are_invisible_and_untouchable(dashboard: Dashboard) -> None:
    _method(dashboard, COMPANY_B, "GLOBEX")
    _, tx_b = _order(dashboard, COMPANY_B, code="GLOBEX", number="B-ORDER-1")
    job_b = _failed_job(dashboard, COMPANY_B, "Globex's capture failed.")
    _method(dashboard, COMPANY_A, "CARD")
    _, tx_a = _order(dashboard, COMPANY_A, number="A-ORDER-1")

    client, csrf = dashboard.login(dashboard.key_a)
    listing = client.get("/ui/transactions").text
    assert "A-ORDER-1" in listing and "B-ORDER-1" not in listing
    assert client.get(f"/ui/transactions/{tx_a.id}").status_code == 200
    other = client.get(f"/ui/transactions/{tx_b.id}")
    assert other.status_code == 404
    assert f"There is no payment transaction {tx_b.id} in this company." in other.text
    assert "GLOBEX" not in client.get("/ui/payment-methods").text
    assert client.get("/ui/payment-methods/GLOBEX").status_code == 404
    assert client.post("/ui/payment-methods/GLOBEX/delete", data={"csrf_token": csrf}).status_code == 404
    assert dashboard.engine.get_payment_method(COMPANY_B, "GLOBEX").code == "GLOBEX"
    jobs = client.get("/ui/jobs?status=failed").text
    assert "Globex&#39;s capture failed." not in jobs and f"job-{job_b}" not in jobs
    assert client.post(f"/ui/jobs/{job_b}/retry", data={"csrf_token": csrf}).status_code == 404
    assert client.post(f"/ui/jobs/{job_b}/cancel", data={"csrf_token": csrf}).status_code == 404
    assert dashboard.engine.jobs.get(job_b).status is JobStatus.FAILED
    # saving a payment method with B's code creates A's own, never touches B's
    saved = client.post("/ui/payment-methods", data={"code": "GLOBEX", "psp": "psp_mock:minimal", "mode": "new",
                                                     "csrf_token": csrf})
    assert saved.status_code == 303
    assert dashboard.engine.get_payment_method(COMPANY_B, "GLOBEX").psp_account == "default"
    assert dashboard.engine.get_payment_method(COMPANY_A, "GLOBEX").psp_account == "minimal"

    client_b, _ = dashboard.login(dashboard.key_b)
    assert "Globex&#39;s capture failed." in client_b.get("/ui/jobs?status=failed").text
    assert "A-ORDER-1" not in client_b.get("/ui/transactions").text


def test_failed_jobs_are_listed_and_retried(dashboard: Dashboard) -> None:
    job = _failed_job(dashboard, COMPANY_A, "The PSP was down for too long.")
    client, csrf = dashboard.login(dashboard.key_a)
    page = client.get("/ui/jobs?status=failed")
    assert page.status_code == 200
    assert f'id="job-{job}"' in page.text and "The PSP was down for too long." in page.text
    assert f'action="/ui/jobs/{job}/retry"' in page.text
    retried = client.post(f"/ui/jobs/{job}/retry", data={"csrf_token": csrf, "back": "/ui/jobs?status=failed"})
    assert retried.status_code == 303 and retried.headers["location"] == "/ui/jobs?status=failed"
    assert f"Job #{job} is queued again" in client.get("/ui/jobs?status=failed").text
    assert dashboard.engine.jobs.get(job).status is JobStatus.PENDING
    again = client.post(f"/ui/jobs/{job}/retry", data={"csrf_token": csrf})
    assert again.status_code == 303
    assert "only failed or cancelled jobs can be retried" in client.get("/ui/jobs").text
    assert client.post(f"/ui/jobs/{job}/cancel", data={"csrf_token": csrf}).status_code == 303
    assert dashboard.engine.jobs.get(job).status is JobStatus.CANCELLED
    assert client.get("/ui/jobs?status=sideways").status_code == 422


# ------------------------------------------------------------------------------------------- payment methods
def test_validation_endpoint_runs_the_engines_rules_and_names_the_settings(dashboard: Dashboard) -> None:
    client, csrf = dashboard.login(dashboard.key_a)

    def check(**form: str) -> dict:
        response = client.post("/ui/payment-methods/validate", data={"code": "CARD", **form},
                               headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200
        return response.json()

    forbidden = check(psp="psp_mock:default", recurring="on", advanced_import="on")
    assert not forbidden["ok"] and forbidden["code"] == "setup_combination_forbidden"
    assert forbidden["fields"] == ["advanced_import", "recurring"]
    assert "'Recurring Payment' cannot be combined with 'Advanced Import'" in forbidden["message"]

    unsupported = check(psp="psp_mock:minimal", capture_timing="on_posting", refund_timing="on_posting")
    assert unsupported["code"] == "setup_option_not_supported" and unsupported["fields"] == ["refund_timing"]
    assert "does not support refunds" in unsupported["message"]
    assert unsupported["capabilities"] == ["reservations (authorize, capture later)", "capture of a reservation"]

    incomplete = check(psp="psp_mock:default", start_payment="on", success_url="https://shop.example/ok")
    assert incomplete["code"] == "setup_incomplete" and incomplete["fields"] == ["error_url", "start_payment"]

    bad_url = check(psp="psp_mock:default", success_url="javascript:alert(1)")
    assert bad_url["fields"] == ["success_url"]

    no_code = client.post("/ui/payment-methods/validate", data={"code": "", "psp": "psp_mock:default"},
                          headers={"X-CSRF-Token": csrf}).json()
    assert no_code["fields"] == ["code"]

    valid = check(psp="psp_mock:default", capture_timing="on_posting", recurring="on")
    assert valid == {**valid, "ok": True, "fields": [], "message": None}
    with pytest.raises(PaymentMethodNotFound):  # validating never saves
        dashboard.engine.get_payment_method(COMPANY_A, "CARD")


def test_saving_a_refused_method_shows_the_errors_in_the_form(dashboard: Dashboard) -> None:
    client, csrf = dashboard.login(dashboard.key_a)
    form = {"csrf_token": csrf, "mode": "new", "code": "card", "psp": "psp_mock:default", "without_cart": "on",
            "allow_cart_update": "on", "description": "Cards"}
    refused = client.post("/ui/payment-methods", data=form)
    assert refused.status_code == 422
    for name in ("without_cart", "allow_cart_update"):
        error = re.search(rf'<p class="field-error" id="{name}-error" data-error-for="{name}">([^<]+)</p>', refused.text)
        assert error is not None, name
        assert "'Without Cart' cannot be combined with 'Allow Cart Update'" in html.unescape(error.group(1))
        assert re.search(rf'id="{name}" name="{name}" checked aria-describedby="{name}-error" aria-invalid="true"',
                         refused.text)
    assert 'value="Cards"' in refused.text  # what was typed is kept
    with pytest.raises(PaymentMethodNotFound):
        dashboard.engine.get_payment_method(COMPANY_A, "CARD")

    form.pop("allow_cart_update")
    assert client.post("/ui/payment-methods", data=form).status_code == 303
    saved = dashboard.engine.get_payment_method(COMPANY_A, "CARD")
    assert saved.without_cart and not saved.allow_cart_update and saved.description == "Cards"
    duplicate = client.post("/ui/payment-methods", data=form)
    assert duplicate.status_code == 409 and "CARD exists already" in duplicate.text
    edit = client.post("/ui/payment-methods", data={**form, "mode": "edit", "without_cart": "", "recurring": "on"})
    assert edit.status_code == 303
    assert dashboard.engine.get_payment_method(COMPANY_A, "CARD").recurring
    listing = client.get("/ui/payment-methods").text
    assert "Payment method CARD saved." in listing and "Recurring Payment" in listing


# ------------------------------------------------------------------------------------------- transactions
def test_transaction_list_filters_and_detail(dashboard: Dashboard) -> None:
    _method(dashboard, COMPANY_A, "CARD", capture_timing="on_posting")
    order, reserved = _order(dashboard, COMPANY_A, "80.00", number="SO-1", reserve=True)
    invoice = posted_invoice(order)
    dashboard.engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id,
                                                 posted_document_number=invoice.number))
    _order(dashboard, COMPANY_A, "15.50", number="SO-2")
    direct = sales_document(DocumentType.SALES_INVOICE, company_id=COMPANY_A, payment_method_code="CARD",
                            lines=[item_line(10000, "42.00")], number="SI-9")
    dashboard.engine.handle_event(document_event("released", direct))

    client, _ = dashboard.login(dashboard.key_a)

    def numbers(query: str) -> list[str]:
        page = client.get("/ui/transactions" + query)
        assert page.status_code == 200, page.text
        return re.findall(r'">(?:Sales order|Sales invoice) ([^<]+)</a>', page.text)

    assert sorted(numbers("")) == ["SI-9", "SO-1", "SO-2"]
    assert numbers("?status=captured") == ["SO-1"]
    assert sorted(numbers("?status=prepared")) == ["SI-9", "SO-2"]
    assert numbers("?document_type=sales_invoice") == ["SI-9"]
    assert numbers("?document_number=SO-2") == ["SO-2"]
    today = dashboard.engine.clock.now().date()
    assert len(numbers(f"?date_from={today}&date_to={today}")) == 3
    assert numbers(f"?date_to={today - timedelta(days=1)}") == []
    assert numbers(f"?date_from={today + timedelta(days=1)}") == []
    bad = client.get("/ui/transactions?date_from=yesterday")
    assert bad.status_code == 422 and "'From' must be a date (YYYY-MM-DD)." in html.unescape(bad.text)
    assert client.get("/ui/transactions?document_type=purchase_order").status_code == 422

    tx = dashboard.engine.get_transaction(COMPANY_A, reserved.id)
    assert tx.status is TxStatus.CAPTURED and tx.amounts.captured == Decimal("80.00")
    detail = client.get(f"/ui/transactions/{tx.id}")
    assert detail.status_code == 200
    assert "Sales order SO-1" in detail.text and "status-captured" in detail.text
    actions = re.findall(r'<div class="what"><strong>([^<]+)</strong>', detail.text)
    assert actions == [h.action.replace("_", " ") for h in tx.history]
    assert "capture" in actions
    assert re.search(r"<th scope=\"row\">Captured</th><td class=\"num\">80.00 EUR</td>", detail.text)
    assert client.get("/ui/transactions/not-a-transaction").status_code == 404


def test_accounts_need_a_connected_erp(dashboard: Dashboard) -> None:
    client, csrf = dashboard.login(dashboard.key_a)
    page = client.get("/ui/accounts")
    assert page.status_code == 200 and "Connect the ERP on" in page.text
    refused = client.post("/ui/accounts", data={"csrf_token": csrf, "payments_account": "1", "bank_account": "2",
                                                "fee_account": "3"})
    assert refused.status_code == 409
    assert "Accounts can be set up once the integration is Connected." in refused.text
    integrations = client.get("/ui/integrations").text
    assert "No ERP plugin is loaded" in integrations
    sync = client.post("/ui/integrations/sync", data={"csrf_token": csrf})
    assert sync.status_code == 303
    assert "Connect the ERP first" in client.get("/ui/integrations").text


def test_static_files_are_served_and_nothing_else(dashboard: Dashboard) -> None:
    client = dashboard.client()
    css = client.get("/ui/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/ui/static/dashboard.js")
    assert js.status_code == 200 and "text/javascript" in js.headers["content-type"]
    assert client.get("/ui/static/..%2Froutes.py").status_code == 404
    assert client.get("/ui/static/routes.py").status_code == 404


def test_an_expired_session_asks_for_the_key_again(dashboard: Dashboard) -> None:
    from payweave.core.service.dashboard.session import sign

    client, _ = dashboard.login(dashboard.key_a)
    cookie = client.cookies.get("pw_session")
    assert cookie is not None
    body = cookie.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["e"] = data["i"] - 1  # properly signed, but over
    expired = dashboard.client()
    expired.cookies.set("pw_session", sign(dashboard.context, "session", data), domain="127.0.0.1", path="/ui")
    response = expired.get("/ui/jobs")
    assert response.status_code == 303 and response.headers["location"].endswith("&reason=expired")
    # a token signed for another purpose (the login form's) is not a session
    other = dashboard.client()
    other.cookies.set("pw_session", sign(dashboard.context, "login", {**data, "e": data["e"] + 10**6}),
                      domain="127.0.0.1", path="/ui")
    assert other.get("/ui/jobs").headers["location"].endswith("&reason=invalid")


def test_connect_and_sync_now_queue_jobs_the_worker_runs(bc_dashboard: BcDashboard) -> None:
    dash, bc = bc_dashboard.dash, bc_dashboard.bc
    client, csrf = dash.login(dash.key_a)
    page = client.get("/ui/integrations")
    assert 'data-testid="integration-status">Not connected<' in page.text
    assert f'<option value="{bc.company.id}">' in page.text
    unknown = client.post("/ui/integrations/connect", data={"csrf_token": csrf, "erp_company": "no-such-company"})
    assert unknown.status_code == 303
    assert "The ERP has no company no-such-company." in client.get("/ui/integrations").text

    connected = client.post("/ui/integrations/connect", data={"csrf_token": csrf, "erp_company": bc.company.id})
    assert connected.status_code == 303
    flash = client.get("/ui/integrations").text
    initial_job = int(re.search(r"is queued as job #(\d+)\.", flash).group(1))
    view = service_for_engine(dash.engine).connection(COMPANY_A)
    assert view.erp_company_id == bc.company.id.lower() and view.company_id == COMPANY_A
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        card = client.get("/ui/integrations/status").text
        if 'data-busy="false"' in card:
            break
        time.sleep(0.1)
    assert '>Connected<' in card and 'data-busy="false"' in card
    initial = dash.engine.jobs.get(initial_job, company_id=COMPANY_A)
    assert initial.status is JobStatus.DONE and initial.result and initial.result["status"] == "connected", [
        (j.id, j.status, j.payload, j.created_at, j.last_error) for j in dash.engine.jobs.list(company_id=COMPANY_A)]

    again = client.post("/ui/integrations/sync", data={"csrf_token": csrf})
    job_id = int(re.search(r"job #(\d+)", client.get("/ui/integrations").text).group(1))
    assert again.status_code == 303
    deadline = time.monotonic() + 30
    while dash.engine.jobs.get(job_id).status is not JobStatus.DONE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dash.engine.jobs.get(job_id).status is JobStatus.DONE

    # the other company sees none of it
    client_b, _ = dash.login(dash.key_b)
    assert 'data-testid="integration-status">Not connected<' in client_b.get("/ui/integrations").text
    assert "Connect the ERP on" in client_b.get("/ui/accounts").text
    assert "job-" not in client_b.get("/ui/jobs").text
    accounts = client.get("/ui/accounts").text
    assert "10900 Payments clearing (payweave)" in accounts and "CHECKING Checking account" in accounts
