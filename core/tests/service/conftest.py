"""Fixtures of the service tests: the whole service on a real uvicorn on loopback, over the
``engine`` fixture of ``core/tests/conftest.py`` (SQLite and PostgreSQL, psp_mock accounts per
capability profile, a manual clock shared with the mock PSP), and API keys for two companies."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from payweave.core.engine import PaymentEngine
from payweave.core.engine.psp_events import PspEvents
from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import ServiceContext
from payweave.core.store.service_models import PspEventRow
from payweave.core.testing.documents import document_event, sales_document
from payweave.core.testing.loopback import LoopbackServer
from payweave.plugins.psp_mock import ledger_for, pending_webhooks

COMPANY_A = "CRONUS"
COMPANY_B = "FABRIKAM"
SUCCESS_URL = "https://shop.example/paid?order=1"
ERROR_URL = "https://shop.example/failed"
CANCEL_URL = "https://shop.example/cancelled"


@dataclass
class Service:
    server: LoopbackServer
    context: ServiceContext
    engine: PaymentEngine
    keys: ApiKeys
    a: httpx.Client
    b: httpx.Client
    anonymous: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {key}"})

    def webhook_url(self, account: str = "full", psp: str = "psp_mock") -> str:
        return f"{self.url}/webhooks/{psp}/{account}"

    def deliver(self, account: str = "full", *, requests: list[Any] | None = None) -> list[httpx.Response]:
        """POST the mock PSP's undelivered webhooks of ``account`` (or ``requests``) to the service."""
        found = requests if requests is not None else list(pending_webhooks(self.engine.account("psp_mock", account)))
        return [self.anonymous.post(f"/webhooks/psp_mock/{account}", content=r.body, headers=r.headers) for r in found]

    def ledger(self, account: str = "full"):
        return ledger_for(f"psp_mock:{account}")

    def settled(self, responses: list[httpx.Response]) -> list[str]:
        """The stored status of each event these webhook answers recorded, once applied."""
        return settled(self.context.events, responses)


def settled(events: PspEvents, responses: list[httpx.Response]) -> list[str]:
    """Apply what the webhooks recorded (the applier's work after the answer, driven here so the
    test does not race the applier thread) and return the stored status of each event the
    answers name, in order; ``duplicate`` where the answer said so."""
    events.apply_pending()
    statuses = []
    for response in responses:
        assert response.status_code == 200, response.text
        for event in response.json()["events"]:
            if event["status"] == "duplicate":
                statuses.append("duplicate")
                continue
            assert event["status"] == "received", event
            with events.store.transaction() as s:
                statuses.append(s.scalar(select(PspEventRow.status).where(PspEventRow.event_id == event["event_id"])))
    return statuses


@pytest.fixture
def service(engine: PaymentEngine) -> Iterator[Service]:
    settings = engine.settings
    context = ServiceContext(settings=settings, engine=engine)
    app = create_app(settings, context=context)
    server = LoopbackServer(app)
    context.links.public_base_url = server.url
    keys = ApiKeys(engine.store, settings.api_key_pepper.get_secret_value(), clock=engine.clock)
    key_a = keys.create(COMPANY_A, name="BC CRONUS").secret
    key_b = keys.create(COMPANY_B, name="BC FABRIKAM").secret
    with server:
        a = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key_a}"})
        b = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key_b}"})
        anonymous = httpx.Client(base_url=server.url, timeout=30)
        try:
            yield Service(server, context, engine, keys, a, b, anonymous)
        finally:
            for client in (a, b, anonymous):
                client.close()
            context.inbox.close()


def document_json(document) -> dict[str, Any]:
    data = document.model_dump(mode="json")
    data.pop("company_id")
    return data


def event_json(event_type: str, document, **fields: Any) -> dict[str, Any]:
    event = document_event(event_type, document, **fields)
    data = event.model_dump(mode="json")
    data["document"] = document_json(document)
    return data


def setup_json(profile: str = "full", **options: Any) -> dict[str, Any]:
    return {"psp": "psp_mock", "psp_account": profile, **options}


def put_method(client: httpx.Client, code: str = "CARD", profile: str = "full", **options: Any) -> dict[str, Any]:
    response = client.put(f"/v1/payment-methods/{code}", json=setup_json(profile, **options))
    assert response.status_code == 200, response.text
    return response.json()


def authorized(client: httpx.Client, code: str = "CARD", company: str = COMPANY_A, **doc: Any) -> tuple[Any, dict[str, Any]]:
    """An order with a payment method ``code``, authorized through the API: (document, transaction)."""
    document = sales_document(company_id=company, payment_method_code=code, **doc)
    response = client.post("/v1/authorizations", json={"document": document_json(document)})
    assert response.status_code == 200, response.text
    return document, response.json()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status and body["detail"]
    return body
