"""Signatures: the essa.signatures section's JSON Lines, TOML tables, binding arguments and decoding results."""

from __future__ import annotations

import struct

import pytest

from essa.errors import ArgumentError, ModuleError, ResultError, SignatureError
from essa.state.signatures import Signature, parse_lines, parse_toml
from essa.wasm import binary
from essa.wasm.signatures import module_signatures, section_bytes

U64 = struct.Struct("<Q")
COUNT_WORDS = b'{"name":"count_words","params":[{"name":"text","type":"string"}],"result":"u64"}\n'
PAIR = b'{"name":"pair","params":[{"name":"a","type":"u8"},{"name":"b","type":"list<string>"}],"result":"unit"}\n'


def signature(line: bytes = COUNT_WORDS) -> Signature:
    return parse_lines(line)[0]


def test_a_line_is_a_signature_and_back():
    count_words = signature()
    assert str(count_words) == "count_words(text: string) -> u64"
    assert count_words.line() == COUNT_WORDS
    assert Signature.from_dict(count_words.as_dict()) == count_words


def test_lines_concatenated_by_the_linker_are_read_in_any_order_and_duplicates_count_once():
    found = parse_lines(PAIR + COUNT_WORDS + b"\n" + COUNT_WORDS.rstrip(b"\n"))
    assert [s.name for s in found] == ["count_words", "pair"]


@pytest.mark.parametrize("data, why", [
    (b"\xff\n", "not UTF-8 text"),
    (b"{\n", "line 1: not JSON"),
    (COUNT_WORDS + b"[]\n", "line 2: expected an object with name, params and result, got \\[\\]"),
    (b'{"name":"a b","params":[],"result":"unit"}', "'name' must be a function name"),
    (b'{"name":"f","params":{},"result":"unit"}', "'params' of f must be a list"),
    (b'{"name":"f","params":[{"name":"x"}],"result":"unit"}', "parameter 1 of f .x.: a type is text, not null"),
    (b'{"name":"f","params":[{"name":"x","type":"u65"}],"result":"unit"}', "unknown type 'u65'"),
    (b'{"name":"f","params":[{"name":"x","type":"u8"},{"name":"x","type":"u8"}],"result":"unit"}',
     "a second parameter named x"),
    (b'{"name":"f","params":[]}', "f has no 'result'"),
    (COUNT_WORDS + COUNT_WORDS.replace(b"u64", b"u32"), "two different signatures of count_words"),
])
def test_a_malformed_section_is_refused_in_one_line(data, why):
    with pytest.raises(SignatureError, match=why) as caught:
        parse_lines(data)
    assert "\n" not in str(caught.value)


def test_toml_tables_declare_signatures_and_other_tables_are_not_read():
    found = parse_toml('[project]\nname = "x"\n\n[functions.echo]\nparams = [{ name = "x", type = "u64" }]\n'
                       'result = "u64"\ndescription = "later keys are ignored"\n')
    assert [str(s) for s in found] == ["echo(x: u64) -> u64"]
    with pytest.raises(SignatureError, match=r"essa.toml, \[functions.echo\]: echo has no 'result'"):
        parse_toml("[functions.echo]\nparams = []\n")
    with pytest.raises(SignatureError, match="essa.toml: not TOML"):
        parse_toml("[functions.echo\n")


def test_arguments_bind_by_position_or_name_and_encode_as_the_parameters_in_order():
    pair = signature(PAIR)
    expected = b"\x07" + U64.pack(1) + U64.pack(1) + b"x"
    assert pair.encode([7, ["x"]]) == expected
    assert pair.encode((), {"b": ["x"], "a": 7}) == expected
    assert pair.encode([7], {"b": ["x"]}) == expected
    assert pair.encode_json([7, ["x"]]) == pair.encode_json({"a": 7, "b": ["x"]}) == expected
    assert pair.encode_texts(["7", '["x"]']) == expected


