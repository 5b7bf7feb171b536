"""The operation protocol's lean path: the outcome starts from the rows its intent committed,
rows are written without the unit of work (``store.rows.write_changes``), and the view is read
with plain statements. These check what that path must keep from the ORM it replaced: version
checks, nothing lost, nothing written twice, and the same view as a fresh read."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from payweave.core.engine import PaymentEngine, TxStatus
from payweave.core.store import HistoryRow, OperationRow, TransactionRow
from payweave.core.store.rows import write_changes
from payweave.core.testing.documents import document_event, item_line, sales_document

D = Decimal


def reserved(engine, code, amount="100.00"):
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, amount)])
    tx = engine.handle_event(document_event("released", doc)).transaction
    return engine.reserve("CRONUS", tx.id)


def _tx_row(store, tx_id):
    with store.transaction() as s:
        row = s.get(TransactionRow, tx_id)
        s.expunge(row)
    return row


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
    with store.transaction() as s:
        assert write_changes(s, row) is True
    assert row.version == version + 1
    fresh = _tx_row(store, tx.id)
    assert (fresh.document_number, fresh.version, fresh.updated_at) == ("SO-CHANGED", version + 1, row.updated_at)
    with store.transaction() as s:
        assert write_changes(s, row) is False  # written columns count as unchanged afterwards

    stale = _tx_row(store, tx.id)
    row.document_number = "SO-AGAIN"
    with store.transaction() as s:
        write_changes(s, row)
    stale.document_number = "SO-LOST-UPDATE"
    with pytest.raises(StaleDataError), store.transaction() as s:
        write_changes(s, stale)
    assert _tx_row(store, tx.id).document_number == "SO-AGAIN"


def test_write_changes_refuses_a_row_the_session_would_flush_again(engine, method):
    tx = reserved(engine, method("full"))
    with pytest.raises(AssertionError), engine.store.transaction() as s:
        write_changes(s, s.get(TransactionRow, tx.id))


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
