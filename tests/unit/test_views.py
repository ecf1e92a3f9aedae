"""Lattice values as text and JSON: every type round-trips through its JSON view."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essa.errors import DecodeError
from essa.state.lattice import (
    BoolLattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
)
from essa.state.views import from_json, to_json, to_text

EXAMPLES = [
    LwwLattice(1_796_000_000_123_000_000, b"hello"),
    SetLattice({b"one", b"two", b"\xff\x00"}),
    OrderedSetLattice({b"a", b"b"}),
    SingleCausalLattice({"n1": 2}, {b"x"}),
    MultiCausalLattice({"n1": 1}, {"other": {"n2": 3}}, {b"y", b"z"}),
    MaxLattice(7),
    BoolLattice(True),
    MapLattice({"count": MaxLattice(3), "tags": SetLattice({b"t"})}),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: v.type_name)
def test_every_type_round_trips_through_json(value):
    assert from_json(to_json(value)) == value


@given(st.frozensets(st.binary(max_size=8), max_size=10))
def test_sets_of_any_bytes_round_trip(values):
    assert from_json(to_json(SetLattice(values))) == SetLattice(values)


def test_text_shows_strings_quoted_and_other_bytes_in_hex():
    assert to_text(SetLattice({b"one", b"\xff"})) == 'Set {"one", 0xff} (2 elements)'
    assert to_text(LwwLattice(0, b"v")) == 'Lww "v" (at 1970-01-01T00:00:00Z)'


def test_text_escapes_quotes_and_control_characters_in_strings():
    value = SetLattice({b'"$essa_token"', b"two\nlines", b"back\\slash"})
    assert to_text(value) == 'Set {"\\"$essa_token\\"", "back\\\\slash", "two\\nlines"} (3 elements)'
    assert to_text(LwwLattice(0, b'say "hi"')) == 'Lww "say \\"hi\\"" (at 1970-01-01T00:00:00Z)'


def test_long_sets_are_shortened_in_text():
    text = to_text(SetLattice({b"%03d" % i for i in range(120)}))
    assert "(70 more)" in text and "(120 elements)" in text


def test_a_refusal_names_where_once():
    with pytest.raises(DecodeError) as raised:
        from_json({"type": "Lww", "value": "x"}, "the body")
    assert str(raised.value) == "the body: an Lww value needs an RFC 3339 'timestamp'"
    with pytest.raises(DecodeError) as raised:
        from_json({"type": "Map", "entries": {"a": {"type": "Set", "values": [1]}}}, "the body")
    assert str(raised.value).count("the body") == 1


@pytest.mark.parametrize("data, message", [
    ([], "a lattice is an object with a 'type'"),
    ({"type": "Nope"}, "unknown lattice type 'Nope'"),
    ({"type": "Set", "values": "a"}, "'values' must be a list"),
    ({"type": "Set", "values": [1]}, "an element is a string"),
    ({"type": "Lww", "value": "x"}, "needs an RFC 3339 'timestamp'"),
    ({"type": "Max", "value": -1}, "Max value"),
    ({"type": "Set", "values": [{"base64": "!!"}]}, "not valid base64"),
])
def test_malformed_views_are_refused_in_one_line(data, message):
    with pytest.raises(DecodeError, match=message):
        from_json(data)
