"""The payment engine: one facade for the HTTP service, the CLI, the demo and the job workers.

Plain methods take pydantic models (documents, events, setup) or ids and amounts, return
pydantic views (:class:`~payweave.core.engine.views.TransactionView` with operations and
history) and raise typed errors (``payweave.core.errors`` / ``payweave.hooks.errors``).

Exactly-once PSP effects
------------------------
Every PSP call that moves money (or changes a cart) is an *operation*:

1. Under the document's lock (see :meth:`Store.serialized`), the state is checked and the
   operation's intent is committed: the request, with an idempotency key derived from the
   transaction and its step (``pw-<transaction>-<seq>-<kind>``).
2. The PSP is called with that request.
3. The outcome is committed: the transaction's ledger and status, history, follow-up jobs.

A crash between 2 and 3 leaves an intent without outcome. Before anything else happens on the
transaction (and from the ``recover`` sweep), such an intent is replayed with its *stored*
request and key, so the PSP returns the first outcome instead of moving money again.

Callers may pass a ``request_id`` (a BC event id, a job's id, an HTTP Idempotency-Key): an
operation is created once per ``request_id``; repeating the request returns (or finishes) the
first operation. Return documents pay back exactly once (``request_id`` derived from the
document), whatever triggered it.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import SimpleNamespace
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, bindparam, insert, literal, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from structlog.contextvars import bound_contextvars

from payweave.core.errors import (
    AmountNotAvailable,
    CartUpdateNotPossible,
    DocumentNotFound,
    DocumentNotOurs,
    IllegalTransition,
    ImportRejected,
    OperationOutcomeUnknown,
    OperationParked,
    OptionDisabled,
    OriginalPaymentNotFound,
    PaymentMethodNotFound,
    ReleaseRequired,
    TransactionNotFound,
    WrongDocumentDirection,
    restore_error,
)
from payweave.core.jobs.clock import SYSTEM_CLOCK, Clock
from payweave.core.jobs.queue import JobKind, JobQueue, JobStatus
from payweave.core.logging import get_logger
from payweave.core.plugins import PluginBug, PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import (
    DocumentRow,
    HistoryRow,
    JobRow,
    OperationRow,
    PaymentMethodRow,
    ProcessedEventRow,
    Store,
    TransactionRow,
)
from payweave.core.store.db import connection_of
from payweave.core.store.rows import Record, RecordType, write_changes
from payweave.core.store.statements import Prepared
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import PayweaveError, RemoteNotFound, TemporarilyUnavailable
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    Cart,
    CartLine,
    CartUpdateRequest,
    CreditRequest,
    Customer,
    DocumentEvent,
    DocumentEventType,
    DocumentType,
    LineKind,
    OperationResult,
    OperationStatus,
    PaymentStatus,
    RefundRequest,
    RenewalResult,
    RenewReservationRequest,
    ReservationResult,
    ReserveRequest,
    SalesDocument,
    VoidRequest,
)
from payweave.hooks.money import DecimalStr, Money, MoneyError, check_precision, from_minor_units, to_decimal, to_minor_units

from . import rules
from .cart import build_cart, cart_hash, content_hash, document_total
from .rules import Direction, describe
from .setup import CaptureTiming, PaymentMethodSetup, RefundTiming, validate_setup
from .statemachine import (
    Ledger,
    ledger_of,
    store_ledger,
    OpKind,
    Phase,
    TxStatus,
    check_capture,
    check_cart_update,
    check_money_back,
    check_reserve,
    check_void,
    phase_of,
)
from .views import Amounts, EventAction, EventResult, HistoryEntry, OperationView, TransactionView, money


class Trigger(StrEnum):
    MANUAL = "manual"
    RELEASE = "release"
    POSTING = "posting"
    JOB_QUEUE = "job_queue"
    CANCELLATION = "cancellation"
    DELETION = "deletion"
    LATE_CAPTURE = "late_capture"
    RENEWAL = "renewal"
    IMPORT = "import"
    RECOVERY = "recovery"


class OpStatus(StrEnum):
    STARTED = "started"
    """Intent committed; the PSP call may or may not have happened."""
    UNKNOWN = "unknown"
    """The PSP did not answer (timeout, 5xx); replayed with the same key."""
    PARKED = "parked"
    """The plugin broke its contract; replayed with the same key, blocks the transaction."""
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    """The PSP accepted; its final outcome follows (webhook)."""
    FAILED = "failed"


UNFINISHED = (OpStatus.STARTED.value, OpStatus.UNKNOWN.value, OpStatus.PARKED.value)

REQUEST_MODELS: dict[OpKind, type[BaseModel]] = {
    OpKind.RESERVE: ReserveRequest,
    OpKind.CAPTURE: CaptureRequest,
    OpKind.VOID: VoidRequest,
    OpKind.REFUND: RefundRequest,
    OpKind.CREDIT: CreditRequest,
    OpKind.CART_UPDATE: CartUpdateRequest,
    OpKind.RENEW: RenewReservationRequest,
}

ACTIVE_DOCUMENT_STATUSES = ("prepared", "pending")

# Statements of the operation protocol's hot path, compiled once per dialect and sent as driver
# SQL (store.statements.Prepared): building, cache-keying and compiling a statement per call cost
# more than running it. Rows come back as plain tuples; no ORM instances on the path.
_OPS = OperationRow.__table__.c
_HIST = HistoryRow.__table__.c
_OPS_OF_TX = Prepared(
    select(_OPS.id, _OPS.seq, _OPS.kind, _OPS.status, _OPS.trigger, _OPS.actor, _OPS.amount_minor, _OPS.currency,
           _OPS.idempotency_key, _OPS.request_id, _OPS.psp_reference, _OPS.operation_reference, _OPS.document_type,
           _OPS.document_number, _OPS.error_code, _OPS.error_message, _OPS.attempts, _OPS.created_at,
           _OPS.completed_at)
    .where(_OPS.company_id == bindparam("company_id"), _OPS.transaction_id == bindparam("transaction_id"))
    .order_by(_OPS.seq)
)
_HISTORY_OF_TX = Prepared(
    select(_HIST.id, _HIST.at, _HIST.actor, _HIST.trigger, _HIST.action, _HIST.outcome, _HIST.from_status,
           _HIST.to_status, _HIST.amount_minor, _HIST.operation_id, _HIST.idempotency_key, _HIST.psp_reference,
           _HIST.operation_reference, _HIST.message, _HIST.details)
    .where(_HIST.company_id == bindparam("company_id"), _HIST.transaction_id == bindparam("transaction_id"))
    .order_by(_HIST.id)
)
#: operations that stop a new one: unfinished ones of the transaction, and the first of the
#: request id (``request_id = NULL`` matches nothing)
_BLOCKING_OP = (
    # company_id in both terms, so each is an index search (SQLite's OR-by-union), not a scan of
    # the company's operations; IN with plain parameters (an expanding IN rewrites the SQL per call)
    ((_OPS.company_id == bindparam("company_id")) & (_OPS.transaction_id == bindparam("transaction_id"))
     & _OPS.status.in_([literal(s) for s in UNFINISHED]))
    | ((_OPS.company_id == bindparam("company_id")) & (_OPS.request_id == bindparam("request_id")))
)
_UNFINISHED_OPS_OR_REQUEST = Prepared(
    select(_OPS.id, _OPS.transaction_id, _OPS.request_id, _OPS.status).where(_BLOCKING_OP).order_by(_OPS.seq)
)
_TX_BY_ID = select(TransactionRow).where(
    TransactionRow.company_id == bindparam("company_id"), TransactionRow.id == bindparam("transaction_id")
)
#: transaction rows as plain records (store.rows): read with Core, written with write_changes
_TX = RecordType(TransactionRow)
_TX_WHERE = (_TX.table.c.company_id == bindparam("company_id"), _TX.table.c.id == bindparam("transaction_id"))
_TX_RECORD = Prepared(select(*_TX.columns).where(*_TX_WHERE))
#: the transaction and the id of one blocking operation (None: none), in one statement
_TX_AND_BLOCKING_OP = Prepared(
    select(*_TX.columns, select(_OPS.id).where(_BLOCKING_OP).limit(1).scalar_subquery()).where(*_TX_WHERE)
)
_HISTORY_KEYS = ["company_id", "transaction_id", "at", "actor", "trigger", "action", "outcome", "from_status",
                 "to_status", "amount_minor", "operation_id", "idempotency_key", "psp_reference",
                 "operation_reference", "message", "details"]
_INSERT_HISTORY = Prepared(insert(HistoryRow.__table__), _HISTORY_KEYS)
_OPERATION_KEYS = ["company_id", "transaction_id", "seq", "kind", "status", "request_id", "idempotency_key", "actor",
                   "trigger", "amount_minor", "currency", "psp_reference", "document_type", "document_id",
                   "document_number", "request", "context", "result", "operation_reference", "error_code",
                   "error_message", "error_details", "attempts", "created_at", "completed_at"]
_INSERT_OPERATION = Prepared(insert(OperationRow.__table__).returning(_OPS.id), _OPERATION_KEYS)
_OPERATION_OUTCOME = Prepared(
    update(OperationRow.__table__)
    .where(_OPS.id == bindparam("op_id"))
    .values(status=bindparam("new_status"), result=bindparam("new_result"), attempts=bindparam("new_attempts"),
            completed_at=bindparam("new_completed_at"), operation_reference=bindparam("new_operation_reference"),
            error_code=None, error_message=None, error_details=None)
)


class _IntentRows(NamedTuple):
    """An intent just committed, for its outcome: the operation and transaction rows as committed,
    and the connection the operation holds (the outcome commits on it too)."""

    op: Any
    tx: Record
    conn: Connection


#: (operation id, its intent's rows) from an intent just committed, for its outcome
_INTENT_ROWS: ContextVar[tuple[int, _IntentRows] | None] = ContextVar("payweave_intent_rows", default=None)


class AdvancedImportRequest(BaseModel):
    """Attach a payment made elsewhere (a web-shop checkout) to a BC document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: SalesDocument
    psp_reference: str
    amount: DecimalStr


@dataclass
class _Plan:
    amount_minor: int | None
    request: BaseModel
    context: dict[str, Any] = field(default_factory=dict)
    document: SalesDocument | None = None


@dataclass
class _Ctx:
    actor: str
    trigger: str
    request_id: str | None = None


class _Lazy:
    """A value computed on first call (the payment method setup, which most builders never read)."""

    __slots__ = ("_compute", "_done", "_value")

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute, self._done, self._value = compute, False, None

    def __call__(self) -> Any:
        if not self._done:
            self._value, self._done = self._compute(), True
        return self._value


#: build(session, tx, ledger, status, setup() -> PaymentMethodSetup | None, caps, psp name, idempotency key);
#: tx is the transaction row as a plain record (store.rows.Record); what a builder changes on it is written with the intent
Builder = Callable[[Session, Record, Ledger, TxStatus, Callable[[], PaymentMethodSetup | None], PspCapabilities, str, str], _Plan]


def _doc_key(document_type: str, document_id: str) -> str:
    return f"{document_type}:{document_id}"


def _short(text: str, limit: int = 180) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _err_dict(exc: PayweaveError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "details": exc.details}


