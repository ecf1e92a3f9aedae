"""Tests of essa.bincode: the byte-exact lattice encoding and RFC 3339 timestamps."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from essa.errors import DecodeError
from essa.state.bincode import MAX_MAP_DEPTH, decode_lattice, encode_lattice
from essa.state.lattice import (
    MAX_TIMESTAMP_NS,
    MIN_TIMESTAMP_NS,
    U64_MAX,
    BoolLattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
    VectorClock,
)
from essa.state.timestamps import format_timestamp, parse_timestamp


def h(*chunks: str) -> bytes:
    """Bytes from hex chunks (spaces allowed), to keep vectors readable."""
    return bytes.fromhex("".join(chunks).replace(" ", ""))


def u64(n: int) -> str:
    return struct.pack("<Q", n).hex()


def ns_of(text: str) -> int:
    """Reference conversion through datetime (microsecond precision only)."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


# -- fixed vectors ------------------------------------------------------------

SET_A = h("01000000", "0100000000000000", "0100000000000000", "61")

LWW_HI = h(
    "00000000",
    "1e00000000000000",
    "323032362d31312d32345430343a32383a31372e3035373638363132335a",
    "0200000000000000",
    "6869",
)
LWW_HI_TS = "2026-11-24T04:28:17.057686123Z"


def test_worked_example_set() -> None:
    value = SetLattice({b"a"})
    assert len(SET_A) == 21
    assert encode_lattice(value) == SET_A
    assert decode_lattice(SET_A) == value


def test_worked_example_lww() -> None:
    ts = parse_timestamp(LWW_HI_TS)
    assert ts == ns_of("2026-11-24T04:28:17.057686Z") + 123
    value = LwwLattice(ts, b"hi")
    assert len(LWW_HI) == 52
    assert encode_lattice(value) == LWW_HI
    assert decode_lattice(LWW_HI) == value


def test_ordered_set_is_encoded_in_ascending_byte_order() -> None:
    value = OrderedSetLattice([b"b", b"ab", b"a", b""])
    expected = h(
        "02000000",
        u64(4),
        u64(0),
        u64(1), "61",
        u64(2), "6162",
        u64(1), "62",
    )
    assert encode_lattice(value) == expected
    assert decode_lattice(expected) == value


def test_set_encoding_is_canonical_too() -> None:
    assert encode_lattice(SetLattice([b"b", b"a"])) == h("01000000", u64(2), u64(1), "61", u64(1), "62")


def test_single_causal_layout() -> None:
    value = SingleCausalLattice(clock={"n": 1, "a": 2}, values={b"x"})
    expected = h(
        "03000000",
        u64(2),  # clock entries, by node id
        u64(1), "61", u64(2),
        u64(1), "6e", u64(1),
        u64(1),  # values
        u64(1), "78",
    )
    assert encode_lattice(value) == expected
    assert decode_lattice(expected) == value


def test_multi_causal_layout() -> None:
    value = MultiCausalLattice(
        clock={"a": 1},
        dependencies={"kz": {"b": 3}, "k": {}},
        values=set(),
    )
    expected = h(
        "04000000",
        u64(1), u64(1), "61", u64(1),  # clock
        u64(2),  # dependencies, by key
        u64(1), "6b", u64(0),
        u64(2), "6b7a", u64(1), u64(1), "62", u64(3),
        u64(0),  # values
    )
    assert encode_lattice(value) == expected
    assert decode_lattice(expected) == value


def test_max_layout() -> None:
    assert encode_lattice(MaxLattice(0x0102030405060708)) == h("05000000", "0807060504030201")
    assert encode_lattice(MaxLattice(U64_MAX)) == h("05000000", "ffffffffffffffff")
    assert decode_lattice(h("05000000", "0807060504030201")) == MaxLattice(0x0102030405060708)


def test_bool_layout() -> None:
    assert encode_lattice(BoolLattice(True)) == h("06000000", "01")
    assert encode_lattice(BoolLattice(False)) == h("06000000", "00")
    assert decode_lattice(h("06000000", "01")) == BoolLattice(True)
    assert decode_lattice(h("06000000", "00")) == BoolLattice(False)


