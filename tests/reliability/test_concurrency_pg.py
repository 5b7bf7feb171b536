"""Many processes, one PostgreSQL store, one PSP: three ``payweave serve`` processes and two
``payweave worker`` processes race on the same documents, and one server is SIGKILLed in the
middle of it. The PSP is the Stripe-shaped sandbox (one ledger, real HTTP, webhooks delivered to
every server, so each event arrives several times and in any order).

What must hold afterwards, checked against the sandbox's own journal of money movements:
no over-capture (one capture per payment, whatever number of requests), no over-refund (refunds
racing past the captured amount are refused), duplicate and late webhooks change nothing, the
webhook racing the synchronous capture does not count it twice, a posted document delivered to
several servers captures once through the job queue, a reservation about to expire is captured
by the late-capture job, and one that expired is reported (status expired, capture refused with
a clear error) instead of being retried at the PSP, and write-backs handed to both workers
several times at once record each payment in BC once. No secret reaches any process's log.
"""
from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from payweave.core.service.apikeys import ApiKeys
from payweave.core.store import OperationRow, Store, TransactionRow
from payweave.core.store.service_models import PspEventRow
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.models import DocumentStatus
from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings, create_app
from payweave.plugins.psp_stripe_like.sandbox.settings import WebhookEndpointConfig
from payweave.plugins.psp_stripe_like.sandbox.webhooks import signature_header

from .conftest import Processes, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COMPANY = "CRONUS"
#: seconds an authorization of the second PSP account lives (the expiry scenarios)
VALIDITY = 12
#: answers that say "repeat the request" (everything else is the answer)
TRY_AGAIN = {"idempotency_key_in_progress", "document_busy", "operation_outcome_unknown"}


class Client:
    """A BC extension: every POST carries an Idempotency-Key, repeated on another server when a
    server does not answer (connection refused after a SIGKILL) or says "try again"."""

    def __init__(self, servers: list[Any], key: str) -> None:
        self.servers = servers
        self.http = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"})
        self.lock = threading.Lock()
        self.gave_up: list[str] = []

    def post(self, path: str, body: Any, *, idem: str, prefer: int = 0, budget: float = 30.0) -> httpx.Response | None:
        """The answer, or None when the client gave up: a request that was in flight on a killed
        server keeps its Idempotency-Key "in progress" for minutes (then a repeat takes over)."""
        deadline = time.monotonic() + budget
        attempt = 0
        while time.monotonic() < deadline:
            server = self.servers[(prefer + attempt) % len(self.servers)]
            attempt += 1
            try:
                response = self.http.post(f"{server.url}{path}", json=body, headers={"Idempotency-Key": idem})
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            code = response.json().get("code") if response.headers.get("content-type", "").endswith("json") else None
            if response.status_code == 503 or code in TRY_AGAIN:
                if code == "idempotency_key_in_progress" and attempt > 20:
                    self.gave_up.append(f"{path} {idem}: {code}")
                    return None
                last = f"{response.status_code} {code}"
                time.sleep(0.1)
                continue
            return response
        self.gave_up.append(f"{path} {idem}: out of time ({locals().get('last', 'no answer')})")
        return None

    def get(self, path: str) -> httpx.Response:
        for server in self.servers:
            if server.alive():
                return self.http.get(f"{server.url}{path}")
        raise AssertionError("no server is alive")


def _doc_json(document: Any) -> dict[str, Any]:
    data = document.model_dump(mode="json")
    data.pop("company_id")
    return data


def _event_json(event: Any) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    data["document"] = _doc_json(event.document)
    return data


