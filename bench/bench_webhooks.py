"""Webhook ingest: signed PSP webhook events per second through ``payweave serve`` (its
defaults: one uvicorn worker with the in-process job worker, access log off; bound to 127.0.0.1)
vs a bare FastAPI endpoint that answers 200 under the same uvicorn configuration. Target ratio
>= 0.5, with every event stored exactly once and, after the answers, applied.

* Events are psp_mock's own: payments reserved through the engine (``payment.authorized``,
  already known to payweave -> ``no_change``) and then captured at the PSP directly
  (``payment.captured``, new to payweave -> ``applied``: the transaction moves to captured).
  Each is signed at send time with the account's webhook secret, as psp_mock signs them.
  The account declares no payment lookup (``payment_lookup = false``): psp_mock keeps its books
  in the memory of the process that made the payments (this one), which ``payweave serve`` in
  its own process cannot read, so payweave takes the signed events at their word as it does for
  any PSP without a lookup. (With a lookup it would first confirm each capture made outside
  payweave against the PSP's books: that path is tested in core/tests/service/test_webhooks.py.)
* Load comes from a second process (``_webhook_load.py``: httpx.AsyncClient over several
  keep-alive connections), bounded in count and time; each server runs in a process of its own.
* Exactly once: after the load, the store holds one ``psp_events`` row per event answered 200
  (no more, no fewer, no duplicate ids); then a sample is delivered again (while the applier may
  still be working through the backlog) and must be answered 200 as ``duplicate`` without adding
  a row.
* Applied: ``payweave serve`` answers once an event is committed and applies it afterwards, so
  the bench then waits until no event is left ``received`` (how long that took after the load is
  reported as ``apply_backlog_s``) and checks the effects: every ``authorized`` event
  ``no_change``, every ``captured`` event ``applied``, every payment captured in full, with
  exactly one ``captured`` history entry. The result is met only if this holds too.
* The bare endpoint runs before and after payweave; the faster run is the floor. The load
  generator's CPU use is reported: near 1 CPU-second per second means it, not the server, was
  the limit, and the bare figure is then a lower bound (the ratio an upper bound).

Store: SQLite (the embedded default), a file in a temporary directory.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import Result, quiet_logging
from sqlalchemy import func, select

from payweave.core.engine import PaymentEngine, PaymentMethodSetup, TxStatus
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import HistoryRow, Store, TransactionRow
from payweave.core.store.service_models import PspEventRow
from payweave.core.testing.documents import document_event, item_line, sales_document
from payweave.hooks.models import CaptureRequest, Money
from payweave.plugins.psp_mock import ledger_for, reset_ledgers
from payweave.plugins.psp_mock import plugin as mock_plugin
from payweave.plugins.psp_mock.webhooks import SIGNATURE_HEADER, signature

HERE = Path(__file__).parent
SIZES = {
    # bare_runs: the bare endpoint runs before payweave, and again after it when 2 (the faster is the floor)
    "smoke": {"payments": 10, "seconds": 10, "bare_seconds": 1.0, "bare_runs": 1, "concurrency": 4, "redeliver": 5},
    # 8,000 events: about 3 s of load, so a first second's warm-up or one hiccup of the machine
    # weighs little against the bare endpoint's 8 s (with 2,000 events the load lasted 0.8 s)
    "full": {"payments": 4000, "seconds": 60, "bare_seconds": 8, "bare_runs": 2, "concurrency": 8, "redeliver": 100},
}
TARGET = 0.5
#: ``payweave serve`` as installed (the console script), else through the CLI's entry function
PAYWEAVE_CLI = ([str(Path(sys.executable).parent / "payweave")] if (Path(sys.executable).parent / "payweave").exists()
                else [shutil.which("payweave")] if shutil.which("payweave")
                else [sys.executable, "-c", "from payweave.core.cli import main; main()"])
PSP, ACCOUNT, COMPANY = "psp_mock", "bench", "CRONUS"


def _settings(url: str, secret: str) -> dict[str, Any]:
    return {"database_url": url, "plugins": PSP, "accounts": {PSP: {ACCOUNT: {"profile": "full", "webhook_secret": secret,
                                                                          "payment_lookup": False}}}}


def prepare_events(url: str, secret: str, payments: int, path: Path) -> dict[str, int]:
    """Reserve ``payments`` orders through the engine, capture them at the PSP directly, and
    write psp_mock's resulting events (authorized + captured) to ``path``."""
    reset_ledgers()
    settings = PayweaveSettings(**_settings(url, secret))
    store = Store(url)
    manager = PluginManager(settings)
    manager.load_entrypoints()
    engine = PaymentEngine(store, manager, settings=settings)
    engine.save_payment_method(PaymentMethodSetup(company_id=COMPANY, code="HOOKS", psp=PSP, psp_account=ACCOUNT,
                                                  capture_timing="manual"))
    account = engine.account(PSP, ACCOUNT)
    for i in range(payments):
        doc = sales_document(company_id=COMPANY, payment_method_code="HOOKS", lines=[item_line(10000, "49.90")])
        tx = engine.reserve(COMPANY, engine.handle_event(document_event("released", doc)).transaction.id)
        assert tx.status is TxStatus.RESERVED
        mock_plugin.psp_capture(account=account, request=CaptureRequest(
            idempotency_key=f"outside-{i}", transaction_id=tx.id, psp_reference=tx.psp_reference,
            amount=Money(amount=tx.amounts.capturable, currency=tx.currency)))
    events = ledger_for(account).undelivered_events()
    store.dispose()
    path.write_text(json.dumps(events))
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e["type"]] = kinds.get(e["type"], 0) + 1
    return kinds


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process: ``payweave serve`` itself, or the bare endpoint (``_webhook_server.py``).
    Its output goes to a temporary file (as a deployment's logs would go somewhere)."""

    def __init__(self, kind: str, settings: dict[str, Any] | None = None) -> None:
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ)
        if kind == "payweave":
            port = _free_port()
            env.update({"PAYWEAVE_DATABASE_URL": settings["database_url"], "PAYWEAVE_PLUGINS": settings["plugins"],
                        "PAYWEAVE_ACCOUNTS": json.dumps(settings["accounts"]), "PAYWEAVE_CONFIG": os.devnull})
            cmd = [*PAYWEAVE_CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            self.url = f"http://127.0.0.1:{port}"
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env, cwd=HERE)
        else:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "_webhook_server.py")], stdout=subprocess.PIPE,
                                         stderr=self.log, text=True, cwd=HERE, env=env)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"bare server did not start (exit {self.proc.wait()})")
            self.url = json.loads(line)["url"]
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                self.log.seek(0)
                raise RuntimeError(f"{kind} server on {self.url} is not healthy:\n{self.log.read()[-3000:].decode(errors='replace')}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(url: str, events: Path, secret: str, *, concurrency: int, seconds: float, count: int, cycle: bool) -> dict[str, Any]:
    spec = {"url": url, "events": str(events), "secret": secret, "concurrency": concurrency, "max_seconds": seconds,
            "max_count": count, "cycle": cycle}
    out = subprocess.run([sys.executable, str(HERE / "_webhook_load.py"), json.dumps(spec)], capture_output=True,
                         text=True, cwd=HERE, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ok = result["statuses"].get("200", 0)
    result["rate"] = ok / result["elapsed"]
    result["loadgen_cpu_per_s"] = result["cpu_seconds"] / result["elapsed"]
    return result


def stored(url: str) -> dict[str, Any]:
    store = Store(url, migrate=False)
    try:
        with store.transaction() as s:
            where = (PspEventRow.psp == PSP, PspEventRow.psp_account == ACCOUNT)
            rows = s.scalar(select(func.count()).select_from(PspEventRow).where(*where))
            ids = set(s.scalars(select(PspEventRow.event_id).where(*where)))
            by_status = dict(s.execute(select(PspEventRow.status, func.count()).where(*where).group_by(PspEventRow.status)).all())
    finally:
        store.dispose()
    return {"rows": rows, "ids": ids, "by_status": by_status}


def wait_applied(url: str, timeout: float) -> float:
    """Wait until no event is left ``received`` (the applier's backlog), at most ``timeout``."""
    start = time.perf_counter()
    store = Store(url, migrate=False)
    try:
        while time.perf_counter() - start < timeout:
            with store.transaction() as s:
                left = s.scalar(select(func.count()).select_from(PspEventRow).where(PspEventRow.status == "received"))
            if not left:
                break
            time.sleep(0.1)
    finally:
        store.dispose()
    return time.perf_counter() - start


def applied_effects(url: str) -> dict[str, Any]:
    """What applying the events did: statuses by event type, payments by state, and whether every
    payment was captured in full with exactly one ``captured`` history entry (from its webhook)."""
    store = Store(url, migrate=False)
    try:
        with store.transaction() as s:
            where = (PspEventRow.psp == PSP, PspEventRow.psp_account == ACCOUNT)
            by_type = {f"{k}:{v}": n for k, v, n in s.execute(
                select(PspEventRow.event_type, PspEventRow.status, func.count()).where(*where)
                .group_by(PspEventRow.event_type, PspEventRow.status)).all()}
            txs = s.execute(select(TransactionRow.id, TransactionRow.status, TransactionRow.amount_minor,
                                   TransactionRow.captured_minor).where(TransactionRow.company_id == COMPANY)).all()
            captured_entries = dict(s.execute(
                select(HistoryRow.transaction_id, func.count()).where(HistoryRow.company_id == COMPANY,
                                                                      HistoryRow.action == "captured")
                .group_by(HistoryRow.transaction_id)).all())
    finally:
        store.dispose()
    states: dict[str, int] = {}
    for tx in txs:
        states[tx.status] = states.get(tx.status, 0) + 1
    in_full = sum(1 for tx in txs if tx.status == "captured" and tx.captured_minor == tx.amount_minor
                  and captured_entries.get(tx.id) == 1)
    return {"events_by_type_status": by_type, "payments_by_status": states, "payments": len(txs),
            "captured_in_full_once": in_full}


def redeliver(url: str, events_path: Path, secret: str, ids: list[str]) -> dict[str, int]:
    events = {e["id"]: e for e in json.loads(events_path.read_text())}
    outcomes: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for event_id in ids:
            body = json.dumps(events[event_id], separators=(",", ":"), sort_keys=True).encode()
            t = int(time.time())
            r = http.post(url, content=body, headers={"content-type": "application/json",
                                                      SIGNATURE_HEADER: f"t={t},v1={signature(secret, t, body)}"})
            key = f"{r.status_code}:" + ",".join(e["status"] for e in r.json().get("events", [])) if r.status_code == 200 \
                else str(r.status_code)
            outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


def run(size: str) -> list[Result]:
    quiet_logging()
    cfg = SIZES[size]
    secret = f"whsec_bench_{secrets.token_hex(16)}"
    path = f"/webhooks/{PSP}/{ACCOUNT}"
    with tempfile.TemporaryDirectory(prefix="payweave-bench-webhooks-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'payweave.db'}"
        events_path = Path(tmp) / "events.json"
        start = time.perf_counter()
        kinds = prepare_events(url, secret, cfg["payments"], events_path)
        prepare_s = time.perf_counter() - start
        n_events = sum(kinds.values())
        common = {"concurrency": cfg["concurrency"]}

        def bare_run() -> dict[str, Any]:
            with Server("bare") as bare:
                return load(bare.url + path, events_path, secret, seconds=cfg["bare_seconds"], count=10**9, cycle=True,
                            **common)

        bare_runs = [bare_run()]
        with Server("payweave", _settings(url, secret)) as pw:
            pw_run = load(pw.url + path, events_path, secret, seconds=cfg["seconds"], count=n_events, cycle=False, **common)
            load_done = time.perf_counter()
            after = stored(url)
            ok_ids = pw_run.pop("ok_ids")
            sample = ok_ids[: cfg["redeliver"]]
            again = redeliver(pw.url + path, events_path, secret, sample)
            after_again = stored(url)
            # the events are committed; applying them runs after the answers: wait for the backlog
            wait_applied(url, timeout=600)
            apply_backlog_s = time.perf_counter() - load_done
            effects = applied_effects(url)
        if cfg["bare_runs"] > 1:
            bare_runs.append(bare_run())
    for b in bare_runs:
        b.pop("ok_ids")
    bare = max(bare_runs, key=lambda b: b["rate"])
    exactly_once = (after["rows"] == len(ok_ids) == len(set(ok_ids)) and after["ids"] == set(ok_ids)
                    and after_again["rows"] == after["rows"]
                    and again == {"200:duplicate": len(sample)})
    payments = cfg["payments"]
    applied_ok = (effects["payments"] == payments and effects["captured_in_full_once"] == payments
                  and effects["events_by_type_status"] == {"authorized:no_change": kinds.get("payment.authorized", 0),
                                                           "captured:applied": kinds.get("payment.captured", 0)})
    ratio = pw_run["rate"] / bare["rate"]
    return [Result(
        name="webhook_ingest", metric="signed webhook events/s: payweave service / bare FastAPI endpoint",
        value=round(pw_run["rate"], 1), unit="events/s", floor=round(bare["rate"], 1), target=f"ratio >= {TARGET}, each event stored once and applied",
        context={
            "events": kinds, "events_sent": pw_run["sent"], "answered_200": len(ok_ids), "statuses": pw_run["statuses"],
            "elapsed_s": round(pw_run["elapsed"], 2), "stored_rows": after["rows"], "stored_by_status": after["by_status"],
            "exactly_once": exactly_once, "redelivered": again, "rows_after_redelivery": after_again["rows"],
            "applied_ok": applied_ok, "apply_backlog_s": round(apply_backlog_s, 2), "applied": effects,
            "bare_runs_events_per_s": [round(b["rate"], 1) for b in bare_runs],
            "loadgen_cpu_s_per_s": {"payweave": round(pw_run["loadgen_cpu_per_s"], 2),
                                    "bare": round(bare["loadgen_cpu_per_s"], 2)},
            "prepare_s": round(prepare_s, 1), "store": "sqlite", **common,
            "server": "payweave serve --host 127.0.0.1 --port <free> --log-level warning (defaults: 1 worker, job worker on)",
        },
    ).judge(round(ratio, 3), ratio >= TARGET and exactly_once and applied_ok)]