def test_map_layout() -> None:
    value = MapLattice({"x": MaxLattice(1), "a": BoolLattice(True), "m": MapLattice({})})
    expected = h(
        "07000000",
        u64(3),
        u64(1), "61", "06000000", "01",
        u64(1), "6d", "07000000", u64(0),
        u64(1), "78", "05000000", u64(1),
    )
    assert encode_lattice(value) == expected
    assert decode_lattice(expected) == value


def test_utf8_strings_are_counted_in_bytes() -> None:
    value = MapLattice({"é": BoolLattice(False)})
    assert encode_lattice(value) == h("07000000", u64(1), u64(2), "c3a9", "06000000", "00")


# -- lenient decoding ---------------------------------------------------------


def test_trailing_bytes_are_ignored() -> None:
    assert decode_lattice(SET_A + b"\xff\x00junk") == SetLattice({b"a"})


def test_any_member_order_and_duplicates_are_accepted() -> None:
    unsorted = h("02000000", u64(3), u64(1), "62", u64(1), "61", u64(1), "62")
    assert decode_lattice(unsorted) == OrderedSetLattice({b"a", b"b"})
    # serde's HashMap keeps the last of duplicate keys
    clock = h("03000000", u64(2), u64(1), "61", u64(5), u64(1), "61", u64(2), u64(0))
    assert decode_lattice(clock) == SingleCausalLattice({"a": 2}, set())


def test_non_canonical_timestamp_text_is_accepted() -> None:
    text = b"2026-11-24 06:28:17.0576861+02:00"
    data = h("00000000", u64(len(text)), text.hex(), u64(0))
    value = decode_lattice(data)
    assert value == LwwLattice(parse_timestamp("2026-11-24T04:28:17.0576861Z"), b"")
    canonical = b"2026-11-24T04:28:17.057686100Z"
    assert encode_lattice(value) == h("00000000", u64(len(canonical)), canonical.hex(), u64(0))


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_input(kind: type) -> None:
    assert decode_lattice(kind(SET_A)) == SetLattice({b"a"})


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode_lattice(SET_A.hex())  # type: ignore[arg-type]


