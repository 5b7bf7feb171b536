"""Security properties of the running system (issue #11, part 4).

* Secrets never in logs, reprs, error bodies or the OpenAPI document: every configured secret
  (PSP API keys and webhook secrets, BC's client secret, the API-key pepper, the API keys
  themselves) is looked for in every structlog and stdlib log line of flows with faults, in the
  reprs of settings, accounts, plugin settings and clients, in every error body, in /openapi.json.
* API keys hashed at rest: the key appears in no column of any table; the stored hash is the
  HMAC the service checks.
* Cross-company access denied, for every route with an id: another company's ids answer 404 and
  change nothing.
* Verification in constant time: the verifiers call ``hmac.compare_digest`` (seen at runtime on
  the accept and the reject path, and statically), and the static check fails a verifier that
  compares with ``==``.
* No SQL built from strings anywhere in core and the plugins; the check fails planted offenders.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import String, Text, select

from payweave.core.reliability import static
from payweave.core.reliability.faults import FaultKind
from payweave.core.reliability.schedule import ScheduleRunner
from payweave.core.reliability.world import COMPANY, PSP, World
from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import ServiceContext
from payweave.core.store.models import Base
from payweave.core.testing.loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(world: World) -> Any:
    """The HTTP service on the world's store and plugins, with API keys for two companies."""
    context = ServiceContext(settings=world.settings, engine=world.engine)
    keys = ApiKeys(world.engine.store, world.settings.api_key_pepper.get_secret_value())
    key_a = keys.create(COMPANY, name="A").secret
    key_b = keys.create("OTHER", name="B").secret
    world.scanner.add("API key A", key_a)
    world.scanner.add("API key B", key_b)
    with LoopbackServer(create_app(world.settings, context=context)) as server:
        yield server, key_a, key_b


def test_no_secret_in_logs_reprs_error_bodies_or_openapi(world: World, runner: ScheduleRunner, served: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server, key_a, _ = served
    caplog.set_level(logging.DEBUG)
    # flows with faults: errors, retries, replays, webhooks and BC calls all log
    for seed, flow, fault in ((1, "writeback", FaultKind.BC_503), (2, "capture", FaultKind.PSP_TIMEOUT_AFTER_SUCCESS),
                              (3, "link", FaultKind.CRASH), (4, "sync", FaultKind.DB_DROP)):
        point = {"writeback": "erp.before", "capture": "psp.after", "link": "webhook", "sync": "step"}[flow]
        assert not runner.run(seed, flow=flow, faults=[(point, fault)]).violations
    secrets = dict(world.scanner.secrets)
    assert len(secrets) >= 12, secrets.keys()

    bodies: list[str] = []
    http = httpx.Client(base_url=server.url, timeout=30)
    wrong = key_a[:-4] + "AAAA"
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"X-API-Key": key_a + "x"}, {"Authorization": key_a}):
        bodies.append(http.get("/v1/transactions", headers=headers).text)
    authed = {"Authorization": f"Bearer {key_a}"}
    bodies.append(http.post("/v1/authorizations", json={"document": {"x": key_a}}, headers=authed).text)
    bodies.append(http.post("/v1/transactions/nope/capture", json={"amount": "1"}, headers=authed).text)
    account = world.account("full")
    webhook = json.dumps({"id": "evt", "type": "payment.captured", "created": int(time.time()), "data": {}}).encode()
    for header in ("", "t=1,v1=00", f"t={int(time.time())},v1={'a' * 64}"):
        bodies.append(http.post(f"/webhooks/{PSP}/{account}", content=webhook, headers={"psp-mock-signature": header}).text)
    bodies.append(http.get("/openapi.json").text)
    bodies.append(http.get("/metrics").text)

    shown = [repr(world.settings), str(world.settings)]
    for profile in world.ledgers:
        acc = world.engine.account(PSP, world.account(profile))
        shown += [repr(acc), str(acc), repr(acc.settings), str(acc.settings)]
    erp = world.engine.plugins.account("erp_chaos", "default")
    shown += [repr(erp), repr(erp.settings), str(erp.settings)]
    from payweave.plugins.erp_businesscentral import plugin as bc_plugin

    shown += [repr(c) for c in bc_plugin._clients.values()]
    stdlib = caplog.text
    for name, value in secrets.items():
        assert not any(value in body for body in bodies), f"{name} in an HTTP answer"
        assert not any(value in text for text in shown), f"{name} in a repr/str"
        assert value not in stdlib, f"{name} in a stdlib log line"
    assert not world.scanner.leaks, world.scanner.leaks[:3]
    assert world.scanner.lines > 50  # the flows did log


def test_api_keys_are_stored_only_as_their_hmac(world: World, served: Any) -> None:
    _, key_a, key_b = served
    pepper = world.settings.api_key_pepper.get_secret_value()
    found: list[str] = []
    with world.engine.store.transaction() as s:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if not columns:
                continue
            for row in s.execute(select(*columns)).all():
                for column, value in zip(columns, row, strict=True):
                    for key in (key_a, key_b):
                        secret = key.rsplit("_", 1)[-1]
                        if isinstance(value, str) and (key in value or secret in value or pepper in value):
                            found.append(f"{table.name}.{column.name}")
        from payweave.core.store.service_models import ApiKeyRow

        rows = {r.id: r.secret_hash for r in s.scalars(select(ApiKeyRow))}
    assert not found, found
    for key in (key_a, key_b):
        _, key_id, secret = key.split("_", 2)
        expected = hmac.new(pepper.encode(), f"{key_id}.{secret}".encode(), "sha256").hexdigest()
        assert rows[key_id] == expected and re.fullmatch(r"[0-9a-f]{64}", rows[key_id])


