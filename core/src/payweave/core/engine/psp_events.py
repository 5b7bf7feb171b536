"""Applying normalized PSP events (webhooks) to transactions: once, in order, never backwards.

The PSP tells payweave what happened through webhooks that arrive at least once, late, out
of order, and racing the synchronous answer of the very call that caused them (DESIGN section 3,
payment-peers D1-D3, D10). The rules here:

* **Stored once.** Every event is recorded under ``(psp, account, event_id)`` (an insert that
  skips a key stored before, so concurrent deliveries race in the unique constraint); a repeated
  delivery changes nothing and is acknowledged as a duplicate.
* **Recorded first, applied after.** The HTTP service records verified events ``received`` and
  answers the PSP once they are committed (in groups, :mod:`.psp_inbox`); the applier then takes
  each received event, oldest first, and applies it to its transaction in one database
  transaction, under the same per-document lock the engine holds for the whole of an operation
  (intent, PSP call, outcome). A webhook racing the synchronous capture therefore waits until
  the engine has recorded the capture, and then finds nothing left to do. An event recorded but
  not applied (a crash in between) is applied by the next applier run or recovery
  (:meth:`PspEvents.apply_pending`, part of :meth:`PspEvents.reapply_deferred`); applying takes
  the row under a lock and only while it is still ``received``, so it happens once.
  :meth:`PspEvents.receive` does both in the caller's thread (in-process deliveries).
* **Monotonic.** Events carry cumulative totals where the PSP gives them (captured, refunded):
  the ledger only moves up to what the PSP reports, never down, so an older event after a newer
  one is a no-op. State never moves backwards (a late ``authorized`` after ``captured`` changes
  nothing). Events without totals (a void, a capture of a PSP without totals) are matched
  against the engine's own completed operations first ("claimed"), so the engine's void and the
  PSP's notification of that same void count once; only an unmatched one is an action taken at
  the PSP outside payweave (e.g. in its dashboard) and is applied.
* **Never across an unfinished operation.** While one of the transaction's PSP calls has an
  unknown outcome (timeout), money events are stored as ``deferred``: the engine replays that
  call with its own idempotency key and records the true outcome; deferred events are
  re-evaluated afterwards (next event on the transaction, or :meth:`PspEvents.reapply_deferred`).
* **The PSP's books decide.** An event that would move a payment in a way payweave did not
  move it itself (a capture, release, expiry or refund "outside payweave", an authorization or a
  cancellation of a payment still waiting for the customer) is checked against the PSP's own
  books first (``psp_get_payment``, when the PSP declares ``payment_lookup``), read outside the
  lock and the database transaction; the event is applied only as far as those books show it,
  and otherwise ``ignored`` with a note saying what the books show. A signed webhook is the
  PSP's word, but one with nonsense figures (a bug at the PSP, a leaked webhook secret) must not
  move money. When the books cannot be read (the PSP is down) the event is ``deferred`` and
  re-evaluated by the maintenance sweep. A PSP without the lookup is taken at its signed word.
* **Nothing is lost.** An event for a reference payweave does not know yet (a checkout whose
  payment id is only revealed by ``link_completed``) is stored ``unmatched`` and applied, in
  order, as soon as the reference becomes known. Unknown event types and payouts are stored and
  acknowledged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, bindparam, literal, select
from sqlalchemy.orm import Session

from payweave.core.errors import CoreError
from payweave.core.logging import get_logger
from payweave.core.metrics import WEBHOOK_EVENTS, labelled
from payweave.core.store import HistoryRow, OperationRow, TransactionRow
from payweave.core.store.service_models import PaymentLinkRow, PspEventRow, ServiceOperationRow
from payweave.core.store.statements import PreparedRows
from payweave.hooks.capabilities import Feature
from payweave.hooks.errors import PayweaveError, RemoteNotFound
from payweave.hooks.models import EventType, PaymentLookup, PaymentStatus, PspEvent, WebhookRequest
from payweave.hooks.money import Money, from_minor_units

from .service import UNFINISHED, OpStatus, PaymentEngine
from .statemachine import Ledger, OpKind, Phase, TxStatus, ledger_of, phase_of
from .statemachine import store_ledger as _store_ledger


class UnknownPspAccount(CoreError):
    code = "psp_account_not_found"
    http_status = 404


class EventStatus:
    RECEIVED = "received"
    """Recorded, not applied yet (the applier takes it next, also after a restart)."""
    APPLIED = "applied"
    """The event changed the transaction."""
    NO_CHANGE = "no_change"
    """Already reflected (the engine recorded it, or a newer event did)."""
    DEFERRED = "deferred"
    """An operation of the transaction awaits its outcome, or the PSP's books that confirm the
    event could not be read; re-evaluated afterwards (next event, the maintenance sweep)."""
    UNMATCHED = "unmatched"
    """No transaction has this reference yet; applied when one gets it."""
    STORED = "stored"
    """Not about a payment (payout, unknown type): kept for reconciliation."""
    IGNORED = "ignored"
    """About a payment, but cannot apply (superseded reference, inconsistent figures)."""
    DUPLICATE = "duplicate"
    """Delivered before (answer only; never stored as a status)."""


MONEY_EVENTS = frozenset(
    {
        EventType.AUTHORIZED,
        EventType.CAPTURED,
        EventType.VOIDED,
        EventType.REFUNDED,
        EventType.CREDITED,
        EventType.EXPIRED,
        EventType.LINK_COMPLETED,
    }
)
_SERVICE_UNFINISHED = ("started", "unknown")
#: Rows applying may still change: recorded and not applied yet, or waiting for an operation.
_NOT_APPLIED = (EventStatus.RECEIVED, EventStatus.DEFERRED)
DUPLICATE_NOTE = "This event was received before; nothing changed."

# The applier's statements, built once (building and coercing a statement per event cost more
# than running it); parameters by name.
_TX_ID, _COMPANY = bindparam("transaction_id"), bindparam("company_id")
#: the id of one unfinished engine operation and one unfinished service operation (None: none)
_UNFINISHED_IDS = select(
    select(OperationRow.id).where(
        OperationRow.company_id == _COMPANY, OperationRow.transaction_id == _TX_ID,
        OperationRow.status.in_([literal(v) for v in UNFINISHED]),
    ).order_by(OperationRow.seq).limit(1).scalar_subquery(),
    select(ServiceOperationRow.id).where(
        ServiceOperationRow.company_id == _COMPANY, ServiceOperationRow.transaction_id == _TX_ID,
        ServiceOperationRow.status.in_([literal(v) for v in _SERVICE_UNFINISHED]),
    ).limit(1).scalar_subquery(),
)
_DEFERRED_OF_TX = select(PspEventRow).where(
    PspEventRow.company_id == _COMPANY, PspEventRow.transaction_id == _TX_ID,
    PspEventRow.status == literal(EventStatus.DEFERRED),
).order_by(PspEventRow.occurred_at, PspEventRow.id)
_TX_TARGET_COLUMNS = (TransactionRow.company_id, TransactionRow.id, TransactionRow.document_type, TransactionRow.document_id)
_TX_OF_REFERENCE = select(*_TX_TARGET_COLUMNS).where(
    TransactionRow.psp == bindparam("psp"), TransactionRow.psp_account == bindparam("account"),
    TransactionRow.psp_reference == bindparam("reference"),
).limit(2)
_TX_OF_LINK_ID = select(*_TX_TARGET_COLUMNS).join(PaymentLinkRow, PaymentLinkRow.transaction_id == TransactionRow.id).where(
    PaymentLinkRow.psp == bindparam("psp"), PaymentLinkRow.psp_account == bindparam("account"),
    PaymentLinkRow.psp_link_id == bindparam("link_id"),
).limit(1)
_TX_OF_LINK_REFERENCE = select(*_TX_TARGET_COLUMNS).join(PaymentLinkRow, PaymentLinkRow.transaction_id == TransactionRow.id).where(
    PaymentLinkRow.psp == bindparam("psp"), PaymentLinkRow.psp_account == bindparam("account"),
    PaymentLinkRow.psp_reference == bindparam("reference"),
).limit(1)


class EventOutcome(BaseModel):
    """What receiving one event did."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    status: str
    transaction_id: str | None = None
    message: str = ""


