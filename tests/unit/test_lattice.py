"""Tests of essa.lattice: constructors, merge rules and merge laws, merge_encoded."""

from __future__ import annotations

import itertools
import pickle
import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from essa.errors import DecodeError, LatticeTypeError
from essa.state.bincode import decode_lattice, encode_lattice, merge_encoded
from essa.state.lattice import (
    GUEST_TYPES,
    MAX_TIMESTAMP_NS,
    MIN_TIMESTAMP_NS,
    U64_MAX,
    BoolLattice,
    Lattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
    VectorClock,
)

# -- constructors -------------------------------------------------------------


def test_guest_types_are_in_enum_order() -> None:
    assert GUEST_TYPES == (LwwLattice, SetLattice, OrderedSetLattice, SingleCausalLattice, MultiCausalLattice)
    assert [t.type_name for t in GUEST_TYPES] == ["Lww", "Set", "OrderedSet", "SingleCausal", "MultiCausal"]
    assert [t.type_name for t in (MaxLattice, BoolLattice, MapLattice)] == ["Max", "Bool", "Map"]


def test_sets_normalise_their_input() -> None:
    expected = frozenset({b"a", b"b"})
    assert SetLattice({b"a", b"b"}).values == expected
    assert SetLattice(values=[b"a", bytearray(b"b"), memoryview(b"a")]).values == expected
    assert OrderedSetLattice(iter([b"b", b"a"])).values == expected
    assert type(SetLattice([bytearray(b"x")]).values) is frozenset
    assert SetLattice([b"a"]) == SetLattice(frozenset([b"a"]))
    assert hash(SetLattice([b"a"])) == hash(SetLattice({b"a"}))
    assert SetLattice([b"a"]) != OrderedSetLattice([b"a"])


@pytest.mark.parametrize("bad", [["a"], [1], [b"a", None], b"abc", "abc", 5])
@pytest.mark.parametrize("cls", [SetLattice, OrderedSetLattice])
def test_sets_reject_non_bytes(cls: type, bad: object) -> None:
    with pytest.raises(TypeError):
        cls(bad)


def test_set_reprs_read_as_documented_and_stay_short() -> None:
    assert repr(SetLattice({b"world", b"Python", b"essa"})) == "SetLattice({b'Python', b'essa', b'world'})"
    assert repr(OrderedSetLattice([b"b", b"a"])) == "OrderedSetLattice({b'a', b'b'})"
    assert repr(SetLattice([])) == "SetLattice(set())"
    assert eval(repr(SetLattice({b"a", b"b"}))) == SetLattice({b"a", b"b"})
    big = repr(SetLattice(b"%04d" % i for i in range(2800)))
    assert big.startswith("SetLattice({b'0000', b'0001', ") and big.endswith(", b'0019', ... 2,780 more})")