# -- rejected input -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "invalid lattice value: empty input"),
        (b"\x01\x00", "invalid lattice value: truncated (need 4 bytes for variant tag at offset 0, 2 remain)"),
        (h("09000000"), "invalid lattice value: unknown variant tag 9"),
        (h("08000000"), "invalid lattice value: unknown variant tag 8"),
        (h("ffffffff"), "invalid lattice value: unknown variant tag 4294967295"),
        (
            h("00000000", u64(1000), "000000"),
            "invalid lattice value: truncated (LWW timestamp length 1000 at offset 4 exceeds remaining 3 bytes)",
        ),
        (
            h("01000000", u64(U64_MAX)),
            "invalid lattice value: truncated (set of 18446744073709551615 items at offset 4"
            " cannot fit in remaining 0 bytes)",
        ),
        (
            h("01000000", u64(1), u64(U64_MAX)),
            "invalid lattice value: truncated (set member length 18446744073709551615 at offset 12"
            " exceeds remaining 0 bytes)",
        ),
        (h("01000000", "0100"), "invalid lattice value: truncated (need 8 bytes for set length at offset 4, 2 remain)"),
        (h("06000000", "02"), "invalid lattice value: Bool byte at offset 4 is 2, not 0 or 1"),
        (h("06000000"), "invalid lattice value: truncated (need 1 bytes for Bool value at offset 4, 0 remain)"),
        (h("05000000", "0000"), "invalid lattice value: truncated (need 8 bytes for Max value at offset 4, 2 remain)"),
        (
            h("03000000", u64(1), u64(1), "ff", u64(1), u64(0)),
            "invalid lattice value: vector clock node id at offset 12 is not valid UTF-8",
        ),
        (
            h("07000000", u64(1), u64(2), "eda080", "06000000", "00"),  # an encoded surrogate
            "invalid lattice value: map key at offset 12 is not valid UTF-8",
        ),
    ],
)
def test_invalid_input_is_named(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_lattice(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "text",
    [b"yesterday", b"2026-11-24T04:28:17", b"2026-13-01T00:00:00Z", b""],
)
def test_bad_lww_timestamp(text: bytes) -> None:
    data = h("00000000", u64(len(text)), text.hex(), u64(0))
    with pytest.raises(DecodeError, match="invalid lattice value: LWW timestamp is not RFC 3339 text"):
        decode_lattice(data)


def test_lww_timestamp_must_be_utf8() -> None:
    data = h("00000000", u64(2), "c328", u64(0))
    with pytest.raises(DecodeError, match="LWW timestamp at offset 4 is not valid UTF-8"):
        decode_lattice(data)


def nested_map_bytes(depth: int) -> bytes:
    """``depth`` Maps, each holding the next under key "k", innermost empty."""
    data = h("07000000", u64(0))
    for _ in range(depth - 1):
        data = h("07000000", u64(1), u64(1), "6b") + data
    return data


def nested_map(depth: int) -> MapLattice:
    value = MapLattice({})
    for _ in range(depth - 1):
        value = MapLattice({"k": value})
    return value


def test_map_depth_is_bounded() -> None:
    assert nested_map_bytes(MAX_MAP_DEPTH) == encode_lattice(nested_map(MAX_MAP_DEPTH))
    assert decode_lattice(nested_map_bytes(MAX_MAP_DEPTH)) == nested_map(MAX_MAP_DEPTH)
    with pytest.raises(DecodeError, match="nest deeper than 64"):
        decode_lattice(nested_map_bytes(MAX_MAP_DEPTH + 1))
    with pytest.raises(DecodeError, match="nest deeper than 64"):
        decode_lattice(nested_map_bytes(5000))
    with pytest.raises(ValueError, match="nest deeper than 64"):
        encode_lattice(nested_map(MAX_MAP_DEPTH + 1))


def test_encode_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        encode_lattice(object())  # type: ignore[arg-type]


# -- timestamps ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T04:28:17Z", "2026-11-24T04:28:17Z"),
        ("2026-11-24T04:28:17.5Z", "2026-11-24T04:28:17.500Z"),
        ("2026-11-24T04:28:17.057Z", "2026-11-24T04:28:17.057Z"),
        ("2026-11-24T04:28:17.0576Z", "2026-11-24T04:28:17.057600Z"),
        ("2026-11-24T04:28:17.057686Z", "2026-11-24T04:28:17.057686Z"),
        ("2026-11-24T04:28:17.0576861Z", "2026-11-24T04:28:17.057686100Z"),
        ("2026-11-24T04:28:17.057686123Z", "2026-11-24T04:28:17.057686123Z"),
        ("2026-11-24T04:28:17.000000001Z", "2026-11-24T04:28:17.000000001Z"),
        ("2026-11-24T04:28:17.000Z", "2026-11-24T04:28:17Z"),
    ],
)
def test_chrono_fraction_rules(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


def test_format_known_instants() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00Z"
    assert format_timestamp(-1) == "1969-12-31T23:59:59.999999999Z"
    assert format_timestamp(-1_000_000) == "1969-12-31T23:59:59.999Z"
    assert format_timestamp(951_782_400 * 10**9) == "2000-02-29T00:00:00Z"
    assert format_timestamp(MIN_TIMESTAMP_NS) == "0000-01-01T00:00:00Z"
    assert format_timestamp(MAX_TIMESTAMP_NS) == "9999-12-31T23:59:59.999999999Z"
    with pytest.raises(ValueError):
        format_timestamp(MAX_TIMESTAMP_NS + 1)
    with pytest.raises(ValueError):
        format_timestamp(MIN_TIMESTAMP_NS - 1)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-24T06:28:17+02:00", "2026-11-24T04:28:17Z"),
        ("2026-11-24T00:28:17-04:00", "2026-11-24T04:28:17Z"),
        ("2026-11-24T04:28:17-00:00", "2026-11-24T04:28:17Z"),
        ("2026-11-24T04:28:17+00:00", "2026-11-24T04:28:17Z"),
        ("2026-11-25T01:58:17+21:30", "2026-11-24T04:28:17Z"),
        ("2026-11-24 04:28:17Z", "2026-11-24T04:28:17Z"),
        ("2026-11-24t04:28:17z", "2026-11-24T04:28:17Z"),
        ("2000-03-01T01:00:00+02:00", "2000-02-29T23:00:00Z"),
        ("2026-12-31T23:59:60Z", "2027-01-01T00:00:00Z"),  # leap second
    ],
)
def test_parse_offsets_and_separators(text: str, utc: str) -> None:
    assert parse_timestamp(text) == parse_timestamp(utc)
    assert format_timestamp(parse_timestamp(text)) == utc