class PaymentEngine:
    """The payment engine (see the module docstring for the exactly-once protocol)."""

    def __init__(
        self,
        store: Store,
        plugins: PluginManager,
        *,
        clock: Clock | None = None,
        settings: PayweaveSettings | None = None,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.clock = clock or SYSTEM_CLOCK
        self.settings = settings or plugins.settings
        self.jobs = JobQueue(store, clock=self.clock, settings=self.settings.jobs)
        self._accounts: dict[tuple[str, str], Account] = {}
        self._lock_keys: dict[tuple[str, str], str] = {}
        self.log = get_logger(component="engine")

    @classmethod
    def from_settings(
        cls, settings: PayweaveSettings | None = None, *, plugins: PluginManager | None = None, clock: Clock | None = None
    ) -> PaymentEngine:
        """Open the store (migrating it to head) and load the plugins from entry points."""
        settings = settings or PayweaveSettings()
        if plugins is None:
            plugins = PluginManager(settings)
            plugins.load_entrypoints()
        return cls(Store(settings.database_url), plugins, clock=clock, settings=settings)

    # =========================================================================== plugins
    def account(self, psp: str, name: str) -> Account:
        key = (psp, name)
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = self.plugins.account(psp, name)
        return account

    def capabilities(self, psp: str, account: str = "default") -> PspCapabilities:
        return self.plugins.psp(psp).capabilities(self.account(psp, account))

    @staticmethod
    def _psp_name(psp: str, account: str) -> str:
        return psp if account == "default" else f"{psp} (account {account})"

    # =========================================================================== setup
    def save_payment_method(self, setup: PaymentMethodSetup, *, actor: str = "api") -> PaymentMethodSetup:
        """Validate and store a payment method (create or replace). Refusals name the settings."""
        caps = self.capabilities(setup.psp, setup.psp_account)
        validate_setup(setup, caps)
        now = self.clock.now()
        with self.store.transaction() as s:
            row = s.get(PaymentMethodRow, (setup.company_id, setup.code))
            if row is None:
                row = PaymentMethodRow(company_id=setup.company_id, code=setup.code, created_at=now)
                s.add(row)
            row.description = setup.description
            row.psp = setup.psp
            row.psp_account = setup.psp_account
            row.capture_timing = setup.capture_timing.value
            row.refund_timing = setup.refund_timing.value
            row.options = setup.options()
            row.updated_at = now
            row.updated_by = actor
        self.log.info("setup.saved", company=setup.company_id, payment_method=setup.code, psp=setup.psp, actor=actor)
        return setup

    def get_payment_method(self, company_id: str, code: str) -> PaymentMethodSetup:
        with self.store.transaction() as s:
            setup = self._setup(s, company_id, code)
        if setup is None:
            raise PaymentMethodNotFound(
                f"Payment method {code.upper()} is not set up as a payweave payment method.",
                details={"payment_method": code.upper()},
            )
        return setup

    def list_payment_methods(self, company_id: str) -> list[PaymentMethodSetup]:
        with self.store.transaction() as s:
            rows = s.scalars(
                select(PaymentMethodRow).where(PaymentMethodRow.company_id == company_id).order_by(PaymentMethodRow.code)
            ).all()
            return [PaymentMethodSetup.from_row(r) for r in rows]

    def delete_payment_method(self, company_id: str, code: str) -> None:
        with self.store.transaction() as s:
            row = s.get(PaymentMethodRow, (company_id, code.strip().upper()))
            if row is None:
                raise PaymentMethodNotFound(
                    f"Payment method {code.upper()} is not set up as a payweave payment method.",
                    details={"payment_method": code.upper()},
                )
            s.delete(row)

    def _setup(self, s: Session, company_id: str, code: str | None) -> PaymentMethodSetup | None:
        if not code:
            return None
        row = s.get(PaymentMethodRow, (company_id, code.strip().upper()))
        return PaymentMethodSetup.from_row(row) if row is not None else None

    def _document_setup(self, s: Session, document: SalesDocument) -> PaymentMethodSetup:
        code = rules.require_payment_method(document)
        setup = self._setup(s, document.company_id, code)
        if setup is None:
            raise DocumentNotOurs(
                f"{describe(document)} uses payment method {code}, which is not a payweave payment method, so the "
                f"document was not processed.",
                details={"payment_method": code, "document_id": document.document_id},
            )
        return setup

    # =========================================================================== documents
    def check_document(self, document: SalesDocument) -> Cart | None:
        """Apply the document rules and build its cart (None without cart). Raises the refusal."""
        with self.store.transaction() as s:
            setup = self._document_setup(s, document)
        rules.check_document(document)
        return None if setup.without_cart else build_cart(document)

    def prepare(self, document: SalesDocument, *, actor: str = "api") -> TransactionView:
        """Create the payment (status ``prepared``) for a sales order or invoice.

        Preparing again while the payment is still only prepared refreshes its cart; a document
        whose payment is further along is refused.
        """
        rules.require_direction(document, Direction.CAPTURE)
        with self._locked(document.company_id, _doc_key(document.document_type, document.document_id)):
            with self.store.transaction() as s:
                setup = self._document_setup(s, document)
                rules.check_document(document)
                ctx = _Ctx(actor, Trigger.MANUAL)
                tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
                if tx is not None and not (tx.status == TxStatus.PREPARED.value and not tx.psp_reference):
                    raise IllegalTransition(
                        f"{describe(document)} already has a payment ({TxStatus(tx.status).value.replace('_', ' ')}, "
                        f"transaction {tx.id}).",
                        details={"transaction_id": tx.id, "status": tx.status},
                    )
                if tx is None:
                    tx = self._new_tx(s, document, setup, ctx)
                else:
                    cart = None if setup.without_cart else build_cart(document)
                    total = document_total(document)
                    if cart_hash(cart, total) != tx.cart_hash:
                        self._store_cart(tx, cart, to_minor_units(total, tx.currency), "")
                        self._history(s, tx, "cart_changed", ctx, amount_minor=tx.amount_minor,
                                      message=f"{describe(document)} prepared again with a changed cart.")
                self._upsert_document(s, document, role="origin", transaction_id=tx.id)
                return self._view(s, tx)

    def reserve(
        self,
        company_id: str,
        transaction_id: str,
        *,
        payment_method_token: str | None = None,
        actor: str = "api",
        request_id: str | None = None,
    ) -> TransactionView:
        """Authorize a prepared payment at the PSP (and capture at once with AutoCapture)."""
        ctx = _Ctx(actor, Trigger.MANUAL, request_id)

        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            check_reserve(status)
            auto = bool((method := setup()) and method.auto_capture)
            caps.require(Feature.AUTO_CAPTURE if auto else Feature.RESERVE, psp=psp)
            if tx.no_cart:
                caps.require(Feature.NO_CART, psp=psp)
            caps.require_currency(tx.currency, psp=psp)
            amount = Money(amount=from_minor_units(tx.amount_minor, tx.currency), currency=tx.currency)
            cart = self._tx_cart(tx)
            request = ReserveRequest(
                idempotency_key=key,
                transaction_id=tx.id,
                amount=amount,
                cart=cart,
                capture=auto,
                customer=Customer.model_validate(tx.customer) if tx.customer else None,
                reference=tx.document_number,
                payment_method_token=payment_method_token,
                metadata={"company_id": tx.company_id, "document_type": tx.document_type, "document_id": tx.document_id},
            )
            return _Plan(tx.amount_minor, request, {"auto_capture": auto})

        return self._operate(company_id, transaction_id, OpKind.RESERVE, build, ctx)

    def authorize(
        self,
        document: SalesDocument,
        *,
        payment_method_token: str | None = None,
        actor: str = "api",
        request_id: str | None = None,
    ) -> TransactionView:
        """Prepare (if needed) and reserve the payment of a sales order or invoice."""
        rules.require_direction(document, Direction.CAPTURE)
        with self._locked(document.company_id, _doc_key(document.document_type, document.document_id)):
            with self.store.transaction() as s:
                tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
                tx_id = tx.id if tx is not None else None
            if tx_id is None:
                tx_id = self.prepare(document, actor=actor).id
            return self.reserve(
                document.company_id,
                tx_id,
                payment_method_token=payment_method_token,
                actor=actor,
                request_id=request_id,
            )

    # =========================================================================== manual operations
    def capture(
        self,
        company_id: str,
        transaction_id: str,
        amount: Decimal | Money | str | int | None = None,
        *,
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.MANUAL,
    ) -> TransactionView:
        """Capture ``amount`` (default: everything still reserved)."""
        ctx = _Ctx(actor, str(trigger), request_id)

        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            minor = ledger.open if amount is None else self._minor(amount, tx.currency)
            final = check_capture(status, ledger, minor, caps, psp)
            request = CaptureRequest(
                idempotency_key=key,
                transaction_id=tx.id,
                psp_reference=tx.psp_reference or "",
                amount=Money(amount=from_minor_units(minor, tx.currency), currency=tx.currency),
                final=final,
            )
            return _Plan(minor, request, {"final": final})

        return self._operate(company_id, transaction_id, OpKind.CAPTURE, build, ctx)

    def capture_invoiced(
        self,
        company_id: str,
        transaction_id: str,
        *,
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.JOB_QUEUE,
    ) -> TransactionView:
        """Capture what has been invoiced (posted) and not captured yet; nothing when covered."""
        with self._tx_locked(company_id, transaction_id):
            if request_id is not None:
                with self.store.transaction() as s:
                    existing = self._op_by_request(s, company_id, request_id)
                if existing is not None:
                    return self._settle(existing)
            self._recover_transaction(company_id, transaction_id)
            with self.store.transaction() as s:
                tx = self._load_tx(s, company_id, transaction_id)
                due = tx.invoiced_minor - tx.captured_minor
                if due <= 0:
                    return self._view(s, tx)
            return self.capture(company_id, transaction_id, from_minor_units(due, tx.currency), actor=actor,
                                request_id=request_id, trigger=trigger)

    def void(
        self,
        company_id: str,
        transaction_id: str,
        amount: Decimal | Money | str | int | None = None,
        *,
        reason: str = "",
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.MANUAL,
    ) -> TransactionView:
        """Release ``amount`` of the reservation (default: everything still reserved)."""
        ctx = _Ctx(actor, str(trigger), request_id)

        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            minor = None if amount is None else self._minor(amount, tx.currency)
            releasing = check_void(status, ledger, minor, caps, psp)
            request = VoidRequest(
                idempotency_key=key,
                transaction_id=tx.id,
                psp_reference=tx.psp_reference or "",
                amount=None if minor is None else Money(amount=from_minor_units(minor, tx.currency), currency=tx.currency),
                reason=reason,
            )
            return _Plan(releasing, request, {"releasing": releasing})

        return self._operate(company_id, transaction_id, OpKind.VOID, build, ctx)

    def refund(
        self,
        company_id: str,
        transaction_id: str,
        amount: Decimal | Money | str | int | None = None,
        *,
        lines: tuple[CartLine, ...] = (),
        reason: str = "",
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.MANUAL,
        document: SalesDocument | None = None,
    ) -> TransactionView:
        """Cart-dependent refund of captured money (default: everything not yet paid back)."""
        return self._money_back(
            OpKind.REFUND, company_id, transaction_id, amount, lines, reason, _Ctx(actor, str(trigger), request_id), document
        )

    def credit(
        self,
        company_id: str,
        transaction_id: str,
        amount: Decimal | Money | str | int | None = None,
        *,
        reason: str = "",
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.MANUAL,
        document: SalesDocument | None = None,
    ) -> TransactionView:
        """Cart-independent credit (needs 'Credit Allowed' and the PSP's credit feature)."""
        return self._money_back(
            OpKind.CREDIT, company_id, transaction_id, amount, (), reason, _Ctx(actor, str(trigger), request_id), document
        )

    def _money_back(
        self,
        kind: OpKind,
        company_id: str,
        transaction_id: str,
        amount: Any,
        lines: tuple[CartLine, ...],
        reason: str,
        ctx: _Ctx,
        document: SalesDocument | None,
    ) -> TransactionView:
        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            minor = ledger.refundable if amount is None else self._minor(amount, tx.currency)
            if kind is OpKind.REFUND and tx.no_cart:
                raise IllegalTransition(
                    "This payment was made without a cart, so it cannot be refunded cart-dependently; pay the money "
                    "back as a credit.",
                    details={"transaction_id": tx.id, "operation": "refund"},
                )
            if kind is OpKind.CREDIT and not ((method := setup()) and method.credit_allowed):
                raise OptionDisabled(
                    f"Payment method {tx.payment_method_code} does not allow credits: switch on 'Credit Allowed' to pay "
                    f"this money back as a credit.",
                    details={"setting": "credit_allowed", "payment_method": tx.payment_method_code},
                )
            check_money_back(kind, status, ledger, minor, caps, psp)
            money_ = Money(amount=from_minor_units(minor, tx.currency), currency=tx.currency)
            request: BaseModel
            if kind is OpKind.REFUND:
                request = RefundRequest(
                    idempotency_key=key,
                    transaction_id=tx.id,
                    psp_reference=tx.psp_reference or "",
                    amount=money_,
                    lines=tuple(lines),
                    reason=reason,
                )
            else:
                request = CreditRequest(
                    idempotency_key=key,
                    transaction_id=tx.id,
                    psp_reference=tx.psp_reference,
                    amount=money_,
                    customer=Customer.model_validate(tx.customer) if tx.customer else None,
                    reason=reason,
                )
            return _Plan(minor, request, {}, document)

        return self._operate(company_id, transaction_id, kind, build, ctx)

    def refund_document(
        self,
        company_id: str,
        document_type: DocumentType | str,
        document_id: str,
        *,
        actor: str = "api",
        trigger: str = Trigger.MANUAL,
    ) -> TransactionView:
        """Pay back a posted return order / credit memo (refund or credit, chosen by the rules).

        A return document pays back exactly once, whatever triggers it (posting, job queue, a
        person): the operation's request id is derived from the document.
        """
        document_type = DocumentType(document_type)
        with self.store.transaction() as s:
            row = s.get(DocumentRow, (company_id, document_type.value, document_id))
            if row is None or row.snapshot is None or row.role != "return":
                raise DocumentNotFound(
                    f"{rules.DOCUMENT_TITLES[document_type]} {document_id} has not been posted to payweave.",
                    details={"document_type": document_type.value, "document_id": document_id},
                )
            document = SalesDocument.model_validate(row.snapshot)
            tx_id = row.transaction_id
        assert tx_id is not None
        with self._tx_locked(company_id, tx_id):
            # an earlier PSP call of the payment (its capture) may still await its outcome: settle it
            # first, or the refund would be refused for want of a capture that did happen
            self._recover_transaction(company_id, tx_id)
            return self._pay_back_document(document, tx_id, _Ctx(actor, str(trigger), None))

    def _pay_back_document(self, document: SalesDocument, tx_id: str, ctx: _Ctx) -> TransactionView:
        # Once per document: the first operation that did not end in a refusal is the answer. After a
        # refusal (the PSP declined, BC did not post) a new posting of the document may try again.
        base = _short(f"return:{document.document_type.value}:{document.document_id}")
        with self.store.transaction() as s:
            earlier = self._pay_backs(s, document)
        standing = next((op for op in earlier if op.status != OpStatus.FAILED.value), None)
        if standing is not None:
            return self._settle(standing)
        request_id = base if not earlier else f"{base}#{len(earlier)}"
        with self.store.transaction() as s:
            tx = self._load_tx(s, document.company_id, tx_id)
            setup = self._setup(s, tx.company_id, tx.payment_method_code)
            kind, why = self._choose_money_back(tx, document)
            lines = () if tx.no_cart or kind is OpKind.CREDIT else build_cart(document).lines
        amount = document_total(document)
        self._check_pay_back(tx, setup, document, kind, why)
        reason = f"{describe(document)}" + (f" ({why})" if why else "")
        sub = _Ctx(ctx.actor, ctx.trigger, request_id)
        return self._money_back(kind, document.company_id, tx_id, amount, tuple(lines), reason, sub, document)

    @staticmethod
    def _pay_backs(s: Session, document: SalesDocument) -> list[OperationRow]:
        """The operations that paid back (or tried to pay back) this return document, oldest first."""
        base = _short(f"return:{document.document_type.value}:{document.document_id}")
        return list(s.scalars(
            select(OperationRow)
            .where(
                OperationRow.company_id == document.company_id,
                (OperationRow.request_id == base) | OperationRow.request_id.startswith(f"{base}#", autoescape=True),
            )
            .order_by(OperationRow.id)
        ).all())

    def _check_pay_back(
        self, tx: TransactionRow, setup: PaymentMethodSetup | None, document: SalesDocument, kind: OpKind, why: str
    ) -> None:
        """Refuse paying back a return document before anything is recorded or sent."""
        if document.currency != tx.currency:
            raise WrongDocumentDirection(
                f"{describe(document)} is in {document.currency}, but the payment is in {tx.currency}.",
                details={"document_currency": document.currency, "payment_currency": tx.currency},
            )
        if kind is OpKind.CREDIT and not (setup and setup.credit_allowed):
            raise OptionDisabled(
                f"{describe(document)} must be paid back as a credit ({why}), but payment method "
                f"{tx.payment_method_code} does not allow credits: switch on 'Credit Allowed'.",
                details={"setting": "credit_allowed", "reason": why, "payment_method": tx.payment_method_code},
            )
        check_money_back(kind, TxStatus(tx.status), self._ledger(tx), to_minor_units(document_total(document), tx.currency),
                         self.capabilities(tx.psp, tx.psp_account), self._psp_name(tx.psp, tx.psp_account))

    def _choose_money_back(self, tx: TransactionRow, document: SalesDocument) -> tuple[OpKind, str]:
        """Refund (cart-dependent) or credit (cart-independent), as DESIGN.md section 4 says."""
        if tx.origin == "advanced_import":
            return OpKind.CREDIT, "the payment was imported; the PSP never saw the BC cart"
        if tx.credited_minor > 0:
            return OpKind.CREDIT, "follow-up credit on an already credited payment"
        if tx.no_cart:
            return OpKind.CREDIT, "the payment was made without a cart"
        known = {
            line.get("number") for line in (tx.cart or {}).get("lines", []) if line.get("kind") == LineKind.GL_ACCOUNT.value
        }
        unknown = sorted({line.number for line in document.lines if line.type.value == "gl_account"} - known)
        if unknown:
            return OpKind.CREDIT, f"G/L account lines the PSP never saw ({', '.join(unknown)})"
        return OpKind.REFUND, ""

    def import_payment(self, request: AdvancedImportRequest, *, actor: str = "api") -> TransactionView:
        """Advanced import: attach a payment made elsewhere to a BC document after the PSP confirms it."""
        document = request.document
        rules.require_direction(document, Direction.CAPTURE)
        with self._locked(document.company_id, _doc_key(document.document_type, document.document_id)):
            with self.store.transaction() as s:
                setup = self._document_setup(s, document)
                if not setup.advanced_import:
                    raise OptionDisabled(
                        f"Payment method {setup.code} does not allow advanced import: switch on 'Advanced Import'.",
                        details={"setting": "advanced_import", "payment_method": setup.code},
                    )
                rules.check_document(document)
                existing = self._active_tx(s, document.company_id, document.document_type, document.document_id)
                if existing is not None:
                    if existing.psp_reference == request.psp_reference and existing.origin == "advanced_import":
                        return self._view(s, existing)
                    raise IllegalTransition(
                        f"{describe(document)} already has a payment (transaction {existing.id}); a second one cannot be "
                        f"imported.",
                        details={"transaction_id": existing.id},
                    )
                other = s.scalars(
                    select(TransactionRow).where(
                        TransactionRow.company_id == document.company_id,
                        TransactionRow.psp == setup.psp,
                        TransactionRow.psp_account == setup.psp_account,
                        TransactionRow.psp_reference == request.psp_reference,
                    )
                ).first()
                if other is not None:
                    raise ImportRejected(
                        f"Payment {request.psp_reference} is already attached to {other.document_number or other.document_id}.",
                        details={"psp_reference": request.psp_reference, "transaction_id": other.id},
                    )
            psp = self._psp_name(setup.psp, setup.psp_account)
            caps = self.capabilities(setup.psp, setup.psp_account)
            caps.require(Feature.PAYMENT_LOOKUP, psp=psp)
            try:
                claimed = check_precision(to_decimal(request.amount), document.currency)
            except MoneyError as exc:
                raise ImportRejected(f"The amount to import is not valid: {exc.message}") from None
            with bound_contextvars(company=document.company_id, document=document.number, plugin=setup.psp):
                try:
                    lookup = self.plugins.psp(setup.psp).get_payment(self.account(setup.psp, setup.psp_account), request.psp_reference)
                except RemoteNotFound as exc:
                    raise ImportRejected(
                        f"{psp} does not know payment {request.psp_reference}: {exc.message}",
                        details={"psp_reference": request.psp_reference},
                    ) from None
            if lookup.amount.currency != document.currency:
                raise ImportRejected(
                    f"Payment {request.psp_reference} is in {lookup.amount.currency}, but {describe(document)} is in "
                    f"{document.currency}.",
                    details={"payment_currency": lookup.amount.currency, "document_currency": document.currency},
                )
            if lookup.amount.amount != claimed:
                raise ImportRejected(
                    f"Payment {request.psp_reference} is over {lookup.amount}, not {claimed} {document.currency} as "
                    f"stated; it was not imported.",
                    details={"psp_amount": str(lookup.amount.amount), "stated_amount": str(claimed)},
                )
            if lookup.status not in (PaymentStatus.RESERVED, PaymentStatus.CAPTURED, PaymentStatus.PARTLY_CAPTURED):
                raise ImportRejected(
                    f"Payment {request.psp_reference} is {lookup.status.value} at the PSP; only authorized or captured "
                    f"payments can be imported.",
                    details={"psp_status": lookup.status.value},
                )
            total = document_total(document)
            if total > lookup.amount.amount:
                raise ImportRejected(
                    f"{describe(document)} totals {total} {document.currency}, more than the payment's "
                    f"{lookup.amount}; it was not imported.",
                    details={"document_total": str(total), "psp_amount": str(lookup.amount.amount)},
                )
            cur = document.currency
            authorized = to_minor_units(lookup.amount.amount, cur)
            captured = to_minor_units(lookup.captured.amount, cur)
            refunded = to_minor_units(lookup.refunded.amount, cur)
            voided = authorized - captured if lookup.status is PaymentStatus.CAPTURED else 0
            ledger = Ledger(cur, authorized=authorized, captured=captured, voided=voided, refunded=refunded)
            ledger.check()
            ctx = _Ctx(actor, Trigger.IMPORT, None)
            now = self.clock.now()
            with self.store.transaction() as s:
                tx = self._new_tx(s, document, setup, ctx, origin="advanced_import")
                tx.psp_reference = request.psp_reference
                tx.expires_at = lookup.expires_at
                self._set_ledger(tx, ledger, Phase.ACTIVE)
                s.flush()
                op = OperationRow(
                    company_id=tx.company_id,
                    transaction_id=tx.id,
                    seq=tx.next_seq,
                    kind=OpKind.IMPORT.value,
                    status=OpStatus.SUCCEEDED.value,
                    request_id=f"import:{tx.id}",
                    idempotency_key=f"pw-{tx.id}-{tx.next_seq}-import",
                    actor=actor,
                    trigger=Trigger.IMPORT.value,
                    amount_minor=authorized,
                    currency=cur,
                    psp_reference=request.psp_reference,
                    request=request.model_dump(mode="json", include={"psp_reference", "amount"}),
                    result=lookup.model_dump(mode="json"),
                    attempts=1,
                    created_at=now,
                    completed_at=now,
                )
                tx.next_seq += 1
                s.add(op)
                s.flush()
                self._history(
                    s, tx, "imported", ctx, from_status=TxStatus.PREPARED.value, to_status=tx.status,
                    amount_minor=authorized, op=op,
                    message=f"Payment {request.psp_reference} confirmed by {psp} ({lookup.status.value}, "
                    f"{lookup.amount}, captured {lookup.captured}) and attached to {describe(document)}.",
                )
                self._upsert_document(s, document, role="origin", transaction_id=tx.id)
                self._schedule_expiry_jobs(s, tx, setup)
                return self._view(s, tx)

    def renew_reservation(
        self,
        company_id: str,
        transaction_id: str,
        *,
        actor: str = "api",
        request_id: str | None = None,
        trigger: str = Trigger.RENEWAL,
    ) -> TransactionView:
        """Reserve anew (or extend) a reservation close to expiry."""
        ctx = _Ctx(actor, str(trigger), request_id)

        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            if not ((method := setup()) and method.allow_reservation_renewal):
                raise OptionDisabled(
                    f"Payment method {tx.payment_method_code} does not renew reservations: switch on 'Allow "
                    f"Reservation Renewal'.",
                    details={"setting": "allow_reservation_renewal"},
                )
            if status not in (TxStatus.RESERVED, TxStatus.PARTLY_VOIDED) or ledger.open <= 0:
                raise IllegalTransition(
                    f"Only an uncaptured reservation can be renewed; the payment is {status.value.replace('_', ' ')}.",
                    details={"status": status.value, "operation": "renew"},
                )
            caps.require(Feature.RESERVATION_RENEWAL, psp=psp)
            request = RenewReservationRequest(
                idempotency_key=key,
                transaction_id=tx.id,
                psp_reference=tx.psp_reference or "",
                amount=Money(amount=from_minor_units(ledger.open, tx.currency), currency=tx.currency),
                cart=self._tx_cart(tx),
            )
            return _Plan(ledger.open, request, {"old_reference": tx.psp_reference})

        return self._operate(company_id, transaction_id, OpKind.RENEW, build, ctx)

    def expire_reservation(self, company_id: str, transaction_id: str, *, actor: str = "system") -> TransactionView:
        """Record that what was still reserved has lapsed (the PSP's reservation expired)."""
        with self._tx_locked(company_id, transaction_id):
            self._recover_transaction(company_id, transaction_id)
            with self.store.transaction() as s:
                tx = self._load_tx(s, company_id, transaction_id)
                ledger = self._ledger(tx)
                if tx.expires_at is None or tx.expires_at > self.clock.now() or ledger.open <= 0:
                    return self._view(s, tx)
                before = tx.status
                lapsed = ledger.open
                self._set_ledger(tx, ledger.with_(expired=ledger.expired + lapsed), Phase.ACTIVE)
                self._history(
                    s, tx, "expired", _Ctx(actor, Trigger.RENEWAL), from_status=before, to_status=tx.status,
                    amount_minor=lapsed,
                    message=f"The reservation expired at {tx.expires_at.isoformat()}; {ledger.fmt(lapsed)} is no longer "
                    f"capturable.",
                )
                return self._view(s, tx)

    # =========================================================================== document events
    def handle_event(self, event: DocumentEvent, *, actor: str = "bc") -> EventResult:
        """Apply a BC document event (released, reopened, changed, posted, partly cancelled, deleted).

        Events are deduplicated by ``event_id``: a repeated event returns the first result (or
        the first refusal), and an event interrupted by a crash is finished on redelivery.
        """
        document = event.document
        company = document.company_id
        with bound_contextvars(company=company, document=document.number or document.document_id, event=event.event_id):
            key = self._event_lock_key(event)
            with self._locked(company, key):
                with self.store.transaction() as s:
                    seen = s.get(ProcessedEventRow, (company, event.event_id))
                    if seen is not None and seen.status == "done":
                        return self._replayed(s, event, seen)
                    if seen is not None and seen.status == "refused":
                        raise restore_error(seen.error_code, seen.error_message, seen.error_details)
                    if seen is None:
                        s.add(
                            ProcessedEventRow(
                                company_id=company,
                                event_id=event.event_id,
                                event_type=event.type.value,
                                document_type=document.document_type.value,
                                document_id=document.document_id,
                                status="processing",
                                created_at=self.clock.now(),
                            )
                        )
                actions: list[EventAction] = []
                try:
                    tx_id = self._dispatch(event, _Ctx(actor, "", None), actions)
                except PayweaveError as exc:
                    with self.store.transaction() as s:
                        seen = s.get(ProcessedEventRow, (company, event.event_id))
                        assert seen is not None
                        if not exc.retryable:
                            seen.status = "refused"
                            seen.completed_at = self.clock.now()
                        seen.error_code = exc.code
                        seen.error_message = exc.message
                        seen.error_details = exc.details
                    self.log.warning("event.refused", code=exc.code, error=exc.message)
                    raise
                with self.store.transaction() as s:
                    seen = s.get(ProcessedEventRow, (company, event.event_id))
                    assert seen is not None
                    seen.status = "done"
                    seen.completed_at = self.clock.now()
                    seen.error_code = seen.error_message = None
                    seen.outcome = {"transaction_id": tx_id, "actions": [a.model_dump(mode="json") for a in actions]}
                    tx = self._load_tx(s, company, tx_id) if tx_id else None
                    view = self._view(s, tx) if tx is not None else None
                self.log.info("event.applied", type=event.type.value, actions=[a.action for a in actions])
                return EventResult(
                    event_id=event.event_id,
                    event_type=event.type,
                    document_type=document.document_type,
                    document_id=document.document_id,
                    actions=tuple(actions),
                    transaction=view,
                )

    def _replayed(self, s: Session, event: DocumentEvent, seen: ProcessedEventRow) -> EventResult:
        outcome = seen.outcome or {}
        tx_id = outcome.get("transaction_id")
        tx = self._load_tx(s, event.document.company_id, tx_id) if tx_id else None
        return EventResult(
            event_id=event.event_id,
            event_type=event.type,
            document_type=event.document.document_type,
            document_id=event.document.document_id,
            replayed=True,
            actions=tuple(EventAction.model_validate(a) for a in outcome.get("actions", [])),
            transaction=self._view(s, tx) if tx is not None else None,
        )

    def _event_lock_key(self, event: DocumentEvent) -> str:
        document = event.document
        if rules.direction(document) is Direction.CAPTURE:
            origin = self._origin_of(document)
            return _doc_key(*origin)
        with self.store.transaction() as s:
            tx = self._original_tx(s, document, required=False)
            if tx is not None:
                return _doc_key(tx.document_type, tx.document_id)
        return _doc_key(document.document_type.value, document.document_id)

    @staticmethod
    def _origin_of(document: SalesDocument) -> tuple[str, str]:
        if document.document_type is DocumentType.SALES_INVOICE and document.order_id:
            return DocumentType.SALES_ORDER.value, document.order_id
        return document.document_type.value, document.document_id

    def _dispatch(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        if rules.direction(document) is Direction.REFUND:
            return self._on_return_document(event, ctx, actions)
        handlers = {
            DocumentEventType.RELEASED: self._on_released,
            DocumentEventType.REOPENED: self._on_reopened,
            DocumentEventType.CHANGED: self._on_changed,
            DocumentEventType.POSTED: self._on_posted,
            DocumentEventType.PARTLY_CANCELLED: self._on_partly_cancelled,
            DocumentEventType.DELETED: self._on_deleted,
        }
        return handlers[event.type](event, ctx, actions)

    # ---- released ------------------------------------------------------------------------
    def _on_released(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        ctx = _Ctx(ctx.actor, Trigger.RELEASE)
        with self.store.transaction() as s:
            setup = self._document_setup(s, document)
        rules.check_document(document)
        cart = None if setup.without_cart else build_cart(document)
        total = document_total(document)
        cur = document.currency
        new_hash = cart_hash(cart, total)
        cart_update_needed = False
        with self.store.transaction() as s:
            tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
            if tx is None:
                tx = self._new_tx(s, document, setup, ctx)
                actions.append(EventAction(action="prepared", transaction_id=tx.id, amount=total))
            elif tx.currency != cur:
                raise CartUpdateNotPossible(
                    f"{describe(document)} changed its currency from {tx.currency} to {cur}; the payment cannot follow.",
                    details={"old_currency": tx.currency, "new_currency": cur},
                )
            elif new_hash != tx.cart_hash or (tx.psp_cart_hash and new_hash != tx.psp_cart_hash):
                status = TxStatus(tx.status)
                ledger = self._ledger(tx)
                new_minor = to_minor_units(total, cur)
                caps = self.capabilities(tx.psp, tx.psp_account)
                if status is TxStatus.PREPARED and not tx.psp_reference:
                    self._store_cart(tx, cart, new_minor, "")
                    self._history(s, tx, "cart_changed", ctx, amount_minor=new_minor,
                                  message=f"{describe(document)} was released with a changed cart (not yet sent to the PSP).")
                    actions.append(EventAction(action="cart_changed", transaction_id=tx.id, amount=total))
                else:
                    before_reservation = status in (TxStatus.PREPARED, TxStatus.PENDING)
                    stage = Feature.CART_UPDATE_BEFORE_RESERVATION if before_reservation else Feature.CART_UPDATE_WHILE_RESERVED
                    reason = None
                    if tx.no_cart:
                        reason = "the payment was made without a cart"
                    elif not setup.allow_cart_update:
                        reason = f"'Allow Cart Update' is off for payment method {setup.code}"
                    elif not caps.declares(stage):
                        reason = f"{self._psp_name(tx.psp, tx.psp_account)} does not support {stage.title}"
                    elif not before_reservation and status is not TxStatus.RESERVED:
                        reason = f"the payment is already {status.value.replace('_', ' ')}"
                    if reason is None:
                        cart_update_needed = True
                    elif new_hash != tx.cart_hash:
                        outstanding = new_minor - ledger.captured
                        if before_reservation or outstanding > ledger.open:
                            raise CartUpdateNotPossible(
                                f"{describe(document)} now totals {ledger.fmt(new_minor)}, but the changed cart cannot "
                                f"reach the PSP ({reason})"
                                + ("." if before_reservation else f" and only {ledger.fmt(ledger.open)} is reserved.")
                                + " Restore the order or take a new payment.",
                                details={"document_total": str(total), "reserved": str(ledger.money(ledger.open)),
                                         "reason": reason},
                            )
                        self._store_cart(tx, cart, new_minor, tx.psp_cart_hash)
                        self._history(
                            s, tx, "cart_changed", ctx, amount_minor=new_minor,
                            message=f"{describe(document)} was released with a changed cart; it was not sent to the PSP "
                            f"({reason}). The reservation of {ledger.fmt(ledger.open)} covers the new total "
                            f"{ledger.fmt(new_minor)}.",
                        )
                        actions.append(EventAction(action="cart_changed", transaction_id=tx.id, amount=total, message=reason))
            self._upsert_document(s, document, role="origin", transaction_id=tx.id, released=True)
            tx_id = tx.id
        if cart_update_needed:
            assert cart is not None
            self._cart_update(document.company_id, tx_id, cart, total, _Ctx(ctx.actor, ctx.trigger, _short(f"event:{event.event_id}:cart")))
            actions.append(EventAction(action="cart_updated", transaction_id=tx_id, amount=total))
        if setup.capture_timing is CaptureTiming.ON_RELEASE:
            self._capture_outstanding(document, tx_id, _Ctx(ctx.actor, Trigger.RELEASE, _short(f"event:{event.event_id}:capture")), actions)
        return tx_id

    def _cart_update(self, company_id: str, tx_id: str, cart: Cart, total: Decimal, ctx: _Ctx) -> TransactionView:
        def build(s, tx, ledger, status, setup, caps, psp, key) -> _Plan:
            check_cart_update(status, ledger)
            stage = "before_reservation" if status in (TxStatus.PREPARED, TxStatus.PENDING) else "while_reserved"
            caps.require(
                Feature.CART_UPDATE_BEFORE_RESERVATION if stage == "before_reservation" else Feature.CART_UPDATE_WHILE_RESERVED,
                psp=psp,
            )
            request = CartUpdateRequest(
                idempotency_key=key, transaction_id=tx.id, psp_reference=tx.psp_reference or "", stage=stage, cart=cart
            )
            return _Plan(to_minor_units(total, tx.currency), request, {"stage": stage, "cart": cart.model_dump(mode="json")})

        return self._operate(company_id, tx_id, OpKind.CART_UPDATE, build, ctx)

    def _capture_outstanding(self, document: SalesDocument, tx_id: str, ctx: _Ctx, actions: list[EventAction], amount_minor: int | None = None) -> None:
        with self.store.transaction() as s:
            tx = self._load_tx(s, document.company_id, tx_id)
            ledger = self._ledger(tx)
            status = TxStatus(tx.status)
        if status in (TxStatus.PREPARED, TxStatus.PENDING):
            if ctx.trigger == Trigger.POSTING:
                raise IllegalTransition(
                    f"{describe(document)} cannot be posted: its payment is not authorized yet ({status.value}).",
                    details={"transaction_id": tx_id, "status": status.value},
                )
            actions.append(EventAction(action="capture_waiting", transaction_id=tx_id,
                                       message="the payment is not authorized yet; nothing to capture"))
            return
        if amount_minor is None:
            amount_minor = to_minor_units(document_total(document), tx.currency) - ledger.captured
        if amount_minor <= 0:
            actions.append(EventAction(action="already_captured", transaction_id=tx_id))
            return
        view = self.capture(document.company_id, tx_id, from_minor_units(amount_minor, tx.currency),
                            actor=ctx.actor, request_id=ctx.request_id, trigger=ctx.trigger)
        actions.append(EventAction(action="captured", transaction_id=tx_id, amount=from_minor_units(amount_minor, tx.currency),
                                   message=f"status {view.status.value}"))

    # ---- reopened / changed ----------------------------------------------------------------
    def _on_reopened(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        with self.store.transaction() as s:
            self._document_setup(s, document)
            row = self._upsert_document(s, document, role="origin", status="open")
            actions.append(EventAction(action="reopened", transaction_id=row.transaction_id))
            return row.transaction_id

    def _on_changed(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        with self.store.transaction() as s:
            self._document_setup(s, document)
        rules.check_document(document)
        with self.store.transaction() as s:
            row = self._upsert_document(s, document, role="origin")
            if row.changed_since_release and row.transaction_id:
                tx = self._load_tx(s, document.company_id, row.transaction_id)
                self._history(
                    s, tx, "document_changed", _Ctx(ctx.actor, "change"),
                    message=f"{describe(document)} changed after release; it must be released again before posting.",
                )
                actions.append(EventAction(action="release_required", transaction_id=tx.id))
            else:
                actions.append(EventAction(action="recorded", transaction_id=row.transaction_id))
            return row.transaction_id

    # ---- posted ----------------------------------------------------------------------------
    def _on_posted(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        origin_type, origin_id = self._origin_of(document)
        with self.store.transaction() as s:
            setup = self._document_setup(s, document)
            origin = s.get(DocumentRow, (document.company_id, origin_type, origin_id))
            title = describe(document) if (origin_type, origin_id) == (document.document_type.value, document.document_id) else (
                f"Sales order {origin.number if origin else origin_id}"
            )
            if origin_type == DocumentType.SALES_ORDER.value:
                if origin is None or origin.released_hash is None:
                    raise ReleaseRequired(
                        f"{title} cannot be posted: it was never released. Release it first.",
                        details={"document_id": origin_id},
                    )
            if origin is not None and origin.released_hash is not None:
                changed = origin.changed_since_release or (
                    document.document_type.value == origin_type and content_hash(document) != origin.released_hash
                )
                if changed:
                    raise ReleaseRequired(
                        f"{title} was changed after it was released. Release it again so the change reaches the "
                        f"payment, then post.",
                        details={"document_id": origin_id},
                    )
        rules.check_document(document)
        request_id = _short(f"post:{event.posted_document_id or document.document_id}:{event.event_id}")
        sub = _Ctx(ctx.actor, Trigger.POSTING, request_id)
        created: list[tuple[str, str]] = []  # document rows this posting adds (undone if its capture is refused)
        safety_id: int | None = None
        with self.store.transaction() as s:
            tx = self._active_tx(s, document.company_id, DocumentType(origin_type), origin_id)
            if tx is None:
                raise IllegalTransition(
                    f"{title} cannot be posted: payweave has no payment for it (it was never authorized).",
                    details={"document_id": origin_id},
                )
            if document.currency != tx.currency:
                raise WrongDocumentDirection(
                    f"{describe(document)} is in {document.currency}, but its payment is in {tx.currency}.",
                )
            if tx.status in (TxStatus.PREPARED.value, TxStatus.PENDING.value):
                raise IllegalTransition(
                    f"{title} cannot be posted: its payment is not authorized yet ({tx.status}).",
                    details={"transaction_id": tx.id, "status": tx.status},
                )
            tx_id = tx.id
            invoiced_before = tx.invoiced_minor
            total_minor = to_minor_units(document_total(document), tx.currency)

            def remember(document_type: str, document_id: str) -> None:
                if s.get(DocumentRow, (document.company_id, document_type, document_id)) is None:
                    created.append((document_type, document_id))

            if document.document_type.value != origin_type or document.document_id != origin_id:
                seen_before = s.get(DocumentRow, (document.company_id, document.document_type.value, document.document_id))
                if seen_before is None or seen_before.role != "posted":
                    tx.invoiced_minor += total_minor  # one more (partial) invoice of the order
                remember(document.document_type.value, document.document_id)
                self._upsert_document(s, document, role="posted", transaction_id=tx_id, status="posted")
            else:
                tx.invoiced_minor = max(tx.invoiced_minor, total_minor)  # the whole document is posted
            if event.posted_document_id:
                remember(DocumentType.SALES_INVOICE.value, event.posted_document_id)
                self._link_posted(s, document.company_id, tx_id, event.posted_document_id, event.posted_document_number)
            if document.document_type is DocumentType.SALES_INVOICE and not document.order_id:
                self._upsert_document(s, document, role="origin", transaction_id=tx_id, status="posted")
            elif origin is not None:
                origin_row = s.get(DocumentRow, (document.company_id, origin_type, origin_id))
                if origin_row is not None and document.document_type.value == origin_type:
                    origin_row.status = "posted"
            cur = tx.currency
            ledger = self._ledger(tx)
            amount_minor = tx.invoiced_minor - ledger.captured
            due = not setup.auto_capture and amount_minor > 0
            if due and amount_minor > ledger.open:
                raise AmountNotAvailable(
                    f"{describe(document)} cannot be posted: it would need a capture of {ledger.fmt(amount_minor)}, but "
                    f"only {ledger.fmt(ledger.open)} is reserved.",
                    details={"amount": str(ledger.money(amount_minor)), "capturable": str(ledger.money(ledger.open))},
                )
            capture_now = due and setup.capture_timing in (CaptureTiming.ON_POSTING, CaptureTiming.ON_RELEASE)
            payload = {"transaction_id": tx_id, "mode": "invoiced", "amount": str(ledger.money(amount_minor)),
                       "request_id": request_id}
            if capture_now:
                # refuse before anything is recorded when the PSP cannot take this capture
                check_capture(TxStatus(tx.status), ledger, amount_minor, self.capabilities(tx.psp, tx.psp_account),
                              self._psp_name(tx.psp, tx.psp_account))
                # outbox: should this process die before the capture is recorded, this job captures
                # with the same request id (and finds nothing to do when the capture below succeeded)
                safety_id = self.jobs.enqueue(
                    s, company_id=tx.company_id, kind=JobKind.CAPTURE, payload=payload,
                    due_at=self.clock.now() + timedelta(minutes=5), dedupe_key=request_id, transaction_id=tx_id,
                ).id
            elif due and setup.capture_timing is CaptureTiming.JOB_QUEUE:
                job = self.jobs.enqueue(s, company_id=tx.company_id, kind=JobKind.CAPTURE, payload=payload,
                                        dedupe_key=request_id, transaction_id=tx_id)
                self._history(s, tx, "capture_scheduled", sub, amount_minor=amount_minor,
                              message=f"Capture of {ledger.fmt(amount_minor)} queued (job {job.id}).", details={"job_id": job.id})
                actions.append(EventAction(action="capture_scheduled", transaction_id=tx_id,
                                           amount=ledger.money(amount_minor), job_id=job.id))
            elif due:
                self._history(s, tx, "posted", sub, amount_minor=amount_minor,
                              message=f"{describe(document)} posted; capture timing is manual.")
                actions.append(EventAction(action="awaiting_manual_capture", transaction_id=tx_id,
                                           amount=from_minor_units(amount_minor, cur)))
            else:
                actions.append(EventAction(action="already_captured", transaction_id=tx_id))
        if capture_now:
            try:
                view = self.capture(document.company_id, tx_id, from_minor_units(amount_minor, cur), actor=ctx.actor,
                                    request_id=request_id, trigger=Trigger.POSTING)
            except PayweaveError as exc:
                if not exc.retryable:
                    self._undo_posting(document, tx_id, invoiced_before, created, safety_id, exc, sub)
                raise
            self._settle_outbox_job(document.company_id, safety_id, "the capture on posting succeeded in-line")
            actions.append(EventAction(action="captured", transaction_id=tx_id, amount=from_minor_units(amount_minor, cur),
                                       message=f"status {view.status.value}"))
        return tx_id

    def _settle_outbox_job(self, company_id: str, job_id: int | None, why: str) -> None:
        """The in-line PSP call that an outbox job stood in for succeeded: mark the job done, so
        no pending capture or refund is shown (or run) for a payment that already happened. If
        this process dies before this point the job stays pending and finds nothing to do."""
        if job_id is None:
            return
        now = self.clock.now()
        with self.store.transaction() as s:
            job = s.get(JobRow, job_id)
            if job is not None and job.company_id == company_id and job.status == JobStatus.PENDING.value:
                job.status, job.finished_at, job.updated_at = JobStatus.DONE.value, now, now
                job.last_error = None
                job.result = {"outcome": why}

    def _undo_posting(
        self,
        document: SalesDocument,
        tx_id: str,
        invoiced_before: int | None,
        created: list[tuple[str, str]],
        safety_id: int | None,
        exc: PayweaveError,
        ctx: _Ctx,
    ) -> None:
        """The PSP call of a posting was refused: BC does not post, so payweave forgets the posting."""
        now = self.clock.now()
        with self.store.transaction() as s:
            tx = self._load_tx(s, document.company_id, tx_id)
            if invoiced_before is not None:
                tx.invoiced_minor = invoiced_before
            for document_type, document_id in created:
                row = s.get(DocumentRow, (document.company_id, document_type, document_id))
                if row is not None:
                    s.delete(row)
            if safety_id is not None:
                job = s.get(JobRow, safety_id)
                if job is not None and job.status == "pending":
                    job.status, job.finished_at, job.updated_at = "cancelled", now, now
                    job.last_error = "the posting's PSP call was refused"
            self._history(s, tx, "posting_refused", ctx, outcome="refused",
                          message=f"{describe(document)} was not accepted as posted: {exc.message}",
                          details={"error": _err_dict(exc)})

    def _link_posted(self, s: Session, company_id: str, tx_id: str, posted_id: str, posted_number: str | None) -> None:
        row = s.get(DocumentRow, (company_id, DocumentType.SALES_INVOICE.value, posted_id))
        if row is None:
            s.add(
                DocumentRow(
                    company_id=company_id,
                    document_type=DocumentType.SALES_INVOICE.value,
                    document_id=posted_id,
                    number=posted_number or "",
                    role="posted",
                    status="posted",
                    transaction_id=tx_id,
                    content_hash="",
                    updated_at=self.clock.now(),
                )
            )
        else:
            row.transaction_id = row.transaction_id or tx_id
            row.number = posted_number or row.number

    # ---- cancellation / deletion ---------------------------------------------------------------
    def _on_partly_cancelled(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        with self.store.transaction() as s:
            setup = self._document_setup(s, document)
            before = s.get(DocumentRow, (document.company_id, document.document_type.value, document.document_id))
            accepted = before is not None and before.released_hash is not None and not before.changed_since_release
            row = self._upsert_document(s, document, role="origin")
            if accepted:  # a cancellation of a released order is part of its released content
                row.released_hash = row.content_hash
                row.changed_since_release = False
            tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
            if tx is None:
                actions.append(EventAction(action="recorded"))
                return None
            ledger = self._ledger(tx)
            remaining = to_minor_units(document_total(document), tx.currency)
            excess = ledger.open - max(remaining - ledger.captured, 0)
            tx_id = tx.id
            caps = self.capabilities(tx.psp, tx.psp_account)
            if excess <= 0:
                actions.append(EventAction(action="nothing_to_void", transaction_id=tx_id))
                return tx_id
            if not setup.auto_void:
                self._history(
                    s, tx, "cancellation_recorded", _Ctx(ctx.actor, Trigger.CANCELLATION), amount_minor=excess,
                    message=f"{describe(document)} was partly cancelled; {ledger.fmt(excess)} more than the remaining "
                    f"order value stays reserved ('Automatic PSP Cancellation' is off).",
                )
                actions.append(EventAction(action="excess_stays_reserved", transaction_id=tx_id, amount=ledger.money(excess)))
                return tx_id
            partial = excess < ledger.open
            whole = partial and not caps.declares(Feature.PARTIAL_VOID)
        sub = _Ctx(ctx.actor, Trigger.CANCELLATION, _short(f"event:{event.event_id}:void"))
        if whole:
            self.void(document.company_id, tx_id, None, reason=f"{describe(document)} partly cancelled (the PSP cannot void partially)",
                      actor=ctx.actor, request_id=sub.request_id, trigger=sub.trigger)
            actions.append(EventAction(action="voided_all", transaction_id=tx_id, amount=ledger.money(ledger.open),
                                       message="the PSP cannot void partially, so the whole reservation was voided"))
        else:
            self.void(document.company_id, tx_id, ledger.money(excess), reason=f"{describe(document)} partly cancelled",
                      actor=ctx.actor, request_id=sub.request_id, trigger=sub.trigger)
            actions.append(EventAction(action="voided", transaction_id=tx_id, amount=ledger.money(excess)))
        return tx_id

    def _on_deleted(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        with self.store.transaction() as s:
            setup = self._document_setup(s, document)
            self._upsert_document(s, document, role="origin", status="deleted")
            tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
            if tx is None:
                actions.append(EventAction(action="recorded"))
                return None
            tx_id = tx.id
            status = TxStatus(tx.status)
            ledger = self._ledger(tx)
            if status is TxStatus.PREPARED and not tx.psp_reference:
                before = tx.status
                tx.status = TxStatus.VOIDED.value
                tx.updated_at = self.clock.now()
                self._history(s, tx, "cancelled", _Ctx(ctx.actor, Trigger.DELETION), from_status=before, to_status=tx.status,
                              message=f"{describe(document)} was deleted before the payment was authorized.")
                actions.append(EventAction(action="cancelled", transaction_id=tx_id))
                return tx_id
            if ledger.open <= 0:
                actions.append(EventAction(action="nothing_to_void", transaction_id=tx_id))
                return tx_id
            if not setup.auto_void:
                self._history(s, tx, "deletion_recorded", _Ctx(ctx.actor, Trigger.DELETION), amount_minor=ledger.open,
                              message=f"{describe(document)} was deleted; {ledger.fmt(ledger.open)} stays reserved "
                              f"('Automatic PSP Cancellation' is off).")
                actions.append(EventAction(action="reservation_kept", transaction_id=tx_id, amount=ledger.money(ledger.open)))
                return tx_id
        self.void(document.company_id, tx_id, None, reason=f"{describe(document)} deleted", actor=ctx.actor,
                  request_id=_short(f"event:{event.event_id}:void"), trigger=Trigger.DELETION)
        actions.append(EventAction(action="voided", transaction_id=tx_id, amount=ledger.money(ledger.open)))
        return tx_id

    # ---- return documents ------------------------------------------------------------------------
    def _on_return_document(self, event: DocumentEvent, ctx: _Ctx, actions: list[EventAction]) -> str | None:
        document = event.document
        with self.store.transaction() as s:
            self._document_setup(s, document)
        rules.check_document(document)
        with self.store.transaction() as s:
            tx = self._original_tx(s, document, required=True)
            assert tx is not None
            tx_id = tx.id
            setup = self._setup(s, tx.company_id, tx.payment_method_code)
            if event.type is not DocumentEventType.POSTED:
                self._upsert_document(s, document, role="return", transaction_id=tx_id)
                actions.append(EventAction(action="recorded", transaction_id=tx_id))
                return tx_id
            created = s.get(DocumentRow, (document.company_id, document.document_type.value, document.document_id)) is None
            timing = setup.refund_timing if setup else RefundTiming.MANUAL
            kind, why = self._choose_money_back(tx, document)
            amount = document_total(document)
            pay_back_now = timing is RefundTiming.ON_POSTING
            # refuse before anything is recorded; unless this document was paid back already (its
            # posting is delivered again after a crash or a lost answer): then that outcome is the answer
            paid_back = any(op.status != OpStatus.FAILED.value for op in self._pay_backs(s, document))
            if pay_back_now and not paid_back:
                self._check_pay_back(tx, setup, document, kind, why)
            self._upsert_document(s, document, role="return", transaction_id=tx_id, status="posted")
            if timing is RefundTiming.JOB_QUEUE or pay_back_now:
                # via job queue: the job; on posting: an outbox job that pays back (once per document)
                # should this process die before the refund below is recorded
                job = self.jobs.enqueue(
                    s,
                    company_id=tx.company_id,
                    kind=JobKind.REFUND,
                    payload={"document_type": document.document_type.value, "document_id": document.document_id},
                    due_at=self.clock.now() + timedelta(minutes=5) if pay_back_now else None,
                    dedupe_key=_short(f"refund:{document.document_type.value}:{document.document_id}"),
                    transaction_id=tx_id,
                )
                if not pay_back_now:
                    self._history(s, tx, f"{kind.value}_scheduled", _Ctx(ctx.actor, Trigger.POSTING),
                                  amount_minor=to_minor_units(amount, tx.currency),
                                  message=f"{describe(document)} posted; {kind.value} of {amount} {tx.currency} queued "
                                  f"(job {job.id})." + (f" Credit because {why}." if why else ""), details={"job_id": job.id})
                    actions.append(EventAction(action=f"{kind.value}_scheduled", transaction_id=tx_id, amount=amount,
                                               job_id=job.id))
                    return tx_id
                safety_id = job.id
            else:
                self._history(s, tx, "return_posted", _Ctx(ctx.actor, Trigger.POSTING),
                              amount_minor=to_minor_units(amount, tx.currency),
                              message=f"{describe(document)} posted; refund timing is manual ({kind.value} of {amount} "
                              f"{tx.currency} awaits a person).")
                actions.append(EventAction(action=f"awaiting_manual_{kind.value}", transaction_id=tx_id, amount=amount))
                return tx_id
        try:
            view = self._pay_back_document(document, tx_id, _Ctx(ctx.actor, Trigger.POSTING))
        except PayweaveError as exc:
            if not exc.retryable:  # BC does not post the return document: payweave forgets it
                self._undo_posting(document, tx_id, None, [(document.document_type.value, document.document_id)]
                                   if created else [], safety_id, exc, _Ctx(ctx.actor, Trigger.POSTING))
            raise
        self._settle_outbox_job(document.company_id, safety_id, f"the {kind.value} on posting succeeded in-line")
        actions.append(EventAction(action=f"{kind.value}ed", transaction_id=tx_id,
                                   amount=amount, message=f"status {view.status.value}" + (f"; credit because {why}" if why else "")))
        return tx_id

    def _original_tx(self, s: Session, document: SalesDocument, *, required: bool) -> TransactionRow | None:
        company = document.company_id
        row = None
        if document.applies_to_invoice_id:
            row = s.get(DocumentRow, (company, DocumentType.SALES_INVOICE.value, document.applies_to_invoice_id))
        if row is None and document.applies_to_invoice_number:
            row = s.scalars(
                select(DocumentRow).where(
                    DocumentRow.company_id == company,
                    DocumentRow.document_type == DocumentType.SALES_INVOICE.value,
                    DocumentRow.number == document.applies_to_invoice_number,
                    DocumentRow.transaction_id.is_not(None),
                )
            ).first()
        if row is None and document.document_type is DocumentType.SALES_RETURN_ORDER:
            existing = s.get(DocumentRow, (company, document.document_type.value, document.document_id))
            if existing is not None and existing.transaction_id:
                row = existing
        if row is None or row.transaction_id is None:
            if not required:
                return None
            which = document.applies_to_invoice_number or document.applies_to_invoice_id or "no invoice"
            raise OriginalPaymentNotFound(
                f"{describe(document)} applies to {which}, which was not paid through payweave, so nothing can be "
                f"refunded. Apply it to the posted invoice of the payment.",
                details={"applies_to_invoice_id": document.applies_to_invoice_id,
                         "applies_to_invoice_number": document.applies_to_invoice_number},
            )
        return self._load_tx(s, company, row.transaction_id)

    # =========================================================================== the operation protocol
    @contextmanager
    def _locked(self, company_id: str, key: str) -> Iterator[None]:
        with self.store.serialized(company_id, key):
            yield

    @contextmanager
    def _tx_locked(self, company_id: str, tx_id: str) -> Iterator[None]:
        key = self._lock_keys.get((company_id, tx_id))  # a transaction's document never changes
        if key is None:
            with self.store.transaction() as s:
                tx = self._load_tx(s, company_id, tx_id)
                key = _doc_key(tx.document_type, tx.document_id)
            if len(self._lock_keys) > 50_000:
                self._lock_keys.clear()
            self._lock_keys[(company_id, tx_id)] = key
        with self.store.serialized(company_id, key):
            yield

    def _operate(self, company_id: str, tx_id: str, kind: OpKind, build: Builder, ctx: _Ctx) -> TransactionView:
        # one connection for the intent and the outcome (both commit on it; it is idle, outside any
        # database transaction, while the PSP is called)
        with (bound_contextvars(company=company_id, transaction=tx_id, operation=kind.value),
              self._tx_locked(company_id, tx_id), self.store.connect() as conn):
            for _ in range(3):
                detour: tuple[OperationRow | None, list[int]] | None = None
                try:
                    with self.store.transaction_on(conn) as s:
                        # the transaction, and whether an operation of this request id or an
                        # unfinished one of the transaction exists (then look at them below)
                        key_params = {"company_id": company_id, "transaction_id": tx_id, "request_id": ctx.request_id}
                        first = _TX_AND_BLOCKING_OP.first(conn, key_params)
                        existing = None
                        unfinished: list[int] = []
                        if first is None or first[-1] is not None:
                            # the first operation of this request id, and unfinished ones of the transaction
                            # (rows: id, transaction_id, request_id, status)
                            found = _UNFINISHED_OPS_OR_REQUEST.all(conn, key_params)
                            existing_id = next(
                                (op[0] for op in found if ctx.request_id is not None and op[2] == ctx.request_id), None
                            )
                            existing = s.get(OperationRow, existing_id) if existing_id is not None else None
                            unfinished = [op[0] for op in found if op[1] == tx_id and op[3] in UNFINISHED]
                        if existing is not None or unfinished:
                            detour = (existing, unfinished)
                        else:
                            tx = _TX.record(first) if first is not None else self._tx_record(conn, company_id, tx_id)
                            setup = _Lazy(lambda: self._setup(s, company_id, tx.payment_method_code))
                            caps = self.capabilities(tx.psp, tx.psp_account)
                            ledger = self._ledger(tx)
                            status = TxStatus(tx.status)
                            seq = tx.next_seq
                            key = f"pw-{tx.id}-{seq}-{kind.value}"
                            plan = build(s, tx, ledger, status, setup, caps, self._psp_name(tx.psp, tx.psp_account), key)
                            now = self.clock.now()
                            document = plan.document
                            values: dict[str, Any] = {
                                "company_id": company_id,
                                "transaction_id": tx.id,
                                "seq": seq,
                                "kind": kind.value,
                                "status": OpStatus.STARTED.value,
                                "request_id": ctx.request_id or f"op:{uuid.uuid4()}",
                                "idempotency_key": key,
                                "actor": ctx.actor,
                                "trigger": ctx.trigger,
                                "amount_minor": plan.amount_minor,
                                "currency": tx.currency,
                                "psp_reference": tx.psp_reference,
                                "document_type": document.document_type.value if document else None,
                                "document_id": document.document_id if document else None,
                                "document_number": document.number if document else None,
                                "request": plan.request.model_dump(mode="json"),
                                "context": plan.context,
                                "result": None,
                                "operation_reference": None,
                                "error_code": None,
                                "error_message": None,
                                "error_details": None,
                                "attempts": 0,
                                "created_at": now,
                                "completed_at": None,
                            }
                            s.flush()  # anything a builder added goes first, as before
                            # the intent's rows without the unit of work: one INSERT, one UPDATE of
                            # the transaction (checked against the version it was read with)
                            tx.next_seq = seq + 1
                            tx.updated_at = now
                            write_changes(conn, tx)
                            values["id"] = _INSERT_OPERATION.returning(conn, values)[0]
                            op = SimpleNamespace(**values)  # the row as committed, read by the outcome
                            self._history(
                                s, tx, f"{kind.value}_requested", ctx, amount_minor=plan.amount_minor, op=op,
                                message=self._describe_request(kind, ledger, plan),
                                details={"request": op.request},
                            )
                            op_id = op.id
                            # send exactly what a replay would send: the stored request, validated again
                            fresh = (kind, REQUEST_MODELS[kind].model_validate(op.request), tx.psp, tx.psp_account, key,
                                     _IntentRows(op, tx, conn))
                except PayweaveError as exc:
                    self._record_refusal(company_id, tx_id, kind, ctx, exc)
                    raise
                if detour is None:
                    return self._call(op_id, fresh=fresh)
                existing, unfinished = detour
                if existing is not None:
                    if existing.transaction_id != tx_id or existing.kind != kind.value:
                        raise IllegalTransition(
                            f"Request id {ctx.request_id} was already used for a {existing.kind} of transaction "
                            f"{existing.transaction_id}.",
                            details={"request_id": ctx.request_id},
                        )
                    return self._settle(existing)
                self._recover_transaction(company_id, tx_id, unfinished)  # then plan again
            raise OperationOutcomeUnknown(
                "An earlier PSP call of this payment is still being resolved; please try again in a moment.",
                details={"transaction_id": tx_id},
            )

    def _describe_request(self, kind: OpKind, ledger: Ledger, plan: _Plan) -> str:
        amount = "everything still reserved" if plan.amount_minor is None else ledger.fmt(plan.amount_minor)
        return f"{kind.value.replace('_', ' ').capitalize()} of {amount} requested."

    def _record_refusal(self, company_id: str, tx_id: str, kind: OpKind, ctx: _Ctx, exc: PayweaveError) -> None:
        try:
            with self.store.transaction() as s:
                tx = self._load_tx(s, company_id, tx_id)
                self._history(s, tx, f"{kind.value}_refused", ctx, outcome="refused", message=exc.message,
                              details={"error": _err_dict(exc)})
        except PayweaveError:  # the transaction itself is unknown: nothing to record on
            pass
        self.log.info("operation.refused", code=exc.code, error=exc.message)

    def _op_by_request(self, s: Session, company_id: str, request_id: str) -> OperationRow | None:
        return s.scalars(
            select(OperationRow).where(OperationRow.company_id == company_id, OperationRow.request_id == request_id)
        ).first()

    def _settle(self, op: OperationRow) -> TransactionView:
        """Answer a repeated request: finish the first operation if needed, else repeat its outcome."""
        if op.status in UNFINISHED:
            return self._call(op.id)
        if op.status == OpStatus.FAILED.value:
            raise restore_error(op.error_code, op.error_message, op.error_details)
        return self.get_transaction(op.company_id, op.transaction_id)

    def _recover_transaction(self, company_id: str, tx_id: str, pending: list[int] | None = None) -> None:
        """Replay every unfinished operation of the transaction (caller holds its lock)."""
        if pending is None:
            with self.store.transaction() as s:
                pending = list(
                    s.scalars(
                        select(OperationRow.id)
                        .where(
                            OperationRow.company_id == company_id,
                            OperationRow.transaction_id == tx_id,
                            OperationRow.status.in_(UNFINISHED),
                        )
                        .order_by(OperationRow.seq)
                    ).all()
                )
        for op_id in pending:
            try:
                self._call(op_id, recovering=True)
            except (OperationOutcomeUnknown, PluginBug, OperationParked):
                raise
            except PayweaveError:
                continue  # a final refusal of the replayed call is recorded on it; go on

    def recover(self, company_id: str | None = None, *, limit: int = 1000) -> int:
        """Replay every operation left without outcome (after a crash or a PSP outage)."""
        query = select(OperationRow.company_id, OperationRow.transaction_id).where(OperationRow.status.in_(UNFINISHED))
        if company_id is not None:
            query = query.where(OperationRow.company_id == company_id)
        with self.store.transaction() as s:
            pairs = sorted(set(s.execute(query.limit(limit)).all()))
        done = 0
        for company, tx_id in pairs:
            try:
                with bound_contextvars(company=company, transaction=tx_id), self._tx_locked(company, tx_id):
                    self._recover_transaction(company, tx_id)
                done += 1
            except PayweaveError as exc:
                self.log.warning("recover.unresolved", company=company, transaction=tx_id, code=exc.code, error=exc.message)
        return done

    def recover_operation(self, company_id: str, operation_id: int) -> TransactionView:
        with self.store.transaction() as s:
            op = s.scalars(
                select(OperationRow).where(OperationRow.company_id == company_id, OperationRow.id == operation_id)
            ).first()
            if op is None:
                raise TransactionNotFound(f"There is no operation {operation_id}.", details={"operation_id": operation_id})
            tx_id = op.transaction_id
        with self._tx_locked(company_id, tx_id):
            with self.store.transaction() as s:
                op = s.get(OperationRow, operation_id)
                assert op is not None
            if op.status in UNFINISHED:
                self._call(op.id, recovering=True)
            return self.get_transaction(company_id, tx_id)

    def _call(
        self, op_id: int, *, recovering: bool = False, fresh: tuple[Any, ...] | None = None
    ) -> TransactionView:
        """Send the operation's stored request to the PSP and commit the outcome.

        ``fresh`` (kind, request, psp, account, key, intent rows) skips re-reading an intent just
        committed; the outcome then starts from those rows, on the intent's connection."""
        rows: _IntentRows | None = None
        if fresh is not None:
            kind, request, psp, account_name, key, *more = fresh
            rows = more[0] if more else None
            replay = False
        else:
            with self.store.transaction() as s:
                op = s.get(OperationRow, op_id)
                assert op is not None
                tx = self._load_tx(s, op.company_id, op.transaction_id)
                kind = OpKind(op.kind)
                request = REQUEST_MODELS[kind].model_validate(op.request)
                psp, account_name, key = tx.psp, tx.psp_account, op.idempotency_key
                replay = op.status != OpStatus.STARTED.value or op.attempts > 0 or recovering
        account = self.account(psp, account_name)
        client = self.plugins.psp(psp)
        calls: dict[OpKind, Callable[[Account, Any], Any]] = {
            OpKind.RESERVE: client.reserve,
            OpKind.CAPTURE: client.capture,
            OpKind.VOID: client.void,
            OpKind.REFUND: client.refund,
            OpKind.CREDIT: client.credit,
            OpKind.CART_UPDATE: client.update_cart,
            OpKind.RENEW: client.renew_reservation,
        }
        with bound_contextvars(plugin=psp, idempotency_key=key):
            if replay:
                self.log.info("operation.replay", kind=kind.value)
            try:
                result = calls[kind](account, request)
            except TemporarilyUnavailable as exc:
                self._record_outcome_unknown(op_id, exc)
                raise OperationOutcomeUnknown(
                    f"The PSP did not answer the {kind.value.replace('_', ' ')} ({exc.message}); payweave retries it "
                    f"automatically with the same idempotency key, so it cannot happen twice.",
                    details={"operation_id": op_id, "cause": exc.code},
                ) from exc
            except PluginBug as exc:
                self._record_final(op_id, exc, parked=True)
                raise
            except PayweaveError as exc:
                self._record_final(op_id, exc, parked=False)
                raise
            token = _INTENT_ROWS.set((op_id, rows) if rows is not None else None)
            try:
                return self._apply(op_id, result)
            finally:
                _INTENT_ROWS.reset(token)

    def _record_outcome_unknown(self, op_id: int, exc: TemporarilyUnavailable) -> None:
        with self.store.transaction() as s:
            op = s.get(OperationRow, op_id)
            assert op is not None
            tx = self._load_tx(s, op.company_id, op.transaction_id)
            op.status = OpStatus.UNKNOWN.value
            op.attempts += 1
            op.error_code, op.error_message, op.error_details = exc.code, exc.message, exc.details
            delay = self.jobs.policy.delay(op.attempts, exc.retry_after.total_seconds() if exc.retry_after else None)
            self.jobs.enqueue(
                s,
                company_id=op.company_id,
                kind=JobKind.RECOVER_OPERATION,
                payload={"operation_id": op.id},
                due_at=self.clock.now() + timedelta(seconds=delay),
                dedupe_key=f"recover:{op.id}:{op.attempts}",
                transaction_id=op.transaction_id,
            )
            self._history(s, tx, f"{op.kind}_unanswered", _Ctx(op.actor, op.trigger), outcome="unknown",
                          amount_minor=op.amount_minor, op=op,
                          message=f"The PSP did not answer ({exc.message}); the call will be replayed with the same "
                          f"idempotency key.")
        self.log.warning("operation.unknown", error=exc.message)

    def _record_final(self, op_id: int, exc: PayweaveError, *, parked: bool) -> None:
        with self.store.transaction() as s:
            op = s.get(OperationRow, op_id)
            assert op is not None
            tx = self._load_tx(s, op.company_id, op.transaction_id)
            op.attempts += 1
            op.error_code, op.error_message, op.error_details = exc.code, exc.message, exc.details
            before = tx.status
            if parked:
                op.status = OpStatus.PARKED.value
            else:
                op.status = OpStatus.FAILED.value
                op.completed_at = self.clock.now()
                if op.kind == OpKind.RESERVE.value:
                    tx.status = TxStatus.FAILED.value
                    tx.updated_at = self.clock.now()
            self._history(s, tx, f"{op.kind}_{'parked' if parked else 'failed'}", _Ctx(op.actor, op.trigger),
                          outcome="parked" if parked else "failed", from_status=before, to_status=tx.status,
                          amount_minor=op.amount_minor, op=op, message=exc.message, details={"error": _err_dict(exc)})
        self.log.warning("operation.failed", code=exc.code, error=exc.message, parked=parked)

    def _apply(self, op_id: int, result: Any) -> TransactionView:
        intent = _INTENT_ROWS.get()
        if intent is not None and intent[0] == op_id:
            _INTENT_ROWS.set(None)  # used once
            try:
                return self._apply_on(op_id, result, intent[1])
            except StaleDataError:
                # the transaction row changed since the intent (its version moved): start over from
                # the stored rows; nothing was written (the outcome's database transaction rolled back)
                self.log.info("operation.apply_reloaded")
        return self._apply_on(op_id, result, None)

    def _apply_on(self, op_id: int, result: Any, rows: _IntentRows | None) -> TransactionView:
        """Commit the outcome. ``rows``: the operation and transaction rows as the intent committed
        them, used without reading them again, and the intent's connection. Only this call writes
        the operation while the caller holds the document lock; the transaction row's version
        column refuses the outcome's UPDATE if anything else changed it since (StaleDataError, then
        :meth:`_apply` reloads).

        The transaction is a plain record written with :func:`write_changes`; the operation's
        outcome is one UPDATE.

        A result that breaks the contract or the ledger parks the operation; that is recorded once
        this database transaction has been rolled back (leaving the block by the exception)."""
        parked: list[PluginBug] = []
        try:
            with self.store.transaction() if rows is None else self.store.transaction_on(rows.conn) as s:
                conn = connection_of(s)
                op: Any
                if rows is not None:
                    op, tx = rows.op, rows.tx
                else:
                    op = s.get(OperationRow, op_id)
                    assert op is not None
                    tx = self._tx_record(conn, op.company_id, op.transaction_id)
                kind = OpKind(op.kind)
                cur = tx.currency
                ledger = self._ledger(tx)
                before = tx.status
                phase = phase_of(tx.status)
                ctx = _Ctx(op.actor, op.trigger)
                op_status = OpStatus.SUCCEEDED
                operation_reference = op.operation_reference
                note = ""
                try:
                    if kind is OpKind.RESERVE or kind is OpKind.CART_UPDATE:
                        assert isinstance(result, ReservationResult)
                        self._check_currency(result.amount, cur, op)
                        amount = to_minor_units(result.amount.amount, cur)
                        captured = to_minor_units(result.captured.amount, cur)
                        tx.psp_reference = result.psp_reference
                        if result.status is PaymentStatus.PENDING:
                            phase = Phase.PENDING
                            ledger = ledger.with_(authorized=0, captured=0)
                        elif result.status in (PaymentStatus.RESERVED, PaymentStatus.CAPTURED, PaymentStatus.PARTLY_CAPTURED):
                            phase = Phase.ACTIVE
                            voided = amount - captured if result.status is PaymentStatus.CAPTURED else 0
                            ledger = Ledger(cur, authorized=amount, captured=captured, voided=voided)
                            ledger.check()
                        else:
                            raise PluginBug(
                                f"Plugin {tx.psp!r} returned status {result.status.value!r} from a {kind.value}; a refusal "
                                f"must be raised, not returned.",
                                details={"plugin": tx.psp},
                            )
                        if kind is OpKind.CART_UPDATE:
                            new_cart = Cart.model_validate(op.context["cart"])
                            self._store_cart(tx, new_cart, to_minor_units(new_cart.total_gross, cur), cart_hash(new_cart, new_cart.total_gross))
                        tx.psp_cart_hash = tx.cart_hash
                        tx.expires_at = self._expiry(result.expires_at, tx) if ledger.open > 0 else None
                        note = f" ({result.status.value}, reference {result.psp_reference})"
                    elif kind is OpKind.RENEW:
                        assert isinstance(result, RenewalResult)
                        new = result.reservation
                        self._check_currency(new.amount, cur, op)
                        old_reference = tx.psp_reference
                        renewed = to_minor_units(new.amount.amount, cur)
                        ledger = ledger.with_(authorized=ledger.captured + ledger.voided + ledger.expired + renewed)
                        tx.psp_reference = new.psp_reference
                        tx.expires_at = self._expiry(new.expires_at, tx)
                        note = (f": new reference {new.psp_reference}, valid until "
                                f"{tx.expires_at.isoformat() if tx.expires_at else 'no expiry'}; old reference "
                                f"{old_reference} {result.old_reference_action}")
                    else:
                        assert isinstance(result, OperationResult)
                        self._check_currency(result.amount, cur, op)
                        amount = to_minor_units(result.amount.amount, cur)
                        requested = op.amount_minor if op.amount_minor is not None else ledger.open
                        if amount < 0 or amount > requested:
                            raise PluginBug(
                                f"Plugin {tx.psp!r} reported a {kind.value} of {result.amount} for a request of "
                                f"{ledger.fmt(requested)}.",
                                details={"plugin": tx.psp},
                            )
                        if result.status is OperationStatus.PENDING:
                            op_status = OpStatus.PENDING
                        if kind is OpKind.CAPTURE:
                            released = to_minor_units(result.released.amount, cur) if result.released else 0
                            after_open = ledger.open - amount
                            if op.context.get("final"):
                                released = after_open
                            ledger = ledger.with_(captured=ledger.captured + amount, voided=ledger.voided + min(released, after_open))
                            if released:
                                note = f"; {ledger.fmt(min(released, after_open))} released (final capture)"
                        elif kind is OpKind.VOID:
                            ledger = ledger.with_(voided=ledger.voided + amount)
                        elif kind is OpKind.REFUND:
                            ledger = ledger.with_(refunded=ledger.refunded + amount)
                        elif kind is OpKind.CREDIT:
                            ledger = ledger.with_(credited=ledger.credited + amount)
                        operation_reference = result.operation_reference
                except PluginBug as exc:
                    parked.append(exc)
                    raise
                except AssertionError as exc:
                    bug = PluginBug(f"Plugin {tx.psp!r} returned a result that breaks the payment's ledger: {exc}",
                                    details={"plugin": tx.psp})
                    parked.append(bug)
                    raise bug from exc
                self._set_ledger(tx, ledger, phase)
                now = self.clock.now()
                _OPERATION_OUTCOME.execute(conn, {
                    "op_id": op.id, "new_status": op_status.value, "new_result": result.model_dump(mode="json"),
                    "new_attempts": op.attempts + 1, "new_completed_at": now, "new_operation_reference": operation_reference,
                })
                tx.updated_at = now
                write_changes(conn, tx)
                done = {OpStatus.PENDING: "accepted (pending)", OpStatus.SUCCEEDED: "succeeded"}[op_status]
                self._history(
                    s, tx, kind.value, ctx, from_status=before, to_status=tx.status,
                    amount_minor=op.amount_minor if kind is not OpKind.RESERVE else ledger.authorized, op=op,
                    message=f"{kind.value.replace('_', ' ').capitalize()} {done}{note}.",
                    operation_reference=getattr(result, "operation_reference", None),
                )
                if kind in (OpKind.RESERVE, OpKind.RENEW, OpKind.CART_UPDATE):
                    self._schedule_expiry_jobs(s, tx, self._setup(s, tx.company_id, tx.payment_method_code))
                view = self._view(s, tx)
        except PluginBug as exc:
            if parked and exc is parked[0]:
                self._record_final(op_id, exc, parked=True)  # the outcome's transaction is rolled back by now
            raise
        self.log.info("operation.applied", kind=kind.value, status=view.status.value)
        return view

    @staticmethod
    def _check_currency(amount: Money, currency: str, op: OperationRow) -> None:
        if amount.currency != currency:
            raise PluginBug(f"The PSP answered in {amount.currency} for a {op.kind} in {currency}.")

    def _expiry(self, reported: datetime | None, tx: TransactionRow) -> datetime | None:
        if reported is not None:
            return reported
        validity = self.capabilities(tx.psp, tx.psp_account).reservation_validity
        return self.clock.now() + validity if validity else None

    def _schedule_expiry_jobs(self, s: Session, tx: TransactionRow, setup: PaymentMethodSetup | None) -> None:
        """Late automatic capture and reservation renewal, due a margin before the expiry."""
        for kind in (JobKind.LATE_CAPTURE, JobKind.RENEW_RESERVATION, JobKind.EXPIRE_RESERVATION):
            self.jobs.cancel_pending(s, company_id=tx.company_id, kind=kind.value, transaction_id=tx.id,
                                     reason="superseded: the reservation changed")
        ledger = self._ledger(tx)
        if tx.expires_at is None or ledger.open <= 0 or setup is None:
            return
        stamp = tx.expires_at.isoformat()
        jobs = self.settings.jobs
        payload = {"transaction_id": tx.id, "expires_at": stamp}
        if setup.late_capture:
            self.jobs.enqueue(s, company_id=tx.company_id, kind=JobKind.LATE_CAPTURE, payload=payload,
                              due_at=tx.expires_at - timedelta(seconds=jobs.late_capture_margin_seconds),
                              dedupe_key=_short(f"late_capture:{tx.id}:{stamp}"), transaction_id=tx.id)
        if setup.allow_reservation_renewal:
            self.jobs.enqueue(s, company_id=tx.company_id, kind=JobKind.RENEW_RESERVATION, payload=payload,
                              due_at=tx.expires_at - timedelta(seconds=jobs.renewal_margin_seconds),
                              dedupe_key=_short(f"renew:{tx.id}:{stamp}"), transaction_id=tx.id)
        self.jobs.enqueue(s, company_id=tx.company_id, kind=JobKind.EXPIRE_RESERVATION, payload=payload,
                          due_at=tx.expires_at, dedupe_key=_short(f"expire:{tx.id}:{stamp}"), transaction_id=tx.id)

    # =========================================================================== rows and views
    def _minor(self, amount: Any, currency: str) -> int:
        if isinstance(amount, Money):
            if amount.currency != currency:
                raise MoneyError(
                    f"The amount is in {amount.currency}, but the payment is in {currency}.",
                    code="currency_mismatch",
                    details={"amount_currency": amount.currency, "payment_currency": currency},
                )
            return amount.minor_units
        return to_minor_units(to_decimal(amount), currency)

    @staticmethod
    def _ledger(tx: TransactionRow) -> Ledger:
        return ledger_of(tx)

    @staticmethod
    def _set_ledger(tx: TransactionRow, ledger: Ledger, phase: Phase) -> None:
        store_ledger(tx, ledger, phase)

    @staticmethod
    def _tx_cart(tx: TransactionRow) -> Cart | None:
        if tx.no_cart or not tx.cart:
            return None
        return Cart.model_validate(tx.cart)

    @staticmethod
    def _store_cart(tx: TransactionRow, cart: Cart | None, amount_minor: int, psp_hash: str) -> None:
        total = from_minor_units(amount_minor, tx.currency)
        tx.cart = cart.model_dump(mode="json") if cart is not None else None
        tx.cart_hash = cart_hash(cart, total)
        tx.amount_minor = amount_minor
        tx.psp_cart_hash = psp_hash

    def _load_tx(self, s: Session, company_id: str, tx_id: str) -> TransactionRow:
        tx = s.scalars(_TX_BY_ID, {"company_id": company_id, "transaction_id": tx_id}).first()
        if tx is None:
            raise TransactionNotFound(
                f"There is no payment transaction {tx_id} in this company.",
                details={"transaction_id": tx_id, "company_id": company_id},
            )
        return tx

    @staticmethod
    def _tx_record(conn: Connection, company_id: str, tx_id: str) -> Record:
        """The transaction row as a plain record (store.rows), for the operation protocol."""
        row = _TX_RECORD.first(conn, {"company_id": company_id, "transaction_id": tx_id})
        if row is None:
            raise TransactionNotFound(
                f"There is no payment transaction {tx_id} in this company.",
                details={"transaction_id": tx_id, "company_id": company_id},
            )
        return _TX.record(row)

    def _active_tx(self, s: Session, company_id: str, document_type: DocumentType | str, document_id: str) -> TransactionRow | None:
        rows = s.scalars(
            select(TransactionRow)
            .where(
                TransactionRow.company_id == company_id,
                TransactionRow.document_type == str(DocumentType(document_type).value),
                TransactionRow.document_id == document_id,
                TransactionRow.status != TxStatus.FAILED.value,
            )
            .order_by(TransactionRow.created_at.desc())
        ).all()
        for tx in rows:
            if tx.status == TxStatus.VOIDED.value and tx.captured_minor == 0:
                continue
            return tx
        return None

    def _new_tx(self, s: Session, document: SalesDocument, setup: PaymentMethodSetup, ctx: _Ctx, *, origin: str = "document") -> TransactionRow:
        now = self.clock.now()
        total = document_total(document)
        if total <= 0 and origin == "document":
            raise AmountNotAvailable(
                f"{describe(document)} totals {total} {document.currency}; there is nothing to pay.",
                details={"document_total": str(total)},
            )
        cart = None if setup.without_cart else build_cart(document)
        tx = TransactionRow(
            id=str(uuid.uuid4()),
            company_id=document.company_id,
            document_type=document.document_type.value,
            document_id=document.document_id,
            document_number=document.number,
            payment_method_code=setup.code,
            psp=setup.psp,
            psp_account=setup.psp_account,
            currency=document.currency,
            status=TxStatus.PREPARED.value,
            origin=origin,
            no_cart=setup.without_cart,
            auto_capture=setup.auto_capture,
            customer=document.customer.model_dump(mode="json"),
            next_seq=1,
            created_at=now,
            updated_at=now,
        )
        self._store_cart(tx, cart, to_minor_units(total, document.currency), "")
        s.add(tx)
        s.flush()
        self._history(s, tx, "prepared", ctx, to_status=tx.status, amount_minor=tx.amount_minor,
                      message=f"Payment prepared for {describe(document)} over {total} {document.currency} "
                      f"(payment method {setup.code}, PSP {self._psp_name(setup.psp, setup.psp_account)}"
                      f"{', without cart' if setup.without_cart else ''}).")
        return tx

    def _upsert_document(
        self,
        s: Session,
        document: SalesDocument,
        *,
        role: str,
        transaction_id: str | None = None,
        status: str | None = None,
        released: bool = False,
    ) -> DocumentRow:
        now = self.clock.now()
        row = s.get(DocumentRow, (document.company_id, document.document_type.value, document.document_id))
        digest = content_hash(document)
        if row is None:
            row = DocumentRow(
                company_id=document.company_id,
                document_type=document.document_type.value,
                document_id=document.document_id,
                role=role,
                changed_since_release=False,
                updated_at=now,
            )
            s.add(row)
        row.number = document.number
        row.payment_method_code = document.payment_method_code
        if transaction_id is not None:
            row.transaction_id = transaction_id
        elif row.transaction_id is None:
            tx = self._active_tx(s, document.company_id, document.document_type, document.document_id)
            row.transaction_id = tx.id if tx is not None else None
        if released:
            row.released_hash = digest
            row.changed_since_release = False
            row.status = "released"
        elif row.released_hash is not None and digest != row.released_hash:
            row.changed_since_release = True
        row.content_hash = digest
        if status is not None:
            row.status = status
        row.snapshot = document.model_dump(mode="json")
        row.updated_at = now
        s.flush()
        return row

    def _history(
        self,
        s: Session,
        tx: TransactionRow,
        action: str,
        ctx: _Ctx,
        *,
        outcome: str = "ok",
        from_status: str | None = None,
        to_status: str | None = None,
        amount_minor: int | None = None,
        op: OperationRow | None = None,
        message: str = "",
        details: dict[str, Any] | None = None,
        operation_reference: str | None = None,
    ) -> None:
        if s.new:  # pending rows first: the transaction it refers to, history added through the ORM
            s.flush()
        # inserted right away (rows are append-only; never an ORM object), in the caller's transaction
        _INSERT_HISTORY.execute(
            connection_of(s),
            {
                "company_id": tx.company_id,
                "transaction_id": tx.id,
                "at": self.clock.now(),
                "actor": ctx.actor,
                "trigger": str(ctx.trigger),
                "action": action,
                "outcome": outcome,
                "from_status": from_status,
                "to_status": to_status,
                "amount_minor": amount_minor,
                "operation_id": op.id if op is not None else None,
                "idempotency_key": op.idempotency_key if op is not None else None,
                "psp_reference": tx.psp_reference,
                "operation_reference": operation_reference,
                "message": message,
                "details": details or {},
            },
        )

    def _view(self, s: Session, tx: TransactionRow, *, full: bool = True) -> TransactionView:
        cur = tx.currency
        ops: tuple[OperationView, ...] = ()
        history: tuple[HistoryEntry, ...] = ()
        if full:
            # plain column rows on the session's connection: no ORM instances, no JSON the view does
            # not show (operation requests and results); pending changes are flushed first
            s.flush()
            conn = connection_of(s)
            key = {"company_id": tx.company_id, "transaction_id": tx.id}
            ops = tuple(
                OperationView(
                    id=id_, seq=seq, kind=kind, status=status, trigger=trigger, actor=actor,
                    amount=money(amount_minor, cur), currency=currency, idempotency_key=idempotency_key,
                    request_id=request_id, psp_reference=psp_reference, operation_reference=operation_reference,
                    document_type=document_type, document_number=document_number, error_code=error_code,
                    error_message=error_message, attempts=attempts, created_at=created_at, completed_at=completed_at,
                )
                for (id_, seq, kind, status, trigger, actor, amount_minor, currency, idempotency_key, request_id,
                     psp_reference, operation_reference, document_type, document_number, error_code, error_message,
                     attempts, created_at, completed_at) in _OPS_OF_TX.all(conn, key)
            )
            history = tuple(
                HistoryEntry(
                    id=id_, at=at, actor=actor, trigger=trigger, action=action, outcome=outcome,
                    from_status=from_status, to_status=to_status, amount=money(amount_minor, cur),
                    operation_id=operation_id, idempotency_key=idempotency_key, psp_reference=psp_reference,
                    operation_reference=operation_reference, message=message, details=details or {},
                )
                for (id_, at, actor, trigger, action, outcome, from_status, to_status, amount_minor, operation_id,
                     idempotency_key, psp_reference, operation_reference, message, details) in _HISTORY_OF_TX.all(conn, key)
            )
        return TransactionView(
            id=tx.id,
            company_id=tx.company_id,
            document_type=DocumentType(tx.document_type),
            document_id=tx.document_id,
            document_number=tx.document_number,
            payment_method_code=tx.payment_method_code,
            psp=tx.psp,
            psp_account=tx.psp_account,
            psp_reference=tx.psp_reference,
            currency=cur,
            status=TxStatus(tx.status),
            origin=tx.origin,
            no_cart=tx.no_cart,
            auto_capture=tx.auto_capture,
            amount=from_minor_units(tx.amount_minor, cur),
            amounts=Amounts.of(self._ledger(tx), tx.invoiced_minor),
            expires_at=tx.expires_at,
            created_at=tx.created_at,
            updated_at=tx.updated_at,
            operations=ops,
            history=history,
        )

    # =========================================================================== queries
    def get_transaction(self, company_id: str, transaction_id: str, *, full: bool = True) -> TransactionView:
        with self.store.transaction() as s:
            return self._view(s, self._load_tx(s, company_id, transaction_id), full=full)

    def find_transaction(self, transaction_id: str) -> TransactionView:
        """Look a transaction up by id across companies (operator CLI only: ``payweave tx show``)."""
        with self.store.transaction() as s:
            tx = s.get(TransactionRow, transaction_id)
            if tx is None:
                raise TransactionNotFound(f"There is no payment transaction {transaction_id}.",
                                          details={"transaction_id": transaction_id})
            return self._view(s, tx)

    def transaction_for_document(self, company_id: str, document_type: DocumentType | str, document_id: str) -> TransactionView | None:
        with self.store.transaction() as s:
            tx = self._active_tx(s, company_id, document_type, document_id)
            if tx is None:
                row = s.get(DocumentRow, (company_id, DocumentType(document_type).value, document_id))
                if row is not None and row.transaction_id:
                    tx = self._load_tx(s, company_id, row.transaction_id)
            return self._view(s, tx) if tx is not None else None

    def list_transactions(
        self,
        company_id: str | None,
        *,
        status: TxStatus | str | None = None,
        document_number: str | None = None,
        limit: int = 100,
    ) -> list[TransactionView]:
        """Transactions of a company, newest first (``company_id=None``: all, for the operator CLI)."""
        query = select(TransactionRow)
        if company_id is not None:
            query = query.where(TransactionRow.company_id == company_id)
        if status is not None:
            query = query.where(TransactionRow.status == TxStatus(status).value)
        if document_number is not None:
            query = query.where(TransactionRow.document_number == document_number)
        query = query.order_by(TransactionRow.created_at.desc(), TransactionRow.id).limit(limit)
        with self.store.transaction() as s:
            return [self._view(s, tx, full=False) for tx in s.scalars(query).all()]

    def due_for_expiry_check(self, company_id: str | None = None) -> list[tuple[str, str]]:
        """(company, transaction) pairs whose reservation has passed its expiry with money still open."""
        now = self.clock.now()
        query = select(TransactionRow.company_id, TransactionRow.id).where(
            TransactionRow.expires_at.is_not(None), TransactionRow.expires_at <= now
        )
        if company_id is not None:
            query = query.where(TransactionRow.company_id == company_id)
        with self.store.transaction() as s:
            return [(c, t) for c, t in s.execute(query).all()]
