"""Property-based run of the app's OpenAPI document (schemathesis) against a real uvicorn:
every operation, with valid and invalid data, must answer without a server error, with a status
code the document declares, the declared content type and a body matching the declared schema.

Bounded and deterministic: a handful of examples per operation, derandomized."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from payweave.core.engine import PaymentEngine, PaymentMethodSetup
from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import ServiceContext
from payweave.core.store import Store
from payweave.core.testing.loopback import LoopbackServer

from ..conftest import engine_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, plugin_manager) -> Iterator[tuple[str, str]]:
    path = tmp_path_factory.mktemp("schemathesis") / "payweave.db"
    store = Store(f"sqlite:///{path}")
    settings_ = engine_settings(str(store.url))
    engine = PaymentEngine(store, plugin_manager, settings=settings_)
    engine.save_payment_method(PaymentMethodSetup(company_id="CRONUS", code="CARD", psp="psp_mock", psp_account="full",
                                                  capture_timing="on_posting"))
    engine.save_payment_method(PaymentMethodSetup(
        company_id="CRONUS", code="LINK", psp="psp_mock", psp_account="full", start_payment=True,
        success_url="https://shop.example/ok", error_url="https://shop.example/error",
        cancel_url="https://shop.example/cancel"))
    context = ServiceContext(settings=settings_, engine=engine)
    app = create_app(settings_, context=context)
    key = ApiKeys(store, settings_.api_key_pepper.get_secret_value()).create("CRONUS").secret
    with LoopbackServer(app) as server:
        context.links.public_base_url = server.url
        yield server.url, key
    store.dispose()


#: The app's own OpenAPI document (it does not depend on the store or the plugins), every route
#: included (the ERP change-notification route too).
schema = schemathesis.openapi.from_dict(create_app().openapi())


@schema.parametrize()
@settings(max_examples=5, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, running):
    url, key = running
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
