"""Engine latency: capture of a reserved sales order through the core (``PaymentEngine.capture``)
with psp_mock, on SQLite and on PostgreSQL. Median and p99 per capture; target median <= 2 ms on
SQLite.

Floor, measured in the same run on the same database: the durable work an exactly-once capture
cannot avoid, done by hand on one open connection: commit the intent (insert one row), call the
psp_mock capture hook directly, commit the outcome (update that row, insert one history row).
The engine's ratio over it is what its protocol, rules, views and ORM cost on top.

PostgreSQL: ``PAYWEAVE_BENCH_POSTGRES_URL`` / ``PAYWEAVE_TEST_POSTGRES_URL``, else a throwaway
server started for the run (see pgserver.py); skipped with the reason when neither works.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from common import Result, median, percentile, quiet_logging, skipped
from pgserver import postgres_url
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from payweave.core.engine import PaymentEngine, PaymentMethodSetup, TxStatus
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.core.testing.documents import document_event, item_line, sales_document
from payweave.hooks.models import CaptureRequest, Money
from payweave.plugins.psp_mock import plugin as mock_plugin
from payweave.plugins.psp_mock import reset_ledgers

#: captures timed per database (after WARMUP untimed ones); floor iterations alike
SIZES = {"smoke": {"captures": 12, "warmup": 2}, "full": {"captures": 1000, "warmup": 30}}
TARGET_MEDIAN_MS = 2.0
COMPANY = "CRONUS"
ACCOUNT = "bench"


def _settings(url: str) -> PayweaveSettings:
    return PayweaveSettings(database_url=url, plugins="psp_mock", accounts={"psp_mock": {ACCOUNT: {"profile": "full"}}})


def _reserved_orders(engine: PaymentEngine, code: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        doc = sales_document(payment_method_code=code, company_id=COMPANY, lines=[item_line(10000, "60.00", tax="19"),
                                                                                  item_line(20000, "40.00")])
        prepared = engine.handle_event(document_event("released", doc))
        tx = engine.reserve(COMPANY, prepared.transaction.id)
        assert tx.status is TxStatus.RESERVED, tx.status
        ids.append(tx.id)
    return ids


def _engine_captures(engine: PaymentEngine, tx_ids: list[str]) -> list[float]:
    samples = []
    for tx_id in tx_ids:
        start = time.perf_counter()
        tx = engine.capture(COMPANY, tx_id)
        samples.append(time.perf_counter() - start)
        assert tx.status is TxStatus.CAPTURED, tx.status
    return samples


def _floor_captures(url: str, engine: PaymentEngine, tx_ids: list[str], sqlite: bool) -> list[float]:
    """Intent commit + direct hook call + outcome commit, on one open connection."""
    account = engine.account("psp_mock", ACCOUNT)
    refs = []
    for tx_id in tx_ids:
        view = engine.get_transaction(COMPANY, tx_id)
        refs.append((tx_id, view.psp_reference, Money(amount=view.amounts.capturable, currency=view.currency)))
    db = create_engine(url, isolation_level="AUTOCOMMIT" if sqlite else None)
    samples = []
    with db.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        ddl = ["CREATE TABLE IF NOT EXISTS bench_floor_ops (id INTEGER PRIMARY KEY, tx TEXT, request TEXT, status TEXT, result TEXT)",
               "CREATE TABLE IF NOT EXISTS bench_floor_history (id INTEGER PRIMARY KEY, tx TEXT, event TEXT)"]
        if not sqlite:
            ddl = [d.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY") for d in ddl]
        for statement in ddl:
            if sqlite:
                conn.exec_driver_sql(statement)
            else:
                with conn.begin():
                    conn.exec_driver_sql(statement)

        def begin() -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE") if sqlite else conn.begin()

        def commit() -> None:
            conn.exec_driver_sql("COMMIT") if sqlite else conn.commit()

        for i, (tx_id, ref, amount) in enumerate(refs):
            request = CaptureRequest(idempotency_key=f"floor-{tx_id}-{i}", transaction_id=tx_id, psp_reference=ref, amount=amount)
            start = time.perf_counter()
            begin()
            op_id = conn.execute(text("INSERT INTO bench_floor_ops (tx, request, status) VALUES (:tx, :req, 'started') RETURNING id"),
                                 {"tx": tx_id, "req": request.model_dump_json()}).scalar_one()
            commit()
            result = mock_plugin.psp_capture(account=account, request=request)
            begin()
            conn.execute(text("UPDATE bench_floor_ops SET status='done', result=:res WHERE id=:id"),
                         {"res": result.model_dump_json(), "id": op_id})
            conn.execute(text("INSERT INTO bench_floor_history (tx, event) VALUES (:tx, 'captured')"), {"tx": tx_id})
            commit()
            samples.append(time.perf_counter() - start)
    db.dispose()
    return samples


def _measure(url: str, n: int, warmup: int) -> dict[str, list[float]]:
    reset_ledgers()
    store = Store(url)
    manager = PluginManager(_settings(url))
    manager.load_entrypoints()
    engine = PaymentEngine(store, manager, settings=_settings(url))
    code = "BENCHCARD"
    engine.save_payment_method(PaymentMethodSetup(company_id=COMPANY, code=code, psp="psp_mock", psp_account=ACCOUNT,
                                                  capture_timing="manual"))
    try:
        _engine_captures(engine, _reserved_orders(engine, code, warmup))
        engine_ids = _reserved_orders(engine, code, n)
        floor_ids = _reserved_orders(engine, code, n + warmup)
        _floor_captures(url, engine, floor_ids[:warmup], store.dialect == "sqlite")
        # interleave halves so drift hits both sides alike
        half = n // 2
        eng = _engine_captures(engine, engine_ids[:half])
        flo = _floor_captures(url, engine, floor_ids[warmup:warmup + half], store.dialect == "sqlite")
        eng += _engine_captures(engine, engine_ids[half:])
        flo += _floor_captures(url, engine, floor_ids[warmup + half:], store.dialect == "sqlite")
        return {"engine": eng, "floor": flo}
    finally:
        store.dispose()


def _result(db: str, samples: dict[str, list[float]], target: bool, context: dict) -> Result:
    eng_ms = [s * 1000 for s in samples["engine"]]
    flo_ms = [s * 1000 for s in samples["floor"]]
    med, p99 = median(eng_ms), percentile(eng_ms, 99)
    fmed = median(flo_ms)
    ratio = med / fmed
    ok = med <= TARGET_MEDIAN_MS if target else None
    return Result(
        name=f"engine_{db}",
        metric=f"capture of a reserved order ({db}), median",
        value=round(med, 3),
        unit="ms",
        floor=round(fmed, 3),
        target=f"median <= {TARGET_MEDIAN_MS} ms" if target else "(reported)",
        context={
            "captures": len(eng_ms),
            "median_ms": round(med, 3),
            "p99_ms": round(p99, 3),
            "p90_ms": round(percentile(eng_ms, 90), 3),
            "floor_median_ms": round(fmed, 3),
            "floor_p99_ms": round(percentile(flo_ms, 99), 3),
            "ratio_median_vs_floor": round(ratio, 2),
            "floor": "intent commit + direct psp_mock capture + outcome commit on one open connection",
            **context,
        },
    ).judge(round(ratio, 2), ok)


def run(size: str) -> list[Result]:
    quiet_logging()
    cfg = SIZES[size]
    results = []
    with tempfile.TemporaryDirectory(prefix="payweave-bench-engine-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'payweave.db'}"
        results.append(_result("sqlite", _measure(url, cfg["captures"], cfg["warmup"]), True,
                               {"sqlite": "WAL, synchronous=NORMAL (the Store's settings)"}))
    with postgres_url() as pg:
        if pg.url is None:
            results.append(skipped("engine_postgresql", "capture of a reserved order (postgresql), median", "ms",
                                   "(reported)", pg.skip_reason))
            return results
        schema = f"pw_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg.url)
        with admin.begin() as conn:
            conn.execute(CreateSchema(schema))
        url = make_url(pg.url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        try:
            results.append(_result("postgresql", _measure(url, cfg["captures"], cfg["warmup"]), False,
                                   {"postgres": pg.origin, **pg.settings}))
        finally:
            with admin.begin() as conn:
                conn.execute(DropSchema(schema, cascade=True))
            admin.dispose()
    return results
