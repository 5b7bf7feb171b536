"""What the dashboard pages show, gathered from the public services (ERP sync, engine, jobs).

Every function takes the session's ``company_id`` and reads only that company's rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from payweave.core.engine import PaymentEngine, TransactionView, TxStatus
from payweave.core.jobs.queue import JobKind, JobStatus, JobView
from payweave.core.store import JobRow, TransactionRow
from payweave.core.sync import ConnectionNotFound, ConnectionView, ErpSyncService, SyncStatus
from payweave.core.sync.jobs import ACTION_SYNC
from payweave.core.sync.jobs import KIND as ERP_JOB_KIND
from payweave.hooks.errors import NotSupported, PayweaveError
from payweave.hooks.models import DocumentType, ErpCompany, LedgerAccount, PluginKind

PHASE_TITLES = {
    "recent": "Last 12 months",
    "history": "All history",
    "full": "Full re-read",
    "delta": "Changes",
}
ENTITY_TITLES = {
    "customers": "Customers",
    "invoices": "Invoices",
    "credit_memos": "Credit memos",
    "payments": "Payments",
    "document_events": "Document events",
    "pdfs": "Invoice PDFs",
}
STATUS_TITLES = {"pending": "Pending", "connected": "Connected", "error": "Error"}
DOCUMENT_TYPE_TITLES = {
    DocumentType.SALES_ORDER.value: "Sales order",
    DocumentType.SALES_INVOICE.value: "Sales invoice",
    DocumentType.SALES_RETURN_ORDER.value: "Sales return order",
    DocumentType.SALES_CREDIT_MEMO.value: "Sales credit memo",
}
JOB_KIND_TITLES = {
    JobKind.CAPTURE.value: "Capture",
    JobKind.REFUND.value: "Refund",
    JobKind.LATE_CAPTURE.value: "Late capture",
    JobKind.RENEW_RESERVATION.value: "Reservation renewal",
    JobKind.RENEWAL_SCAN.value: "Renewal scan",
    JobKind.RECOVER_OPERATION.value: "Recover PSP call",
    JobKind.EXPIRE_RESERVATION.value: "Reservation expiry",
    JobKind.ERP_SYNC.value: "ERP sync",
}
#: A queued sync due within this is "about to run" (the page keeps refreshing).
SOON = timedelta(seconds=30)


@dataclass(frozen=True)
class ProgressRow:
    phase: str
    entity: str
    records: int
    pages: int
    done: bool
    note: str

    @property
    def phase_title(self) -> str:
        return PHASE_TITLES.get(self.phase, self.phase)

    @property
    def entity_title(self) -> str:
        return ENTITY_TITLES.get(self.entity, self.entity.replace("_", " ").capitalize())


@dataclass
class Integration:
    """The ERP module on the Integrations page."""

    plugin: str | None
    title: str
    problem: str | None = None
    """Why nothing can be connected (no ERP plugin, account not configured)."""
    connection: ConnectionView | None = None
    status: SyncStatus | None = None
    companies: list[ErpCompany] = field(default_factory=list)
    companies_problem: str | None = None
    sync_job: JobView | None = None
    """The sync job queued or running now (or about to run)."""
    failed_job: JobView | None = None
    """The last sync job that failed after the connection's last successful sync."""
    progress: list[ProgressRow] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.connection is None:
            return "not_connected"
        return self.connection.status

    @property
    def state_title(self) -> str:
        return STATUS_TITLES.get(self.state, "Not connected")

    @property
    def busy(self) -> bool:
        """True while something is about to change (the status card keeps refreshing)."""
        if self.connection is not None and self.connection.status == "pending":
            return True
        return self.sync_job is not None


def erp_plugin(engine: PaymentEngine) -> tuple[str | None, str, str | None]:
    erps = engine.plugins.active(PluginKind.ERP)
    if not erps:
        return None, "ERP", "No ERP plugin is loaded, so there is nothing to connect (install payweave-erp-businesscentral)."
    plugin = erps[0]
    title = plugin.info.title if plugin.info else plugin.name
    return plugin.name, title, None


