"""The erp_businesscentral plugin: payweave's ERP hooks over Business Central API v2.0.

A thin adapter. The work is done by :class:`~.connector.BusinessCentralConnector` (reads,
documents, PDFs, ledger accounts), :mod:`.writeback` (customer payments and deposits, idempotent
by document number), :mod:`.subscriptions` (webhooks) and :class:`~.client.BCClient` (OAuth2,
the client-side limiter, retries, paging). This module only

* turns an :class:`~payweave.hooks.models.Account` into a connector (cached per account),
* shares one :class:`~.client.BCClient` per set of credentials, because BC's limits (6,000
  requests per 5 minutes, 5 concurrent) count per *user*, i.e. per service principal, across
  all companies it reads,
* makes sure only the contract's typed errors leave a hook.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from payweave.hooks import hookimpl
from payweave.hooks.errors import ConfigurationError, InvalidRequest
from payweave.hooks.models import (
    Account,
    DocumentType,
    ErpCompany,
    ErpRecordResult,
    LedgerAccount,
    PluginInfo,
    PluginKind,
    RecordDepositRequest,
    RecordPaymentRequest,
    SalesDocument,
    SandboxSpec,
    SyncCursor,
    SyncEntity,
    SyncPage,
    WebhookRequest,
)

from . import subscriptions
from .client import BCClient
from .connector import BusinessCentralConnector
from .mapping import MappingError
from .settings import BusinessCentralSettings

NAME = "erp_businesscentral"
TITLE = "Microsoft Dynamics 365 Business Central"

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], BCClient] = {}
_connectors: dict[tuple[Any, ...], BusinessCentralConnector] = {}


# ============================================================================================
# accounts -> clients and connectors
# ============================================================================================
def _settings(account: Account) -> BusinessCentralSettings:
    if not isinstance(account.settings, BusinessCentralSettings):
        raise ConfigurationError(
            f"Account {account.name!r} of {NAME} has no Business Central settings (tenant_id, client_id, "
            "client_secret, environment, company_id).",
            details={"plugin": NAME, "account": account.name},
        )
    return account.settings


def _client_key(s: BusinessCentralSettings) -> tuple[Any, ...]:
    """Everything that shapes a client's URLs, credentials and HTTP behaviour, except the
    company (one client serves every company of the same credentials)."""
    secret = hashlib.sha256(s.client_secret.get_secret_value().encode()).hexdigest()
    return (
        s.api_base_url, s.token_url, s.tenant_id, s.environment, s.include_tenant_in_url, s.companion_api_path,
        s.client_id, secret, s.scope, s.connect_timeout, s.read_timeout, s.write_timeout, s.pool_timeout,
        s.max_attempts, s.max_retry_after, s.max_concurrent_requests, s.max_requests_per_window, s.window_seconds,
        s.token_refresh_margin_seconds,
    )


def client_for(settings: BusinessCentralSettings) -> BCClient:
    """The shared client of these credentials (created on first use)."""
    key = _client_key(settings)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = BCClient(settings)
        return client


def connector_for(account: Account) -> BusinessCentralConnector:
    """The cached connector of ``account`` (its company, journals and shipping items)."""
    settings = _settings(account)
    if not settings.company_id:
        raise ConfigurationError(
            f"Account {account.name!r} of {NAME} names no company (company_id); pick one with `payweave connect`.",
            details={"plugin": NAME, "account": account.name, "setting": "company_id"},
        )
    key = (_client_key(settings), settings.company_id.lower(), settings.payments_journal_code,
           settings.deposits_journal_code, settings.shipping_item_numbers, settings.page_size)
    client = client_for(settings)
    with _lock:
        connector = _connectors.get(key)
        if connector is None:
            connector = _connectors[key] = BusinessCentralConnector(settings, client=client)
        return connector


def reset_clients() -> None:
    """Close and forget every cached client (tests; a changed secret gets a new client anyway)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
        _connectors.clear()
    for client in clients:
        client.close()


def _unreadable(entity: str, exc: MappingError) -> InvalidRequest:
    return InvalidRequest(
        f"Business Central sent a {entity} record this connector cannot read: {exc}",
        code="erp_record_unreadable", details={"entity": entity},
    )


# ============================================================================================
# identity, sandbox
# ============================================================================================
@hookimpl
def payweave_plugin_info() -> PluginInfo:
    return PluginInfo(name=NAME, kind=PluginKind.ERP, title=TITLE, settings_model=BusinessCentralSettings)


@hookimpl
def payweave_sandboxes() -> list[SandboxSpec]:
    from .sandbox_env import app_from_env

    return [
        SandboxSpec(
            command="bc-sandbox",
            description="the Business Central API v2.0 sandbox (with the payweave companion API)",
            app_factory=app_from_env,
            default_port=8790,
        )
    ]


# ============================================================================================
# ERP hooks
# ============================================================================================
@hookimpl
def erp_read_changes(account: Account, entity: SyncEntity, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
    connector = connector_for(account)
    try:
        pages = connector.read_changes(SyncEntity(entity), cursor, page_size)
    except MappingError as exc:
        raise _unreadable(str(entity), exc) from None
    return _typed_pages(str(entity), pages)


@hookimpl
def erp_read_many_changes(account: Account, cursors: dict[SyncEntity, SyncCursor], page_size: int) -> Iterator[SyncPage]:
    connector = connector_for(account)
    pages = connector.read_many_changes({SyncEntity(e): c for e, c in cursors.items()}, page_size)
    return _typed_pages(", ".join(str(e) for e in cursors), pages)


def _typed_pages(entity: str, pages: Iterator[SyncPage]) -> Iterator[SyncPage]:
    """Yield lazily (one page at a time, as the connector fetches them); a row the mapping
    cannot read becomes the contract's InvalidRequest instead of a bare ValueError."""
    try:
        yield from pages
    except MappingError as exc:
        raise _unreadable(entity, exc) from None


@hookimpl
def erp_read_document(account: Account, document_type: DocumentType, document_id: str) -> SalesDocument | None:
    try:
        return connector_for(account).read_document(DocumentType(document_type), document_id)
    except MappingError as exc:
        raise _unreadable("sales document", exc) from None


@hookimpl
def erp_read_invoice_pdf(account: Account, invoice_id: str) -> bytes:
    return connector_for(account).invoice_pdf(invoice_id)


@hookimpl
def erp_list_ledger_accounts(account: Account) -> list[LedgerAccount]:
    try:
        return connector_for(account).ledger_accounts()
    except MappingError as exc:
        raise _unreadable("account", exc) from None


@hookimpl
def erp_record_payment(account: Account, request: RecordPaymentRequest) -> ErpRecordResult:
    return connector_for(account).record_payment(request)


@hookimpl
def erp_record_deposit(account: Account, request: RecordDepositRequest) -> ErpRecordResult:
    return connector_for(account).record_deposit(request)


@hookimpl
def erp_ensure_subscriptions(account: Account, notification_url: str, client_state: str) -> datetime | None:
    return subscriptions.ensure_subscriptions(connector_for(account).company, notification_url, client_state)


@hookimpl
def erp_parse_notification(account: Account, request: WebhookRequest, client_state: str) -> list[SyncEntity]:
    return connector_for(account).entities_for_notification(request.body, client_state)


@hookimpl
def erp_list_companies(account: Account) -> list[ErpCompany]:
    client = client_for(_settings(account))
    return [
        ErpCompany(company_id=str(row["id"]).lower(), name=str(row.get("name") or ""),
                   display_name=str(row.get("displayName") or row.get("name") or ""))
        for row in client.list_companies()
    ]
