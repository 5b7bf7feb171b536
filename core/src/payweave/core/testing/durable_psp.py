"""A small PSP plugin whose ledger is a SQLite *file*, shared by every process that opens it.

psp_mock keeps its books in process memory, which a crash test cannot use: the process that
dies takes the PSP's memory with it, and several worker processes would each see their own
PSP. This plugin is for exactly those tests (crash between the PSP call and the engine's
commit, N worker processes on one queue): its ledger and idempotency records survive the
process, and every process sees the same ones.

It implements reservations with partial and multiple captures, partial voids, partial
refunds and payment lookup, honours idempotency keys (same key: the first result, never a
second movement) and can be told to *hang after applying* an operation (``hang_after``): it
commits the movement at the "PSP", writes ``hang_marker`` and sleeps, so a test can SIGKILL
the caller in the window between the PSP call and the engine's commit.

Register it in-process (it has no entry point: it is test equipment, not a product plugin)::

    manager.register(durable_psp, name="psp_durable")
    manager.account("psp_durable", ledger_path="/tmp/psp.db")
"""
from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)

from payweave.hooks import hookimpl
from payweave.hooks.capabilities import CaptureMode, Feature, PspCapabilities, RefundSupport, VoidSupport
from payweave.hooks.errors import InvalidRequest, RemoteNotFound
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    OperationResult,
    OperationStatus,
    PaymentLookup,
    PaymentStatus,
    PluginInfo,
    PluginKind,
    RefundRequest,
    ReservationResult,
    ReserveRequest,
    VoidRequest,
)
from payweave.hooks.money import Money, from_minor_units

NAME = "psp_durable"

metadata = MetaData()
payments = Table(
    "payments",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("captured", BigInteger, nullable=False, default=0),
    Column("released", BigInteger, nullable=False, default=0),
    Column("refunded", BigInteger, nullable=False, default=0),
    Column("created_at", String(40), nullable=False),
)
movements = Table(
    "movements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("reference", String(40), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("operation_reference", String(40), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
)
idempotency = Table(
    "idempotency",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("request", Text, nullable=False),
    Column("result", Text, nullable=False),
)


class DurablePspSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ledger_path: str
    reservation_days: int = 7
    hang_after: str | None = None
    """Operation (``capture``...) after whose commit the plugin writes ``hang_marker`` and sleeps."""
    hang_marker: str | None = None
    hang_nth: int = 1
    """Hang on the n-th such operation of this process (1 = the first)."""


_engines: dict[str, Engine] = {}
_counts: dict[str, int] = {}


def ledger_engine(path: str) -> Engine:
    engine = _engines.get(path)
    if engine is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process (no fsync per commit)
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        metadata.create_all(engine)
        _engines[path] = engine
    return engine


def _settings(account: Account) -> DurablePspSettings:
    assert isinstance(account.settings, DurablePspSettings)
    return account.settings


CAPABILITIES = PspCapabilities(
    capture_modes=frozenset({CaptureMode.MANUAL, CaptureMode.MANUAL_MULTIPLE}),
    partial_capture=True,
    refund=RefundSupport.PARTIAL,
    void=VoidSupport.PARTIAL,
    reservation_validity=timedelta(days=7),
    payment_lookup=True,
)


@hookimpl
def payweave_plugin_info() -> PluginInfo:
    return PluginInfo(name=NAME, kind=PluginKind.PSP, title="Durable test PSP (SQLite file)", settings_model=DurablePspSettings)


@hookimpl
def psp_capabilities(account: Account) -> PspCapabilities:
    return CAPABILITIES


