"""The type grammar of signatures and its bincode, byte for byte as serde + bincode 1.x (#[essa_wrap]) lay it out."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essa.state.types import Mismatch, decode_value, encode_value, parse_type

U64 = struct.Struct("<Q")


def enc(text, value):
    return encode_value(parse_type(text), value)


def dec(text, data):
    return decode_value(parse_type(text), data)


@pytest.mark.parametrize("text, canonical", [
    ("string", "string"), (" list < string > ", "list<string>"), ("tuple<u32, string>", "tuple<u32,string>"),
    ("map<string,list<f64>>", "map<string,list<f64>>"), ("option<option<u8>>", "option<option<u8>>"),
    ("i128", "i128"), ("unit", "unit"),
])
def test_types_parse_to_their_canonical_text(text, canonical):
    assert str(parse_type(text)) == canonical
    assert parse_type(canonical) == parse_type(text)


@pytest.mark.parametrize("text, why", [
    ("u65", "unknown type 'u65' .types: string, bytes"), ("list<", "ends too soon"),
    ("list<u8,u8>", "list takes one type, not 2"), ("map<f32,u8>", "keys are string, bool or an integer type"),
    ("tuple<>", "unknown type '>'"), ("list<u8>>", "unexpected '>' after list<u8>"), ("", "ends too soon"),
    ("usize", "unknown type 'usize'"), ("list<" * 40 + "u8" + ">" * 40, "nest deeper than 32"),
])
def test_what_is_not_a_type_is_refused_in_one_line(text, why):
    with pytest.raises(Mismatch, match=why) as caught:
        parse_type(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, value, data", [
    ("string", "hé", U64.pack(3) + "hé".encode()),
    ("bytes", b"\x00\xff", U64.pack(2) + b"\x00\xff"),
    ("bool", True, b"\x01"),
    ("u8", 255, b"\xff"),
    ("i16", -2, b"\xfe\xff"),
    ("u64", 2**64 - 1, b"\xff" * 8),
    ("i128", -1, b"\xff" * 16),
    ("u128", 2**100, (2**100).to_bytes(16, "little")),
    ("f32", 1.5, struct.pack("<f", 1.5)),
    ("f64", -0.25, struct.pack("<d", -0.25)),
    ("unit", None, b""),
    ("option<u8>", None, b"\x00"),
    ("option<u8>", 7, b"\x01\x07"),
    ("list<u16>", [1, 2], U64.pack(2) + b"\x01\x00\x02\x00"),
    ("tuple<u8,string>", (1, "a"), b"\x01" + U64.pack(1) + b"a"),
    ("map<string,u8>", {"a": 1}, U64.pack(1) + U64.pack(1) + b"a\x01"),
])
def test_values_are_laid_out_as_bincode_does(text, value, data):
    assert enc(text, value) == data
    assert dec(text, data) == value


@pytest.mark.parametrize("text, value, data", [
    ("bytes", "hi", U64.pack(2) + b"hi"),                       # text: its UTF-8
    ("bytes", {"base64": "aGk="}, U64.pack(2) + b"hi"),         # JSON's way of writing bytes
    ("bytes", [104, 105], U64.pack(2) + b"hi"),                 # numbers 0-255
    ("f64", "Infinity", struct.pack("<d", math.inf)),
    ("tuple<u8,u8>", [1, 2], b"\x01\x02"),                     # JSON arrays for tuples
    ("map<u32,bool>", {"7": True}, U64.pack(1) + b"\x07\x00\x00\x00\x01"),   # JSON object keys are text
    ("map<u32,bool>", [[7, True]], U64.pack(1) + b"\x07\x00\x00\x00\x01"),   # or a list of pairs
])
def test_json_spellings_of_values_are_accepted(text, value, data):
    assert enc(text, value) == data


def test_json_views_of_results_hold_bytes_and_odd_floats():
    kind = parse_type("tuple<bytes,list<f64>,map<u8,string>>")
    value = dec(str(kind), enc(str(kind), [b"\x00", [1.0, math.nan, -math.inf], {1: "x"}]))
    assert kind.to_json(value) == [{"base64": "AA=="}, [1.0, "NaN", "-Infinity"], {1: "x"}]
    assert not kind.plain and parse_type("list<map<string,u64>>").plain


@pytest.mark.parametrize("text, value, where, why", [
    ("string", 3, "", "expected string, got 3"),
    ("u8", 256, "", r"expected u8 \(0 to 255\), got 256"),
    ("u32", True, "", "expected u32, got true"),
    ("u32", 1.0, "", "expected u32, got 1.0"),
    ("bool", 1, "", "expected bool, got 1"),
    ("f32", 1e39, "", "out of its range"),
    ("unit", 0, "", r"expected unit \(null\), got 0"),
    ("list<tuple<u8,string>>", [[1, "a"], [300, "b"]], "[1][0]", "expected u8"),
    ("tuple<u8,u8>", [1], "", r"expected tuple<u8,u8> \(2 items\), got \[1\]"),
    ("map<u32,u8>", {"x": 1}, '(key "x")', "expected u32 .a whole number., got \"x\""),
    ("map<string,u8>", {"k": -1}, '["k"]', "expected u8"),
    ("bytes", {"base64": "!!"}, "", "base64 that does not decode"),
    ("string", "\ud800", "", "not valid Unicode"),
])
def test_values_that_do_not_fit_say_where_and_why(text, value, where, why):
    with pytest.raises(Mismatch, match=why) as caught:
        enc(text, value)
    assert caught.value.where() == where


@pytest.mark.parametrize("text, data, why", [
    ("u64", b"\x01", "its 1 byte end before a whole u64"),
    ("string", U64.pack(99) + b"ab", "a length of 99 bytes where 2 remain"),
    ("string", U64.pack(1) + b"\xff", "not UTF-8"),
    ("u8", b"\x01\x02", "1 byte left over after a u8"),
    ("bool", b"\x02", "a bool byte of 2"),
    ("option<u8>", b"\x05", "an option tag of 5"),
    ("list<u64>", U64.pack(2**40), "a count of 1099511627776 items where 0 bytes remain"),
    ("list<unit>", U64.pack(2**40), "a count of 1099511627776 items"),  # zero-size items: no endless loop
])
def test_bytes_that_do_not_decode_say_why(text, data, why):
    with pytest.raises(Mismatch, match=why):
        dec(text, data)


@pytest.mark.parametrize("text, given, value", [
    ("string", "a b", "a b"), ("bytes", "hi", b"hi"), ("u32", "42", 42), ("u32", "0x10", 16), ("i8", "-3", -3),
    ("u64", "1_000", 1000), ("bool", "TRUE", True), ("bool", "0", False), ("f64", "2.5", 2.5), ("unit", "", None),
    ("option<string>", "null", None), ("option<string>", "x", "x"), ("list<u8>", "[1, 2]", [1, 2]),
    ("map<string,u8>", '{"a": 1}', {"a": 1}), ("tuple<bool,string>", '[true, "x"]', [True, "x"]),
])
def test_command_line_text_parses_by_type(text, given, value):
    assert parse_type(text).from_text(given) == value


@pytest.mark.parametrize("text, given, why", [
    ("u32", "abc", r'expected u32 \(a whole number\), got "abc"'),
    ("u8", "300", r"expected u8 \(0 to 255\), got 300"),
    ("bool", "maybe", r"expected bool \(true or false\)"),
    ("list<u8>", "[1,", "expected list<u8> as JSON"),
])
def test_command_line_text_that_does_not_parse_is_one_clean_line(text, given, why):
    with pytest.raises(Mismatch, match=why) as caught:
        parse_type(text).from_text(given)
    assert "invalid literal" not in str(caught.value)


NESTED = st.recursive(
    st.sampled_from(["string", "bytes", "bool", "u8", "i64", "u128", "f64", "unit"]),
    lambda inner: st.one_of(
        inner.map(lambda t: f"option<{t}>"),
        inner.map(lambda t: f"list<{t}>"),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: f"tuple<{','.join(ts)}>"),
        inner.map(lambda t: f"map<u16,{t}>"),
    ),
    max_leaves=6,
)


def values_of(kind):
    text = str(kind)
    scalars = {
        "string": st.text(), "bytes": st.binary(), "bool": st.booleans(), "u8": st.integers(0, 255),
        "i64": st.integers(-(2**63), 2**63 - 1), "u128": st.integers(0, 2**128 - 1),
        "f64": st.floats(allow_nan=False), "unit": st.none(), "u16": st.integers(0, 2**16 - 1),
    }
    if text in scalars:
        return scalars[text]
    if text.startswith("option<"):
        return st.one_of(st.none(), values_of(kind.item))
    if text.startswith("list<"):
        return st.lists(values_of(kind.item), max_size=3)
    if text.startswith("tuple<"):
        return st.tuples(*(values_of(t) for t in kind.items))
    return st.dictionaries(values_of(kind.key), values_of(kind.value), max_size=3)


@given(st.data())
def test_every_value_round_trips(data):
    kind = parse_type(data.draw(NESTED))
    value = data.draw(values_of(kind))
    if "option<option<" in str(kind) or "option<unit>" in str(kind):
        return  # Some(None) and None are one JSON null, but distinct bytes: compared below by bytes only
    assert decode_value(kind, encode_value(kind, value)) == value


@given(st.data())
def test_any_bytes_decode_or_are_refused_cleanly(data):
    kind = parse_type(data.draw(NESTED))
    raw = data.draw(st.binary(max_size=64))
    try:
        value = decode_value(kind, raw)
    except Mismatch:
        return
    assert encode_value(kind, value) == raw or "f64" in str(kind) or "option<" in str(kind)
