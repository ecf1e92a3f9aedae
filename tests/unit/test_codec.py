"""bincode arguments and results as #[essa_wrap] functions take and give them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essa.state.codec import CodecError, decode, encode, parse_types


def test_a_string_and_a_usize_are_laid_out_as_bincode_does():
    assert encode(["string", "usize"], ["hi", 3]) == struct.pack("<Q", 2) + b"hi" + struct.pack("<Q", 3)


def test_values_from_a_command_line_are_text():
    assert encode(["u32", "bool", "strings"], ["0x10", "true", "a,b"]) == (
        struct.pack("<I", 16) + b"\x01" + struct.pack("<Q", 2) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 1) + b"b"
    )


@given(st.text())
def test_strings_round_trip(text):
    assert decode("string", encode(["string"], [text])) == text


@given(st.lists(st.text(), max_size=20))
def test_lists_of_strings_round_trip(items):
    assert decode("strings", encode(["strings"], [items])) == items


@pytest.mark.parametrize("kind, value", [("u8", 255), ("i16", -3), ("u64", 2**64 - 1), ("i64", -(2**63)), ("f64", 1.5),
                                         ("bool", False), ("bytes", b"\x00\xff")])
def test_scalars_round_trip(kind, value):
    assert decode(kind, encode([kind], [value])) == value


@pytest.mark.parametrize("types, values, message", [
    (["u8"], [256], r"argument 1: expected u8 \(0 to 255\), got 256"),
    (["string", "u32"], ["a", "abc"], r'^argument 2: expected u32 \(a whole number\), got "abc"$'),
    (["bool"], ["maybe"], r"argument 1: expected bool \(true or false\)"),
    (["list<u8>"], ["[1, 300]"], r"argument 1\[1\]: expected u8"),
    (["string"], [], "1 types .string. but 0 values"),
])
def test_values_that_do_not_fit_are_refused_in_one_line(types, values, message):
    with pytest.raises(CodecError, match=message) as caught:
        encode(types, values)
    assert "invalid literal" not in str(caught.value)  # never Python's own message


@pytest.mark.parametrize("kind, data, message", [
    ("u64", b"\x01", "the result is not a u64: its 1 byte end before a whole u64"),
    ("string", struct.pack("<Q", 99) + b"ab", "a length of 99 bytes where 2 remain"),
    ("string", struct.pack("<Q", 1) + b"\xff", "a string that is not UTF-8"),
    ("u8", b"\x01\x02", "1 byte left over"),
    ("strings", struct.pack("<Q", 2**40), "a count of 1099511627776 items"),
])
def test_results_that_do_not_decode_are_refused_in_one_line(kind, data, message):
    with pytest.raises(CodecError, match=message):
        decode(kind, data)


def test_the_whole_type_grammar_is_accepted_besides_the_older_names():
    assert parse_types("tuple<u8,string>, usize,strings") == ["tuple<u8,string>", "usize", "strings"]
    assert encode("tuple<u8,string>", '[1, "a"]') == b"\x01" + struct.pack("<Q", 1) + b"a"
    assert decode("map<string,u8>", struct.pack("<QQ", 1, 1) + b"k\x02") == {"k": 2}


def test_unknown_types_name_the_known_ones():
    with pytest.raises(CodecError, match="unknown type 'str' .types: string, bytes"):
        parse_types("str,u8")
