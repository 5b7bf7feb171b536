"""The webhook inbox through a real uvicorn: concurrent deliveries are committed in groups and
each event is stored once; the answer comes only after the commit; an event recorded and not
applied (the process stopped in between) is applied after a restart; re-deliveries while the
backlog waits are duplicates; a failed recording answers 503 so the PSP delivers again."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
from sqlalchemy import func, select, text

from payweave.core.engine.psp_events import PspEvents
from payweave.core.service import create_app
from payweave.core.service.context import ServiceContext
from payweave.core.service.runtime import Maintenance
from payweave.core.store.service_models import PspEventRow
from payweave.core.testing.documents import item_line
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.models import CaptureRequest
from payweave.hooks.money import Money
from payweave.plugins.psp_mock import pending_webhooks, signed_webhook

from .conftest import assert_problem, authorized, put_method


def _rows(store, **where) -> list[tuple[str, str]]:
    with store.transaction() as s:
        query = select(PspEventRow.event_id, PspEventRow.status)
        for name, value in where.items():
            query = query.where(getattr(PspEventRow, name) == value)
        return [tuple(r) for r in s.execute(query.order_by(PspEventRow.id)).all()]


def _captured_outside(service, tx, amount: str):
    """Capture at the PSP directly (its dashboard): the webhook is news to payweave."""
    account = service.engine.account("psp_mock", "full")
    list(pending_webhooks(account))  # the authorization webhook is not the point
    service.engine.plugins.psp("psp_mock").capture(account, CaptureRequest(
        idempotency_key=f"dash-{tx['id']}", transaction_id=tx["id"], psp_reference=tx["psp_reference"],
        amount=Money.of(amount, "EUR")))
    [request] = list(pending_webhooks(account))
    return request


@contextmanager
def _stopped_service(engine) -> Iterator[tuple[ServiceContext, httpx.Client]]:
    """A second service process on the same store whose applier never runs: it records and
    answers, then stops before applying (what a crash right after the answers leaves)."""
    context = ServiceContext(settings=engine.settings, engine=engine)
    context.inbox.applier.stop()  # never starts
    with LoopbackServer(create_app(engine.settings, context=context)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield context, client
    context.inbox.close()


def test_concurrent_deliveries_are_committed_in_groups_and_each_event_is_stored_once(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "30.00")])
    account = service.engine.account("psp_mock", "full")
    ledger = service.ledger()
    # events payweave only keeps (no payment effect), each with its own id
    emitted = [ledger.emit("payment.dispute_updated", payment=tx["psp_reference"], currency="EUR", n=n) for n in range(40)]
    requests = [signed_webhook(account, e, received_at=ledger.clock.now()) for e in emitted]
    ids = {e["id"] for e in emitted}
    deliveries = requests * 3  # every event three times, all at once
    barrier = threading.Barrier(24)
    seen_before_answer: list[str] = []

    def post(index: int) -> httpx.Response:
        if index < 24:
            barrier.wait()
        request = deliveries[index]
        response = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
        # answered 200 means committed: the row is there the moment the answer is
        event_id = response.json()["events"][0]["event_id"] if response.status_code == 200 else None
        if event_id and not _rows(service.engine.store, event_id=event_id):
            seen_before_answer.append(event_id)
        return response

    groups_before = dict(service.context.inbox.stats)
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(post, range(len(deliveries))))
    assert [r.status_code for r in responses] == [200] * len(deliveries)
    assert not seen_before_answer
    answers = Counter((r.json()["events"][0]["event_id"], r.json()["events"][0]["status"]) for r in responses)
    assert {i: answers[(i, "received")] for i in ids} == {i: 1 for i in ids}  # one delivery of each recorded it
    assert sum(answers[(i, "duplicate")] for i in ids) == 2 * len(ids)
    stored = [event_id for event_id, _ in _rows(service.engine.store) if event_id in ids]
    assert Counter(stored) == Counter(ids)
    stats = service.context.inbox.stats
    deliveries_done = stats["deliveries"] - groups_before["deliveries"]
    groups = stats["groups"] - groups_before["groups"]
    assert deliveries_done == len(deliveries)
    assert groups < deliveries_done and stats["largest_group"] > 1, stats  # group commit: several per transaction
    service.context.events.apply_pending()
    assert {status for event_id, status in _rows(service.engine.store) if event_id in ids} == {"stored"}


def test_an_event_recorded_but_not_applied_is_applied_after_a_restart(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "25.00")])
    request = _captured_outside(service, tx, "25.00")
    with _stopped_service(service.engine) as (context, client):
        answer = client.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
        assert answer.status_code == 200 and answer.json()["events"][0]["status"] == "received", answer.text
    event_id = answer.json()["events"][0]["event_id"]
    # the process is gone: the event is stored, the payment does not know yet
    assert _rows(service.engine.store, event_id=event_id) == [(event_id, "received")]
    assert service.a.get(f"/v1/transactions/{tx['id']}").json()["status"] == "reserved"
    # the restarted service's applier applies what was left, once
    restarted = ServiceContext(settings=service.engine.settings, engine=service.engine).inbox.start()
    try:
        deadline = time.monotonic() + 30
        while _rows(service.engine.store, event_id=event_id)[0][1] == "received":
            assert time.monotonic() < deadline, "the restarted applier did not apply the event"
            time.sleep(0.05)
    finally:
        restarted.close()
    assert _rows(service.engine.store, event_id=event_id) == [(event_id, "applied")]
    view = service.a.get(f"/v1/transactions/{tx['id']}").json()
    assert view["status"] == "captured" and view["amounts"]["captured"] == "25.00"
    assert [h["action"] for h in view["history"]].count("captured") == 1
    # recovery again (the maintenance loop's sweep) changes nothing
    assert Maintenance(ServiceContext(settings=service.engine.settings, engine=service.engine)).run_once()["deferred_events"] == 0
    assert service.a.get(f"/v1/transactions/{tx['id']}").json()["amounts"] == view["amounts"]


def test_redeliveries_while_the_backlog_waits_are_duplicates_and_apply_once(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "60.00")])
    request = _captured_outside(service, tx, "60.00")
    with _stopped_service(service.engine) as (context, client):
        answers = [client.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers) for _ in range(3)]
        assert [a.json()["events"][0]["status"] for a in answers] == ["received", "duplicate", "duplicate"]
        event_id = answers[0].json()["events"][0]["event_id"]
        assert _rows(service.engine.store, event_id=event_id) == [(event_id, "received")]
        # two appliers at once (this process's recovery and another's): applied once
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: PspEvents(service.engine).apply_pending(), range(2)))
    assert _rows(service.engine.store, event_id=event_id) == [(event_id, "applied")]
    again = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
    assert again.json()["events"][0]["status"] == "duplicate"
    view = service.a.get(f"/v1/transactions/{tx['id']}").json()
    assert view["status"] == "captured" and view["amounts"]["captured"] == "60.00"
    assert [h["action"] for h in view["history"]].count("captured") == 1
    with service.engine.store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PspEventRow).where(PspEventRow.event_id == event_id)) == 1


def test_a_webhook_that_cannot_be_recorded_is_answered_503_and_taken_when_delivered_again(service):
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "15.00")])
    request = _captured_outside(service, tx, "15.00")
    store = service.engine.store
    with store.engine.begin() as conn:  # the store refuses the insert (as a full disk or a lost table would)
        conn.execute(text("ALTER TABLE psp_events RENAME TO psp_events_away"))
    try:
        refused = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE psp_events_away RENAME TO psp_events"))
    problem = assert_problem(refused, 503, "webhook_not_recorded")
    assert "deliver" in problem["detail"]
    assert _rows(store) == []
    taken = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
    assert service.settled([taken]) == ["applied"]
    assert service.a.get(f"/v1/transactions/{tx['id']}").json()["status"] == "captured"


def test_a_webhook_waiting_for_the_database_leaves_the_service_answering(service):
    """SQLite: deliveries are committed on the event loop only when that cannot wait; while
    another writer holds the database, the delivery waits (answered once committed, never
    before) and every other request is still answered."""
    store = service.engine.store
    if store.is_postgres:
        return  # PostgreSQL commits from the writer thread always
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "12.00")])
    request = _captured_outside(service, tx, "12.00")
    other = sqlite3.connect(store.url.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    released = False
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(service.anonymous.post, "/webhooks/psp_mock/full", content=request.body,
                                  headers=request.headers)
            time.sleep(0.5)
            assert not pending.done()  # not answered: nothing is committed yet
            started = time.monotonic()
            assert service.anonymous.get("/health").status_code == 200
            assert time.monotonic() - started < 2
            assert not pending.done()
            other.execute("COMMIT")
            released = True
            answer = pending.result(timeout=30)
    finally:
        if not released:
            other.execute("ROLLBACK")
        other.close()
    assert answer.status_code == 200 and answer.json()["events"][0]["status"] == "received", answer.text
    event_id = answer.json()["events"][0]["event_id"]
    assert [e for e, _ in _rows(store, event_id=event_id)] == [event_id]
    assert service.settled([answer]) == ["applied"]
    # the loop's own connection does not wait; the pool's connections still do
    for _ in range(3):
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def _wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_reading_the_psps_books_holds_neither_the_turn_nor_the_writer_lock(service, monkeypatch):
    """Confirming a change made at the PSP asks the PSP (up to its timeout): meanwhile webhooks
    are recorded and answered as usual, and payment operations are not held up."""
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "40.00")])
    request = _captured_outside(service, tx, "40.00")  # news to payweave: confirmed against the books
    account = service.engine.account("psp_mock", "full")
    ledger = service.ledger()
    inbox = service.context.inbox
    seen: list[object] = []
    original = PspEvents._read_books

    def reading(self, psp, account_name, reference):
        seen.append(("turn held", inbox._turn is not None and inbox._turn.locked()))
        # another webhook arrives while the PSP is being asked: recorded and answered right away
        other = signed_webhook(account, ledger.emit("payment.dispute_updated", payment=tx["psp_reference"],
                                                     currency="EUR", n=99), received_at=ledger.clock.now())
        with httpx.Client(base_url=service.server.url, timeout=5) as client:
            answer = client.post("/webhooks/psp_mock/full", content=other.body, headers=other.headers)
        seen.append(("other answered", answer.status_code, answer.json()["events"][0]["status"]))
        return original(self, psp, account_name, reference)

    monkeypatch.setattr(PspEvents, "_read_books", reading)
    answer = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["events"][0]["event_id"]
    _wait_for(lambda: _rows(service.engine.store, event_id=event_id)[0][1] != "received", "not applied")
    assert seen == [("turn held", False), ("other answered", 200, "received")]
    assert _rows(service.engine.store, event_id=event_id) == [(event_id, "applied")]
    assert service.a.get(f"/v1/transactions/{tx['id']}").json()["amounts"]["captured"] == "40.00"


def _dispute_update(service, tx, n: int):
    account = service.engine.account("psp_mock", "full")
    ledger = service.ledger()
    event = ledger.emit("payment.dispute_updated", payment=tx["psp_reference"], currency="EUR", n=n)
    return signed_webhook(account, event, received_at=ledger.clock.now())


def test_the_inbox_counts_as_pressed_for_a_moment_after_each_delivery(service, monkeypatch):
    """The applier steps back while deliveries come in, also between two of them (a steady
    stream leaves nothing waiting at most instants): after a delivery the inbox counts as
    pressed until none came for PRESSURE_SECONDS."""
    from payweave.core.engine import psp_inbox

    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "10.00")])
    inbox = service.context.inbox
    monkeypatch.setattr(psp_inbox, "PRESSURE_SECONDS", 5.0)
    time.sleep(0.01)
    request = _dispute_update(service, tx, 1)
    answer = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
    assert answer.status_code == 200, answer.text
    assert inbox.pressed()  # nothing waits now, but a delivery just came
    monkeypatch.setattr(psp_inbox, "PRESSURE_SECONDS", 0.05)
    time.sleep(0.1)
    assert not inbox.pressed()


def test_the_event_loop_waits_out_a_short_turn_and_hands_a_long_one_to_the_writer(service, monkeypatch):
    """SQLite: while the applier has its turn, the loop tries the group again a millisecond
    later (no thread hop); past LOOP_RETRY_WINDOW the writer thread takes the group. Either way
    the delivery is answered only once committed."""
    from payweave.core.engine import psp_inbox

    if service.engine.store.is_postgres:
        return  # PostgreSQL commits every group on the writer thread
    put_method(service.a)
    _, tx = authorized(service.a, lines=[item_line(10000, "10.00")])
    inbox = service.context.inbox

    def deliver_while_the_turn_is_held(n: int, hold: float) -> httpx.Response:
        request = _dispute_update(service, tx, n)
        taken, done = threading.Event(), threading.Event()

        def hold_turn() -> None:
            with inbox.turn():
                taken.set()
                time.sleep(hold)
                done.set()

        holder = threading.Thread(target=hold_turn)
        holder.start()
        taken.wait(5)
        answer = service.anonymous.post("/webhooks/psp_mock/full", content=request.body, headers=request.headers)
        assert done.is_set(), "answered before the turn was free (the commit did not wait for it)"
        holder.join()
        return answer

    service.context.inbox.applier.stop()  # the turn is this test's alone
    monkeypatch.setattr(psp_inbox, "LOOP_RETRY_WINDOW", 5.0)
    answer = deliver_while_the_turn_is_held(1, hold=0.2)
    assert answer.status_code == 200 and answer.json()["events"][0]["status"] == "received"
    assert inbox._writer is None  # committed by the event loop itself, after the turn
    monkeypatch.setattr(psp_inbox, "LOOP_RETRY_WINDOW", 0.0)
    answer = deliver_while_the_turn_is_held(2, hold=0.2)
    assert answer.status_code == 200 and answer.json()["events"][0]["status"] == "received"
    assert inbox._writer is not None  # the writer thread took the group
    assert len([r for r in _rows(service.engine.store) if r[1] == "received"]) >= 2
