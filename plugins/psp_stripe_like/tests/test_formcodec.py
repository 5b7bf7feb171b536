"""The bracket-notation form codec: round trips, byte-for-byte agreement with stripe-python,
and the malformed inputs the sandbox must refuse."""
from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode

from payweave.plugins.psp_stripe_like.formcodec import FormDecodeError, as_list, decode, encode, listify

keys = st.text(min_size=1, max_size=8).filter(lambda k: "[" not in k and "]" not in k and not k.isdigit())
scalars = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4),
        st.dictionaries(keys, children, min_size=1, max_size=4),
    ),
    max_leaves=12,
)
params = st.dictionaries(keys, values, min_size=0, max_size=5)


def wire(value: Any) -> Any:
    """What a value looks like after a trip over the wire: strings everywhere."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def stripe_python_encoding(data: dict[str, Any]) -> str:
    """Exactly what stripe-python's requestor sends (``_api_requestor.py``)."""
    return urlencode(list(_api_encode(data))).replace("%5B", "[").replace("%5D", "]")


@given(params)
def test_decode_inverts_encode(data):
    assert listify(decode(encode(data))) == wire(data)


def spell_list_booleans(value: Any, in_list: bool = False) -> Any:
    """stripe-python writes a boolean directly inside a list as ``True``/``False`` (its list
    branch skips the bool rule); spell those out so the comparison covers everything else."""
    if isinstance(value, bool) and in_list:
        return "true" if value else "false"
    if isinstance(value, dict):
        return {k: spell_list_booleans(v) for k, v in value.items()}
    if isinstance(value, list):
        return [spell_list_booleans(v, in_list=True) for v in value]
    return value


@given(params)
def test_encoding_matches_stripe_python_byte_for_byte(data):
    assert encode(data) == stripe_python_encoding(spell_list_booleans(data))


def test_booleans_in_lists_are_written_lowercase():
    assert encode({"flags": [True, False]}) == "flags[0]=true&flags[1]=false"


@given(st.dictionaries(st.from_regex(r"[0-9]{1,3}", fullmatch=True), st.text(max_size=5), min_size=1, max_size=5))
def test_numeric_metadata_keys_survive_schema_free_decoding(metadata):
    # decode() keeps dicts; only the reader of a list field (as_list / listify) makes lists
    assert decode(encode({"metadata": metadata}))["metadata"] == metadata


def test_examples_from_the_reference():
    body = encode({
        "metadata": {"order_id": 42},
        "line_items": [{"price_data": {"unit_amount": 1000, "currency": "eur"}, "quantity": 2}],
        "expand": ["latest_charge"],
        "confirm": True,
        "description": None,
    })  # fmt: skip
    assert body == (
        "metadata[order_id]=42&line_items[0][price_data][unit_amount]=1000&line_items[0][price_data][currency]=eur"
        "&line_items[0][quantity]=2&expand[0]=latest_charge&confirm=true"
    )


def test_empty_brackets_append_like_rails():
    tree = decode("expand[]=latest_charge&expand[]=customer")
    assert as_list(tree["expand"]) == ["latest_charge", "customer"]


def test_percent_encoded_brackets_decode_the_same():
    assert decode("metadata%5Border_id%5D=42") == {"metadata": {"order_id": "42"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("a=1&a[b]=2", "a"),
        ("a[b]=2&a=1", "a"),
        ("a[b=1", "a[b"),
        ("[a]=1", "[a]"),
        ("a[x]=1&a[]=2", "a"),
    ],
)
def test_malformed_names_are_refused_with_the_parameter(body, param):
    with pytest.raises(FormDecodeError) as excinfo:
        decode(body)
    assert excinfo.value.param == param


def test_floats_never_reach_the_wire():
    with pytest.raises(TypeError, match="floats"):
        encode({"amount": 10.5})
    with pytest.raises(TypeError, match="whole number"):
        encode({"amount": Decimal("10.5")})
    assert encode({"amount": Decimal("1050")}) == "amount=1050"


def test_bracketed_names_are_refused_when_encoding():
    with pytest.raises(ValueError, match="brackets"):
        encode({"metadata[x]": "1"})