@pytest.fixture
def stack(postgres_url: str, processes: Processes, tmp_path: Path) -> Any:
    api_key = f"sk_test_{secrets.token_urlsafe(16)}"
    webhook_secret = f"whsec_{secrets.token_urlsafe(16)}"
    short_key = f"sk_test_{secrets.token_urlsafe(16)}"
    pepper = secrets.token_urlsafe(24)
    ports = [free_port() for _ in range(3)]
    endpoints = {account: tuple(WebhookEndpointConfig(f"http://127.0.0.1:{p}/webhooks/psp_stripe_like/{account}",
                                                      webhook_secret) for p in ports)
                 for account in ("default", "short")}
    psp = LoopbackServer(create_app(SandboxSettings(api_keys=(api_key,), webhook_endpoints=endpoints["default"],
                                                    webhook_backoff_seconds=0.2))).start()
    # a second PSP account whose authorizations live 12 s: the expiry scenarios
    psp_short = LoopbackServer(create_app(SandboxSettings(api_keys=(short_key,), webhook_endpoints=endpoints["short"],
                                                          authorization_validity_seconds=VALIDITY,
                                                          webhook_backoff_seconds=0.2))).start()
    # Business Central: the BC sandbox, reached by every process through the erp_businesscentral plugin
    from datetime import UTC, datetime, timedelta

    from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState
    from payweave.plugins.erp_businesscentral.sandbox import create_app as bc_app
    from payweave.plugins.erp_businesscentral.sandbox import seed

    bc_state = SandboxState(clock=SandboxClock(start=datetime.now(UTC) - timedelta(seconds=30)), webhook_delivery="manual")
    seed(bc_state, seed=3, customers=3, items=3, invoices_per_year=3, years=1, orders=1, credit_memos=1,
         return_orders=1, draft_invoices=1)
    bc = LoopbackServer(bc_app(bc_state)).start()
    bc_client, bc_secret = bc_state.register_app()
    config = tmp_path / "payweave.toml"
    account = 'api_key = "{key}"\nbase_url = "{url}"\nwebhook_secret = "{secret}"\nmax_attempts = 3\n' \
              'retry_base_delay_seconds = 0.05\nread_timeout_seconds = 10\n'
    config.write_text(
        "[accounts.psp_stripe_like.default]\n" + account.format(key=api_key, url=psp.url, secret=webhook_secret)
        + "\n[accounts.psp_stripe_like.short]\n" + account.format(key=short_key, url=psp_short.url, secret=webhook_secret)
        + f"reservation_validity_seconds = {VALIDITY}\n"
        + "\n[accounts.erp_businesscentral.default]\n"
        + f'tenant_id = "{bc_state.tenant_id}"\nenvironment = "{bc_state.environment}"\nclient_id = "{bc_client}"\n'
        + f'client_secret = "{bc_secret}"\ntoken_url = "{bc.url}/{{tenant}}/oauth2/v2.0/token"\n'
        + f'api_base_url = "{bc.url}"\nread_timeout = 10\n')
    processes.env.update({
        "PAYWEAVE_DATABASE_URL": postgres_url, "PAYWEAVE_PLUGINS": "psp_stripe_like,erp_businesscentral", "PAYWEAVE_CONFIG": str(config),
        "PAYWEAVE_API_KEY_PEPPER": pepper, "PAYWEAVE_LOG_FORMAT": "json", "PAYWEAVE_LOG_LEVEL": "INFO",
        "PAYWEAVE_JOBS__POLL_INTERVAL": "0.1", "PAYWEAVE_JOBS__LEASE_SECONDS": "5", "PAYWEAVE_JOBS__BACKOFF_BASE": "0.2",
        "PAYWEAVE_JOBS__BACKOFF_MAX": "2", "PAYWEAVE_JOBS__LATE_CAPTURE_MARGIN_SECONDS": str(VALIDITY - 4),
    })
    store = Store(postgres_url, migrate=False)
    key = ApiKeys(store, pepper).create(COMPANY, name="BC").secret
    # connect the BC company (its initial sync) from here, with the processes' own configuration
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings
    from payweave.core.sync import ErpSyncService, SyncSettings

    bc_company = next(iter(bc_state.companies.values()))
    manager = PluginManager(PayweaveSettings(database_url=postgres_url, plugins="erp_businesscentral",
                                             accounts={"erp_businesscentral": {"default": {
                                                 "tenant_id": bc_state.tenant_id, "environment": bc_state.environment,
                                                 "client_id": bc_client, "client_secret": bc_secret,
                                                 "token_url": f"{bc.url}/{{tenant}}/oauth2/v2.0/token",
                                                 "api_base_url": bc.url}}}))
    manager.load_entrypoints()
    sync = ErpSyncService(store, manager, settings=SyncSettings(pdfs="none"))
    sync.connect(plugin="erp_businesscentral")
    sync.set_account_setup(bc_company.id, payments_account="10900", bank_account="CHECKING", fee_account="60800",
                           actor="test")
    bc_key = ApiKeys(store, pepper).create(bc_company.id, name="BC company").secret
    servers = [processes.serve(f"serve-{i}", port) for i, port in enumerate(ports)]
    workers = [processes.worker(f"worker-{i}") for i in range(2)]
    client = Client(servers, key)
    for code, body in {
        "CARD": {"psp": "psp_stripe_like", "psp_account": "default"},
        "JOBQ": {"psp": "psp_stripe_like", "psp_account": "default", "capture_timing": "job_queue"},
        "LATE": {"psp": "psp_stripe_like", "psp_account": "short", "late_capture": True},
        "PLAIN": {"psp": "psp_stripe_like", "psp_account": "short", "capture_timing": "job_queue"},
    }.items():
        response = client.http.put(f"{servers[0].url}/v1/payment-methods/{code}", json=body)
        assert response.status_code == 200, response.text
    stack = type("Stack", (), {})()
    stack.store, stack.client, stack.servers, stack.workers, stack.processes = store, client, servers, workers, processes
    stack.psp, stack.psp_short, stack.secrets = psp, psp_short, {
        "psp api key": api_key, "psp api key (short)": short_key, "webhook secret": webhook_secret, "pepper": pepper,
        "API key": key}
    stack.webhook_secret = webhook_secret
    stack.secrets["BC client secret"] = bc_secret
    stack.secrets["API key (BC company)"] = bc_key
    stack.bc, stack.bc_state, stack.bc_company, stack.bc_key, stack.sync = bc, bc_state, bc_company, bc_key, sync
    try:
        yield stack
    finally:
        processes.stop()
        psp.stop()
        psp_short.stop()
        bc.stop()
        store.dispose()
        from payweave.plugins.erp_businesscentral import plugin as bc_plugin

        bc_plugin.reset_clients()


