"""Pay by link against the Stripe-shaped sandbox: the payment's id is only revealed when the
checkout completes, so its webhooks may arrive before payweave knows the reference. They are
kept (unmatched) and applied, in order, as soon as ``checkout.session.completed`` names it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from payweave.core.engine import PaymentEngine
from payweave.core.engine.psp_events import PspEvents
from payweave.core.plugins import PluginManager
from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import ServiceContext
from payweave.core.store import Store
from payweave.core.testing.documents import item_line, sales_document
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.models import EventType, PaymentLinkResult
from payweave.plugins.psp_stripe_like.conformance import sandbox_environment

from ..conftest import engine_settings
from .conftest import CANCEL_URL, ERROR_URL, SUCCESS_URL, document_json, settled


@pytest.fixture
def stripe_service(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client, object, PaymentEngine]]:
    with sandbox_environment("sbx") as env:
        values = {k: (v.get_secret_value() if isinstance(v, SecretStr) else v)
                  for k, v in env.account.settings.model_dump().items() if v is not None}
        store = Store(f"sqlite:///{tmp_path / 'payweave.db'}")
        settings = engine_settings(str(store.url))
        settings = settings.model_copy(update={"plugins": "psp_mock,psp_stripe_like",
                                               "accounts": {**settings.accounts, "psp_stripe_like": {"sbx": values}}})
        plugins = PluginManager(settings)
        plugins.load_entrypoints()
        engine = PaymentEngine(store, plugins, settings=settings)
        context = ServiceContext(settings=settings, engine=engine)
        app = create_app(settings, context=context)
        key = ApiKeys(store, settings.api_key_pepper.get_secret_value()).create("CRONUS").secret
        with LoopbackServer(app) as server:
            context.links.public_base_url = server.url
            with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as api, \
                    httpx.Client(base_url=server.url, timeout=30) as psp:
                yield api, psp, env, engine
        context.inbox.close()
        store.dispose()


def test_events_before_the_reference_is_known_are_applied_when_it_is(stripe_service):
    api, psp, env, engine = stripe_service
    events = PspEvents(engine)
    saved = api.put("/v1/payment-methods/STRIPE", json={
        "psp": "psp_stripe_like", "psp_account": "sbx", "start_payment": True,
        "success_url": SUCCESS_URL, "error_url": ERROR_URL, "cancel_url": CANCEL_URL})
    assert saved.status_code == 200, saved.text
    order = sales_document(company_id="CRONUS", payment_method_code="STRIPE", lines=[item_line(10000, "64.00")])
    created = api.post("/v1/payment-links", json={"document": document_json(order)})
    assert created.status_code == 201, created.text
    link = created.json()
    assert link["psp_link_id"].startswith("cs_") and link["transaction_status"] == "pending"
    pi = env.complete_payment_link(PaymentLinkResult(link_id=link["psp_link_id"], url=link["url"]))
    assert pi and link["psp_reference"] is None  # a checkout session names its payment only when completed

    authorized = env.signed_webhook(EventType.AUTHORIZED, pi)
    early = psp.post("/webhooks/psp_stripe_like/sbx", content=authorized.body, headers=authorized.headers)
    assert early.status_code == 200, early.text
    assert settled(events, [early]) == ["unmatched"]
    assert api.get(f"/v1/transactions/{link['transaction_id']}").json()["status"] == "pending"

    completed = env.signed_webhook(EventType.LINK_COMPLETED, pi)
    done = psp.post("/webhooks/psp_stripe_like/sbx", content=completed.body, headers=completed.headers)
    assert done.status_code == 200, done.text
    assert settled(events, [done]) == ["applied"]
    view = api.get(f"/v1/transactions/{link['transaction_id']}").json()
    assert view["status"] == "reserved" and view["psp_reference"] == pi
    assert view["amounts"]["authorized"] == "64.00"
    events = api.get(f"/v1/transactions/{link['transaction_id']}/psp-events").json()
    assert {e["type"]: e["status"] for e in events}["authorized"] == "no_change"  # link_completed authorized it first
    assert all(e["status"] != "unmatched" for e in events)
    assert api.get(f"/v1/payment-links/{link['id']}").json()["status"] == "completed"

    captured = api.post(f"/v1/transactions/{link['transaction_id']}/capture", json={})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    assert env.ledger_moves(pi)["captures"] == 1
    again = psp.post("/webhooks/psp_stripe_like/sbx", content=completed.body, headers=completed.headers)
    assert again.json()["events"][0]["status"] == "duplicate"
