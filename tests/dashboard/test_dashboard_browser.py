"""The dashboard in a real browser (Debian's chromium through Playwright), end to end:

log in -> Connect the BC sandbox company (Pending with sync progress -> Connected) -> Set Up
Accounts from BC's accounts (a refusal shown in the form first) -> create the payment method
(the forbidden combination and an option the PSP cannot serve shown while editing, before any
submit) -> a sales order released and posted in BC reaches payweave through Sync now, is
authorized by the customer, captured on posting and shown in the transaction list and its
history -> a failed sync (BC refuses) shows Error with the reason and a failed job, Retry brings
the connection back. A screenshot of every page goes to test-artifacts/dashboard/.
"""
from __future__ import annotations

import re
import time
from typing import Any

import pytest

from payweave.core.engine import TxStatus
from payweave.core.sync.jobs import service_for_engine

from .conftest import COMPANY_A, BcDashboard, screenshot

pytestmark = pytest.mark.browser


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    return expect


def _wait_idle(page: Any, timeout: float = 30.0) -> None:
    """Wait until the integration card has no sync pending or running (it refreshes itself)."""
    expect = _expect()
    expect(page.locator("#integration-card")).to_have_attribute("data-busy", "false", timeout=timeout * 1000)


def _sync_now(page: Any) -> None:
    """Integrations -> Sync now, then wait until the queued sync has run."""
    expect = _expect()
    page.click("nav.tabs a:has-text('Integrations')")
    expect(page).to_have_url(re.compile(r"/ui/integrations$"))
    page.click("button:has-text('Sync now')")
    expect(page.locator(".flash-ok")).to_contain_text("Sync queued as job #")
    _wait_idle(page)


def _option(page: Any, select: str, starts_with: str) -> str:
    value = page.locator(f"{select} option", has_text=re.compile(rf"^{re.escape(starts_with)} ")).first.get_attribute("value")
    assert value, f"no option {starts_with} in {select}"
    return value


