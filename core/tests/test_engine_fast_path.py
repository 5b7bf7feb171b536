"""The operation protocol's lean path: the outcome starts from the rows its intent committed, on
the intent's connection; the transaction is a plain record (``store.rows``) written without the
unit of work, and statements are compiled once (``store.statements.Prepared``). These check what
that path must keep from the ORM it replaced: version checks, the same values written and read,
SQLAlchemy's errors and events, nothing lost, nothing written twice, and the same view as a fresh
read."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from payweave.core.engine import PaymentEngine, TxStatus
from payweave.core.plugins import PluginBug, PspClient
from payweave.core.store import HistoryRow, OperationRow, TransactionRow
from payweave.core.store.rows import RecordType, write_changes
from payweave.core.store.statements import Prepared
from payweave.core.testing.documents import document_event, item_line, sales_document
from payweave.hooks.models import Money

D = Decimal


def reserved(engine, code, amount="100.00"):
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, amount)])
    tx = engine.handle_event(document_event("released", doc)).transaction
    return engine.reserve("CRONUS", tx.id)


TX = RecordType(TransactionRow)


def _tx_row(store, tx_id):
    with store.transaction() as s:
        return TX.record(s.execute(select(*TX.columns).where(TransactionRow.id == tx_id)).one())


def test_write_changes_writes_what_changed_and_checks_the_version(engine, method):
    tx = reserved(engine, method("full"))
    store = engine.store
    row = _tx_row(store, tx.id)
    version = row.version
    with store.transaction() as s:
        assert write_changes(s, row) is False  # nothing changed: no statement, no new version
    assert _tx_row(store, tx.id).version == version

    row.document_number = "SO-CHANGED"
    row.updated_at = row.updated_at + timedelta(seconds=1)
    row.cart = dict(row.cart)  # an equal value is no change
    assert row.changed() == {"document_number", "updated_at"}
    with store.transaction() as s:
        assert write_changes(s, row) is True
    assert row.version == version + 1
    fresh = _tx_row(store, tx.id)
    assert (fresh.document_number, fresh.version, fresh.updated_at) == ("SO-CHANGED", version + 1, row.updated_at)
    with store.transaction() as s:
        assert write_changes(s, row) is False  # written columns count as unchanged afterwards
    with store.transaction() as s:  # the record reads as the ORM row does
        orm = s.get(TransactionRow, tx.id)
        assert {key: getattr(orm, key) for key in TX.keys} == {key: getattr(fresh, key) for key in TX.keys}

    stale = _tx_row(store, tx.id)
    row.document_number = "SO-AGAIN"
    with store.transaction() as s:
        write_changes(s, row)
    stale.document_number = "SO-LOST-UPDATE"
    with pytest.raises(StaleDataError), store.transaction() as s:
        write_changes(s, stale)
    assert _tx_row(store, tx.id).document_number == "SO-AGAIN"


def test_prepared_statements_write_and_read_as_the_orm_does(engine, method):
    """Values go through the column types' processors both ways (UTC datetimes, JSON, None as
    JSON null as Core sends it), and errors are SQLAlchemy's, as for any statement."""
    tx = reserved(engine, method("full"))
    table = OperationRow.__table__
    keys = ["company_id", "transaction_id", "seq", "kind", "status", "request_id", "idempotency_key", "actor",
            "trigger", "currency", "request", "context", "result", "attempts", "created_at"]
    insert_op = Prepared(insert(table).returning(table.c.id), keys)
    at = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    values = {"company_id": "CRONUS", "transaction_id": tx.id, "seq": 99, "kind": "capture", "status": "started",
              "request_id": "prepared-1", "idempotency_key": "prepared-key-1", "actor": "", "trigger": "manual",
              "currency": "EUR", "request": {"amount": "1.00", "nested": [1, None]}, "context": {}, "result": None,
              "attempts": 0, "created_at": at}
    # a column with a Python-side default left out would need SQLAlchemy's execution context: refused
    with pytest.raises(ValueError, match="Python-side default"), engine.store.transaction() as s:
        Prepared(insert(table), [k for k in keys if k != "attempts"]).execute(s.connection(), values)
    with engine.store.transaction() as s:
        op_id = insert_op.returning(s.connection(), values)[0]
    with engine.store.transaction() as s:
        orm = s.get(OperationRow, op_id)
        assert (orm.request, orm.result, orm.created_at, orm.operation_reference) == (values["request"], None, at, None)
        json_type = func.json_type if engine.store.dialect == "sqlite" else func.json_typeof
        raw = s.execute(select(json_type(table.c.result)).where(table.c.id == op_id)).scalar()
        assert raw == "null"  # as Connection.execute stores None in a JSON column
        read = Prepared(select(table.c.created_at, table.c.request, table.c.result).where(table.c.id == bindparam("id")))
        assert read.first(s.connection(), {"id": op_id}) == (at, values["request"], None)
    with pytest.raises(IntegrityError), engine.store.transaction() as s:  # the idempotency key is unique
        insert_op.returning(s.connection(), {**values, "request_id": "prepared-2"})


