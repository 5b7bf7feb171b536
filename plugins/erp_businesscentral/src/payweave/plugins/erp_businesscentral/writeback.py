"""Write-back to BC: customer payments applied to invoices, and PSP payouts as deposits.

Both are idempotent by the document number the core chooses (unique per payment / payout):

1. If G/L entries with that document number exist, it is posted already: return them
   (``already_existed=True`` when that was so before this call wrote anything).
2. Otherwise find our unposted journal line(s) by document number in the payweave batch;
   create what is missing (never a second copy).
3. Post the batch with ``journals({id})/Microsoft.NAV.post``.

Any write whose outcome is unknown (timeout or broken connection after sending, 5xx) is not
repeated blindly: the next round starts again at step 1, so a retry after "posted, but the
response was lost" finds the G/L entries and never posts twice. Rounds are bounded.

Payments use a customer payment journal batch (``settings.payments_journal_code``) whose
balancing account is the payments (clearing) account, so each line balances itself. Deposits
use a general journal batch (``settings.deposits_journal_code``) with three lines *without*
balancing accounts: bank +net, fee account +fee, clearing -gross. They balance only together,
so BC can never post half a deposit. Journal lines in API v2.0 carry no currency, so both
helpers accept only amounts in the currency BC reports for the invoice / bank account.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import structlog
from payweave.hooks.errors import InvalidRequest
from payweave.hooks.models import ErpRecordResult, RecordDepositRequest, RecordPaymentRequest

from .client import BLANK_GUID, BCCompany, odata_string
from .conventions import CUSTOMER_PAYMENT_BATCH_POST_SET
from .errors import BCError, BCNotFound, BCRequestError, BCUnavailable
from .settings import BusinessCentralSettings

log = structlog.get_logger("payweave.plugins.erp_businesscentral.writeback")

MAX_ROUNDS = 4
NOTHING_TO_POST = "There is nothing to post."


class WriteBackConflict(BCRequestError):
    """BC holds an entry with our document number that does not match what we would write."""


def _unsettled(exc: Exception) -> bool:
    """True for outcomes after which the write may or may not have happened."""
    return isinstance(exc, BCUnavailable)


def _amount(value: Any) -> Decimal:
    return Decimal(value) if not isinstance(value, Decimal) else value


def gl_entries(company: BCCompany, document_number: str, document_type: str | None = None) -> list[dict[str, Any]]:
    flt = f"documentNumber eq {odata_string(document_number)}"
    if document_type:
        flt += f" and documentType eq {odata_string(document_type)}"
    return list(company.entities("generalLedgerEntries", filter=flt))


def _by_code(company: BCCompany, entity_set: str, code: str) -> dict[str, Any] | None:
    return company.first(entity_set, f"code eq {odata_string(code)}")


def _ensure(create: Callable[[], dict[str, Any]], find: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """Create a batch unless it exists; settle races and ambiguous creates by re-reading."""
    found = find()
    if found is not None:
        return found
    try:
        return create()
    except BCError as exc:
        if not (_unsettled(exc) or exc.bc_code == "Internal_EntityWithSameKeyExists"):
            raise
    found = find()
    if found is None:
        raise BCUnavailable("Could not create the payweave journal batch in Business Central; will retry.")
    return found


def ensure_payment_journal(company: BCCompany, code: str, balancing_account_id: str) -> dict[str, Any]:
    """The customer payment journal batch ``code``, balancing against the payments account."""
    journal = _ensure(
        lambda: company.create("customerPaymentJournals", {"code": code, "displayName": "payweave payments",
                                                           "balancingAccountId": balancing_account_id}),
        lambda: _by_code(company, "customerPaymentJournals", code),
    )
    if str(journal.get("balancingAccountId", "")).lower() != balancing_account_id.lower():
        journal = company.update(f"customerPaymentJournals({journal['id']})", journal["@odata.etag"],
                                 {"balancingAccountId": balancing_account_id})
    return journal


def ensure_general_journal(company: BCCompany, code: str) -> dict[str, Any]:
    return _ensure(
        lambda: company.create("journals", {"code": code, "displayName": "payweave deposits"}),
        lambda: _by_code(company, "journals", code),
    )


def _check_payments_account(company: BCCompany, account_id: str) -> None:
    if company.get(f"accounts({account_id})") is None:
        raise InvalidRequest(
            "The payments account must be a G/L account: customer payment journals in Business Central balance "
            "against a G/L account.", details={"payments_account_id": account_id})


def record_payment(company: BCCompany, request: RecordPaymentRequest, settings: BusinessCentralSettings) -> ErpRecordResult:
    """Record ``request`` as a customer payment applied to its invoice, posted; idempotent."""
    doc_no = request.document_number.upper()
    amount = request.amount.amount
    if amount <= 0:
        raise InvalidRequest("A payment to record must be positive.", details={"amount": str(amount)})
    bc_amount = settings.payment_amount_sign * amount
    invoice_id = request.invoice_id.lower()

    def done(found_before_writing: bool) -> ErpRecordResult | None:
        posted = gl_entries(company, doc_no, "Payment")
        if not posted:
            return None
        log.info("bc.payment.posted", document_number=doc_no, already_existed=found_before_writing)
        return ErpRecordResult(document_number=doc_no, entry_ids=tuple(e["id"] for e in posted),
                               already_existed=found_before_writing)

    if (result := done(True)) is not None:
        return result
    _check_payments_account(company, request.payments_account_id)
    journal = ensure_payment_journal(company, settings.payments_journal_code, request.payments_account_id)
    lines_path = f"customerPaymentJournals({journal['id']})/customerPayments"
    found_before_writing = True
    for round_no in range(1, MAX_ROUNDS + 1):
        if round_no > 1 and (result := done(found_before_writing)) is not None:
            return result
        line = company.first(lines_path, f"documentNumber eq {odata_string(doc_no)}")
        invoice = company.get(f"salesInvoices({invoice_id})")
        if invoice is None:
            raise BCNotFound(f"The invoice {request.invoice_number or invoice_id} does not exist in Business Central.")
        if str(invoice.get("currencyCode", "")).upper() != request.amount.currency:
            raise InvalidRequest(
                f"The payment is in {request.amount.currency} but invoice {invoice.get('number')} is in "
                f"{invoice.get('currencyCode')}; Business Central journal lines carry no currency in API v2.0.")
        if line is not None and (_amount(line.get("amount")) != bc_amount
                                 or str(line.get("appliesToInvoiceId", "")).lower() != invoice_id):
            raise WriteBackConflict(
                f"The payment journal already holds document {doc_no} with other values "
                f"(amount {line.get('amount')}, invoice {line.get('appliesToInvoiceNumber')}).",
                details={"document_number": doc_no})
        if invoice.get("status") != "Open" or _amount(invoice.get("remainingAmount", 0)) <= 0:
            if line is not None:  # don't leave a line behind that would block the batch
                try:
                    company.delete(f"{lines_path}({line['id']})", line["@odata.etag"])
                except BCNotFound:
                    pass
            raise InvalidRequest(
                f"Invoice {invoice.get('number')} is {invoice.get('status')} in Business Central with nothing left "
                f"to pay; payment {doc_no} was not recorded there.",
                details={"invoice_id": invoice_id, "status": invoice.get("status"), "document_number": doc_no})
        if line is None:
            found_before_writing = False
            body: dict[str, Any] = {
                "documentNumber": doc_no, "customerId": request.customer_id.lower(), "appliesToInvoiceId": invoice_id,
                "amount": bc_amount, "postingDate": request.posting_date.isoformat(),
                "description": (request.description or f"payweave payment {doc_no}")[:100],
            }
            if request.external_reference:
                body["externalDocumentNumber"] = request.external_reference[:35]
            try:
                company.create(lines_path, body)
            except BCError as exc:
                if _unsettled(exc) and round_no < MAX_ROUNDS:
                    log.warning("bc.payment.create_unsettled", document_number=doc_no, error=exc.code)
                    continue
                raise
        _post(company, f"{CUSTOMER_PAYMENT_BATCH_POST_SET}({journal['id']})", doc_no, round_no)
    if (result := done(found_before_writing)) is not None:
        return result
    raise BCUnavailable(f"Could not confirm that payment {doc_no} was posted in Business Central; will retry.")


def _post(company: BCCompany, batch_path: str, doc_no: str, round_no: int) -> None:
    """Post the batch. Outcomes that leave doubt (lost response, "nothing to post" because an
    earlier lost call already posted) return quietly: the caller re-reads the G/L entries."""
    try:
        company.action(batch_path, "post")
    except BCError as exc:
        if exc.bc_message.startswith(NOTHING_TO_POST):
            return
        if _unsettled(exc) and round_no < MAX_ROUNDS:
            log.warning("bc.post_unsettled", document_number=doc_no, error=exc.code)
            return
        raise


def record_deposit(company: BCCompany, request: RecordDepositRequest, settings: BusinessCentralSettings) -> ErpRecordResult:
    """Record a PSP payout: bank +net, fees +fee, clearing -gross; posted; idempotent."""
    doc_no = request.document_number.upper()
    payout = request.payout

    def done(found_before_writing: bool) -> ErpRecordResult | None:
        posted = gl_entries(company, doc_no)
        if not posted:
            return None
        return ErpRecordResult(document_number=doc_no, entry_ids=tuple(e["id"] for e in posted),
                               already_existed=found_before_writing)

    if (result := done(True)) is not None:
        return result
    if payout.gross == 0 and payout.fee == 0:
        raise InvalidRequest(f"Payout {payout.payout_id} has no amount to record.")
    bank = company.get(f"bankAccounts({request.bank_account_id})")
    if bank is None:
        raise BCNotFound(f"The bank account {request.bank_account_id} does not exist in Business Central.")
    if str(bank.get("currencyCode", "")).upper() != payout.currency:
        raise InvalidRequest(
            f"Payout {payout.payout_id} is in {payout.currency} but bank account {bank.get('number')} is in "
            f"{bank.get('currencyCode')}; Business Central journal lines carry no currency in API v2.0.")
    description = f"payweave payout {payout.payout_id}"[:100]
    wanted = [("Bank Account", request.bank_account_id.lower(), payout.net, description)]
    if payout.fee:
        wanted.append(("G/L Account", request.fee_account_id.lower(), payout.fee, f"PSP fees {payout.payout_id}"[:100]))
    wanted.append(("G/L Account", request.clearing_account_id.lower(), -payout.gross, description))
    journal = ensure_general_journal(company, settings.deposits_journal_code)
    lines_path = f"journals({journal['id']})/journalLines"
    found_before_writing = True
    for round_no in range(1, MAX_ROUNDS + 1):
        if round_no > 1 and (result := done(found_before_writing)) is not None:
            return result
        lines = list(company.entities(lines_path))
        missing = list(wanted)
        for ln in (x for x in lines if x.get("documentNumber") == doc_no):
            key = (ln.get("accountType"), str(ln.get("accountId", "")).lower(), _amount(ln.get("amount")))
            match = next((w for w in missing if (w[0], w[1], w[2]) == key), None)
            if match is None or str(ln.get("balancingAccountId") or BLANK_GUID) != BLANK_GUID:
                raise WriteBackConflict(
                    f"The deposit journal already holds document {doc_no} with a line that does not belong to "
                    f"payout {payout.payout_id}.", details={"document_number": doc_no})
            missing.remove(match)
        _refuse_if_others_incomplete(lines, doc_no, journal.get("code", ""))
        unsettled = False
        for account_type, account_id, amount, text in missing:
            if amount == 0:
                continue
            found_before_writing = False
            body = {"documentNumber": doc_no, "accountType": account_type, "accountId": account_id, "amount": amount,
                    "postingDate": request.posting_date.isoformat(), "description": text,
                    "externalDocumentNumber": payout.payout_id[:35]}
            try:
                company.create(lines_path, body)
            except BCError as exc:
                if _unsettled(exc) and round_no < MAX_ROUNDS:
                    unsettled = True
                    break
                raise
        if unsettled:
            continue
        _post(company, f"journals({journal['id']})", doc_no, round_no)
    if (result := done(found_before_writing)) is not None:
        return result
    raise BCUnavailable(f"Could not confirm that deposit {doc_no} was posted in Business Central; will retry.")


def _refuse_if_others_incomplete(lines: list[dict[str, Any]], doc_no: str, code: str) -> None:
    """Posting posts the whole batch; if another document's lines do not balance yet (a
    deposit interrupted half-way), BC would refuse the batch. Say so plainly instead."""
    totals: dict[str, Decimal] = {}
    for ln in lines:
        other = ln.get("documentNumber")
        if other == doc_no or str(ln.get("balancingAccountId") or BLANK_GUID) != BLANK_GUID:
            continue
        totals[other] = totals.get(other, Decimal(0)) + _amount(ln.get("amount"))
    unbalanced = sorted(d for d, total in totals.items() if total != 0)
    if unbalanced:
        raise BCUnavailable(
            f"The journal batch {code} holds unfinished entries ({', '.join(unbalanced)}); "
            "they must be completed before this deposit can be posted.", details={"documents": unbalanced})