def _authorize(stack: Any, code: str, amount: str, i: int) -> dict[str, Any]:
    doc = sales_document(company_id=COMPANY, payment_method_code=code, lines=[item_line(10000, amount)])
    released = document_event("released", doc)
    response = stack.client.post("/v1/document-events", _event_json(released), idem=released.event_id, prefer=i)
    assert response is not None and response.status_code == 200, response and response.text
    response = stack.client.post("/v1/authorizations", {"document": _doc_json(doc), "payment_method_token": "pm_card_visa"},
                                 idem=f"auth-{doc.document_id}", prefer=i)
    assert response is not None and response.status_code == 200, response and response.text
    tx = response.json()
    assert tx["status"] == "reserved", tx
    return {"doc": doc, "tx": tx}


def _journal(psp: Any, **query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{psp.url}/_sandbox/journal", params=query, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["data"] if isinstance(body, dict) else body


def _events(psp: Any, key: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{psp.url}/v1/events", params={"limit": 100}, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _redeliver(stack: Any, event: dict[str, Any], server: Any, account: str = "default") -> int:
    body = json.dumps(event).encode()
    header = signature_header(body, [stack.webhook_secret], int(time.time()))
    try:
        response = httpx.post(f"{server.url}/webhooks/psp_stripe_like/{account}", content=body, timeout=30,
                              headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    except httpx.TransportError:
        return 0
    return response.status_code


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_servers_and_workers_racing_on_one_store_move_money_once(stack: Any) -> None:
    rng = random.Random(20260311)
    client, servers = stack.client, stack.servers
    payments = [_authorize(stack, "CARD", "100.00", i) for i in range(8)]
    key = stack.secrets["psp api key"]
    auth_events = _events(stack.psp, key)

    # ---- storm 1: six captures per document (three share one Idempotency-Key), every webhook
    # the PSP sent redelivered to every server, and a server SIGKILLed in the middle of it
    tasks: list[tuple[str, Any]] = []
    for i, p in enumerate(payments):
        tx_id = p["tx"]["id"]
        for n in range(6):
            idem = f"cap-{tx_id}" if n < 3 else f"cap-{tx_id}-{n}"
            tasks.append(("capture", (tx_id, idem, i + n)))
    for event in auth_events:
        for server in servers:
            tasks.append(("webhook", (event, server)))
    rng.shuffle(tasks)
    results: list[tuple[str, Any, int]] = []
    kill_at = len(tasks) // 3

    def run(index: int, task: tuple[str, Any]) -> None:
        kind, args = task
        if index == kill_at:
            servers[0].sigkill()  # a server dies with requests in flight; clients go on elsewhere
        if kind == "capture":
            tx_id, idem, prefer = args
            response = client.post(f"/v1/transactions/{tx_id}/capture", {"amount": "100.00"}, idem=idem, prefer=prefer)
            results.append(("capture", tx_id, response.status_code if response is not None else 0))
        else:
            results.append(("webhook", args[0]["id"], _redeliver(stack, args[0], args[1])))

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(lambda it: run(*it), enumerate(tasks)))
    assert not servers[0].alive()
    # the server that died is restarted (recovering what it left unfinished), and a worker starts
    stack.servers[0] = stack.processes.serve("serve-0-restarted")
    stack.processes.worker("worker-after-kill", "--once").popen.wait(60)

    refused = Counter(status for kind, _, status in results if kind == "capture" and status != 200)
    # "nothing left to capture": a clear refusal, never a 5xx; 0 = given up on a key the killed server held
    assert set(refused) <= {0, 409, 422}, refused
    assert refused[0] <= 24, (refused, client.gave_up)
    for p in payments:
        pi = p["tx"]["psp_reference"]
        journal = _journal(stack.psp, payment_intent=pi)
        moved = [e for e in journal if e["op"] == "capture"]
        assert len(moved) == 1 and moved[0]["amount"] == 10000, (pi, journal)  # no over-capture
        view = client.get(f"/v1/transactions/{p['tx']['id']}").json()
        assert view["amounts"]["captured"] == "100.00" and view["status"] == "captured", view
        assert [h["action"] for h in view["history"]].count("capture") == 1, view["history"]

    # ---- storm 2: refunds racing past the captured amount (8 x 30.00 per 100.00 captured, plus
    # one Idempotency-Key sent three times), across the servers
    tasks = []
    for i, p in enumerate(payments[:6]):
        tx_id = p["tx"]["id"]
        tasks += [("refund", (tx_id, f"ref-{tx_id}-{n}", i + n)) for n in range(8)]
        tasks += [("refund", (tx_id, f"ref-{tx_id}-same", i + n)) for n in range(3)]
    rng.shuffle(tasks)
    outcomes: list[tuple[str, int, str]] = []

    def refund(task: tuple[str, Any]) -> None:
        tx_id, idem, prefer = task[1]
        response = client.post(f"/v1/transactions/{tx_id}/refund", {"amount": "30.00"}, idem=idem, prefer=prefer)
        outcomes.append((tx_id, response.status_code if response is not None else 0, idem))

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(refund, tasks))
    assert {status for _, status, _ in outcomes} <= {200, 409, 422}, Counter(s for _, s, _ in outcomes)
    for p in payments[:6]:
        tx_id, pi = p["tx"]["id"], p["tx"]["psp_reference"]
        refunds = [e["amount"] for e in _journal(stack.psp, payment_intent=pi) if e["op"] == "refund"]
        assert sum(refunds) <= 10000 and len(refunds) == 3, refunds  # three fit in 100.00, the fourth never
        ok_keys = {idem for t, status, idem in outcomes if t == tx_id and status == 200}
        assert len(ok_keys) == 3, ok_keys
        view = client.get(f"/v1/transactions/{tx_id}").json()
        assert view["amounts"]["refunded"] == "90.00", view["amounts"]

    # ---- the same posted document delivered to every server: one capture through the job queue
    jobq = [_authorize(stack, "JOBQ", "55.50", i) for i in range(4)]
    posted = []
    for p in jobq:
        invoice = posted_invoice(p["doc"])
        event = document_event("posted", invoice, posted_document_id=invoice.document_id)
        posted += [(event, n) for n in range(4)]
    rng.shuffle(posted)

    def post_event(item: tuple[Any, int]) -> int:
        event, n = item
        response = client.post("/v1/document-events", _event_json(event), idem=f"{event.event_id}-{n}", prefer=n)
        return response.status_code if response is not None else 0

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(post_event, posted)) == {200}

    def all_captured() -> bool:
        return all(client.get(f"/v1/transactions/{p['tx']['id']}").json()["status"] == "captured" for p in jobq)

    _wait(all_captured, 60, "the workers did not capture the posted documents")
    for p in jobq:
        moved = [e for e in _journal(stack.psp, payment_intent=p["tx"]["psp_reference"]) if e["op"] == "capture"]
        assert [e["amount"] for e in moved] == [5550], moved

    # ---- late and duplicate webhooks after the dust settled: nothing moves
    before = {p["tx"]["id"]: client.get(f"/v1/transactions/{p['tx']['id']}").json()["amounts"] for p in payments}
    everything = _events(stack.psp, key)
    late = [e for e in everything if e["type"] in ("payment_intent.amount_capturable_updated", "charge.succeeded")]
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda e: _redeliver(stack, e, rng.choice(stack.servers)), late * 2 + everything))
    assert set(statuses) == {200}, Counter(statuses)
    after = {p["tx"]["id"]: client.get(f"/v1/transactions/{p['tx']['id']}").json()["amounts"] for p in payments}
    assert after == before  # a late "authorized" never moves a captured payment back

    # ---- the store: nothing unfinished, every event stored once, ledgers equal the PSP's
    def settled() -> bool:
        with stack.store.transaction() as s:
            return not s.scalar(select(func.count()).select_from(OperationRow).where(
                OperationRow.status.in_(("started", "unknown", "parked"))))

    _wait(settled, 60, "operations left unfinished after the restart")
    with stack.store.transaction() as s:
        dupes = s.execute(select(PspEventRow.event_id, func.count()).group_by(PspEventRow.psp_account, PspEventRow.event_id)
                          .having(func.count() > 1)).all()
        assert not dupes
        for tx in s.scalars(select(TransactionRow).where(TransactionRow.company_id == COMPANY)).all():
            if not tx.psp_reference:
                continue
            journal = _journal(stack.psp, payment_intent=tx.psp_reference)
            captured = sum(e["amount"] for e in journal if e["op"] == "capture")
            refunded = sum(e["amount"] for e in journal if e["op"] == "refund")
            assert (tx.captured_minor, tx.refunded_minor) == (captured, refunded), (tx.id, journal)
    logs = stack.processes.logs()
    assert logs.count("\n") > 50
    for name, value in stack.secrets.items():
        assert value not in logs, f"the {name} appears in a process log"


