"""Write-back to the ERP: captured payments (a customer payment applied to its invoice, posted)
and PSP payouts (a deposit: clearing -> bank, fees to the fee account).

The protocol (no lost payment, no double posting):

1. **Intent first.** :func:`create_payment_writeback` / :func:`create_deposit_writeback` write an
   ``erp_writebacks`` row in the caller's transaction (the engine can do it in the same
   transaction as the capture). Its ``document_number`` is derived from the company, the kind and
   the source key (payment key or payout id), so it is the same on every retry and even if the
   row were written twice; a unique constraint makes the row exist once.
2. **One caller at a time.** :meth:`WritebackMixin.process_writeback` leases the row, then calls
   the plugin with that document number. The plugin finds an earlier entry by the number
   (posted or not) instead of posting twice (``erp_record_payment`` contract).
3. **Outcome.** Success -> ``posted`` with the ERP's entry ids; a transient failure keeps
   ``pending`` (the job queue retries with backoff, the same document number); a refusal ->
   ``failed`` with the ERP's reason, parked for a person.

Payment failures are never written to the ERP: :meth:`WritebackMixin.record_payment_failure`
cancels a write-back that was not sent yet and flags one that was (the partner reverses it in
the ERP by hand, as the reconciliation primer says). Invoices and customers created in payweave
are not written either: a payment for such an invoice is ``skipped``.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import Money, Payout, RecordDepositRequest, RecordPaymentRequest
from payweave.hooks.money import from_minor_units, to_minor_units

from . import rules
from .errors import (
    AccountSetupMissing,
    InvoiceNotFound,
    WritebackBusy,
    WritebackNotFound,
    WritebackRefused,
)
from .models import ErpAccountSetupRow, ErpInvoiceRow, ErpWritebackRow
from .views import WritebackView

if TYPE_CHECKING:
    from .service import ErpSyncService

KIND_PAYMENT = "payment"
KIND_DEPOSIT = "deposit"
_PREFIX = {KIND_PAYMENT: "PWP", KIND_DEPOSIT: "PWD"}


def document_number(company_id: str, kind: str, source_key: str) -> str:
    """The ERP document number of a write-back: ``PWP``/``PWD`` + 13 base32 characters of
    sha256(company, kind, source key). 16 characters (BC allows 20), upper case, stable."""
    digest = hashlib.sha256(f"{company_id}\x1f{kind}\x1f{source_key}".encode()).digest()
    return _PREFIX[kind] + base64.b32encode(digest).decode()[:13]


def _invoice_writebacks(session: Session, company_id: str, invoice_id: str) -> list[ErpWritebackRow]:
    return list(session.scalars(select(ErpWritebackRow).where(
        ErpWritebackRow.company_id == company_id, ErpWritebackRow.kind == KIND_PAYMENT,
        ErpWritebackRow.invoice_id == invoice_id, ErpWritebackRow.status.in_(rules.LIVE_WRITEBACK))))


def _insert_once(session: Session, row: ErpWritebackRow) -> ErpWritebackRow | None:
    """Insert ``row``; None when a concurrent caller inserted the same (company, kind, key)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def _existing(session: Session, company_id: str, kind: str, source_key: str) -> ErpWritebackRow | None:
    return session.scalars(select(ErpWritebackRow).where(
        ErpWritebackRow.company_id == company_id, ErpWritebackRow.kind == kind,
        ErpWritebackRow.source_key == source_key).with_for_update()).first()