def test_another_companys_ids_are_404_on_every_route(world: World, runner: ScheduleRunner, served: Any) -> None:
    server, key_a, key_b = served
    assert not runner.run(11, flow="link", faults=[]).violations  # A has a transaction and a payment link
    a = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key_a}"})
    b = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key_b}"})
    tx = a.get("/v1/transactions").json()[0]
    from payweave.core.store.service_models import PaymentLinkRow

    with world.engine.store.transaction() as s:
        link_id = s.scalars(select(PaymentLinkRow.id).where(PaymentLinkRow.transaction_id == tx["id"])).first()
    ids = {"transaction_id": tx["id"], "link_id": link_id, "document_id": tx["document_id"],
           "document_type": tx["document_type"], "code": tx["payment_method_code"], "mandate_id": "m"}
    before = a.get(f"/v1/transactions/{tx['id']}").json()
    schema = create_app().openapi()
    tried = 0
    for path, methods in schema["paths"].items():
        params = re.findall(r"{(\w+)}", path)
        if not path.startswith("/v1/") or not params:
            continue
        url = path.format(**{p: ids.get(p, "x") for p in params})
        for method in methods:
            response = b.request(method.upper(), url, json={} if method in ("post", "put") else None)
            tried += 1
            assert response.status_code in (404, 422), (method, url, response.status_code, response.text[:200])
            if response.status_code == 404:
                assert response.json()["code"].endswith("not_found"), response.json()
    assert tried >= 10
    after = a.get(f"/v1/transactions/{tx['id']}").json()
    assert after["amounts"] == before["amounts"] and after["status"] == before["status"]


def test_verifiers_compare_in_constant_time(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    assert not static.constant_time_findings()
    calls: list[str] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append("x")
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    from payweave.hooks.errors import WebhookVerificationFailed
    from payweave.plugins.psp_mock import webhooks as mock_webhooks
    from payweave.plugins.psp_stripe_like import webhooks as stripe_webhooks

    body, now = b'{"id":"e","type":"x","created":1,"data":{}}', int(time.time())
    good = mock_webhooks.sign({"id": "e", "type": "x", "created": now, "data": {}}, "whsec_x")
    for request, ok in ((good, True), (good.model_copy(update={"body": good.body + b" "}), False)):
        calls.clear()
        try:
            mock_webhooks.verify(request, "whsec_x", 300)
            assert ok
        except WebhookVerificationFailed:
            assert not ok
        assert calls, "psp_mock compared without compare_digest"
    header = stripe_webhooks.signature_header(body, ["whsec_y"], now) if hasattr(stripe_webhooks, "signature_header") else None
    if header is None:
        from payweave.plugins.psp_stripe_like.sandbox.webhooks import signature_header

        header = signature_header(body, ["whsec_y"], now)
    for payload, ok in ((body, True), (body + b"!", False)):
        calls.clear()
        try:
            stripe_webhooks.verify(payload, header, ["whsec_y"], tolerance=300, now=now)
            assert ok
        except WebhookVerificationFailed:
            assert not ok
        assert calls, "psp_stripe_like compared without compare_digest"
    keys = ApiKeys(world.engine.store, "pepper-for-this-test")
    created = keys.create(COMPANY).secret
    for presented, ok in ((created, True), (created[:-1] + "x", False), ("garbage", False)):
        calls.clear()
        assert (keys.authenticate(presented) is not None) is ok
        assert calls, f"API key check without compare_digest ({presented[:8]}...)"


def test_the_constant_time_check_fails_a_verifier_that_uses_equality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "fx_bad_verifier.py"
    module.write_text("import hmac\n\ndef verify(signature, expected):\n    return signature == expected\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(static, "VERIFIERS", (("fx_bad_verifier", "verify"),))
    findings = static.constant_time_findings()
    assert any("does not use hmac.compare_digest" in f.message for f in findings)
    assert any("compares a secret with ==" in f.message for f in findings)


def test_no_sql_is_built_from_strings_and_the_check_catches_it(tmp_path: Path) -> None:
    roots = [REPO / "core" / "src", *sorted((REPO / "plugins").glob("*/src"))]
    findings, inspected = static.sql_findings(roots)
    assert not findings, "\n".join(map(str, findings))
    assert inspected >= 40  # the constant SQL that exists (PRAGMAs, SELECT 1, set_config, ...)
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from sqlalchemy import text\n"
        "def f(conn, name, cur):\n"
        "    conn.execute(text(f\"SELECT * FROM t WHERE name = '{name}'\"))\n"
        "    conn.exec_driver_sql('DELETE FROM t WHERE id = ' + name)\n"
        "    cur.execute('SELECT %s' % name)\n"
        "    cur.execute('SELECT {}'.format(name))\n"
        "    conn.execute(text('SELECT 1'))\n"
        "    cur.execute('SELECT %s', (name,))\n")
    planted, _ = static.sql_findings([tmp_path])
    assert sorted(f.line for f in planted) == [3, 4, 5, 6], planted