def test_lww_checks() -> None:
    assert LwwLattice(5, bytearray(b"x")).value == b"x"
    with pytest.raises(TypeError):
        LwwLattice(5, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LwwLattice(1.5, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LwwLattice(True, b"x")
    with pytest.raises(ValueError):
        LwwLattice(MAX_TIMESTAMP_NS + 1, b"x")
    with pytest.raises(ValueError):
        LwwLattice(MIN_TIMESTAMP_NS - 1, b"x")
    LwwLattice(MIN_TIMESTAMP_NS, b"")
    LwwLattice(MAX_TIMESTAMP_NS, b"")


def test_lww_now_uses_time_ns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time_ns", lambda: 1_795_494_497_057_686_123)
    assert LwwLattice.now(b"v") == LwwLattice(1_795_494_497_057_686_123, b"v")


def test_values_are_frozen() -> None:
    value = SetLattice([b"a"])
    with pytest.raises(AttributeError):
        value.values = frozenset()  # type: ignore[misc]


def test_vector_clock() -> None:
    clock = VectorClock({"b": 2, "a": 1})
    assert list(clock) == ["a", "b"]
    assert clock == {"a": 1, "b": 2}
    assert clock == VectorClock([("a", 1), ("b", 2)])
    assert hash(clock) == hash(VectorClock({"a": 1, "b": 2}))
    assert clock != VectorClock({"a": 1})
    assert VectorClock({"a": 0}) != VectorClock()
    assert clock["b"] == 2 and "a" in clock and len(clock) == 2
    assert clock.merge(VectorClock({"a": 3, "c": 1})) == {"a": 3, "b": 2, "c": 1}
    assert pickle.loads(pickle.dumps(clock)) == clock
    for bad in ({"a": -1}, {"a": U64_MAX + 1}):
        with pytest.raises(ValueError):
            VectorClock(bad)
    for bad in ({"a": "1"}, {"a": True}, {1: 1}):  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            VectorClock(bad)
    with pytest.raises(ValueError):
        VectorClock({"\ud800": 1})


def test_causal_constructors_accept_plain_mappings() -> None:
    single = SingleCausalLattice({"a": 1}, [b"x"])
    assert isinstance(single.clock, VectorClock)
    multi = MultiCausalLattice({"a": 1}, {"k": {"b": 2}}, [b"x"])
    assert isinstance(multi.dependencies["k"], VectorClock)
    assert multi == MultiCausalLattice(VectorClock({"a": 1}), {"k": VectorClock({"b": 2})}, {b"x"})
    assert hash(multi) == hash(MultiCausalLattice({"a": 1}, {"k": {"b": 2}}, [b"x"]))
    with pytest.raises(TypeError):
        SingleCausalLattice(5, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MultiCausalLattice({}, {"k": 5}, [])  # type: ignore[dict-item]


def test_host_lattice_checks() -> None:
    assert MaxLattice(U64_MAX).value == U64_MAX
    for bad in (-1, U64_MAX + 1):
        with pytest.raises(ValueError):
            MaxLattice(bad)
    for bad_type in (1.0, "1", True):
        with pytest.raises(TypeError):
            MaxLattice(bad_type)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BoolLattice(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MapLattice({"a": b"x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        MapLattice({1: BoolLattice(True)})  # type: ignore[dict-item]
    entries = MapLattice({"b": BoolLattice(True), "a": MaxLattice(1)}).entries
    assert list(entries) == ["a", "b"]
    assert MapLattice([("a", MaxLattice(1))]) == MapLattice({"a": MaxLattice(1)})


# -- merge rules --------------------------------------------------------------


def test_lww_larger_timestamp_wins() -> None:
    old, new = LwwLattice(1, b"zzz"), LwwLattice(2, b"a")
    assert old.merge(new) == new
    assert new.merge(old) == new


def test_lww_tie_break_is_deterministic() -> None:
    a, b = LwwLattice(7, b"apple"), LwwLattice(7, b"banana")
    assert a.merge(b) == b.merge(a) == LwwLattice(7, b"banana")
    assert LwwLattice(7, b"a").merge(LwwLattice(7, b"")) == LwwLattice(7, b"a")


@pytest.mark.parametrize("cls", [SetLattice, OrderedSetLattice])
def test_set_union(cls: type) -> None:
    assert cls([b"a", b"b"]).merge(cls([b"b", b"c"])) == cls([b"a", b"b", b"c"])


def test_merge_is_pure() -> None:
    a, b = SetLattice([b"a"]), SetLattice([b"b"])
    merged = a.merge(b)
    assert a == SetLattice([b"a"]) and b == SetLattice([b"b"])
    assert merged is not a and merged is not b


def test_single_causal_branches() -> None:
    old = SingleCausalLattice({"a": 1}, [b"old"])
    newer = SingleCausalLattice({"a": 2, "b": 1}, [b"new"])
    concurrent = SingleCausalLattice({"b": 5}, [b"other"])
    # incoming dominates: it replaces
    assert old.merge(newer) == newer
    # local dominates: kept
    assert newer.merge(old) == newer
    # concurrent: pointwise max and union
    assert old.merge(concurrent) == SingleCausalLattice({"a": 1, "b": 5}, [b"old", b"other"])
    assert concurrent.merge(old) == old.merge(concurrent)
    # equal clocks, different values: treated as concurrent so that both orders agree
    twin = SingleCausalLattice({"a": 1}, [b"twin"])
    assert old.merge(twin) == twin.merge(old) == SingleCausalLattice({"a": 1}, [b"old", b"twin"])
    # an explicit zero entry is a (tiny) advance over an empty clock, as in Rust
    zero = SingleCausalLattice({"a": 0}, [b"z"])
    assert SingleCausalLattice({}, [b"e"]).merge(zero) == zero


def test_multi_causal_branches() -> None:
    old = MultiCausalLattice({"a": 1}, {"k": {"a": 1}}, [b"old"])
    newer = MultiCausalLattice({"a": 2}, {"j": {"b": 1}}, [b"new"])
    concurrent = MultiCausalLattice({"b": 1}, {"k": {"a": 0, "b": 3}, "j": {"c": 1}}, [b"other"])
    assert old.merge(newer) == newer  # dependencies replaced with the value
    assert newer.merge(old) == newer
    merged = old.merge(concurrent)
    assert merged == MultiCausalLattice(
        {"a": 1, "b": 1},
        {"k": {"a": 1, "b": 3}, "j": {"c": 1}},
        [b"old", b"other"],
    )
    assert concurrent.merge(old) == merged
    twin = MultiCausalLattice({"a": 1}, {"k": {"a": 2}}, [b"twin"])
    assert old.merge(twin) == twin.merge(old) == MultiCausalLattice({"a": 1}, {"k": {"a": 2}}, [b"old", b"twin"])


def test_causal_merge_is_not_associative_across_concurrent_writes() -> None:
    """Pins the contract's causal rule: dominated sides are dropped, concurrent ones unioned.

    One clock cannot say which of the unioned values it covers, so the grouping
    of merges matters here; see the essa.lattice module docstring.
    """
    a = SingleCausalLattice({"x": 1}, [b"A"])
    b = SingleCausalLattice({"y": 1}, [b"B"])
    d = SingleCausalLattice({"x": 1, "y": 1}, [b"D"])
    assert a.merge(b) == SingleCausalLattice({"x": 1, "y": 1}, [b"A", b"B"])
    assert b.merge(d) == d
    assert a.merge(b).merge(d) == SingleCausalLattice({"x": 1, "y": 1}, [b"A", b"B", b"D"])
    assert a.merge(b.merge(d)) == d


def test_max_bool_map_merges() -> None:
    assert MaxLattice(3).merge(MaxLattice(9)) == MaxLattice(9) == MaxLattice(9).merge(MaxLattice(3))
    assert BoolLattice(False).merge(BoolLattice(True)) == BoolLattice(True)
    assert BoolLattice(True).merge(BoolLattice(False)) == BoolLattice(True)
    assert BoolLattice(False).merge(BoolLattice(False)) == BoolLattice(False)
    left = MapLattice({"n": MaxLattice(1), "s": SetLattice([b"a"]), "only_left": BoolLattice(False)})
    right = MapLattice({"n": MaxLattice(5), "s": SetLattice([b"b"]), "only_right": BoolLattice(True)})
    assert left.merge(right) == MapLattice(
        {
            "n": MaxLattice(5),
            "s": SetLattice([b"a", b"b"]),
            "only_left": BoolLattice(False),
            "only_right": BoolLattice(True),
        }
    )


def test_map_type_mismatch_names_the_key() -> None:
    left = MapLattice({"outer": MapLattice({"inner": MaxLattice(1)})})
    right = MapLattice({"outer": MapLattice({"inner": BoolLattice(True)})})
    with pytest.raises(LatticeTypeError) as info:
        left.merge(right)
    message = str(info.value)
    assert "'outer'" in message and "'inner'" in message
    assert "Bool" in message and "Max" in message


def test_type_mismatch_message_names_both_types() -> None:
    with pytest.raises(LatticeTypeError) as info:
        LwwLattice(1, b"").merge(SetLattice([]))
    assert str(info.value) == "cannot merge a Set lattice into a Lww lattice: lattice types differ"


def test_merging_a_non_lattice_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SetLattice([]).merge({b"a"})  # type: ignore[arg-type]


# -- strategies for merge laws -------------------------------------------------
#
# Small alphabets so that merges hit ties, equal clocks, domination and
# concurrency often.

tiny_bytes = st.sampled_from([b"", b"a", b"b", b"ab"])
tiny_sets = st.frozensets(tiny_bytes, max_size=3)
nodes = st.sampled_from("abc")
tiny_clocks = st.dictionaries(nodes, st.integers(0, 2), max_size=3).map(VectorClock)
tiny_deps = st.dictionaries(st.sampled_from(["k", "j"]), tiny_clocks, max_size=2)

lww = st.builds(LwwLattice, st.integers(0, 3), tiny_bytes)
sets = st.builds(SetLattice, tiny_sets)
ordered_sets = st.builds(OrderedSetLattice, tiny_sets)
single_causal = st.builds(SingleCausalLattice, tiny_clocks, tiny_sets)
multi_causal = st.builds(MultiCausalLattice, tiny_clocks, tiny_deps, tiny_sets)
maxes = st.builds(MaxLattice, st.sampled_from([0, 1, 2, U64_MAX]))
bools = st.builds(BoolLattice, st.booleans())


def typed_maps(depth: int = 2) -> st.SearchStrategy[MapLattice]:
    """Maps whose keys each hold one fixed type, so any two of them merge."""
    fields: dict[str, st.SearchStrategy[Lattice]] = {
        "lww": lww,
        "set": sets,
        "oset": ordered_sets,
        "max": maxes,
        "bool": bools,
    }
    if depth > 1:
        fields["map"] = typed_maps(depth - 1)
    return st.fixed_dictionaries({}, optional=fields).map(MapLattice)


maps = typed_maps()

# Types for which merge is a true join: associative, commutative, idempotent.
JOIN_TYPES = {
    "Lww": lww,
    "Set": sets,
    "OrderedSet": ordered_sets,
    "Max": maxes,
    "Bool": bools,
    "Map": maps,
}
ALL_TYPES = {**JOIN_TYPES, "SingleCausal": single_causal, "MultiCausal": multi_causal}


def chain_clocks() -> st.SearchStrategy[list[VectorClock]]:
    """Three clocks, pairwise comparable (c0 <= c1 <= c2), in random order."""

    def build(base: VectorClock, d1: VectorClock, d2: VectorClock) -> list[VectorClock]:
        c1 = base.merge(d1)
        return [base, c1, c1.merge(d2)]

    return st.builds(build, tiny_clocks, tiny_clocks, tiny_clocks).flatmap(st.permutations)


@st.composite
def causal_chain_triples(draw: st.DrawFn, multi: bool) -> tuple[Lattice, Lattice, Lattice]:
    clocks = draw(chain_clocks())
    if multi:
        return tuple(MultiCausalLattice(c, draw(tiny_deps), draw(tiny_sets)) for c in clocks)  # type: ignore[return-value]
    return tuple(SingleCausalLattice(c, draw(tiny_sets)) for c in clocks)  # type: ignore[return-value]


# -- merge laws ---------------------------------------------------------------


@pytest.mark.parametrize("type_name", ALL_TYPES)
@given(data=st.data())
def test_commutative(type_name: str, data: st.DataObject) -> None:
    strategy = ALL_TYPES[type_name]
    a, b = data.draw(strategy), data.draw(strategy)
    assert a.merge(b) == b.merge(a)


@pytest.mark.parametrize("type_name", ALL_TYPES)
@given(data=st.data())
def test_idempotent(type_name: str, data: st.DataObject) -> None:
    a = data.draw(ALL_TYPES[type_name])
    assert a.merge(a) == a
    b = data.draw(ALL_TYPES[type_name])
    assert a.merge(b).merge(b) == a.merge(b)


@pytest.mark.parametrize("type_name", JOIN_TYPES)
@given(data=st.data())
def test_associative(type_name: str, data: st.DataObject) -> None:
    strategy = JOIN_TYPES[type_name]
    a, b, c = data.draw(strategy), data.draw(strategy), data.draw(strategy)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@pytest.mark.parametrize("multi", [False, True], ids=["SingleCausal", "MultiCausal"])
@given(data=st.data())
def test_causal_associative_for_comparable_clocks(multi: bool, data: st.DataObject) -> None:
    a, b, c = data.draw(causal_chain_triples(multi))
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    # and any order of the three merges gives the same value
    results = {x.merge(y).merge(z) for x, y, z in itertools.permutations((a, b, c))}
    assert len(results) == 1


@pytest.mark.parametrize("type_name", ALL_TYPES)
@given(data=st.data())
def test_merge_result_is_an_upper_bound(type_name: str, data: st.DataObject) -> None:
    """Merging either operand into the result changes nothing."""
    strategy = ALL_TYPES[type_name]
    a, b = data.draw(strategy), data.draw(strategy)
    merged = a.merge(b)
    assert type(merged) is type(a)
    if type_name not in ("SingleCausal", "MultiCausal"):
        assert merged.merge(a) == merged
        assert merged.merge(b) == merged


any_lattice = st.one_of(*ALL_TYPES.values())


@given(any_lattice, any_lattice)
def test_merging_different_types_raises(a: Lattice, b: Lattice) -> None:
    assume(type(a) is not type(b))
    with pytest.raises(LatticeTypeError) as info:
        a.merge(b)
    assert a.type_name in str(info.value) and b.type_name in str(info.value)


# -- merge_encoded ------------------------------------------------------------


@pytest.mark.parametrize("type_name", ALL_TYPES)
@given(data=st.data())
def test_merge_encoded_matches_merge(type_name: str, data: st.DataObject) -> None:
    strategy = ALL_TYPES[type_name]
    a, b = data.draw(strategy), data.draw(strategy)
    old, new = encode_lattice(a), encode_lattice(b)
    expected = encode_lattice(decode_lattice(old).merge(decode_lattice(new)))
    assert merge_encoded(old, new) == expected
    assert merge_encoded(None, new) == new
    assert merge_encoded(new, new) == new
    # new_is_canonical (a store's push): the same bytes, and no re-encoding when one side holds the other:
    # the very object is returned.
    merged = merge_encoded(old, new, new_is_canonical=True)
    assert merged == expected
    if a.merge(b) == a:
        assert merged is old
    elif a.merge(b) == b:
        assert merged is new


def test_merging_a_newer_version_of_a_big_set_returns_it_as_is() -> None:
    older = encode_lattice(SetLattice([b"%d" % i for i in range(1000)]))
    newer = encode_lattice(SetLattice([b"%d" % i for i in range(1001)]))
    assert merge_encoded(older, newer, new_is_canonical=True) is newer
    assert merge_encoded(newer, older, new_is_canonical=True) is newer  # a late, older push changes nothing
    assert merge_encoded(newer, encode_lattice(SetLattice([b"7"]))) is newer  # a write that adds nothing


def test_merge_encoded_keeps_a_writes_bytes_out_unless_they_are_canonical() -> None:
    # A guest may encode a set's members in any order: merged into a stored value it holds, the result is
    # still the canonical encoding, never the guest's bytes.
    unsorted = struct.pack("<IQQ1sQ1s", 1, 2, 1, b"b", 1, b"a")
    stored = encode_lattice(SetLattice([b"a"]))
    assert merge_encoded(stored, unsorted) == encode_lattice(SetLattice([b"a", b"b"])) != unsorted


def test_merge_encoded_without_old_returns_canonical_bytes() -> None:
    unsorted_with_tail = struct.pack("<IQQ1sQ1s", 1, 2, 1, b"b", 1, b"a") + b"tail"
    assert merge_encoded(None, unsorted_with_tail) == encode_lattice(SetLattice([b"a", b"b"]))


def test_merge_encoded_decodes_new_first() -> None:
    with pytest.raises(DecodeError):
        merge_encoded(encode_lattice(MaxLattice(1)), b"\x09\x00\x00\x00")
    with pytest.raises(DecodeError):
        merge_encoded(b"garbage", b"\x09\x00\x00\x00")
    with pytest.raises(DecodeError):
        merge_encoded(None, b"")


def test_merge_encoded_refuses_a_type_change() -> None:
    with pytest.raises(LatticeTypeError, match="cannot merge a Max lattice into a Set lattice"):
        merge_encoded(encode_lattice(SetLattice([b"a"])), encode_lattice(MaxLattice(1)))


def test_merge_encoded_reports_a_corrupt_stored_value() -> None:
    with pytest.raises(DecodeError, match="^stored value: invalid lattice value"):
        merge_encoded(b"\x09\x00\x00\x00", encode_lattice(MaxLattice(1)))


def test_merge_encoded_examples() -> None:
    old = encode_lattice(LwwLattice(1, b"old"))
    new = encode_lattice(LwwLattice(2, b"new"))
    assert merge_encoded(old, new) == new
    assert merge_encoded(new, old) == new
    assert decode_lattice(merge_encoded(encode_lattice(MaxLattice(4)), encode_lattice(MaxLattice(2)))) == MaxLattice(4)