def erp_companies(engine: PaymentEngine, plugin: str) -> list[ErpCompany]:
    """The ERP companies the configured ERP account can see (for the Connect dropdown)."""
    account = engine.plugins.account(plugin, "default")
    try:
        return list(engine.plugins.erp(plugin).list_companies(account))
    except NotSupported:
        return []


def _sync_jobs(engine: PaymentEngine, company_id: str, *statuses: JobStatus) -> list[JobView]:
    """The company's ERP sync jobs in ``statuses``, read in one statement: a job the worker
    claims meanwhile is seen either pending or running, never neither."""
    query = (select(JobRow).where(JobRow.company_id == company_id, JobRow.kind == ERP_JOB_KIND,
                                  JobRow.status.in_([s.value for s in statuses]))
             .order_by(JobRow.due_at, JobRow.id).limit(200))
    with engine.store.transaction() as s:
        jobs = [JobView.of(row) for row in s.scalars(query)]
    return [j for j in jobs if (j.payload or {}).get("action", ACTION_SYNC) == ACTION_SYNC]


def sync_job_since(engine: PaymentEngine, company_id: str, since: datetime) -> JobView | None:
    """The newest ERP sync job of the company created at or after ``since`` (in any state)."""
    jobs = [j for j in _sync_jobs(engine, company_id, *JobStatus) if j.created_at >= since]
    return max(jobs, key=lambda j: j.id, default=None)


def integration(engine: PaymentEngine, sync: ErpSyncService, company_id: str, *, with_companies: bool) -> Integration:
    plugin, title, problem = erp_plugin(engine)
    info = Integration(plugin=plugin, title=title, problem=problem)
    try:
        info.status = sync.status(company_id)
        info.connection = info.status.connection
    except ConnectionNotFound:
        info.connection = None
    if info.connection is not None:
        conn = info.connection
        for phase, entities in (conn.progress or {}).items():
            for entity, counters in entities.items():
                info.progress.append(ProgressRow(
                    phase=phase, entity=entity, records=int(counters.get("records", 0)),
                    pages=int(counters.get("pages", 0)), done=bool(counters.get("done")), note=str(counters.get("note") or "")))
        phases, entities = list(PHASE_TITLES), list(ENTITY_TITLES)
        info.progress.sort(key=lambda r: (phases.index(r.phase) if r.phase in phases else 99,
                                          entities.index(r.entity) if r.entity in entities else 99, r.entity))
        now = engine.clock.now()
        active = _sync_jobs(engine, company_id, JobStatus.RUNNING, JobStatus.PENDING)
        running = [j for j in active if j.status is JobStatus.RUNNING]
        pending = [j for j in active if j.status is JobStatus.PENDING and j.due_at <= now + SOON]
        info.sync_job = (running or pending or [None])[0]
        failed = _sync_jobs(engine, company_id, JobStatus.FAILED)
        if failed:
            last = max(failed, key=lambda j: j.finished_at or j.updated_at)
            finished = last.finished_at or last.updated_at
            ok_at = conn.last_sync_finished_at if conn.last_sync_outcome == "ok" else None
            if ok_at is None or finished > ok_at:
                info.failed_job = last
    elif plugin is not None and with_companies:
        try:
            info.companies = erp_companies(engine, plugin)
        except PayweaveError as exc:
            info.companies_problem = exc.message
    return info


# ------------------------------------------------------------------------------ accounts
@dataclass
class AccountChoices:
    gl_accounts: list[LedgerAccount] = field(default_factory=list)
    bank_accounts: list[LedgerAccount] = field(default_factory=list)
    problem: str | None = None


def account_choices(sync: ErpSyncService, company_id: str) -> AccountChoices:
    choices = AccountChoices()
    try:
        accounts = sync.ledger_accounts(company_id)
    except PayweaveError as exc:
        choices.problem = f"The ERP's accounts could not be read: {exc.message}"
        return choices
    key = lambda a: (a.number, a.name)  # noqa: E731
    choices.gl_accounts = sorted((a for a in accounts if a.kind == "gl_account"), key=key)
    choices.bank_accounts = sorted((a for a in accounts if a.kind == "bank_account"), key=key)
    return choices