def test_parse_keeps_nanoseconds_and_counts_fraction_digits() -> None:
    base = parse_timestamp("2026-11-24T04:28:17Z")
    assert base == ns_of("2026-11-24T04:28:17Z")
    for digits in range(1, 10):
        fraction = "123456789"[:digits]
        expected = base + int(fraction.ljust(9, "0"))
        assert parse_timestamp(f"2026-11-24T04:28:17.{fraction}Z") == expected
    # beyond nanoseconds the digits are truncated, as chrono does
    assert parse_timestamp("2026-11-24T04:28:17.1234567899Z") == base + 123_456_789


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-24",
        "2026-11-24T04:28:17",  # no offset
        "2026-11-24T04:28Z",
        "2026-11-24X04:28:17Z",
        "2026-11-24T04:28:17.Z",  # fraction without digits
        "2026-11-24T04:28:17+0200",
        "2026-11-24T04:28:17+02",
        "26-11-24T04:28:17Z",
        "2026-1-24T04:28:17Z",
        "+2026-11-24T04:28:17Z",
        " 2026-11-24T04:28:17Z",
        "2026-11-24T04:28:17Z ",
        "2026-11-24T04:28:17Z\n",
        "2026-00-24T04:28:17Z",
        "2026-13-24T04:28:17Z",
        "2026-11-00T04:28:17Z",
        "2026-11-31T04:28:17Z",
        "2026-02-29T04:28:17Z",  # not a leap year
        "1900-02-29T04:28:17Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T04:60:17Z",
        "2026-11-24T04:28:61Z",
        "2026-11-24T04:28:17+24:00",
        "2026-11-24T04:28:17+02:60",
        "２０２６-11-24T04:28:17Z",  # non-ASCII digits
        "2026-11-24T04:28:17.１Z",
        "0000-01-01T00:00:00+00:01",  # before year 0000 in UTC
        "9999-12-31T23:59:59-00:01",  # after year 9999 in UTC
    ],
)
def test_invalid_timestamps_are_rejected(text: str) -> None:
    with pytest.raises(DecodeError, match="invalid RFC 3339 timestamp"):
        parse_timestamp(text)


def test_leap_years() -> None:
    assert parse_timestamp("2000-02-29T00:00:00Z") == ns_of("2000-02-29T00:00:00Z")
    assert parse_timestamp("2024-02-29T00:00:00Z") == ns_of("2024-02-29T00:00:00Z")
    assert format_timestamp(parse_timestamp("0000-02-29T12:00:00Z")) == "0000-02-29T12:00:00Z"


