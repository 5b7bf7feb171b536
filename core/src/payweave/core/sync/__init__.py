"""The ERP sync: connections, initial and delta sync with crash-safe cursors, the sync rules,
invoice PDFs, webhook subscriptions, account setup and write-back (DESIGN sections 5 and 5a).

Start at :class:`ErpSyncService`; the CLI commands are in :mod:`payweave.core.cli.sync_cmd`, the
notification endpoint in :mod:`payweave.core.sync.routes`, the job handler in
:mod:`payweave.core.sync.jobs`. See docs/erp-sync.md.
"""
from .errors import (
    AccountSetupInvalid,
    AccountSetupMissing,
    ConnectionExists,
    ConnectionNotFound,
    InvoiceNotFound,
    LeaseLost,
    SyncBusy,
    SyncError,
    WritebackBusy,
    WritebackNotFound,
    WritebackRefused,
)
from .events import DispatchReport, DocumentEventHandler
from .jobs import erp_job_handler, enqueue_erp_job, handle_erp_job
from .progress import ProgressCallback, ProgressEvent, SyncReport
from .service import ENTITY_ORDER, ErpSyncService
from .settings import SyncSettings
from .views import AccountSetupView, ConnectionView, CursorView, InvoiceView, SyncStatus, WritebackView
from .writeback import document_number

__all__ = [
    "ENTITY_ORDER",
    "AccountSetupInvalid",
    "AccountSetupMissing",
    "AccountSetupView",
    "ConnectionExists",
    "ConnectionNotFound",
    "ConnectionView",
    "CursorView",
    "DispatchReport",
    "DocumentEventHandler",
    "ErpSyncService",
    "InvoiceNotFound",
    "InvoiceView",
    "LeaseLost",
    "ProgressCallback",
    "ProgressEvent",
    "SyncBusy",
    "SyncError",
    "SyncReport",
    "SyncSettings",
    "SyncStatus",
    "WritebackBusy",
    "WritebackNotFound",
    "WritebackRefused",
    "WritebackView",
    "document_number",
    "enqueue_erp_job",
    "erp_job_handler",
    "handle_erp_job",
]