def create_payment_writeback(
    session: Session, company_id: str, *, payment_key: str, invoice_id: str, amount: Money, posting_date: date,
    now: datetime, customer_id: str | None = None, external_reference: str = "", description: str = "",
) -> ErpWritebackRow:
    """Record (once per ``payment_key``) that a captured payment must be written to the ERP, and
    apply it to the invoice in payweave (open amount; paid through payweave when covered)."""
    if amount.amount <= 0:
        raise WritebackRefused("Only a positive captured amount is recorded in the ERP.",
                               details={"amount": str(amount.amount)})
    existing = _existing(session, company_id, KIND_PAYMENT, payment_key)
    if existing is not None:
        return _same_payment(existing, invoice_id, amount)
    invoice = session.get(ErpInvoiceRow, (company_id, invoice_id), with_for_update=True)
    status, reason = "pending", None
    if invoice is not None:
        if invoice.currency != amount.currency:
            raise WritebackRefused(
                f"The payment is in {amount.currency} but invoice {invoice.number} is in {invoice.currency}.",
                details={"invoice_id": invoice_id, "currency": amount.currency})
        customer_id = invoice.customer_id
        if invoice.origin == rules.ORIGIN_PAYWEAVE:
            status = "skipped"
            reason = (f"Invoice {invoice.number} was created in payweave; payweave never writes it (or its payments) "
                      "to the ERP.")
    elif not customer_id:
        raise InvoiceNotFound(
            f"Invoice {invoice_id} has not been synced from the ERP yet; pass the customer id or sync first.",
            details={"invoice_id": invoice_id})
    row = ErpWritebackRow(
        company_id=company_id, kind=KIND_PAYMENT, source_key=payment_key[:200],
        document_number=document_number(company_id, KIND_PAYMENT, payment_key), status=status,
        invoice_id=invoice_id, invoice_number=invoice.number if invoice else "", customer_id=customer_id,
        amount_minor=amount.minor_units, currency=amount.currency, posting_date=posting_date,
        external_reference=external_reference[:100], description=description[:250], attempts=0, entry_ids=[],
        observed_in_erp=False, last_error_code="invoice_created_in_payweave" if reason else None, last_error=reason,
        created_at=now, updated_at=now, completed_at=now if status == "skipped" else None,
    )
    row.idempotency_key = f"erp-writeback:{row.document_number}"
    inserted = _insert_once(session, row)
    if inserted is None:
        existing = _existing(session, company_id, KIND_PAYMENT, payment_key)
        assert existing is not None
        return _same_payment(existing, invoice_id, amount)
    if invoice is not None and invoice.origin == rules.ORIGIN_ERP:
        was_open = invoice.open_minor
        rules.recompute_open(invoice, _invoice_writebacks(session, company_id, invoice_id))
        if was_open > 0 and invoice.open_minor == 0:
            invoice.paid_via_payweave = True
            invoice.payweave_paid_at = now
            invoice.status = "paid"
        invoice.updated_at = now
    return row


def _same_payment(row: ErpWritebackRow, invoice_id: str, amount: Money) -> ErpWritebackRow:
    if row.invoice_id != invoice_id or row.amount_minor != amount.minor_units or row.currency != amount.currency:
        raise WritebackRefused(
            f"Payment key {row.source_key!r} was recorded before for another invoice or amount "
            f"({row.invoice_id}, {from_minor_units(row.amount_minor, row.currency)} {row.currency}).",
            details={"source_key": row.source_key})
    return row


def create_deposit_writeback(session: Session, company_id: str, payout: Payout, *, posting_date: date,
                             now: datetime) -> ErpWritebackRow:
    if payout.status != "paid":
        raise WritebackRefused(
            f"Payout {payout.payout_id} is {payout.status}; only paid payouts are recorded as deposits (a failed "
            "payout is never written to the ERP).", details={"payout_id": payout.payout_id, "status": payout.status})
    existing = _existing(session, company_id, KIND_DEPOSIT, payout.payout_id)
    if existing is not None:
        return existing
    row = ErpWritebackRow(
        company_id=company_id, kind=KIND_DEPOSIT, source_key=payout.payout_id[:200],
        document_number=document_number(company_id, KIND_DEPOSIT, payout.payout_id), status="pending",
        amount_minor=to_minor_units(payout.net, payout.currency), currency=payout.currency.upper(),
        posting_date=posting_date, external_reference=payout.payout_id[:100],
        description=f"PSP payout {payout.payout_id}"[:250], payout=payout.model_dump(mode="json"), attempts=0,
        entry_ids=[], observed_in_erp=False, created_at=now, updated_at=now,
    )
    row.idempotency_key = f"erp-writeback:{row.document_number}"
    inserted = _insert_once(session, row)
    if inserted is None:
        found = _existing(session, company_id, KIND_DEPOSIT, payout.payout_id)
        assert found is not None
        return found
    return row


