"""The account setup through the BC-facing API has one home, the ERP sync service: the choices
come from BC's accounts, the choice is validated against them, and what the API saves is what
write-back, the dashboard and `payweave accounts` use."""
from __future__ import annotations

import httpx

from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import build_context
from payweave.core.settings import PayweaveSettings
from payweave.core.sync.jobs import service_for_engine
from payweave.core.testing.loopback import LoopbackServer

CLEARING, FEES, BANK = "10900", "60800", "CHECKING"


def test_account_setup_via_api_is_validated_against_bc_and_shared(bc, sqlite_store):
    settings = PayweaveSettings(database_url=str(sqlite_store.url), plugins="erp_businesscentral,psp_mock",
                                accounts={"erp_businesscentral": {"default": bc.account_settings()}})
    context = build_context(settings, store=sqlite_store, plugins=bc.plugins())
    company = bc.company.id
    other = ApiKeys(sqlite_store, settings.api_key_pepper.get_secret_value()).create("someone-else").secret
    key = ApiKeys(sqlite_store, settings.api_key_pepper.get_secret_value()).create(company).secret
    with LoopbackServer(create_app(settings, context=context)) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        before = api.get("/v1/account-setup")
        assert before.status_code == 404 and before.json()["code"] == "account_setup_missing"
        assert "connect the ERP company" in before.json()["detail"]
        not_connected = api.put("/v1/account-setup", json={"payments_account": CLEARING, "bank_account": BANK,
                                                           "fee_account": FEES})
        assert not_connected.status_code == 404 and not_connected.json()["code"] == "erp_connection_not_found"

        sync = service_for_engine(context.engine)
        sync.connect(erp_company_id=company, company_id=company)
        choices = api.get("/v1/account-setup/choices").json()
        assert {(c["kind"], c["number"]) for c in choices} >= {("gl_account", CLEARING), ("bank_account", BANK)}

        wrong_kind = api.put("/v1/account-setup", json={"payments_account": BANK, "bank_account": BANK,
                                                        "fee_account": FEES})
        assert wrong_kind.status_code == 422 and wrong_kind.json()["code"] == "erp_account_setup_invalid"
        assert "must be a G/L account" in wrong_kind.json()["detail"]

        saved = api.put("/v1/account-setup", json={"payments_account": CLEARING, "bank_account": BANK,
                                                   "fee_account": FEES})
        assert saved.status_code == 200, saved.text
        body = saved.json()
        assert (body["payments_account"]["number"], body["bank_account"]["number"], body["fee_account"]["number"]) == (
            CLEARING, BANK, FEES)
        assert api.get("/v1/account-setup").json() == body
        # the same record the sync service (write-back, dashboard, CLI) reads
        assert sync.account_setup(company).fee_account.number == FEES
        # another company's key sees nothing of it
        foreign = httpx.get(server.url + "/v1/account-setup", headers={"Authorization": f"Bearer {other}"})
        assert foreign.status_code == 404