class PspEventView(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    raw_type: str
    occurred_at: datetime
    received_at: datetime
    psp_reference: str | None
    status: str
    note: str
    applied_at: datetime | None


def _minor(money: Money | None, currency: str) -> int | None:
    if money is None:
        return None
    if money.currency != currency:
        raise _Inconsistent(f"the event is in {money.currency}, the payment in {currency}")
    return money.minor_units


class _Inconsistent(Exception):
    """An event whose figures cannot belong to the transaction (kept, not applied)."""


_BookKey = tuple[str, str, str]  # (psp, account, psp reference)
_T = TypeVar("_T")
#: The PSP's books read for the apply under way (see :meth:`PspEvents._with_books`); None where
#: the caller cannot read them (an event needing them is deferred there, for the sweep).
_BOOKS: ContextVar[dict[_BookKey, PaymentLookup | PayweaveError] | None] = ContextVar("payweave_psp_books", default=None)
_OPEN_AT_PSP = (PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED)
_GIVEN_UP_AT_PSP = (PaymentStatus.FAILED, PaymentStatus.VOIDED, PaymentStatus.EXPIRED)
BOOKS_NOTE = "The event reports a change payweave did not make; it is applied once the PSP's books confirm it."


class _NeedsBooks(Exception):
    """Raised inside the database transaction when an event needs the PSP's books that were not
    read yet: the caller rolls back, reads them outside the lock, and applies again."""

    def __init__(self, key: _BookKey) -> None:
        super().__init__(key)
        self.key = key


class _Unconfirmed(Exception):
    """The PSP's books could not be read (the PSP did not answer): the event is deferred."""


def store_ledger(tx: TransactionRow, ledger: Ledger, phase: Phase, now: datetime) -> None:
    """Write ``ledger`` to the row and derive its status (the engine's invariants checked)."""
    _store_ledger(tx, ledger, phase)
    tx.updated_at = now


def add_history(
    s: Session,
    tx: TransactionRow,
    action: str,
    *,
    actor: str,
    trigger: str,
    message: str,
    now: datetime,
    outcome: str = "ok",
    from_status: str | None = None,
    amount_minor: int | None = None,
    details: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> None:
    s.add(
        HistoryRow(
            company_id=tx.company_id,
            transaction_id=tx.id,
            at=now,
            actor=actor,
            trigger=trigger,
            action=action,
            outcome=outcome,
            from_status=from_status,
            to_status=tx.status,
            amount_minor=amount_minor,
            idempotency_key=idempotency_key,
            psp_reference=tx.psp_reference,
            message=message,
            details=details or {},
        )
    )


def doc_lock_key(tx: TransactionRow | Any) -> str:
    """The engine's per-document lock key of a transaction (see ``PaymentEngine._tx_locked``)."""
    return f"{tx.document_type}:{tx.document_id}"


#: the columns of a received event's row (:meth:`PspEvents.row_values`)
_RECEIVED_COLUMNS = ("psp", "psp_account", "event_id", "event_type", "raw_type", "occurred_at", "received_at",
                     "psp_reference", "link_id", "payout_id", "status", "note", "event")


def _insert_received_statement(dialect: str, values: list[dict[str, Any]]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = PspEventRow.__table__
    return (insert(table).values(values).on_conflict_do_nothing(index_elements=["psp", "psp_account", "event_id"])
            .returning(table.c.psp, table.c.psp_account, table.c.event_id, table.c.id))


_INSERT_RECEIVED = PreparedRows(PspEventRow.__table__, _RECEIVED_COLUMNS, _insert_received_statement, json_text=["event"])


class PspEvents:
    """Receives PSP webhooks for the service and applies their events (see module docstring)."""

    def __init__(self, engine: PaymentEngine) -> None:
        self.engine = engine
        self.store = engine.store
        self.log = get_logger(component="psp_events")
        #: entered around each event by :meth:`apply_pending` (the service's applier sets it, so
        #: every sweep in the process yields to recording the same way)
        self.pace: Callable[[], AbstractContextManager[Any]] | None = None
        #: entered around the database work of each attempt to apply an event, never around
        #: reading the PSP's books (the service's applier sets it: SQLite's writer lock and the
        #: inbox's turn, so recording webhooks never waits for a PSP's answer)
        self.turn: Callable[[], AbstractContextManager[Any]] | None = None

    # ================================================================== receiving
    def known_account(self, psp: str, account: str) -> bool:
        """Accounts payweave uses: ``default``, the configured ones, those named by a setup."""
        if self.configured_account(psp, account):
            return True
        from payweave.core.store import PaymentMethodRow

        with self.store.transaction() as s:
            return s.scalars(
                select(PaymentMethodRow.code).where(PaymentMethodRow.psp == psp, PaymentMethodRow.psp_account == account)
            ).first() is not None

    def configured_account(self, psp: str, account: str) -> bool:
        """Known without asking the store: ``default`` or an account of the settings."""
        return account == "default" or account in self.engine.settings.accounts.get(psp, {})

    def verify(self, psp: str, account_name: str, request: WebhookRequest, *, known: bool | None = None) -> list[PspEvent]:
        """Verify and parse a webhook with the PSP's plugin (which checks the signature in constant
        time before it parses). ``known``: whether the account is known, if the caller checked."""
        client = self.engine.plugins.psp(psp)  # UnknownPlugin (404) for a plugin not loaded
        if not (known if known is not None else self.known_account(psp, account_name)):
            raise UnknownPspAccount(
                f"There is no account {account_name!r} of PSP {psp!r} here.", details={"psp": psp, "account": account_name}
            )
        account = self.engine.account(psp, account_name)
        try:
            return client.parse_webhook(account, request)
        except PayweaveError as exc:
            labelled(WEBHOOK_EVENTS, psp, "rejected").inc()
            self.log.warning("webhook.rejected", psp=psp, account=account_name, code=exc.code)
            raise

    def receive(self, psp: str, account_name: str, request: WebhookRequest) -> list[EventOutcome]:
        """Verify a webhook, record its events and apply them now, in this thread (the HTTP
        service records in groups and applies after answering: :mod:`.psp_inbox`)."""
        events = self.verify(psp, account_name, request)
        return [self.record(psp, account_name, event, received_at=request.received_at) for event in events]

    def record(self, psp: str, account: str, event: PspEvent, *, received_at: datetime) -> EventOutcome:
        """Record one event and apply it now. A repeat is a duplicate, unless the first delivery
        was recorded and not applied yet (or deferred): then it is applied (re-evaluated) now."""
        with self.store.transaction() as s:
            inserted = self.insert_received(s, [self.row_values(psp, account, event, received_at)])
            row_id = inserted.get((psp, account, event.event_id))
            if row_id is None:
                existing = s.execute(
                    select(PspEventRow.id, PspEventRow.status, PspEventRow.transaction_id).where(
                        PspEventRow.psp == psp, PspEventRow.psp_account == account, PspEventRow.event_id == event.event_id)
                ).first()
        if row_id is None:
            if existing is None or existing.status not in _NOT_APPLIED:
                return self._count(psp, EventOutcome(
                    event_id=event.event_id, type=event.type, status=EventStatus.DUPLICATE,
                    transaction_id=existing.transaction_id if existing is not None else None, message=DUPLICATE_NOTE))
            row_id = existing.id
        return self.apply_row(row_id)

    @staticmethod
    def row_values(psp: str, account: str, event: PspEvent, received_at: datetime) -> dict[str, Any]:
        """The ``psp_events`` row of a verified event, as recorded before it is applied (the event
        as JSON text, for :meth:`insert_received`)."""
        return {
            "psp": psp, "psp_account": account, "event_id": event.event_id, "event_type": event.type.value,
            "raw_type": event.raw_type, "occurred_at": event.occurred_at, "received_at": received_at,
            "psp_reference": event.psp_reference, "link_id": event.link_id, "payout_id": event.payout_id,
            "status": EventStatus.RECEIVED, "note": "", "event": event.model_dump_json(),
        }

    def insert_received(self, s: Session | Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
        """Insert event rows (:meth:`row_values`) in the transaction of ``s`` (a session or a
        connection), skipping events stored before (the unique ``(psp, account, event_id)``
        decides, also against a concurrent insert). Returns the row id of each event inserted, by
        key; a key absent from the answer was a duplicate. Repeats inside ``rows`` are inserted
        once. The webhook route's hot path: one multi-row statement compiled once
        (:class:`~payweave.core.store.statements.PreparedRows`)."""
        unique: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            unique.setdefault((row["psp"], row["psp_account"], row["event_id"]), row)
        if not unique:
            return {}
        connection = s.connection() if isinstance(s, Session) else s
        return {(r[0], r[1], r[2]): r[3] for r in _INSERT_RECEIVED.returning(connection, list(unique.values()))}

    def _count(self, psp: str, outcome: EventOutcome) -> EventOutcome:
        labelled(WEBHOOK_EVENTS, psp, outcome.status).inc()
        self.log.debug("webhook.event", psp=psp, event_id=outcome.event_id, type=outcome.type.value, result=outcome.status,
                       transaction=outcome.transaction_id)
        return outcome

    # ================================================================== applying recorded events
    def pending(self, limit: int = 500, *, after: int = 0) -> list[int]:
        """Ids of events recorded and not applied yet (``received``), oldest first."""
        with self.store.transaction() as s:
            return list(s.scalars(
                select(PspEventRow.id).where(PspEventRow.status == EventStatus.RECEIVED, PspEventRow.id > after)
                .order_by(PspEventRow.id).limit(limit)
            ))

    def apply_pending(self, limit: int = 500, *, pace: Callable[[], AbstractContextManager[Any]] | None = None) -> int:
        """Apply every event recorded and not applied yet, in the order received (the applier's
        work, and what recovery runs after a restart). Safe alongside other appliers: each row
        is taken under its document's lock and applied once. An event that fails to apply (the
        database went away, say) stays ``received`` for the next run; the others go on.
        ``pace``: a context entered around each event (the applier yields to recording there),
        :attr:`pace` when not given. Returns how many it applied."""
        pace = pace or self.pace
        done, after = 0, 0
        while True:
            ids = self.pending(limit, after=after)
            for row_id in ids:
                try:
                    with pace() if pace is not None else nullcontext():
                        applied = self.apply_row(row_id)
                    if applied is not None:
                        done += 1
                except Exception as exc:  # noqa: BLE001 - kept for the next run; one event never blocks the rest
                    self.log.error("webhook.apply_failed", row=row_id, error_type=type(exc).__name__)
            if len(ids) < limit:
                return done
            after = ids[-1]

    def apply_row(self, row_id: int) -> EventOutcome | None:
        """Apply one recorded event (``received``, or ``deferred`` to re-evaluate) to its
        transaction, under the transaction's document lock and in one database transaction; an
        event for no known transaction is settled as unmatched, ignored or stored. None when the
        row is gone; the row's state when another applier took it first. The PSP's books, when
        the event needs them, are read before (outside the lock and the transaction)."""
        turn = self.turn or nullcontext

        def attempt() -> EventOutcome | None:
            with turn():
                return self._apply_row(row_id)

        return self._with_books(attempt)

    def _apply_row(self, row_id: int) -> EventOutcome | None:
        for _ in range(3):
            with self.store.transaction() as s:
                row = s.get(PspEventRow, row_id)
                if row is None:
                    return None
                psp, account = row.psp, row.psp_account
                if row.status not in _NOT_APPLIED:
                    return self._settled(row)
                event = PspEvent.model_validate(row.event)
                target = self._target(s, psp, account, event)
            if target is not None:
                company, tx_id, lock_key = target
                with self.store.serialized(company, lock_key):
                    outcome = self._apply_to_transaction(row_id, event, company, tx_id)
                if outcome is not None:
                    return self._count(psp, outcome)
                continue  # the transaction changed under us (e.g. renewed): look again
            with self.store.serialized("_psp", self._reference_lock(psp, account, event)):
                with self.store.transaction() as s:
                    if self._target(s, psp, account, event) is not None:
                        continue  # the reference became known meanwhile: apply it to its transaction
                    outcome = self._settle_unattached(s, row_id, event)
            return self._count(psp, outcome)
        with self.store.transaction() as s:  # pragma: no cover - three changes in a row
            return self._count(psp, self._settle_unattached(s, row_id, PspEvent.model_validate(s.get(PspEventRow, row_id).event)))

    @staticmethod
    def _locked_row(s: Session, row_id: int) -> PspEventRow | None:
        """The row, locked against another applier until this transaction ends (PostgreSQL; on
        SQLite the transaction holds the database's write lock already)."""
        return s.get(PspEventRow, row_id, with_for_update=True, populate_existing=True)

    @staticmethod
    def _settled(row: PspEventRow) -> EventOutcome:
        return EventOutcome(event_id=row.event_id, type=EventType(row.event_type), status=row.status,
                            transaction_id=row.transaction_id, message=row.note)

    @staticmethod
    def _reference_lock(psp: str, account: str, event: PspEvent) -> str:
        return f"psp-ref:{psp}:{account}:{event.psp_reference or event.link_id or '-'}"[:200]

    def _target(self, s: Session, psp: str, account: str, event: PspEvent) -> tuple[str, str, str] | None:
        """(company, transaction id, document lock key) of the transaction the event concerns."""
        def found(row: Any) -> tuple[str, str, str]:
            return row.company_id, row.id, doc_lock_key(row)

        if event.link_id:
            row = s.execute(_TX_OF_LINK_ID, {"psp": psp, "account": account, "link_id": event.link_id}).first()
            if row is not None:
                return found(row)
        if event.psp_reference:
            params = {"psp": psp, "account": account, "reference": event.psp_reference}
            rows = s.execute(_TX_OF_REFERENCE, params).all()
            if len(rows) == 1:
                return found(rows[0])
            row = s.execute(_TX_OF_LINK_REFERENCE, params).first()
            if row is not None:
                return found(row)
        return None

    def _settle_unattached(self, s: Session, row_id: int, event: PspEvent) -> EventOutcome:
        """An event no transaction has (yet): kept ``unmatched`` (applied when a transaction gets
        its reference), ``ignored`` (a reference replaced since) or ``stored`` (no payment)."""
        row = self._locked_row(s, row_id)
        assert row is not None
        if row.status not in _NOT_APPLIED:
            return self._settled(row)
        about_payment = event.psp_reference is not None or event.link_id is not None
        if about_payment and event.type is not EventType.UNKNOWN:
            status, note = EventStatus.UNMATCHED, (
                "No payment with this reference is known yet; the event is applied when one gets it."
            )
            superseded = self._superseded_by(s, row.psp, row.psp_account, event)
            if superseded is not None:
                status, note = EventStatus.IGNORED, superseded
        else:
            status, note = EventStatus.STORED, "Stored for reconciliation; it concerns no payment."
        row.status, row.note = status, note
        return EventOutcome(event_id=event.event_id, type=event.type, status=status, message=note)

    def _superseded_by(self, s: Session, psp: str, account: str, event: PspEvent) -> str | None:
        """A reference an operation of a transaction once used, replaced since (renewal)."""
        if not event.psp_reference:
            return None
        row = s.execute(
            select(OperationRow.transaction_id, TransactionRow.psp_reference)
            .join(TransactionRow, TransactionRow.id == OperationRow.transaction_id)
            .where(
                OperationRow.psp_reference == event.psp_reference,
                TransactionRow.psp == psp,
                TransactionRow.psp_account == account,
            )
        ).first()
        if row is None:
            return None
        return (
            f"The event concerns reference {event.psp_reference}, which transaction {row[0]} replaced by "
            f"{row[1]} (renewal); the transaction follows its current reference."
        )

    # ================================================================== applying
    def _apply_to_transaction(self, row_id: int, event: PspEvent, company: str, tx_id: str) -> EventOutcome | None:
        """Under the document lock, in one database transaction: apply a recorded event. None
        when the transaction is no longer the event's target (look it up again)."""
        with self.store.transaction() as s:
            row = self._locked_row(s, row_id)
            if row is None:
                return None
            if row.status not in _NOT_APPLIED:
                return self._settled(row)
            target = self._target(s, row.psp, row.psp_account, event)
            if target is None or target[:2] != (company, tx_id):
                return None
            tx = s.get(TransactionRow, tx_id)
            assert tx is not None
            if row.status == EventStatus.RECEIVED:
                self._reapply_deferred(s, tx)  # what waited for this transaction comes first
            status, note = self._apply(s, tx, row, event)
            return EventOutcome(event_id=event.event_id, type=event.type, status=status, transaction_id=tx.id, message=note)

    def _unfinished(self, s: Session, tx: TransactionRow) -> str | None:
        op_id, sop_id = s.execute(_UNFINISHED_IDS, {"company_id": tx.company_id, "transaction_id": tx.id}).one()
        if op_id is not None:
            op = s.get(OperationRow, op_id)
            assert op is not None
            return f"{op.kind} (operation {op.id}, {op.status})"
        if sop_id is not None:
            sop = s.get(ServiceOperationRow, sop_id)
            assert sop is not None
            return f"{sop.kind.replace('_', ' ')} (service operation {sop.id}, {sop.status})"
        return None

    def _apply(self, s: Session, tx: TransactionRow, row: PspEventRow, event: PspEvent) -> tuple[str, str]:
        now = self.engine.clock.now()
        row.company_id = tx.company_id
        row.transaction_id = tx.id
        try:
            status, note = self._decide(s, tx, row, event, now)
        except _NeedsBooks:
            if _BOOKS.get() is not None:
                raise  # the caller reads the books and applies again
            status, note = EventStatus.DEFERRED, BOOKS_NOTE  # here they cannot be read: the sweep does
        row.status = status
        row.note = note
        row.applied_at = now if status in (EventStatus.APPLIED, EventStatus.NO_CHANGE, EventStatus.IGNORED) else None
        if status == EventStatus.IGNORED:
            self.log.warning("webhook.event_ignored", event_id=event.event_id, transaction=tx.id, note=note)
        return status, note

    def _decide(self, s: Session, tx: TransactionRow, row: PspEventRow, event: PspEvent, now: datetime) -> tuple[str, str]:
        if event.type not in MONEY_EVENTS and event.type not in (EventType.PAYMENT_FAILED, EventType.LINK_EXPIRED):
            return EventStatus.STORED, "Stored; this event type does not change a payment."
        if event.type in MONEY_EVENTS:
            busy = self._unfinished(s, tx)
            if busy is not None:
                return EventStatus.DEFERRED, (
                    f"The outcome of {busy} is not known yet; payweave replays that call with its own idempotency "
                    f"key and re-evaluates this event afterwards."
                )
        if (
            event.type is not EventType.LINK_COMPLETED
            and event.psp_reference
            and tx.psp_reference
            and event.psp_reference != tx.psp_reference
        ):
            return EventStatus.IGNORED, (
                f"The event concerns reference {event.psp_reference}; the payment now has reference {tx.psp_reference}."
            )
        try:
            handler = {
                EventType.AUTHORIZED: self._on_authorized,
                EventType.CAPTURED: self._on_captured,
                EventType.VOIDED: self._on_voided,
                EventType.EXPIRED: self._on_expired,
                EventType.REFUNDED: self._on_money_back,
                EventType.CREDITED: self._on_money_back,
                EventType.PAYMENT_FAILED: self._on_failed,
                EventType.LINK_COMPLETED: self._on_link_completed,
                EventType.LINK_EXPIRED: self._on_link_expired,
            }[event.type]
            return handler(s, tx, row, event, now)
        except _Inconsistent as exc:
            return EventStatus.IGNORED, f"The event cannot apply to this payment: {exc}."
        except _Unconfirmed as exc:
            return EventStatus.DEFERRED, str(exc)

    # ---- the PSP's books -----------------------------------------------------------------------
    def _with_books(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (which takes the lock and the database transaction itself); when an
        event in it needs the PSP's books, read them now, outside both, and run it again. The
        books read serve this attempt only, so they are never older than the event."""
        books: dict[_BookKey, PaymentLookup | PayweaveError] = {}
        token = _BOOKS.set(books)
        try:
            while True:
                try:
                    return attempt()
                except _NeedsBooks as need:
                    if need.key in books:  # pragma: no cover - _books answers from what was read
                        raise RuntimeError(f"the PSP's books of {need.key} were read and asked for again") from None
                    books[need.key] = self._read_books(*need.key)
        finally:
            _BOOKS.reset(token)

    def _read_books(self, psp: str, account: str, reference: str) -> PaymentLookup | PayweaveError:
        try:
            return self.engine.plugins.psp(psp).get_payment(self.engine.account(psp, account), reference)
        except PayweaveError as exc:
            self.log.warning("webhook.books_unreadable", psp=psp, account=account, psp_reference=reference, code=exc.code)
            return exc

    def _books(self, tx: TransactionRow, event: PspEvent) -> PaymentLookup | None:
        """The PSP's books of the payment, to confirm an event that would move it in a way payweave
        did not; None when the PSP offers no lookup (its signed word is taken then). Raises
        :class:`_NeedsBooks` when not read yet, :class:`_Inconsistent` when the PSP has no such
        payment, :class:`_Unconfirmed` when it did not answer."""
        reference = tx.psp_reference or event.psp_reference
        if not reference or not self.engine.capabilities(tx.psp, tx.psp_account).declares(Feature.PAYMENT_LOOKUP):
            return None
        key = (tx.psp, tx.psp_account, reference)
        books = _BOOKS.get()
        if books is None or key not in books:
            raise _NeedsBooks(key)
        found = books[key]
        if isinstance(found, RemoteNotFound):
            raise _Inconsistent(f"the PSP has no payment {reference}")
        if isinstance(found, PayweaveError):
            raise _Unconfirmed(
                f"The PSP's books could not be read to confirm this event ({found.code}); it is re-evaluated later."
            )
        if found.amount.currency != tx.currency:
            raise _Inconsistent(f"the PSP's books keep the payment in {found.amount.currency}, payweave in {tx.currency}")
        return found

    def _capturable(self, tx: TransactionRow, books: PaymentLookup) -> int:
        """What the PSP's books still hold reserved, in minor units."""
        if books.capturable is not None:
            return _minor(books.capturable, tx.currency) or 0
        if books.status not in _OPEN_AT_PSP:
            return 0
        return max((_minor(books.amount, tx.currency) or 0) - (_minor(books.captured, tx.currency) or 0), 0)

    def _books_show(self, tx: TransactionRow, books: PaymentLookup) -> str:
        shown = (f"the PSP's books show the payment {books.status.value.replace('_', ' ')}: "
                 f"{self._fmt(tx, _minor(books.amount, tx.currency) or 0)} authorized, "
                 f"{self._fmt(tx, _minor(books.captured, tx.currency) or 0)} captured, "
                 f"{self._fmt(tx, _minor(books.refunded, tx.currency) or 0)} paid back")
        return shown + f", {self._fmt(tx, self._capturable(tx, books))} still reserved"

    def _confirm_given_up(self, tx: TransactionRow, event: PspEvent) -> None:
        """A payment waiting for the customer ends (cancelled, expired) only if the PSP's books say so."""
        books = self._books(tx, event)
        if books is not None and books.status not in _GIVEN_UP_AT_PSP:
            raise _Inconsistent(self._books_show(tx, books))

    # ---- helpers -------------------------------------------------------------------------------
    def _actor(self, tx: TransactionRow) -> str:
        return f"psp:{tx.psp}"

    def _history(self, s: Session, tx: TransactionRow, event: PspEvent, action: str, message: str, now: datetime,
                 *, before: str, amount_minor: int | None = None) -> None:
        add_history(
            s, tx, action, actor=self._actor(tx), trigger="webhook", message=message, now=now, from_status=before,
            amount_minor=amount_minor, details={"event_id": event.event_id, "event_type": event.type.value,
                                                "raw_type": event.raw_type},
        )

    def _fmt(self, tx: TransactionRow, minor: int) -> str:
        return f"{from_minor_units(minor, tx.currency)} {tx.currency}"

    def _awaiting_authorization(self, s: Session, tx: TransactionRow) -> bool:
        if tx.status in (TxStatus.PENDING.value,):
            return True
        if tx.status == TxStatus.PREPARED.value and tx.psp_reference:
            return True
        if tx.status == TxStatus.FAILED.value and tx.authorized_minor == 0:
            # a payment given up (link expired, attempt failed) that the customer paid after all:
            # the PSP's word decides, unless the document has another live payment by now
            other = s.scalars(
                select(TransactionRow.id).where(
                    TransactionRow.company_id == tx.company_id,
                    TransactionRow.document_type == tx.document_type,
                    TransactionRow.document_id == tx.document_id,
                    TransactionRow.id != tx.id,
                    TransactionRow.status.not_in((TxStatus.FAILED.value, TxStatus.VOIDED.value)),
                )
            ).first()
            return other is None
        return False

    def _authorize(self, s: Session, tx: TransactionRow, event: PspEvent, amount: int, now: datetime,
                   *, captured: int = 0, how: str) -> tuple[str, str]:
        before = tx.status
        if captured > amount:
            raise _Inconsistent(f"captured {self._fmt(tx, captured)} exceeds the authorized {self._fmt(tx, amount)}")
        books = self._books(tx, event)
        if books is not None and (
            books.status in (PaymentStatus.PENDING, PaymentStatus.FAILED)
            or (_minor(books.amount, tx.currency) or 0) < amount
            or (_minor(books.captured, tx.currency) or 0) < captured
        ):
            raise _Inconsistent(self._books_show(tx, books))
        ledger = Ledger(tx.currency, authorized=amount, captured=captured)
        store_ledger(tx, ledger, Phase.ACTIVE, now)
        if event.psp_reference and not tx.psp_reference:
            tx.psp_reference = event.psp_reference
        caps = self.engine.capabilities(tx.psp, tx.psp_account)
        validity = caps.reservation_validity
        tx.expires_at = (now + validity) if (validity and ledger.open > 0) else None
        setup = self.engine._setup(s, tx.company_id, tx.payment_method_code)
        self.engine._schedule_expiry_jobs(s, tx, setup)
        what = f"captured {self._fmt(tx, captured)}" if captured else f"authorized {self._fmt(tx, amount)}"
        message = f"The PSP confirmed the payment ({how}): {what}."
        self._history(s, tx, event, "authorized" if not captured else "captured", message, now,
                      before=before, amount_minor=captured or amount)
        return EventStatus.APPLIED, message

    def _claim(self, s: Session, tx: TransactionRow, row: PspEventRow, kinds: tuple[OpKind, ...], amount: int | None) -> int | None:
        """An operation of the engine this event reports (same kind and amount), not yet claimed."""
        claimed = set(
            s.scalars(
                select(PspEventRow.operation_id).where(
                    PspEventRow.company_id == tx.company_id, PspEventRow.transaction_id == tx.id,
                    PspEventRow.operation_id.is_not(None), PspEventRow.id != row.id,
                )
            ).all()
        )
        ops = s.scalars(
            select(OperationRow).where(
                OperationRow.company_id == tx.company_id, OperationRow.transaction_id == tx.id,
                OperationRow.kind.in_([k.value for k in kinds]),
                OperationRow.status.in_((OpStatus.SUCCEEDED.value, OpStatus.PENDING.value)),
            ).order_by(OperationRow.seq)
        ).all()
        for op in ops:
            if op.id in claimed:
                continue
            done = op.amount_minor
            if op.result and isinstance(op.result.get("amount"), dict):
                try:
                    done = Money.model_validate(op.result["amount"]).minor_units
                except (ValueError, PayweaveError):
                    pass
            if amount is None or done == amount:
                return op.id
        return None

    # ---- handlers ------------------------------------------------------------------------------
    def _on_authorized(self, s, tx, row, event, now) -> tuple[str, str]:
        if not self._awaiting_authorization(s, tx):
            return EventStatus.NO_CHANGE, f"The payment is already {tx.status.replace('_', ' ')}; the authorization is recorded."
        amount = _minor(event.amount, tx.currency) or tx.amount_minor
        return self._authorize(s, tx, event, amount, now, how=f"{event.raw_type or 'authorized'}")

    def _on_captured(self, s, tx, row, event, now) -> tuple[str, str]:
        amount = _minor(event.amount, tx.currency)
        total = _minor(event.total_captured, tx.currency)
        if self._awaiting_authorization(s, tx):
            reported = total if total is not None else (amount or 0)
            authorized = max(tx.amount_minor, reported)
            return self._authorize(s, tx, event, authorized, now, captured=reported, how=event.raw_type or "captured")
        ledger = ledger_of(tx)
        phase = phase_of(tx.status)
        if phase is not Phase.ACTIVE:
            return EventStatus.IGNORED, f"The payment is {tx.status}; a capture cannot apply."
        if total is None:
            if amount is None:
                raise _Inconsistent("the capture event carries no amount")
            op_id = self._claim(s, tx, row, (OpKind.CAPTURE, OpKind.RESERVE), amount)
            if op_id is not None:
                row.operation_id = op_id
                return EventStatus.NO_CHANGE, f"The capture of {self._fmt(tx, amount)} is recorded already (operation {op_id})."
            total = ledger.captured + amount
        if total <= ledger.captured:
            return EventStatus.NO_CHANGE, (
                f"Captured {self._fmt(tx, ledger.captured)} is recorded already (the event reports {self._fmt(tx, total)})."
            )
        delta = total - ledger.captured
        if delta > ledger.open:
            raise _Inconsistent(
                f"the PSP reports {self._fmt(tx, total)} captured, but only {self._fmt(tx, ledger.open)} more was reserved"
            )
        books = self._books(tx, event)
        if books is not None and (_minor(books.captured, tx.currency) or 0) < total:
            raise _Inconsistent(self._books_show(tx, books))
        before = tx.status
        store_ledger(tx, ledger.with_(captured=total), Phase.ACTIVE, now)
        message = f"The PSP reports a capture of {self._fmt(tx, delta)} made outside payweave (total {self._fmt(tx, total)})."
        self._history(s, tx, event, "captured", message, now, before=before, amount_minor=delta)
        return EventStatus.APPLIED, message

    def _on_voided(self, s, tx, row, event, now) -> tuple[str, str]:
        ledger = ledger_of(tx)
        if self._awaiting_authorization(s, tx) and tx.status != TxStatus.FAILED.value:
            self._confirm_given_up(tx, event)
            before = tx.status
            tx.status = TxStatus.FAILED.value
            tx.updated_at = now
            message = "The PSP cancelled the payment before it was authorized."
            self._history(s, tx, event, "cancelled", message, now, before=before)
            return EventStatus.APPLIED, message
        amount = _minor(event.amount, tx.currency)
        op_id = self._claim(s, tx, row, (OpKind.VOID, OpKind.RENEW), amount)
        if op_id is not None:
            row.operation_id = op_id
            return EventStatus.NO_CHANGE, f"The void is recorded already (operation {op_id})."
        if ledger.open <= 0:
            return EventStatus.NO_CHANGE, "Nothing is reserved any more; the release is recorded."
        released = ledger.open if amount is None else min(amount, ledger.open)
        books = self._books(tx, event)
        if books is not None and self._capturable(tx, books) > ledger.open - released:
            raise _Inconsistent(self._books_show(tx, books))
        before = tx.status
        store_ledger(tx, ledger.with_(voided=ledger.voided + released), phase_of(tx.status), now)
        tx.expires_at = tx.expires_at if ledger.open - released > 0 else None
        message = f"The PSP reports a release of {self._fmt(tx, released)} made outside payweave."
        self._history(s, tx, event, "voided", message, now, before=before, amount_minor=released)
        return EventStatus.APPLIED, message

    def _on_expired(self, s, tx, row, event, now) -> tuple[str, str]:
        if self._awaiting_authorization(s, tx):
            if tx.status == TxStatus.FAILED.value:
                return EventStatus.NO_CHANGE, "The payment was given up already."
            self._confirm_given_up(tx, event)
            before = tx.status
            tx.status = TxStatus.FAILED.value
            tx.updated_at = now
            message = "The payment expired at the PSP before the customer authorized it."
            self._history(s, tx, event, "expired", message, now, before=before)
            return EventStatus.APPLIED, message
        ledger = ledger_of(tx)
        if ledger.open <= 0:
            return EventStatus.NO_CHANGE, "Nothing is reserved any more; the expiry is recorded."
        books = self._books(tx, event)
        if books is not None and self._capturable(tx, books) > 0:
            raise _Inconsistent(self._books_show(tx, books))
        before = tx.status
        lapsed = ledger.open
        store_ledger(tx, ledger.with_(expired=ledger.expired + lapsed), phase_of(tx.status), now)
        tx.expires_at = None
        message = f"The reservation expired at the PSP; {self._fmt(tx, lapsed)} is no longer capturable."
        self._history(s, tx, event, "expired", message, now, before=before, amount_minor=lapsed)
        return EventStatus.APPLIED, message

    def _on_money_back(self, s, tx, row, event, now) -> tuple[str, str]:
        credit = event.type is EventType.CREDITED
        ledger = ledger_of(tx)
        if phase_of(tx.status) is not Phase.ACTIVE:
            return EventStatus.IGNORED, f"The payment is {tx.status}; nothing was captured to pay back."
        amount = _minor(event.amount, tx.currency)
        total = _minor(event.total_refunded, tx.currency)
        if total is None:
            if amount is None:
                raise _Inconsistent("the refund event carries no amount")
            op_id = self._claim(s, tx, row, (OpKind.REFUND, OpKind.CREDIT), amount)
            if op_id is not None:
                row.operation_id = op_id
                return EventStatus.NO_CHANGE, f"The payment back of {self._fmt(tx, amount)} is recorded already (operation {op_id})."
            total = ledger.returned + amount
        if total <= ledger.returned:
            return EventStatus.NO_CHANGE, (
                f"{self._fmt(tx, ledger.returned)} paid back is recorded already (the event reports {self._fmt(tx, total)})."
            )
        delta = total - ledger.returned
        if delta > ledger.refundable:
            raise _Inconsistent(
                f"the PSP reports {self._fmt(tx, total)} paid back, but only {self._fmt(tx, ledger.captured)} was captured"
            )
        books = self._books(tx, event)
        if books is not None and (_minor(books.refunded, tx.currency) or 0) < total:
            raise _Inconsistent(self._books_show(tx, books))
        before = tx.status
        changed = ledger.with_(credited=ledger.credited + delta) if credit else ledger.with_(refunded=ledger.refunded + delta)
        store_ledger(tx, changed, Phase.ACTIVE, now)
        word = "credit" if credit else "refund"
        message = f"The PSP reports a {word} of {self._fmt(tx, delta)} made outside payweave (total paid back {self._fmt(tx, total)})."
        self._history(s, tx, event, "credited" if credit else "refunded", message, now, before=before, amount_minor=delta)
        return EventStatus.APPLIED, message

    def _on_failed(self, s, tx, row, event, now) -> tuple[str, str]:
        if not self._awaiting_authorization(s, tx) or tx.status == TxStatus.FAILED.value:
            return EventStatus.NO_CHANGE, f"The payment is {tx.status.replace('_', ' ')}; a failed attempt changes nothing."
        decline = event.data.get("decline_code") if isinstance(event.data, dict) else None
        message = "The customer's payment attempt failed at the PSP" + (f" ({decline})" if decline else "") + (
            "; the payment stays open for another attempt until its link expires."
        )
        self._history(s, tx, event, "attempt_failed", message, now, before=tx.status)
        return EventStatus.APPLIED, message

    def _link_of(self, s: Session, tx: TransactionRow, event: PspEvent) -> PaymentLinkRow | None:
        query = select(PaymentLinkRow).where(PaymentLinkRow.company_id == tx.company_id, PaymentLinkRow.transaction_id == tx.id)
        if event.link_id:
            query = query.where(PaymentLinkRow.psp_link_id == event.link_id)
        return s.scalars(query.order_by(PaymentLinkRow.created_at.desc())).first()

    def _on_link_completed(self, s, tx, row, event, now) -> tuple[str, str]:
        if event.psp_reference and tx.psp_reference and event.psp_reference != tx.psp_reference:
            raise _Inconsistent(f"the link was paid with {event.psp_reference}, the payment has {tx.psp_reference}")
        if self._awaiting_authorization(s, tx):
            self._books(tx, event)  # read before anything changes (the authorization below checks them)
        link = self._link_of(s, tx, event)
        if link is not None:
            link.status = "completed"
            link.psp_reference = event.psp_reference or link.psp_reference
            link.updated_at = now
        if event.psp_reference and not tx.psp_reference:
            tx.psp_reference = event.psp_reference
        if event.psp_reference and tx.psp_reference and event.psp_reference != tx.psp_reference:
            raise _Inconsistent(f"the link was paid with {event.psp_reference}, the payment has {tx.psp_reference}")
        if self._awaiting_authorization(s, tx):
            amount = _minor(event.amount, tx.currency) or tx.amount_minor
            captured = amount if tx.auto_capture else 0
            status, note = self._authorize(s, tx, event, amount, now, captured=captured, how="the customer paid the link")
        else:
            status, note = EventStatus.NO_CHANGE, f"The customer paid the link; the payment is {tx.status.replace('_', ' ')} already."
        s.flush()
        self._apply_unmatched(s, tx)
        return status, note

    def _on_link_expired(self, s, tx, row, event, now) -> tuple[str, str]:
        link = self._link_of(s, tx, event)
        if link is not None and link.status in ("open", "creating"):
            link.status = "expired"
            link.updated_at = now
        latest = s.scalars(
            select(PaymentLinkRow)
            .where(PaymentLinkRow.company_id == tx.company_id, PaymentLinkRow.transaction_id == tx.id)
            .order_by(PaymentLinkRow.created_at.desc())
        ).first()
        if tx.status == TxStatus.PENDING.value and tx.authorized_minor == 0 and (latest is None or latest is link):
            before = tx.status
            tx.status = TxStatus.FAILED.value
            tx.updated_at = now
            message = "The payment link expired before the customer paid; a new link can be created for the document."
            self._history(s, tx, event, "link_expired", message, now, before=before)
            return EventStatus.APPLIED, message
        return EventStatus.NO_CHANGE, "The payment link expired; the payment does not depend on it."

    # ================================================================== re-evaluation
    def _apply_unmatched(self, s: Session, tx: TransactionRow) -> None:
        """Events that arrived before the transaction had its reference, oldest first."""
        if not tx.psp_reference:
            return
        rows = s.scalars(
            select(PspEventRow).where(
                PspEventRow.psp == tx.psp, PspEventRow.psp_account == tx.psp_account,
                PspEventRow.psp_reference == tx.psp_reference, PspEventRow.status == EventStatus.UNMATCHED,
            ).order_by(PspEventRow.occurred_at, PspEventRow.id)
        ).all()
        for row in rows:
            self._apply(s, tx, row, PspEvent.model_validate(row.event))

    def _reapply_deferred(self, s: Session, tx: TransactionRow) -> int:
        rows = s.scalars(_DEFERRED_OF_TX, {"company_id": tx.company_id, "transaction_id": tx.id}).all()
        if not rows or self._unfinished(s, tx) is not None:
            return 0
        for row in rows:
            self._apply(s, tx, row, PspEvent.model_validate(row.event))
        return len(rows)

    def reapply_deferred(self, company_id: str | None = None, transaction_id: str | None = None) -> int:
        """Re-evaluate deferred events of transactions whose operations have finished; without
        arguments (recovery, the service's maintenance) also apply events recorded and not
        applied yet, and unmatched ones whose reference a transaction has by now."""
        query = select(PspEventRow.company_id, PspEventRow.transaction_id).where(PspEventRow.status == EventStatus.DEFERRED)
        if company_id is not None:
            query = query.where(PspEventRow.company_id == company_id)
        if transaction_id is not None:
            query = query.where(PspEventRow.transaction_id == transaction_id)
        with self.store.transaction() as s:
            pairs = sorted({(c, t) for c, t in s.execute(query.distinct()).all() if c and t})
        done = 0
        for company, tx_id in pairs:
            done += self._with_books(lambda company=company, tx_id=tx_id: self._reapply_deferred_of(company, tx_id))
        if company_id is None and transaction_id is None:
            done += self.apply_pending() + self.apply_unmatched()
        return done

    def _reapply_deferred_of(self, company: str, tx_id: str) -> int:
        with self.locked(company, tx_id):
            with self.store.transaction() as s:
                tx = s.get(TransactionRow, tx_id)
                return self._reapply_deferred(s, tx) if tx is not None else 0

    def apply_unmatched(self, limit: int = 500) -> int:
        """Apply events stored ``unmatched`` whose reference a transaction has by now.

        A webhook that overtakes the synchronous answer of the authorization (or arrives while
        that answer was lost and is being replayed) finds no transaction with its reference and
        is stored unmatched; the engine records the reference afterwards. Without this sweep such
        an event (a refund made in the PSP's dashboard in that window, say) would never reach
        the payment's books."""
        with self.store.transaction() as s:
            refs = sorted({
                (r.psp, r.psp_account, r.psp_reference)
                for r in s.scalars(select(PspEventRow).where(
                    PspEventRow.status == EventStatus.UNMATCHED, PspEventRow.psp_reference.is_not(None)).limit(limit))
            })
        applied = 0
        for psp, account, reference in refs:
            with self.store.transaction() as s:
                tx = s.scalars(select(TransactionRow).where(
                    TransactionRow.psp == psp, TransactionRow.psp_account == account,
                    TransactionRow.psp_reference == reference)).first()
                if tx is None:
                    continue
                company, tx_id = tx.company_id, tx.id
            applied += self._with_books(
                lambda company=company, tx_id=tx_id, reference=reference: self._apply_unmatched_of(company, tx_id, reference))
        return applied

    def _apply_unmatched_of(self, company: str, tx_id: str, reference: str) -> int:
        with self.locked(company, tx_id):
            with self.store.transaction() as s:
                tx = s.get(TransactionRow, tx_id)
                if tx is None or tx.psp_reference != reference:
                    return 0
                self._apply_unmatched(s, tx)
                return 1

    @contextmanager
    def locked(self, company_id: str, tx_id: str) -> Iterator[None]:
        with self.store.transaction() as s:
            tx = s.get(TransactionRow, tx_id)
            key = doc_lock_key(tx) if tx is not None and tx.company_id == company_id else f"tx:{tx_id}"
        with self.store.serialized(company_id, key):
            yield

    # ================================================================== reading
    def for_transaction(self, company_id: str, transaction_id: str) -> list[PspEventView]:
        with self.store.transaction() as s:
            rows = s.scalars(
                select(PspEventRow)
                .where(PspEventRow.company_id == company_id, PspEventRow.transaction_id == transaction_id)
                .order_by(PspEventRow.occurred_at, PspEventRow.id)
            ).all()
            return [
                PspEventView(
                    event_id=r.event_id, type=EventType(r.event_type), raw_type=r.raw_type, occurred_at=r.occurred_at,
                    received_at=r.received_at, psp_reference=r.psp_reference, status=r.status, note=r.note,
                    applied_at=r.applied_at,
                )
                for r in rows
            ]


__all__ = ["EventOutcome", "EventStatus", "PspEventView", "PspEvents", "UnknownPspAccount"]