class WritebackMixin:
    """Write-back methods of :class:`~payweave.core.sync.service.ErpSyncService`."""

    def record_payment(
        self: ErpSyncService, company_id: str, *, payment_key: str, invoice_id: str, amount: Money,
        posting_date: date | None = None, customer_id: str | None = None, external_reference: str = "",
        description: str = "", process: bool = True,
    ) -> WritebackView:
        """Record a captured payment in the ERP (once per ``payment_key``).

        The write-back row (with its document number) commits before the plugin is called; with
        ``process`` the call follows at once. A transient ERP failure leaves it ``pending`` (a
        job retries it when the service has a queue); the returned view says where it stands.
        """
        self._connection_row(company_id)
        now = self.clock.now()
        with self.store.transaction() as s:
            row = create_payment_writeback(
                s, company_id, payment_key=payment_key, invoice_id=invoice_id.lower(), amount=amount,
                posting_date=posting_date or now.date(), now=now, customer_id=customer_id,
                external_reference=external_reference, description=description)
            if self.queue is not None and row.status == "pending" and not process:
                self._enqueue_writeback_job(s, row)
            wid, status = row.id, row.status
        if process and status == "pending":
            return self._process_or_defer(wid)
        return self.writeback(wid)

    def record_deposit(self: ErpSyncService, company_id: str, payout: Payout, *, posting_date: date | None = None,
                       process: bool = True) -> WritebackView:
        """Record a paid PSP payout as a deposit (once per payout id)."""
        self._connection_row(company_id)
        now = self.clock.now()
        with self.store.transaction() as s:
            row = create_deposit_writeback(s, company_id, payout, posting_date=posting_date or payout.arrival_date,
                                           now=now)
            if self.queue is not None and row.status == "pending" and not process:
                self._enqueue_writeback_job(s, row)
            wid, status = row.id, row.status
        if process and status == "pending":
            return self._process_or_defer(wid)
        return self.writeback(wid)

    def record_payouts(self: ErpSyncService, company_id: str, psp: str, *, psp_account: str = "default",
                       since: datetime | None = None, process: bool = True) -> list[WritebackView]:
        """Record the PSP's paid payouts (created after ``since``) as deposits, once each (by
        payout id). Pending and in-transit payouts are left for a later run; failed and canceled
        ones are never written to the ERP."""
        self._connection_row(company_id)
        client = self.plugins.psp(psp)
        payouts = client.list_payouts(self.plugins.account(psp, psp_account), since)
        return [self.record_deposit(company_id, p, process=process) for p in payouts if p.status == "paid"]

    def _process_or_defer(self: ErpSyncService, writeback_id: int) -> WritebackView:
        try:
            return self.process_writeback(writeback_id)
        except PayweaveError as exc:
            if exc.retryable and self.queue is not None:
                with self.store.transaction() as s:
                    row = s.get(ErpWritebackRow, writeback_id)
                    if row is not None and row.status == "pending":
                        retry = getattr(exc, "retry_after", None)
                        self._enqueue_writeback_job(s, row, delay=retry.total_seconds() if retry else 30.0)
            self.log.warning("erp.writeback.deferred" if exc.retryable else "erp.writeback.failed",
                             writeback=writeback_id, code=exc.code, error=exc.message)
            return self.writeback(writeback_id)

    def record_payment_failure(self: ErpSyncService, company_id: str, payment_key: str, reason: str = "") -> WritebackView:
        """A captured payment failed afterwards (e.g. a returned direct debit). Never written to
        the ERP: a write-back not sent yet is cancelled; one already posted is flagged for a
        manual reversal in the ERP. The invoice is open again in payweave."""
        now = self.clock.now()
        with self.store.transaction() as s:
            row = _existing(s, company_id, KIND_PAYMENT, payment_key)
            if row is None:
                raise WritebackNotFound(f"No payment {payment_key!r} was recorded for {company_id}.",
                                        details={"payment_key": payment_key})
            if row.payment_failed_at is None:
                row.payment_failed_at = now
                row.payment_failure_reason = reason[:1000] or "payment failed"
                if row.status == "pending":
                    row.status = "cancelled"
                    row.completed_at = now
                    row.last_error_code = "payment_failed"
                    row.last_error = "The payment failed before it was written to the ERP; nothing was recorded there."
                elif row.status == "posted":
                    row.last_error_code = "payment_failed_after_posting"
                    row.last_error = (f"The payment failed after it was posted in the ERP as {row.document_number}; "
                                      "payweave does not write failures back: reverse it in the ERP by hand.")
                row.updated_at = now
                if row.invoice_id:
                    invoice = s.get(ErpInvoiceRow, (company_id, row.invoice_id), with_for_update=True)
                    if invoice is not None and invoice.origin == rules.ORIGIN_ERP:
                        rules.recompute_open(invoice, _invoice_writebacks(s, company_id, row.invoice_id))
                        invoice.updated_at = now
            return WritebackView.of(row)

    def process_writeback(self: ErpSyncService, writeback_id: int) -> WritebackView:
        """Send one pending write-back to the ERP (see the module docstring)."""
        owner = self._owner_id()
        now = self.clock.now()
        missing_setup: AccountSetupMissing | None = None
        with self.store.transaction() as s:
            row = s.get(ErpWritebackRow, writeback_id, with_for_update=True)
            if row is None:
                raise WritebackNotFound(f"There is no write-back {writeback_id}.", details={"id": writeback_id})
            if row.status != "pending":
                return WritebackView.of(row)
            if row.lease_owner and row.lease_expires_at and row.lease_expires_at > now:
                raise WritebackBusy(f"Write-back {row.document_number} is being recorded by {row.lease_owner}.")
            setup = s.get(ErpAccountSetupRow, row.company_id)
            if setup is None:
                # commit the reason (the row stays pending; saving the setup retries it)
                row.last_error_code = AccountSetupMissing.code
                row.last_error = "Set up the ERP accounts (payments, bank, fee) before payments can be recorded."
                row.updated_at = now
                missing_setup = AccountSetupMissing(
                    f"Write-back {row.document_number} waits for the account setup of {row.company_id} "
                    "(`payweave accounts --payments ... --bank ... --fee ...`).", details={"company_id": row.company_id})
            else:
                request = self._writeback_request(row, setup)
        if missing_setup is not None:
            raise missing_setup
        with self.store.transaction() as s:
            row = s.get(ErpWritebackRow, writeback_id, with_for_update=True)
            assert row is not None
            if row.status != "pending":
                return WritebackView.of(row)
            if row.lease_owner and row.lease_expires_at and row.lease_expires_at > now:
                raise WritebackBusy(f"Write-back {row.document_number} is being recorded by {row.lease_owner}.")
            row.lease_owner = owner
            row.lease_expires_at = now + timedelta(seconds=self.settings.writeback_lease_seconds)
            row.attempts += 1
            row.updated_at = now
            company_id, kind, doc_no = row.company_id, row.kind, row.document_number
        erp, account = self._erp(company_id)
        try:
            if kind == KIND_PAYMENT:
                result = erp.record_payment(account, request)  # type: ignore[arg-type]
            else:
                result = erp.record_deposit(account, request)  # type: ignore[arg-type]
        except PayweaveError as exc:
            self._writeback_failed(writeback_id, owner, exc)
            raise
        done = self.clock.now()
        with self.store.transaction() as s:
            row = s.get(ErpWritebackRow, writeback_id, with_for_update=True)
            assert row is not None
            # Posted in the ERP is the truth, whatever happened to the row meanwhile (a failure
            # recorded while the call ran keeps its flag and asks for a manual reversal).
            row.status = "posted"
            row.entry_ids = list(result.entry_ids)
            row.already_existed = result.already_existed
            row.last_error_code = row.last_error_code if row.payment_failed_at else None
            row.last_error = row.last_error if row.payment_failed_at else None
            row.lease_owner = None
            row.lease_expires_at = None
            row.completed_at = done
            row.updated_at = done
            if result.document_number.upper() != doc_no.upper():
                self.log.warning("erp.writeback.number_changed", expected=doc_no, got=result.document_number)
            view = WritebackView.of(row)
        self.log.info("erp.writeback.posted", kind=kind, document_number=doc_no, already_existed=result.already_existed)
        return view

    def _writeback_failed(self: ErpSyncService, writeback_id: int, owner: str, exc: PayweaveError) -> None:
        now = self.clock.now()
        with self.store.transaction() as s:
            row = s.get(ErpWritebackRow, writeback_id, with_for_update=True)
            if row is None or row.lease_owner != owner:
                return
            row.lease_owner = None
            row.lease_expires_at = None
            row.last_error_code = exc.code
            row.last_error = exc.message[:2000]
            row.updated_at = now
            if not exc.retryable and row.status == "pending":
                row.status = "failed"
                row.completed_at = now

    def _writeback_request(self: ErpSyncService, row: ErpWritebackRow,
                           setup: ErpAccountSetupRow) -> RecordPaymentRequest | RecordDepositRequest:
        if row.kind == KIND_PAYMENT:
            return RecordPaymentRequest(
                idempotency_key=row.idempotency_key, document_number=row.document_number,
                customer_id=row.customer_id or "", invoice_id=row.invoice_id or "", invoice_number=row.invoice_number,
                amount=Money(amount=from_minor_units(row.amount_minor, row.currency), currency=row.currency),
                posting_date=row.posting_date, payments_account_id=setup.payments_account_id,
                description=row.description or f"payweave payment {row.document_number}",
                external_reference=row.external_reference,
            )
        return RecordDepositRequest(
            idempotency_key=row.idempotency_key, document_number=row.document_number,
            payout=Payout.model_validate(row.payout), posting_date=row.posting_date,
            clearing_account_id=setup.payments_account_id, bank_account_id=setup.bank_account_id,
            fee_account_id=setup.fee_account_id,
        )

    def writeback(self: ErpSyncService, writeback_id: int) -> WritebackView:
        with self.store.transaction() as s:
            row = s.get(ErpWritebackRow, writeback_id)
            if row is None:
                raise WritebackNotFound(f"There is no write-back {writeback_id}.", details={"id": writeback_id})
            return WritebackView.of(row)

    def writebacks(self: ErpSyncService, company_id: str, *, status: str | None = None) -> list[WritebackView]:
        query = select(ErpWritebackRow).where(ErpWritebackRow.company_id == company_id)
        if status is not None:
            query = query.where(ErpWritebackRow.status == status)
        with self.store.transaction() as s:
            return [WritebackView.of(r) for r in s.scalars(query.order_by(ErpWritebackRow.id))]

    def process_pending_writebacks(self: ErpSyncService, company_id: str) -> list[WritebackView]:
        """Try every pending write-back of the company once (the CLI's ``payweave sync`` does)."""
        out = []
        for view in self.writebacks(company_id, status="pending"):
            out.append(self._process_or_defer(view.id))
        return out

    def retry_stale_writebacks(self: ErpSyncService, company_id: str) -> list[int]:
        """Pick up write-backs left ``pending`` with nobody on them: the process that created or
        leased one died before it finished (its lease has run out), or it was deferred without a
        queue. With a queue, each gets a write-back job (unless one is pending already, whose
        due time, e.g. a Retry-After, is kept); without one, each is tried now. Runs after every
        sync (:func:`payweave.core.reconcile.reconcile_company`), so a payment whose recording
        was cut short reaches the ERP one polling interval after its lease ran out. Returns the
        ids picked up. Never sends an entry twice: the call leases the row, and the ERP side
        finds an entry already posted under the same document number."""
        from .jobs import ACTION_WRITEBACK, _pending

        now = self.clock.now()
        picked: list[int] = []
        with self.store.transaction() as s:
            rows = s.scalars(select(ErpWritebackRow).where(
                ErpWritebackRow.company_id == company_id, ErpWritebackRow.status == "pending",
                (ErpWritebackRow.lease_expires_at.is_(None)) | (ErpWritebackRow.lease_expires_at <= now),
            ).order_by(ErpWritebackRow.id)).all()
            for row in rows:
                if self.queue is not None:
                    if _pending(s, company_id, ACTION_WRITEBACK, writeback_id=row.id) is None:
                        self._enqueue_writeback_job(s, row)
                        picked.append(row.id)
                else:
                    picked.append(row.id)
        if self.queue is None:
            for writeback_id in picked:
                self._process_or_defer(writeback_id)
        if picked:
            self.log.info("erp.writeback.resumed", company=company_id, writebacks=picked)
        return picked

    def _enqueue_writeback_job(self: ErpSyncService, session: Session, row: ErpWritebackRow,
                               delay: float = 0.0) -> Any:
        from .jobs import ACTION_WRITEBACK, enqueue_erp_job

        assert self.queue is not None
        return enqueue_erp_job(self.queue, session, company_id=row.company_id, action=ACTION_WRITEBACK,
                               due_at=self.clock.now() + timedelta(seconds=delay), writeback_id=row.id)