@pytest.mark.parametrize("call, message", [
    (lambda s: s.encode([3]), "count_words: parameter text: expected string, got 3"),
    (lambda s: s.encode([]), r"count_words: takes 1 argument \(count_words\(text: string\) -> u64\), got 0"),
    (lambda s: s.encode(["a", "b"]), "takes 1 argument .*, got 2"),
    (lambda s: s.encode((), {"txt": "a"}), r"count_words: no parameter 'txt' \(parameters: text\)"),
    (lambda s: s.encode((), {}), "takes 1 argument"),
    (lambda s: s.encode(["a"], {"text": "b"}), "argument text given twice"),
    (lambda s: s.encode_json("the quick fox"), r'expected the arguments as a JSON array or object, got "the quick '
                                                r'fox" \(as \["the quick fox"\] it would be the argument text\)'),
    (lambda s: s.encode_texts([b"\xff"]), "parameter text: expected text, got bytes that are not UTF-8"),
    (lambda s: s.check_raw(b"\x05"), "the argument bytes end before parameter text .string. does"),
    (lambda s: s.check_raw(U64.pack(1) + b"ab"), "1 byte of arguments left over"),
    (lambda s: s.check_raw(U64.pack(1) + b"\xff"), "the argument bytes do not hold parameter text"),
])
def test_wrong_arguments_are_refused_naming_the_parameter(call, message):
    with pytest.raises(ArgumentError, match=message) as caught:
        call(signature())
    assert caught.value.kind == "bad-argument"


def test_results_decode_by_the_result_type_or_say_why_not():
    count_words = signature()
    assert count_words.decode_result(U64.pack(9)) == 9
    with pytest.raises(ResultError, match=r"count_words: its result \(3 bytes\) ends before a whole u64") as caught:
        count_words.decode_result(b"abc")
    assert caught.value.data == b"abc" and caught.value.kind == "bad-result"
    with pytest.raises(ResultError, match="1 byte left over after a u64"):
        count_words.decode_result(U64.pack(9) + b"!")


def test_the_section_is_found_by_walking_the_module_without_instantiating_it():
    wasmtime = pytest.importorskip("wasmtime")  # the core environment runs without an engine
    wasm = bytes(wasmtime.wat2wasm('(module (func (export "__essa_wrapper__count_words") (param i32)))'))
    assert section_bytes(wasm) is None and module_signatures(wasm) == []
    custom = binary.section(0, binary.encode_u32(15) + b"essa.signatures" + COUNT_WORDS)
    other = binary.section(0, binary.encode_u32(4) + b"name" + b"\x00")
    typed = wasm + other + custom + binary.section(0, binary.encode_u32(15) + b"essa.signatures" + PAIR)
    assert [s.name for s in module_signatures(typed)] == ["count_words", "pair"]
    with pytest.raises(SignatureError, match="the module's essa.signatures section, line 1: not JSON"):
        module_signatures(wasm + binary.section(0, binary.encode_u32(15) + b"essa.signatures{"))
    with pytest.raises(ModuleError, match="the module is malformed"):
        section_bytes(wasm + b"\x00\x20\x03abc")


def test_the_contracts_examples_read_as_it_says():
    """docs/signatures.md stays true: its JSON lines and TOML tables are signatures, its types parse."""
    from pathlib import Path

    from essa.state.types import parse_type

    page = (Path(__file__).resolve().parents[2] / "docs" / "signatures.md").read_text()
    lines = [ln for ln in page.splitlines() if ln.startswith('{"name":')]
    assert len(lines) >= 2 and all(parse_lines(ln.encode()) for ln in lines)
    toml = page.split("```toml\n", 1)[1].split("```", 1)[0]
    assert [str(s) for s in parse_toml(toml)] == ["count_words(text: string) -> u64", "vocabulary() -> list<string>"]
    table = page.split("| type | Rust |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    generic = {"T": "u8", "A": "u8", "B": "u8", "K": "string", "V": "u8"}
    for row in table:  # the first type of each row, its placeholders filled in
        spelled = row.split("|")[1].strip().split("`")[1].replace(",...", "")
        parse_type("".join(generic.get(c, c) for c in spelled))
