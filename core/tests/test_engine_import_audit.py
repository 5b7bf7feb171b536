"""Advanced import (a web-shop payment attached to a BC document after the PSP confirms it) and
the audit trail (who asked, the request, the PSP reference, the outcome)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from payweave.core.engine import AdvancedImportRequest, TxStatus
from payweave.core.errors import ImportRejected, OptionDisabled
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document
from payweave.plugins.psp_mock.testing import reserve_request

D = Decimal


def shop_payment(engine, plugin_manager, amount="80.00", *, capture=False, profile="full"):
    psp = plugin_manager.psp("psp_mock")
    return psp.reserve(engine.account("psp_mock", profile), reserve_request(amount, capture=capture))


def test_imported_reservation_is_captured_like_any_other(engine, method, mock_ledger, plugin_manager):
    code = method("full", advanced_import=True, capture_timing="on_posting", credit_allowed=True)
    shop = shop_payment(engine, plugin_manager)
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    tx = engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")),
                               actor="shop:checkout")
    assert tx.origin == "advanced_import" and tx.status is TxStatus.RESERVED
    assert tx.amounts.authorized == D("80.00") and tx.expires_at == shop.expires_at
    assert tx.operations[0].kind == "import" and tx.history[-1].action == "imported"
    assert "confirmed by psp_mock" in tx.history[-1].message
    engine.handle_event(document_event("released", doc))
    invoice = posted_invoice(doc)
    result = engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    assert result.transaction.status is TxStatus.CAPTURED
    assert mock_ledger().payment(shop.psp_reference).captured == D("80.00")
    again = engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")))
    assert again.id == tx.id  # importing the same payment again is harmless


def test_imported_captured_payment_starts_captured(engine, method, plugin_manager):
    code = method("full", advanced_import=True)
    shop = shop_payment(engine, plugin_manager, "55.00", capture=True)
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "55.00")])
    tx = engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("55.00")))
    assert tx.status is TxStatus.CAPTURED and tx.amounts.captured == D("55.00")


def test_import_refused_when_the_amount_differs(engine, method, plugin_manager):
    code = method("full", advanced_import=True)
    shop = shop_payment(engine, plugin_manager, "80.00")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    with pytest.raises(ImportRejected) as err:
        engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("79.99")))
    assert "80.00 EUR" in err.value.message and "79.99" in err.value.message
    assert engine.list_transactions("CRONUS") == []


def test_import_refused_for_unknown_or_voided_payments(engine, method, plugin_manager):
    code = method("full", advanced_import=True)
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    with pytest.raises(ImportRejected) as err:
        engine.import_payment(AdvancedImportRequest(document=doc, psp_reference="mpay_nope", amount=D("80.00")))
    assert "does not know payment mpay_nope" in err.value.message
    shop = shop_payment(engine, plugin_manager, "80.00")
    from payweave.hooks.models import VoidRequest

    plugin_manager.psp("psp_mock").void(
        engine.account("psp_mock", "full"),
        VoidRequest(idempotency_key="shop-void-1", transaction_id="shop", psp_reference=shop.psp_reference),
    )
    with pytest.raises(ImportRejected) as err:
        engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")))
    assert "voided" in err.value.message


def test_import_refused_when_the_document_exceeds_the_payment(engine, method, plugin_manager):
    code = method("full", advanced_import=True)
    shop = shop_payment(engine, plugin_manager, "80.00")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "95.00")])
    with pytest.raises(ImportRejected) as err:
        engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")))
    assert "95.00 EUR" in err.value.message and "80.00 EUR" in err.value.message


def test_import_needs_the_option_and_a_payment_is_attached_once(engine, method, plugin_manager):
    plain = method("full", code="PLAIN")
    shop = shop_payment(engine, plugin_manager)
    doc = sales_document(payment_method_code=plain, lines=[item_line(10000, "80.00")])
    with pytest.raises(OptionDisabled) as err:
        engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")))
    assert "Advanced Import" in err.value.message
    code = method("full", advanced_import=True)
    first = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    second = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    engine.import_payment(AdvancedImportRequest(document=first, psp_reference=shop.psp_reference, amount=D("80.00")))
    with pytest.raises(ImportRejected) as err:
        engine.import_payment(AdvancedImportRequest(document=second, psp_reference=shop.psp_reference, amount=D("80.00")))
    assert "already attached" in err.value.message and first.number in err.value.message


# ------------------------------------------------------------------------------------------ audit
def test_history_records_who_what_request_reference_and_outcome(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    tx = engine.handle_event(document_event("released", doc), actor="bc:ANNA").transaction
    engine.reserve("CRONUS", tx.id, actor="shop:web")
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id), actor="bc:BEN")
    view = engine.get_transaction("CRONUS", tx.id)
    actions = [(h.action, h.actor, h.trigger) for h in view.history]
    assert actions == [
        ("prepared", "bc:ANNA", "release"),
        ("reserve_requested", "shop:web", "manual"),
        ("reserve", "shop:web", "manual"),
        ("capture_requested", "bc:BEN", "posting"),
        ("capture", "bc:BEN", "posting"),
    ]
    requested = view.history[3]
    assert requested.details["request"]["amount"] == {"amount": "100.00", "currency": "EUR"}
    assert requested.idempotency_key == view.operations[1].idempotency_key
    done = view.history[4]
    assert (done.from_status, done.to_status, done.outcome) == ("reserved", "captured", "ok")
    assert done.psp_reference == view.psp_reference and done.operation_reference.startswith("mcap_")
    assert view.operations[1].operation_reference == done.operation_reference


def _cli_env(engine) -> dict[str, str]:
    return {"PAYWEAVE_DATABASE_URL": engine.store.url.render_as_string(hide_password=False), "PAYWEAVE_PLUGINS": "psp_mock"}


def test_cli_tx_show_and_list(engine, method):
    from payweave.core.cli import app

    code = method("full")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "42.00")])
    tx = engine.handle_event(document_event("released", doc), actor="bc:ANNA").transaction
    engine.reserve("CRONUS", tx.id)
    runner = CliRunner()
    shown = runner.invoke(app, ["tx", "show", tx.id], env=_cli_env(engine))
    assert shown.exit_code == 0, shown.output
    assert tx.id in shown.output and doc.number in shown.output and "reserved" in shown.output
    assert "reserve_requested" in shown.output and "bc:ANNA" in shown.output
    as_json = runner.invoke(app, ["tx", "show", tx.id, "--company", "CRONUS", "--json"], env=_cli_env(engine))
    import json

    data = json.loads(as_json.stdout)
    assert data["status"] == "reserved" and data["amounts"]["authorized"] == "42.00"
    listed = runner.invoke(app, ["tx", "list", "--company", "CRONUS"], env=_cli_env(engine))
    assert listed.exit_code == 0 and tx.id[:8] in listed.output
    missing = runner.invoke(app, ["tx", "show", "nope"], env=_cli_env(engine))
    assert missing.exit_code == 1 and "There is no payment transaction nope" in missing.output
    other = runner.invoke(app, ["tx", "show", tx.id, "--company", "OTHER"], env=_cli_env(engine))
    assert other.exit_code == 1