def test_prepared_rows_insert_as_core_does_in_chunks_and_skip_conflicts(store):
    """The webhook inbox's insert (``PspEvents.insert_received`` over ``PreparedRows``): more rows
    than one statement takes (chunks), repeats inside the rows and keys stored before are skipped
    and reported as not inserted, and every value reads back as an ORM insert's would."""
    from payweave.core.engine.psp_events import EventStatus, PspEvents
    from payweave.core.store.service_models import PspEventRow
    from payweave.core.store.statements import ROWS_PER_STATEMENT, PreparedRows

    at = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))

    def row(i, **changes):
        values = {"psp": "psp_mock", "psp_account": "default", "event_id": f"evt-{i}", "event_type": "captured",
                  "raw_type": "payment.captured", "occurred_at": at, "received_at": at + timedelta(seconds=i),
                  "psp_reference": f"pay-{i}" if i % 3 else None, "link_id": None, "payout_id": None,
                  "status": EventStatus.RECEIVED, "note": "", "event": json.dumps({"i": i, "nested": [1, None, "é"]},
                                                                                      ensure_ascii=i % 2 == 0)}
        return {**values, **changes}

    with store.transaction() as s:  # one stored the ORM's way first: a conflict later
        orm_row = row(0, event_id="evt-orm")
        s.add(PspEventRow(**{**orm_row, "event": json.loads(orm_row["event"])}))
    n = 2 * ROWS_PER_STATEMENT + 5
    rows = [row(i) for i in range(n)] + [row(3, note="a repeat"), row(0, event_id="evt-orm")]
    events = PspEvents.__new__(PspEvents)  # insert_received needs nothing of the engine
    with store.transaction() as s:
        inserted = events.insert_received(s, rows)
    assert set(inserted) == {("psp_mock", "default", f"evt-{i}") for i in range(n)}
    assert len(set(inserted.values())) == n
    with store.transaction() as s:
        again = events.insert_received(s, [row(5), row(n)])
        assert set(again) == {("psp_mock", "default", f"evt-{n}")}
    with store.transaction() as s:
        stored = {r.event_id: r for r in s.scalars(select(PspEventRow))}
        assert len(stored) == n + 2
        orm = stored["evt-orm"]
        for i in (0, 3, n - 1, n):
            got, want = stored[f"evt-{i}"], row(i)
            assert got.id == (inserted | again)[("psp_mock", "default", f"evt-{i}")]
            assert {k: getattr(got, k) for k in want} == {**want, "event": json.loads(want["event"])}
            assert (got.company_id, got.transaction_id, got.operation_id, got.applied_at) == (None, None, None, None)
        assert stored["evt-3"].note == ""  # the first of a repeat is the one inserted
        assert {k: getattr(orm, k) for k in ("occurred_at", "status", "event")} == {
            k: getattr(stored["evt-0"], k) for k in ("occurred_at", "status", "event")}
    with pytest.raises(ValueError, match="expected"), store.transaction() as s:
        events.insert_received(s, [{**row(n + 1), "unexpected": 1}])
    with pytest.raises(TypeError, match="expected JSON text"), store.transaction() as s:  # given as text, or refused
        events.insert_received(s, [{**row(n + 1), "event": {"i": n + 1}}])
    wide = [c.name for c in PspEventRow.__table__.c]  # more columns: fewer rows a statement, under SQLite's 999
    assert PreparedRows(PspEventRow.__table__, wide, lambda dialect, values: None).per_statement == 999 // len(wide) < 64
    with pytest.raises(ValueError, match="not a JSON column"):
        PreparedRows(PspEventRow.__table__, ["psp", "note"], lambda dialect, values: None, json_text=["note"])
    with pytest.raises(ValueError, match="has no column"):
        PreparedRows(PspEventRow.__table__, ["psp", "no_such_column"], lambda dialect, values: None)


