"""Document rules and cart building (pure: no store, no PSP)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payweave.core.engine import rules
from payweave.core.engine.cart import build_cart, cart_hash, content_hash
from payweave.core.errors import (
    CartTotalMismatch,
    DocumentNotOurs,
    UnsupportedDocumentFeature,
    UnsupportedDocumentLine,
    WrongDocumentDirection,
)
from payweave.core.testing.documents import (
    document_line,
    gl_line,
    item_line,
    sales_document,
    shipping_line,
    voucher_line,
)
from payweave.hooks.models import DocumentLineType, DocumentType, LineKind
from payweave.hooks.money import MoneyError


# ------------------------------------------------------------------------------------ document rules
@pytest.mark.parametrize(
    ("field", "value", "caption"),
    [
        ("invoice_discount_amount", Decimal("5.00"), "Invoice Discount Amount"),
        ("payment_discount_percent", Decimal("2"), "Payment Discount %"),
        ("prepayment_percent", Decimal("30"), "Prepayment %"),
        ("combine_shipments", True, "Combine Shipments"),
    ],
)
def test_unsupported_bc_features_are_refused_naming_the_field(field, value, caption):
    doc = sales_document(**{field: value})
    with pytest.raises(UnsupportedDocumentFeature) as err:
        rules.check_document(doc)
    assert caption in err.value.message
    assert doc.number in err.value.message
    assert err.value.details["field"] == field
    assert err.value.code == "document_feature_unsupported"


def test_a_document_using_none_of_them_passes():
    rules.check_document(sales_document())


@pytest.mark.parametrize("code", [None, "", "   "])
def test_document_without_payment_method_is_not_ours(code):
    doc = sales_document(payment_method_code=code)
    with pytest.raises(DocumentNotOurs) as err:
        rules.require_payment_method(doc)
    assert "not a payweave document" in err.value.message
    assert err.value.code == "document_not_payweave"


def test_payment_method_code_is_normalized():
    assert rules.require_payment_method(sales_document(payment_method_code=" card ")) == "CARD"


@pytest.mark.parametrize(
    ("doc_type", "direction"),
    [
        (DocumentType.SALES_ORDER, rules.Direction.CAPTURE),
        (DocumentType.SALES_INVOICE, rules.Direction.CAPTURE),
        (DocumentType.SALES_RETURN_ORDER, rules.Direction.REFUND),
        (DocumentType.SALES_CREDIT_MEMO, rules.Direction.REFUND),
    ],
)
def test_document_directions(doc_type, direction):
    doc = sales_document(doc_type, applies_to_invoice_id="inv-1")
    assert rules.direction(doc) is direction
    other = rules.Direction.REFUND if direction is rules.Direction.CAPTURE else rules.Direction.CAPTURE
    with pytest.raises(WrongDocumentDirection):
        rules.require_direction(doc, other)


def test_credit_memo_must_apply_to_a_posted_invoice():
    with pytest.raises(UnsupportedDocumentFeature) as err:
        rules.check_document(sales_document(DocumentType.SALES_CREDIT_MEMO))
    assert "Applies-to Doc. No." in err.value.message
    rules.check_document(sales_document(DocumentType.SALES_CREDIT_MEMO, applies_to_invoice_number="PSI-1"))


def test_fixed_asset_lines_are_refused_with_the_line_number():
    doc = sales_document(lines=[item_line(10000, "10"), document_line(20000, "5", type=DocumentLineType.FIXED_ASSET)])
    with pytest.raises(UnsupportedDocumentLine) as err:
        rules.check_document(doc)
    assert "line 20000" in err.value.message


# ------------------------------------------------------------------------------------ carts
def test_cart_with_tax_line_discount_voucher_and_shipping():
    doc = sales_document(
        lines=[
            item_line(10000, "19.99", quantity=3, tax="19", discount_percent="10"),
            shipping_line(20000, "4.90", tax="19"),
            shipping_line(25000, "2.00", tax="19", as_resource=True),
            voucher_line(30000, "10.00"),
            gl_line(40000, "1.50", tax="19"),
            document_line(50000, "0", type=DocumentLineType.COMMENT),
        ]
    )
    cart = build_cart(doc)
    kinds = [line.kind for line in cart.lines]
    assert kinds == [LineKind.ITEM, LineKind.SHIPPING, LineKind.SHIPPING, LineKind.VOUCHER, LineKind.GL_ACCOUNT]
    item = cart.lines[0]
    assert item.discount_amount == Decimal("6.00")  # 10 % of 59.97, rounded per line
    assert item.net_amount == Decimal("53.97")
    assert item.tax_amount == Decimal("10.25")
    assert item.gross_amount == Decimal("64.22")
    voucher = cart.lines[3]
    assert voucher.gross_amount == Decimal("-10.00") and voucher.net_amount == Decimal("-10.00")
    assert cart.total_gross == doc.total_including_tax == Decimal("64.22") + Decimal("5.83") + Decimal("2.38") - 10 + Decimal("1.78")  # 1.785 rounds half-even
    assert cart.total_net == doc.total_excluding_tax
    assert cart.total.currency == "EUR"


def test_cart_amounts_are_computed_when_bc_sends_none():
    lines = [item_line(10000, "10.00", quantity=2, tax="7", with_amounts=False)]
    doc = sales_document(lines=lines, totals=("20.00", "21.40"))
    cart = build_cart(doc)
    assert (cart.lines[0].net_amount, cart.lines[0].tax_amount, cart.lines[0].gross_amount) == (
        Decimal("20.00"), Decimal("1.40"), Decimal("21.40"),
    )


def test_prices_including_tax():
    lines = [item_line(10000, "119.00", tax="19", prices_include_tax=True, with_amounts=False)]
    doc = sales_document(lines=lines, totals=("100.00", "119.00"), prices_include_tax=True)
    line = build_cart(doc).lines[0]
    assert (line.net_amount, line.tax_amount, line.gross_amount) == (Decimal("100.00"), Decimal("19.00"), Decimal("119.00"))


def test_currency_precision_jpy_and_kwd():
    jpy = sales_document(currency="JPY", lines=[item_line(10000, "1234", quantity=3, tax="10", currency="JPY")])
    assert build_cart(jpy).total_gross == Decimal("4072")  # 3702 + 370.2 tax -> 370 (whole yen)
    kwd = sales_document(currency="KWD", lines=[item_line(10000, "1.2345", quantity=2, currency="KWD")])
    assert build_cart(kwd).total_gross == Decimal("2.469")


def test_amount_with_more_decimals_than_the_currency_is_refused():
    line = item_line(10000, "10.00").model_copy(update={"amount_excluding_tax": Decimal("10.001"), "amount_including_tax": Decimal("10.001")})
    with pytest.raises(MoneyError) as err:
        build_cart(sales_document(lines=[line], totals=("10.001", "10.001")))
    assert "line 10000" in err.value.message


def test_cart_total_must_equal_document_total_and_both_figures_are_named():
    doc = sales_document(lines=[item_line(10000, "100.00", tax="19")], totals=("100.00", "119.01"))
    with pytest.raises(CartTotalMismatch) as err:
        build_cart(doc)
    assert "119.00" in err.value.message and "119.01" in err.value.message
    assert err.value.details == {"cart_total": "119.00", "document_total": "119.01", "currency": "EUR"}


def test_net_total_mismatch_is_refused_too():
    doc = sales_document(lines=[item_line(10000, "100.00", tax="19")], totals=("99.00", "119.00"))
    with pytest.raises(CartTotalMismatch) as err:
        build_cart(doc)
    assert "99.00" in err.value.message and "100.00" in err.value.message


def test_positive_voucher_is_refused():
    line = document_line(30000, "10.00", type=DocumentLineType.RESOURCE, subtype="voucher")
    with pytest.raises(UnsupportedDocumentLine) as err:
        build_cart(sales_document(lines=[item_line(10000, "50"), line]))
    assert "voucher" in err.value.message and "30000" in err.value.message


def test_content_hash_ignores_decimal_spelling_and_status_but_sees_lines():
    a = sales_document(lines=[item_line(10000, "10.00")], document_id="d1", number="SO-1")
    b = a.model_copy(update={"status": "released", "total_including_tax": Decimal("10.0")})
    assert content_hash(a) == content_hash(b)
    c = a.model_copy(update={"lines": (item_line(10000, "10.00", quantity=2),)})
    assert content_hash(a) != content_hash(c)
    assert cart_hash(build_cart(a)) != cart_hash(None, Decimal("10.00"))


prices = st.decimals(min_value=Decimal("-50"), max_value=Decimal("500"), places=2, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=Decimal("0"), max_value=Decimal("20"), places=3, allow_nan=False, allow_infinity=False)
rates = st.sampled_from([Decimal(0), Decimal(7), Decimal(19), Decimal("5.5")])


@settings(deadline=None)
@given(st.lists(st.tuples(prices, quantities, rates, st.sampled_from([0, 5, 10, 33])), min_size=1, max_size=8))
def test_cart_always_adds_up_to_the_document_total(specs):
    lines = [
        item_line(10000 + i * 100, price, quantity=q, tax=rate, discount_percent=disc)
        for i, (price, q, rate, disc) in enumerate(specs)
    ]
    doc = sales_document(lines=lines)
    cart = build_cart(doc)
    assert cart.total_gross == doc.total_including_tax
    assert cart.total_net + cart.total_tax == cart.total_gross
    for line in cart.lines:
        assert line.gross_amount == line.net_amount + line.tax_amount
        assert line.gross_amount.as_tuple().exponent >= -2
