"""The hookspecs are the plugin author's manual: every spec is documented completely, and the
generated reference page (docs/plugin-hooks.md) matches the specs."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from payweave.hooks import hookspecs
from payweave.hooks.docs import render_hook_reference

SPECS = [
    (name, fn)
    for name, fn in vars(hookspecs).items()
    if callable(fn) and name.startswith(("psp_", "erp_", "payweave_")) and hasattr(fn, "payweave_spec")
]
DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin-hooks.md"


def test_there_are_specs():
    names = {n for n, _ in SPECS}
    assert {"psp_reserve", "psp_capture", "psp_void", "psp_refund", "psp_credit", "psp_update_cart",
            "psp_create_payment_link", "psp_charge_mandate", "psp_renew_reservation", "psp_parse_webhook",
            "psp_list_payouts", "psp_capabilities", "erp_read_changes", "erp_record_payment",
            "erp_record_deposit", "erp_read_invoice_pdf", "erp_read_document"} <= names


@pytest.mark.parametrize(("name", "fn"), SPECS, ids=[n for n, _ in SPECS])
def test_each_spec_is_documented(name, fn):
    doc = inspect.getdoc(fn) or ""
    assert len(doc.splitlines()[0]) > 20, f"{name}: needs a one-line summary"
    params = [p for p in inspect.signature(fn).parameters]
    for param in params:
        if param in {"account"}:
            continue  # documented once in the module docstring
        assert param in doc, f"{name}: parameter {param!r} is not documented"
    if name.startswith("psp_") and name not in {"psp_capabilities"}:
        assert "Declared by" in doc, f"{name}: must say which feature declares it"
    if name in {"psp_reserve", "psp_capture", "psp_refund"}:
        assert "idempotency_key" in doc or "Idempotency" in doc


def test_generated_reference_is_up_to_date():
    expected = render_hook_reference()
    assert DOC.exists(), "run: python -m payweave.hooks.docs > docs/plugin-hooks.md"
    assert DOC.read_text() == expected, "docs/plugin-hooks.md is stale: python -m payweave.hooks.docs > docs/plugin-hooks.md"