timestamps = st.one_of(
    st.integers(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS),
    st.integers(MIN_TIMESTAMP_NS // 10**9, MAX_TIMESTAMP_NS // 10**9).map(lambda s: s * 10**9),
    st.integers(MIN_TIMESTAMP_NS // 10**6, MAX_TIMESTAMP_NS // 10**6).map(lambda ms: ms * 10**6),
    st.integers(MIN_TIMESTAMP_NS // 10**3, MAX_TIMESTAMP_NS // 10**3).map(lambda us: us * 10**3),
    st.sampled_from([MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS, 0, -1, 1]),
)


@given(timestamps)
def test_format_parse_round_trip(ns: int) -> None:
    text = format_timestamp(ns)
    assert parse_timestamp(text) == ns
    fraction = text[19:-1]
    assert fraction == "" or len(fraction) in (4, 7, 10)


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)))
def test_format_agrees_with_datetime(when: dt.datetime) -> None:
    when = when.replace(tzinfo=dt.timezone.utc)
    ns = ns_of(when.isoformat())
    expected = (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
        f"T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    assert format_timestamp(ns)[:19] == expected


@given(timestamps, st.integers(-(23 * 60 + 59), 23 * 60 + 59), st.sampled_from("Tt "))
def test_parse_with_any_offset(ns: int, offset_minutes: int, sep: str) -> None:
    local = ns + offset_minutes * 60 * 10**9
    assume(MIN_TIMESTAMP_NS <= local <= MAX_TIMESTAMP_NS)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = format_timestamp(local)[:-1].replace("T", sep) + f"{sign}{hours:02d}:{minutes:02d}"
    assert parse_timestamp(text) == ns


# -- properties ---------------------------------------------------------------

small_bytes = st.binary(max_size=6)
byte_sets = st.frozensets(small_bytes, max_size=5)
keys = st.text(max_size=5)
clocks = st.dictionaries(keys, st.integers(0, U64_MAX), max_size=4).map(VectorClock)

lww = st.builds(LwwLattice, timestamps, small_bytes)
sets = st.builds(SetLattice, byte_sets)
ordered_sets = st.builds(OrderedSetLattice, byte_sets)
single_causal = st.builds(SingleCausalLattice, clocks, byte_sets)
multi_causal = st.builds(MultiCausalLattice, clocks, st.dictionaries(keys, clocks, max_size=3), byte_sets)
maxes = st.builds(MaxLattice, st.integers(0, U64_MAX))
bools = st.builds(BoolLattice, st.booleans())
leaves = st.one_of(lww, sets, ordered_sets, single_causal, multi_causal, maxes, bools)
maps = st.recursive(
    st.dictionaries(keys, leaves, max_size=3).map(MapLattice),
    lambda children: st.dictionaries(keys, st.one_of(leaves, children), max_size=3).map(MapLattice),
    max_leaves=12,
)
lattices = st.one_of(leaves, maps)

PER_TYPE = {
    "Lww": lww,
    "Set": sets,
    "OrderedSet": ordered_sets,
    "SingleCausal": single_causal,
    "MultiCausal": multi_causal,
    "Max": maxes,
    "Bool": bools,
    "Map": maps,
}


@pytest.mark.parametrize("type_name", PER_TYPE)
@given(data=st.data())
def test_round_trip_every_type(type_name: str, data: st.DataObject) -> None:
    value = data.draw(PER_TYPE[type_name])
    assert value.type_name == type_name
    encoded = encode_lattice(value)
    decoded = decode_lattice(encoded)
    assert decoded == value
    assert type(decoded) is type(value)
    assert encode_lattice(decoded) == encoded  # canonical


@given(lattices, st.binary(max_size=16))
def test_trailing_bytes_never_matter(value: object, tail: bytes) -> None:
    assert decode_lattice(encode_lattice(value) + tail) == value  # type: ignore[arg-type]


@given(lattices, st.data())
def test_truncation_is_a_decode_error(value: object, data: st.DataObject) -> None:
    encoded = encode_lattice(value)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_lattice(encoded[:cut])


@given(lattices)
def test_every_prefix_is_a_decode_error(value: object) -> None:
    encoded = encode_lattice(value)  # type: ignore[arg-type]
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode_lattice(encoded[:cut])


def check_decode_only_raises_decode_error(data: bytes) -> None:
    try:
        value = decode_lattice(data)
    except DecodeError as exc:
        assert str(exc).startswith("invalid lattice value: ")
    else:
        # whatever decodes must re-encode and decode to the same value
        assert decode_lattice(encode_lattice(value)) == value


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
@example(h("07000000") + h("ffffffffffffffff"))
@example(h("04000000", u64(0), u64(2**63)))
@example(h("03000000", u64(2**61)))
@example(h("00000000", u64(2**64 - 1)))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    check_decode_only_raises_decode_error(data)


@given(st.integers(0, 7), st.binary(max_size=120))
def test_arbitrary_payloads_after_a_valid_tag(tag: int, payload: bytes) -> None:
    check_decode_only_raises_decode_error(struct.pack("<I", tag) + payload)


@given(lattices, st.data())
def test_mutated_encodings_only_raise_decode_error(value: object, data: st.DataObject) -> None:
    encoded = bytearray(encode_lattice(value))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    check_decode_only_raises_decode_error(bytes(encoded))
