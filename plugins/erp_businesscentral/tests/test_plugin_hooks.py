"""The plugin's hooks (plugin.py) as the core calls them: loaded from the entry point, through
the plugin manager's ErpClient, against the sandbox over HTTP."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.hooks import hookspecs
from payweave.hooks.errors import ConfigurationError, InvalidRequest, NotSupported, RemoteNotFound, WebhookVerificationFailed
from payweave.hooks.models import (
    Account,
    DocumentType,
    ErpInvoice,
    Money,
    RecordPaymentRequest,
    SyncCursor,
    SyncEntity,
    WebhookRequest,
)
from payweave.plugins.erp_businesscentral import connector as connector_module
from payweave.plugins.erp_businesscentral import plugin
from payweave.plugins.erp_businesscentral.mapping import MappingError
from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings

NAME = "erp_businesscentral"


@pytest.fixture
def erp(env):
    manager = PluginManager(PayweaveSettings(plugins=NAME))
    manager.load_entrypoints()
    yield manager.erp(NAME)
    plugin.reset_clients()


def _account(env, **over) -> Account:
    return Account(plugin=NAME, settings=env.settings(**over))


def test_the_plugin_loads_from_its_entry_point_with_every_erp_hook():
    manager = PluginManager(PayweaveSettings(plugins=NAME))
    manager.load_entrypoints()
    record = manager.get(NAME, "erp")
    assert record.info.settings_model is BusinessCentralSettings
    assert set(hookspecs.ERP_REQUIRED_HOOKS) <= set(record.hooks)
    assert {"erp_ensure_subscriptions", "erp_parse_notification", "erp_list_companies", "payweave_sandboxes"} <= set(record.hooks)
    [(owner, spec)] = [(p, s) for p, s in manager.sandboxes() if p == NAME]
    assert spec.command == "bc-sandbox"


def test_read_changes_streams_pages_lazily_and_resumes_from_a_page_cursor(env, erp):
    account = _account(env, page_size=10)
    invoices = {d.id for d in env.company.tables["invoices"].by_id.values()}
    env.state.stats.reset()
    pages = erp.read_changes(account, SyncEntity.INVOICES, SyncCursor(), 10)
    first = next(pages)
    assert env.state.stats.total(entity_set="salesInvoices") == 1  # one page fetched, not the history
    second = next(pages)
    pages.close()
    assert all(isinstance(r, ErpInvoice) and r.lines for r in first.records + second.records)
    assert first.high_water == max(r.last_modified for r in first.records)
    resume = second.next_cursor
    assert resume is not None and resume.page_token

    rest = list(erp.read_changes(account, SyncEntity.INVOICES, resume, 10))
    seen = [r.invoice_id for p in (first, second, *rest) for r in p.records]
    assert sorted(seen) == sorted(invoices)  # every invoice once: nothing skipped, nothing twice
    assert rest[-1].next_cursor is None and all(p.next_cursor for p in rest[:-1])


def test_payments_are_not_listed_by_bc_api_v2(env, erp):
    with pytest.raises(NotSupported, match="customer ledger entries"):
        next(erp.read_changes(_account(env), SyncEntity.PAYMENTS, SyncCursor(), 10))


def test_documents_pdfs_accounts_and_companies(env, erp):
    account = _account(env)
    order = next(d for d in env.company.tables["orders"].by_id.values() if d.payment_method_code)
    doc = erp.read_document(account, DocumentType.SALES_ORDER, order.id)
    assert (doc.number, doc.payment_method_code, len(doc.lines)) == (order.number, order.payment_method_code,
                                                                      len(order.lines))
    assert erp.read_document(account, DocumentType.SALES_INVOICE, order.id) is None  # wrong type

    posted = next(d for d in env.company.tables["invoices"].by_id.values() if d.posted)
    assert erp.read_invoice_pdf(account, posted.id).startswith(b"%PDF-")
    with pytest.raises(RemoteNotFound):
        erp.read_invoice_pdf(account, "00000000-0000-0000-0000-0000000000aa")

    kinds = {(a.kind, a.number) for a in erp.list_ledger_accounts(account)}
    assert ("gl_account", "10900") in kinds and ("bank_account", "CHECKING") in kinds
    [company] = erp.list_companies(Account(plugin=NAME, settings=env.settings(company_id="")))
    assert (company.company_id, company.name) == (env.company.id, env.company.name)


def test_record_payment_twice_posts_once(env, erp):
    account = _account(env)
    inv = next(d for d in sorted(env.company.tables["invoices"].by_id.values(), key=lambda d: d.number)
               if d.posted and d.remaining > 10 and not d.currency)
    clearing = next(a for a in env.company.tables["accounts"].by_id.values() if a.number == "10900")
    request = RecordPaymentRequest(
        idempotency_key="k-1", document_number="PWPTEST0001", customer_id=inv.customer.id, invoice_id=inv.id,
        amount=Money(amount=Decimal("10.00"), currency=env.company.lcy), posting_date=datetime.now(UTC).date(),
        payments_account_id=clearing.id)
    first = erp.record_payment(account, request)
    again = erp.record_payment(account, request)
    assert (first.already_existed, again.already_existed) == (False, True)
    assert first.entry_ids == again.entry_ids
    assert sum(1 for e in env.company.cust_ledger if e.document_number == "PWPTEST0001") == 1


def test_parse_notification_checks_the_client_state(env, erp):
    account = _account(env)
    body = (f'{{"value":[{{"subscriptionId":"s1","clientState":"secret-1","changeType":"updated",'
            f'"resource":"api/v2.0/companies({env.company.id})/salesInvoices(00000000-0000-0000-0000-000000000001)",'
            f'"expirationDateTime":"2026-03-05T00:00:00Z","lastModifiedDateTime":"2026-03-02T00:00:00Z"}}]}}').encode()
    request = WebhookRequest(headers={"Content-Type": "application/json"}, body=body, received_at=datetime.now(UTC))
    assert erp.parse_notification(account, request, "secret-1") == [SyncEntity.INVOICES]
    with pytest.raises(WebhookVerificationFailed):
        erp.parse_notification(account, request, "secret-2")


def test_an_unreadable_row_is_the_contracts_invalid_request(env, erp, monkeypatch):
    def broken(row):
        raise MappingError("row without 'id'")

    monkeypatch.setitem(connector_module.STREAMS, SyncEntity.CUSTOMERS, ("customers", None, broken))
    with pytest.raises(InvalidRequest) as caught:
        next(erp.read_changes(_account(env), SyncEntity.CUSTOMERS, SyncCursor(), 10))
    assert caught.value.code == "erp_record_unreadable"


def test_one_client_per_credentials_and_a_company_is_required(env):
    a = plugin.connector_for(_account(env))
    b = plugin.connector_for(_account(env, company_id="11111111-2222-4333-8444-555555555555"))
    c = plugin.connector_for(_account(env, client_secret="another-secret"))
    try:
        assert a.client is b.client  # BC's limits count per user: one limiter for both companies
        assert c.client is not a.client
        assert plugin.connector_for(_account(env)) is a
        with pytest.raises(ConfigurationError, match="company"):
            plugin.connector_for(_account(env, company_id=""))
        with pytest.raises(ConfigurationError):
            plugin.connector_for(Account(plugin=NAME, settings=None))
    finally:
        plugin.reset_clients()


def test_the_bc_sandbox_command_starts_seeded_with_a_known_app():
    from payweave.plugins.erp_businesscentral.sandbox_env import DEFAULT_CLIENT_ID, state_from_env

    state = state_from_env({"PAYWEAVE_BC_SANDBOX_INVOICES_PER_YEAR": "5", "PAYWEAVE_BC_SANDBOX_YEARS": "1",
                            "PAYWEAVE_BC_SANDBOX_CUSTOMERS": "3", "PAYWEAVE_BC_SANDBOX_CLIENT_SECRET": "s3cret"})
    assert state.apps[DEFAULT_CLIENT_ID] == "s3cret"
    [company] = state.companies.values()
    assert len(company.tables["invoices"]) >= 5 and len(company.tables["customers"]) == 3
