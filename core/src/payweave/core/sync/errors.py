"""Typed errors of the ERP sync. Codes are stable (``payweave accounts``, the HTTP API and job
listings show them); never rename one."""
from __future__ import annotations

from payweave.core.errors import CoreError


class SyncError(CoreError):
    code = "erp_sync_error"
    http_status = 400


class ConnectionNotFound(SyncError):
    code = "erp_connection_not_found"
    http_status = 404


class ConnectionExists(SyncError):
    """``connect`` for a company that is connected to another ERP company or plugin."""

    code = "erp_connection_exists"
    http_status = 409


class SyncBusy(SyncError):
    """Another sync run holds the company's lease (retry later)."""

    code = "erp_sync_busy"
    http_status = 409
    retryable = True


class LeaseLost(SyncError):
    """This run's lease was taken over (it expired); the page was rolled back."""

    code = "erp_sync_lease_lost"
    http_status = 409
    retryable = True


class AccountSetupMissing(SyncError):
    """Write-back needs the account setup (payments, bank, fee accounts)."""

    code = "erp_account_setup_missing"
    http_status = 422
    retryable = True


class AccountSetupInvalid(SyncError):
    """A chosen account is of the wrong kind, blocked, unknown or used twice (names which)."""

    code = "erp_account_setup_invalid"
    http_status = 422


class WritebackRefused(SyncError):
    """A payment or deposit that payweave does not record in the ERP (names why)."""

    code = "erp_writeback_refused"
    http_status = 422


class WritebackNotFound(SyncError):
    code = "erp_writeback_not_found"
    http_status = 404


class WritebackBusy(SyncError):
    """Another worker is recording this entry right now."""

    code = "erp_writeback_busy"
    http_status = 409
    retryable = True


class InvoiceNotFound(SyncError):
    code = "erp_invoice_not_found"
    http_status = 404