def test_an_expiring_authorization_is_captured_late_and_an_expired_one_is_reported(stack: Any) -> None:
    client = stack.client
    late = _authorize(stack, "LATE", "42.00", 0)  # late capture 4 s after authorizing, 8 s before it lapses
    plain = _authorize(stack, "PLAIN", "17.00", 1)
    t0 = time.monotonic()

    def status(tx_id: str) -> str:
        return client.get(f"/v1/transactions/{tx_id}").json()["status"]

    _wait(lambda: status(late["tx"]["id"]) == "captured", 20, "the late-capture job never fired")
    assert time.monotonic() - t0 < VALIDITY, "captured only after the authorization had expired"
    moved = [e for e in _journal(stack.psp_short, payment_intent=late["tx"]["psp_reference"]) if e["op"] == "capture"]
    assert [e["amount"] for e in moved] == [4200]

    # nobody captures the other one: the worker's expiry job reports it expired at its expiry
    _wait(lambda: status(plain["tx"]["id"]) == "expired", 30, "the lapsed reservation was never reported")
    view = client.get(f"/v1/transactions/{plain['tx']['id']}").json()
    assert view["amounts"]["capturable"] == "0.00" and view["amounts"]["expired"] == "17.00", view["amounts"]
    # a capture now is refused with a clear error, not sent to the PSP and not retried
    response = client.post(f"/v1/transactions/{plain['tx']['id']}/capture", {}, idem="capture-after-expiry")
    assert response is not None and response.status_code in (409, 422) and response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] in ("illegal_transition", "amount_not_available"), response.json()
    # and posting the document (capture via job queue) is refused at once: BC does not post it
    invoice = posted_invoice(plain["doc"])
    event = document_event("posted", invoice, posted_document_id=invoice.document_id)
    response = client.post("/v1/document-events", _event_json(event), idem=event.event_id)
    assert response is not None and response.status_code in (409, 422), response and response.text
    assert not [e for e in _journal(stack.psp_short, payment_intent=plain["tx"]["psp_reference"]) if e["op"] == "capture"]
    with stack.store.transaction() as s:
        jobs = s.execute(select(func.count()).select_from(OperationRow).where(
            OperationRow.transaction_id == plain["tx"]["id"], OperationRow.kind == "capture")).scalar()
    assert jobs == 0  # no capture was even attempted
    history = [h["action"] for h in client.get(f"/v1/transactions/{plain['tx']['id']}/history").json()]
    assert "expired" in history