def test_the_hot_path_statements_run_through_sqlalchemy_events(engine, method):
    """Fault injection (core.reliability.chaos.DbFaults) hooks SQLAlchemy's cursor events: every
    statement of a capture must pass through them."""
    tx = reserved(engine, method("full"))
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.split()[0].upper())

    event.listen(engine.store.engine, "before_cursor_execute", count)
    try:
        engine.capture("CRONUS", tx.id, "10.00")
    finally:
        event.remove(engine.store.engine, "before_cursor_execute", count)
    assert seen.count("INSERT") == 3 and seen.count("UPDATE") == 3 and seen.count("SELECT") >= 3, seen


def test_an_outcome_whose_transaction_row_moved_reloads_it_and_loses_nothing(engine, method, monkeypatch):
    """Between intent and outcome something else changed the transaction row (here: invoiced,
    as a posting would): the outcome's version-checked UPDATE refuses the intent's copy, the
    outcome is committed from the stored rows instead, once."""
    tx = reserved(engine, method("full"))
    original = PaymentEngine._apply_on
    calls: list[bool] = []

    def racing(self, op_id, result, rows):
        calls.append(rows is not None)
        if rows is not None:
            with self.store.transaction() as s:
                other = s.get(TransactionRow, tx.id)
                other.invoiced_minor = 4000
        return original(self, op_id, result, rows)

    monkeypatch.setattr(PaymentEngine, "_apply_on", racing)
    view = engine.capture("CRONUS", tx.id, "60.00")
    assert calls == [True, False]
    assert view.status is TxStatus.PARTLY_CAPTURED and view.amounts.captured == D("60.00")
    assert view.amounts.invoiced == D("40.00")  # the other change survived
    with engine.store.transaction() as s:
        ops = s.scalars(select(OperationRow).where(OperationRow.transaction_id == tx.id).order_by(OperationRow.seq)).all()
        history = s.scalars(select(HistoryRow.action).where(HistoryRow.transaction_id == tx.id)).all()
    assert [(o.kind, o.status, o.attempts) for o in ops] == [("reserve", "succeeded", 1), ("capture", "succeeded", 1)]
    assert history.count("capture") == 1 and history.count("capture_requested") == 1


def test_the_returned_view_is_the_stored_one(engine, method):
    tx = reserved(engine, method("full"))
    view = engine.capture("CRONUS", tx.id, "30.00")
    assert view == engine.get_transaction("CRONUS", tx.id)
    assert [h.action for h in view.history][-2:] == ["capture_requested", "capture"]
    assert view.operations[-1].kind == "capture" and view.operations[-1].status == "succeeded"
    again = engine.capture("CRONUS", tx.id, request_id="same-request")
    assert engine.capture("CRONUS", tx.id, request_id="same-request") == engine.get_transaction("CRONUS", tx.id)
    assert again.amounts.captured == D("100.00")


def test_a_result_that_breaks_the_ledger_parks_after_the_outcome_rolled_back(engine, method, monkeypatch):
    """The PSP reports more captured than requested: the outcome (on the intent's connection) is
    rolled back before the parked state is recorded on another one, so nothing waits for a
    writer lock, the ledger is untouched, and the fixed plugin's replay finishes the capture once."""
    tx = reserved(engine, method("full"))
    real = PspClient.capture

    def over_capturing(self, account, request):
        result = real(self, account, request)
        return result.model_copy(update={"amount": Money(amount=result.amount.amount + 1, currency="EUR")})

    with monkeypatch.context() as m:
        m.setattr(PspClient, "capture", over_capturing)
        with pytest.raises(PluginBug, match="reported a capture of"):
            engine.capture("CRONUS", tx.id, "10.00")
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.captured == 0 and view.operations[-1].status == "parked"
    assert [h.action for h in view.history][-2:] == ["capture_requested", "capture_parked"]
    view = engine.capture("CRONUS", tx.id, "20.00")  # the parked call is replayed first, with its key
    assert view.amounts.captured == D("30.00")
    assert [(o.kind, o.status) for o in view.operations] == [("reserve", "succeeded"), ("capture", "succeeded"),
                                                              ("capture", "succeeded")]