def _run(account: Account, operation: str, request: BaseModel, apply: Any) -> Any:
    """Apply once per idempotency key, atomically with the movement; maybe hang afterwards."""
    settings = _settings(account)
    key = request.idempotency_key  # type: ignore[attr-defined]
    fingerprint = json.dumps({"op": operation, "request": request.model_dump(mode="json")}, sort_keys=True)
    engine = ledger_engine(settings.ledger_path)
    with engine.begin() as conn:
        stored = conn.execute(select(idempotency).where(idempotency.c.key == key)).first()
        if stored is not None:
            if stored.request != fingerprint:
                raise InvalidRequest(f"Idempotency key {key!r} was already used for a different request.")
            return json.loads(stored.result), True
        result = apply(conn)
        conn.execute(insert(idempotency).values(key=key, request=fingerprint, result=json.dumps(result)))
    if settings.hang_after == operation:
        _counts[operation] = _counts.get(operation, 0) + 1
        if _counts[operation] == settings.hang_nth:
            if settings.hang_marker:
                Path(settings.hang_marker).write_text(json.dumps({"pid": os.getpid(), "key": key}))
            time.sleep(3600)  # the test kills us here: after the PSP applied, before the caller commits
    return result, False


def _payment_row(conn: Any, reference: str) -> Any:
    row = conn.execute(select(payments).where(payments.c.reference == reference)).first()
    if row is None:
        raise InvalidRequest(f"The durable PSP has no payment {reference!r}.")
    return row


def _move(conn: Any, kind: str, reference: str, amount: int, key: str) -> str:
    op_ref = f"{kind[:3]}_{secrets.token_hex(6)}"
    conn.execute(
        insert(movements).values(kind=kind, reference=reference, amount=amount, operation_reference=op_ref,
                                 idempotency_key=key, pid=os.getpid())
    )
    return op_ref


@hookimpl
def psp_reserve(account: Account, request: ReserveRequest) -> ReservationResult:
    CAPABILITIES.require(Feature.RESERVE, psp=NAME)
    settings = _settings(account)

    def apply(conn: Any) -> dict[str, Any]:
        reference = f"dpay_{secrets.token_hex(8)}"
        now = datetime.now(UTC)
        conn.execute(
            insert(payments).values(reference=reference, currency=request.amount.currency,
                                    amount=request.amount.minor_units, captured=0, released=0, refunded=0,
                                    created_at=now.isoformat())
        )
        _move(conn, "reserve", reference, request.amount.minor_units, request.idempotency_key)
        return {"reference": reference, "expires_at": (now + timedelta(days=settings.reservation_days)).isoformat()}

    result, _ = _run(account, "reserve", request, apply)
    return ReservationResult(
        psp_reference=result["reference"],
        status=PaymentStatus.RESERVED,
        amount=request.amount,
        captured=Money.zero(request.amount.currency),
        expires_at=datetime.fromisoformat(result["expires_at"]),
    )


@hookimpl
def psp_capture(account: Account, request: CaptureRequest) -> OperationResult:
    CAPABILITIES.require(Feature.CAPTURE, psp=NAME)

    def apply(conn: Any) -> dict[str, Any]:
        row = _payment_row(conn, request.psp_reference)
        remaining = row.amount - row.captured - row.released
        amount = request.amount.minor_units
        if amount <= 0 or amount > remaining:
            raise InvalidRequest(f"Cannot capture {request.amount}: {from_minor_units(remaining, row.currency)} remains.")
        released = remaining - amount if request.final else 0
        conn.execute(
            update(payments)
            .where(payments.c.reference == row.reference)
            .values(captured=payments.c.captured + amount, released=payments.c.released + released)
        )
        op_ref = _move(conn, "capture", row.reference, amount, request.idempotency_key)
        return {"op": op_ref, "released": released}

    result, _ = _run(account, "capture", request, apply)
    cur = request.amount.currency
    return OperationResult(
        psp_reference=request.psp_reference,
        operation_reference=result["op"],
        status=OperationStatus.SUCCEEDED,
        amount=request.amount,
        released=Money(amount=from_minor_units(result["released"], cur), currency=cur) if result["released"] else None,
    )