# ------------------------------------------------------------------------------ transactions
@dataclass(frozen=True)
class TransactionFilter:
    status: str | None = None
    document_type: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    document_number: str | None = None
    limit: int = 100

    def as_query(self) -> dict[str, str]:
        out = {"status": self.status or "", "document_type": self.document_type or "",
               "date_from": self.date_from.isoformat() if self.date_from else "",
               "date_to": self.date_to.isoformat() if self.date_to else "",
               "document_number": self.document_number or ""}
        return out


class FilterError(ValueError):
    """A filter value that is not one of the allowed ones (names the filter)."""


def parse_filter(params: dict[str, str]) -> TransactionFilter:
    def opt(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        return value or None

    status = opt("status")
    if status is not None and status not in {s.value for s in TxStatus}:
        raise FilterError(f"Status '{status}' is not a transaction status.")
    document_type = opt("document_type")
    if document_type is not None and document_type not in DOCUMENT_TYPE_TITLES:
        raise FilterError(f"Document type '{document_type}' is not one of the sales document types.")
    dates: dict[str, date | None] = {}
    for name, caption in (("date_from", "From"), ("date_to", "To")):
        raw = opt(name)
        try:
            dates[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            raise FilterError(f"'{caption}' must be a date (YYYY-MM-DD).") from None
    number = opt("document_number")
    if number is not None and len(number) > 50:
        raise FilterError("The document number is at most 50 characters.")
    if dates["date_from"] and dates["date_to"] and dates["date_from"] > dates["date_to"]:
        raise FilterError("'From' is after 'To'.")
    return TransactionFilter(status=status, document_type=document_type, date_from=dates["date_from"],
                             date_to=dates["date_to"], document_number=number)


def transactions(engine: PaymentEngine, company_id: str, flt: TransactionFilter) -> list[TransactionView]:
    """The company's transactions matching ``flt``, newest first (views from the engine)."""
    query = select(TransactionRow.id).where(TransactionRow.company_id == company_id)
    if flt.status:
        query = query.where(TransactionRow.status == flt.status)
    if flt.document_type:
        query = query.where(TransactionRow.document_type == flt.document_type)
    if flt.document_number:
        query = query.where(TransactionRow.document_number == flt.document_number)
    if flt.date_from:
        query = query.where(TransactionRow.created_at >= datetime.combine(flt.date_from, time.min, UTC))
    if flt.date_to:
        query = query.where(TransactionRow.created_at < datetime.combine(flt.date_to + timedelta(days=1), time.min, UTC))
    query = query.order_by(TransactionRow.created_at.desc(), TransactionRow.id).limit(flt.limit)
    with engine.store.transaction() as s:
        ids = list(s.scalars(query))
    return [engine.get_transaction(company_id, tx_id, full=False) for tx_id in ids]


def jobs(engine: PaymentEngine, company_id: str, *, status: str | None, kind: str | None, limit: int = 200) -> list[JobView]:
    found = engine.jobs.list(company_id=company_id, status=status, kind=kind, limit=limit)
    if status is None:  # newest activity first when showing every state
        found.sort(key=lambda j: j.updated_at, reverse=True)
    return found


def job_subject(job: JobView) -> str:
    payload: dict[str, Any] = dict(job.payload or {})
    if job.kind == ERP_JOB_KIND:
        action = str(payload.get("action", ACTION_SYNC)).replace("_", " ")
        entities = payload.get("entities")
        extra = f" ({', '.join(entities)})" if entities else ""
        if payload.get("writeback_id"):
            extra = f" #{payload['writeback_id']}"
        return f"{action}{extra}"
    if payload.get("amount"):
        return f"amount {payload['amount']}"
    return ""


__all__ = [
    "AccountChoices",
    "DOCUMENT_TYPE_TITLES",
    "FilterError",
    "Integration",
    "JOB_KIND_TITLES",
    "ProgressRow",
    "TransactionFilter",
    "account_choices",
    "erp_companies",
    "integration",
    "job_subject",
    "jobs",
    "parse_filter",
    "sync_job_since",
    "transactions",
]