def test_workers_racing_on_the_same_write_backs_record_each_payment_in_bc_once(stack: Any) -> None:
    """Captured payments on posted BC invoices are recorded in BC by the workers: every
    write-back is handed to both workers three times at once, and the reconciliation runs here
    at the same time; BC must hold exactly one customer payment per write-back."""
    from datetime import UTC, datetime

    from payweave.core.reconcile import record_captured_payments
    from payweave.core.store import JobRow
    from payweave.core.sync.models import ErpWritebackRow
    from payweave.plugins.erp_businesscentral.sandbox.state import LineSpec

    state, company = stack.bc_state, stack.bc_company
    cid = company.id
    client = Client(stack.servers, stack.bc_key)
    for code, body in {"BCCARD": {"psp": "psp_stripe_like", "psp_account": "default"}}.items():
        assert client.http.put(f"{stack.servers[0].url}/v1/payment-methods/{code}", json=body).status_code == 200
    invoices = []
    with state.lock:
        customer = [c for c in sorted(company.tables["customers"].by_id.values(), key=lambda c: c.number)
                    if not c.currency][0]
        item = sorted(company.tables["items"].by_id.values(), key=lambda i: i.number)[0]
        for n in range(5):
            draft = state.create_document(company, "invoice", customer, [LineSpec(
                number=item.number, quantity=Decimal(1), unit_price=Decimal(f"{40 + n}.25"), tax_percent=Decimal(0))])
            invoices.append(state.post_document(company, draft))
    for n, invoice in enumerate(invoices):
        doc = sales_document("sales_invoice", company_id=cid, document_id=invoice.id, number=invoice.number,
                             payment_method_code="BCCARD", currency=company.lcy,
                             lines=[item_line(10000, invoice.total_incl, currency=company.lcy)])
        for event_type in ("released", "posted"):
            event = document_event(event_type, doc.model_copy(update={"status": DocumentStatus.POSTED})
                                   if event_type == "posted" else doc,
                                   posted_document_id=invoice.id if event_type == "posted" else None)
            response = client.post("/v1/document-events", _event_json(event), idem=event.event_id, prefer=n)
            assert response is not None and response.status_code == 200, response and response.text
            if event_type == "released":
                response = client.post("/v1/authorizations", {"document": _doc_json(doc), "payment_method_token": "pm_card_visa"},
                                       idem=f"auth-{doc.document_id}", prefer=n)
                assert response is not None and response.status_code == 200, response and response.text
                tx_id = response.json()["id"]
        response = client.post(f"/v1/transactions/{tx_id}/capture", {}, idem=f"cap-{tx_id}", prefer=n)
        assert response is not None and response.status_code == 200, response and response.text
    stack.sync.run_sync(cid)  # the invoices reach payweave's store
    before = len(company.cust_ledger)
    # the write-backs, each handed to the workers three times at once
    planned = record_captured_payments(None, _NoProcess(stack.sync), cid)
    assert len(planned) == len(invoices), planned
    now = datetime.now(UTC)
    with stack.store.transaction() as s:
        for wb in planned:
            for _ in range(3):
                s.add(JobRow(company_id=cid, kind="erp_sync", status="pending", due_at=now, attempts=0, max_attempts=20,
                             payload={"action": "writeback", "writeback_id": wb.id}, created_at=now, updated_at=now))
    with ThreadPoolExecutor(4) as pool:  # and this process sends the pending ones and reconciles, meanwhile
        list(pool.map(lambda n: stack.sync.process_pending_writebacks(cid) if n % 2 else
                      record_captured_payments(None, stack.sync, cid), range(4)))

    def all_posted() -> bool:
        with stack.store.transaction() as s:
            rows = s.scalars(select(ErpWritebackRow).where(ErpWritebackRow.company_id == cid)).all()
            return bool(rows) and all(r.status == "posted" for r in rows)

    _wait(all_posted, 60, "write-backs still pending")
    with state.lock:
        entries = company.cust_ledger[before:]
    per_number = Counter(e.document_number for e in entries)
    assert len(per_number) == len(invoices) and set(per_number.values()) == {1}, per_number
    for invoice in invoices:
        assert state.find_posted_invoice(company, id=invoice.id).remaining == 0
    logs = stack.processes.logs()
    for name, value in stack.secrets.items():
        assert value not in logs, f"the {name} appears in a process log"


class _NoProcess:
    """The sync service, but write-backs are only recorded (left for the workers), not sent."""

    def __init__(self, sync: Any) -> None:
        self._sync = sync

    def record_payment(self, *args: Any, **kwargs: Any) -> Any:
        return self._sync.record_payment(*args, **{**kwargs, "process": False})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)