@hookimpl
def psp_void(account: Account, request: VoidRequest) -> OperationResult:
    CAPABILITIES.require(Feature.VOID, psp=NAME)

    def apply(conn: Any) -> dict[str, Any]:
        row = _payment_row(conn, request.psp_reference)
        remaining = row.amount - row.captured - row.released
        amount = remaining if request.amount is None else request.amount.minor_units
        if amount <= 0 or amount > remaining:
            raise InvalidRequest("Nothing (or not that much) is left to void.")
        conn.execute(update(payments).where(payments.c.reference == row.reference).values(released=payments.c.released + amount))
        return {"op": _move(conn, "void", row.reference, amount, request.idempotency_key), "amount": amount, "currency": row.currency}

    result, _ = _run(account, "void", request, apply)
    return OperationResult(
        psp_reference=request.psp_reference,
        operation_reference=result["op"],
        status=OperationStatus.SUCCEEDED,
        amount=Money(amount=from_minor_units(result["amount"], result["currency"]), currency=result["currency"]),
    )


@hookimpl
def psp_refund(account: Account, request: RefundRequest) -> OperationResult:
    CAPABILITIES.require(Feature.REFUND, psp=NAME)

    def apply(conn: Any) -> dict[str, Any]:
        row = _payment_row(conn, request.psp_reference)
        amount = request.amount.minor_units
        if amount <= 0 or amount > row.captured - row.refunded:
            raise InvalidRequest("Cannot refund more than was captured and not yet refunded.")
        conn.execute(update(payments).where(payments.c.reference == row.reference).values(refunded=payments.c.refunded + amount))
        return {"op": _move(conn, "refund", row.reference, amount, request.idempotency_key)}

    result, _ = _run(account, "refund", request, apply)
    return OperationResult(psp_reference=request.psp_reference, operation_reference=result["op"],
                           status=OperationStatus.SUCCEEDED, amount=request.amount)


@hookimpl
def psp_get_payment(account: Account, psp_reference: str) -> PaymentLookup:
    CAPABILITIES.require(Feature.PAYMENT_LOOKUP, psp=NAME)
    with ledger_engine(_settings(account).ledger_path).begin() as conn:
        row = conn.execute(select(payments).where(payments.c.reference == psp_reference)).first()
    if row is None:
        raise RemoteNotFound(f"The durable PSP has no payment {psp_reference!r}.")
    cur = row.currency
    open_ = row.amount - row.captured - row.released
    status = PaymentStatus.RESERVED if row.captured == 0 and open_ > 0 else (
        PaymentStatus.PARTLY_CAPTURED if open_ > 0 else PaymentStatus.CAPTURED if row.captured else PaymentStatus.VOIDED
    )
    m = lambda minor: Money(amount=from_minor_units(minor, cur), currency=cur)  # noqa: E731
    return PaymentLookup(psp_reference=psp_reference, status=status, amount=m(row.amount), captured=m(row.captured),
                         refunded=m(row.refunded), capturable=m(max(open_, 0)))


# ---- reading the ledger (tests) -------------------------------------------------------------
def count_movements(path: str, kind: str, reference: str | None = None) -> int:
    query = select(func.count()).select_from(movements).where(movements.c.kind == kind)
    if reference is not None:
        query = query.where(movements.c.reference == reference)
    with ledger_engine(path).begin() as conn:
        return int(conn.execute(query).scalar_one())


def captures_by_reference(path: str) -> dict[str, int]:
    query = (
        select(movements.c.reference, func.count())
        .where(movements.c.kind == "capture")
        .group_by(movements.c.reference)
    )
    with ledger_engine(path).begin() as conn:
        return {ref: int(n) for ref, n in conn.execute(query).all()}


def payment_totals(path: str, reference: str) -> dict[str, Decimal]:
    with ledger_engine(path).begin() as conn:
        row = _payment_row(conn, reference)
    return {
        "amount": from_minor_units(row.amount, row.currency),
        "captured": from_minor_units(row.captured, row.currency),
        "released": from_minor_units(row.released, row.currency),
        "refunded": from_minor_units(row.refunded, row.currency),
    }


__all__ = ["NAME", "DurablePspSettings", "captures_by_reference", "count_movements", "payment_totals"]