def test_connect_sync_set_up_accounts_and_see_a_captured_transaction(bc_dashboard: BcDashboard, page: Any) -> None:
    expect = _expect()
    dash, bc = bc_dashboard.dash, bc_dashboard.bc
    base = dash.url

    # ---------------------------------------------------------------- login (a wrong key first)
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui"))
    page.fill("#api_key", "pwk_0000000000000000_not-a-real-key-at-all")
    page.click("button:has-text('Log in')")
    expect(page.locator("#login-error")).to_have_text("The API key is not valid or was revoked.")
    screenshot(page, "01-login-refused")
    page.fill("#api_key", dash.key_a)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(base + "/ui/integrations")
    expect(page.locator(".who .company")).to_contain_text(COMPANY_A)

    # ---------------------------------------------------------------- connect: Pending -> Connected
    status = page.get_by_test_id("integration-status")
    expect(status).to_have_text("Not connected")
    expect(page.locator("#erp_company option")).to_have_text(bc.company.display_name or bc.company.name)
    screenshot(page, "02-integrations-connect")
    bc.state.latency_seconds = 0.08  # a slower BC, so the initial sync is seen in progress
    page.click("button:has-text('Connect')")
    expect(page.locator(".flash-ok")).to_contain_text("the initial sync (last 12 months, then all history) is queued")
    expect(status).to_have_text("Pending")
    expect(page.locator("table[aria-label='Sync progress'] tbody tr").first).to_be_visible(timeout=10_000)
    screenshot(page, "03-integrations-pending")
    seen_progress = page.locator("table[aria-label='Sync progress']").inner_text()
    assert "Last 12 months" in seen_progress
    expect(status).to_have_text("Connected", timeout=45_000)
    bc.state.latency_seconds = 0.0
    _wait_idle(page)
    progress = page.locator("table[aria-label='Sync progress']").inner_text()
    assert "All history" in progress and "reading" not in progress
    expect(page.locator(".counts")).to_contain_text("customers")
    screenshot(page, "04-integrations-connected")

    # ---------------------------------------------------------------- set up accounts
    page.click("a:has-text('Set Up Accounts')")
    expect(page).to_have_url(base + "/ui/accounts")
    payments = _option(page, "#payments_account", "10900")
    fee = _option(page, "#fee_account", "60800")
    bank = _option(page, "#bank_account", "CHECKING")
    page.select_option("#payments_account", payments)
    page.select_option("#bank_account", bank)
    page.select_option("#fee_account", payments)  # the same account twice is refused
    page.click("button:has-text('Save accounts')")
    expect(page.locator("#fee_account-error")).to_have_text(
        "The payments (clearing) account and the fee account must be different accounts.")
    expect(page.locator("#payments_account")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "05-accounts-refused")
    page.select_option("#fee_account", fee)
    page.click("button:has-text('Save accounts')")
    expect(page.locator(".flash-ok")).to_have_text(re.compile(r"Accounts saved: payments 10900, deposits CHECKING, fees 60800"))
    saved = service_for_engine(dash.engine).account_setup(COMPANY_A)
    assert saved is not None and (saved.payments_account.number, saved.bank_account.number, saved.fee_account.number) == (
        "10900", "CHECKING", "60800")
    screenshot(page, "06-accounts-saved")

    # ---------------------------------------------------------------- payment method, errors while editing
    page.click("nav.tabs a:has-text('Payment methods')")
    page.click("a:has-text('New payment method')")
    page.fill("#code", "payweave")
    page.fill("#description", "Cards through payweave")
    page.check("#recurring")
    page.check("#allow_reservation_renewal")
    for name in ("recurring", "allow_reservation_renewal"):
        error = page.locator(f"[data-error-for='{name}']")
        expect(error).to_be_visible()
        expect(error).to_contain_text("'Recurring Payment' cannot be combined with 'Allow Reservation Renewal'")
    expect(page.locator("#form-message")).to_be_visible()
    screenshot(page, "07-payment-method-forbidden-combination")
    page.uncheck("#allow_reservation_renewal")
    expect(page.locator("[data-error-for='allow_reservation_renewal']")).to_be_hidden()
    page.select_option("#psp", "psp_mock:minimal")  # this PSP account cannot do recurring payments
    expect(page.locator("[data-error-for='recurring']")).to_contain_text("does not support recurring charges on mandates")
    expect(page.locator("#psp-capabilities")).to_have_text(
        "Supports: reservations (authorize, capture later), capture of a reservation.")
    screenshot(page, "08-payment-method-capability")
    page.uncheck("#recurring")
    page.select_option("#psp", "psp_mock:default")
    page.select_option("#capture_timing", "on_posting")
    expect(page.locator("[data-validation-state]")).to_have_text("Settings are valid.")
    expect(page.locator("[data-error-for='recurring']")).to_be_hidden()
    page.click("button:has-text('Save payment method')")
    expect(page.locator(".flash-ok")).to_have_text("Payment method PAYWEAVE saved.")
    row = page.locator("tbody tr", has_text="PAYWEAVE")
    expect(row).to_contain_text("on posting")
    screenshot(page, "09-payment-methods")

    # ---------------------------------------------------------------- a sales order from BC
    item = next(iter(bc.company.tables["items"].by_id.values()))
    customer = next(iter(bc.company.tables["customers"].by_id.values()))
    order = bc.admin("POST", "/_sandbox/companies/{c}/documents", {
        "documentType": "Order", "customerNumber": customer.number, "paymentMethodCode": "PAYWEAVE",
        "lines": [{"type": "Item", "number": item.number, "quantity": 3, "unitPrice": "40"}]})
    bc.admin("POST", f"/_sandbox/companies/{{c}}/documents/{order['id']}/release")

    _sync_now(page)
    page.click("nav.tabs a:has-text('Transactions')")
    tx_row = page.locator("tbody tr", has_text=order["number"])
    expect(tx_row).to_contain_text("prepared")
    expect(tx_row).to_contain_text(f"{order['totalAmountIncludingTax']:.2f} {order['currencyCode']}")

    # the customer pays (authorizes) the order, then BC posts it
    prepared = [t for t in dash.engine.list_transactions(COMPANY_A) if t.document_number == order["number"]]
    assert len(prepared) == 1 and prepared[0].status is TxStatus.PREPARED
    assert dash.engine.reserve(COMPANY_A, prepared[0].id).status is TxStatus.RESERVED
    invoice = bc.admin("POST", f"/_sandbox/companies/{{c}}/documents/{order['id']}/post")

    _sync_now(page)
    page.click("nav.tabs a:has-text('Transactions')")
    page.select_option("#f-status", "captured")
    page.select_option("#f-type", "sales_order")
    page.click("button:has-text('Filter')")
    expect(page).to_have_url(re.compile(r"status=captured&document_type=sales_order"))
    tx_row = page.locator("tbody tr", has_text=order["number"])
    expect(tx_row).to_contain_text("captured")
    amount = f"{order['totalAmountIncludingTax']:.2f}"
    expect(tx_row.locator("td").nth(6)).to_have_text(amount)
    screenshot(page, "10-transactions")
    tx_row.locator("a").click()
    expect(page.locator("h1")).to_have_text(f"Sales order {order['number']}")
    history = page.locator("ol.timeline")
    expect(history).to_contain_text("prepared")
    expect(history).to_contain_text("reserve")
    expect(history).to_contain_text("capture")
    expect(page.locator("table[aria-label='PSP operations']")).to_contain_text("capture")
    expect(page.locator("table[aria-label='Amounts']")).to_contain_text(f"{amount} {order['currencyCode']}")
    captured = dash.engine.get_transaction(COMPANY_A, prepared[0].id)
    assert captured.status is TxStatus.CAPTURED and f"{captured.amounts.captured:.2f}" == amount
    assert invoice["number"]
    screenshot(page, "11-transaction-history")

    # ---------------------------------------------------------------- BC refuses: Error, failed job, Retry
    bc.admin("POST", "/_sandbox/faults", {"kind": "status", "status": 403, "count": 1, "path": "customers"})
    _sync_now(page)
    expect(status).to_have_text("Error")
    reason = page.get_by_test_id("status-reason")
    expect(reason).not_to_be_empty()
    failed_note = page.get_by_test_id("failed-sync-job")
    expect(failed_note).to_contain_text("failed")
    screenshot(page, "12-integrations-error")
    failed_note.locator("a").click()
    expect(page).to_have_url(base + "/ui/jobs?status=failed")
    failed_rows = page.locator("table[aria-label='Jobs'] tbody tr")
    expect(failed_rows).to_have_count(1)
    expect(failed_rows.first).to_contain_text("ERP sync")
    screenshot(page, "13-jobs-failed")
    failed_rows.first.locator("button:has-text('Retry')").click()
    expect(page.locator(".flash-ok")).to_contain_text("is queued again and runs shortly")
    page.click("nav.tabs a:has-text('Integrations')")
    expect(status).to_have_text("Connected", timeout=30_000)
    _wait_idle(page)
    expect(page.get_by_test_id("failed-sync-job")).to_have_count(0)
    deadline = time.monotonic() + 10
    while dash.engine.jobs.counts(company_id=COMPANY_A).get("failed", 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dash.engine.jobs.counts(company_id=COMPANY_A).get("failed", 0) == 0
    page.click("nav.tabs a:has-text('Jobs')")
    expect(page).to_have_url(base + "/ui/jobs")
    expect(page.locator("table[aria-label='Jobs']")).to_contain_text("done")
    screenshot(page, "14-jobs")
