"""The word-count example as a user runs it, and its functions called one by one.

examples/word-count.wasm is built from examples/word-count/word_count.c by
examples/build.py (and examples/word-count-rust.wasm, the same functions in
Rust, by examples/build_rust.py, and examples/word-count-ts.wasm, in
TypeScript, by examples/build_ts.py). Its functions take and return bincode, as
the Rust SDK's #[essa_wrap] does: a String is a u64 LE length and UTF-8, a u64
is 8 bytes LE, a Vec<String> a u64 LE count and each String.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from essa.state.lattice import SetLattice
from essa.wasm.abi import EssaResult

try:  # tests/e2e as a package, or as a plain directory on sys.path
    from .test_cli import essa
except ImportError:
    from test_cli import essa

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"c": ROOT / "examples" / "word-count.wasm", "rust": ROOT / "examples" / "word-count-rust.wasm",
           "ts": ROOT / "examples" / "word-count-ts.wasm"}
BUILDERS = {"c": "build.py", "rust": "build_rust.py", "ts": "build_ts.py"}

#: What main prints for its built-in text: 23 words, 16 of them distinct.
MAIN_OUTPUT = "words: 23\nvocabulary: 16 words\n"


@pytest.fixture(params=sorted(MODULES))
def word_count(request) -> Path:
    path = MODULES[request.param]
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is missing; build it with examples/{BUILDERS[request.param]}")
    return path


def engine_args(request) -> list[str]:
    """``--engine NAME`` when the tests run on a chosen engine (``--essa-engine``)."""
    name = request.config.getoption("--essa-engine", default=None)
    return ["--engine", name] if name else []


def test_main_prints_the_words_and_the_vocabulary(request, word_count):
    result = essa("--store", "memory", *engine_args(request), "run", str(word_count))
    assert result.returncode == 0, result.stderr
    assert result.stdout == MAIN_OUTPUT
    assert result.stderr == ""


def test_the_vocabulary_is_a_set_that_runs_sharing_a_namespace_merge_into(request, word_count):
    pytest.importorskip("essa_lmdb")
    for _ in range(2):  # the second run merges the same 16 words: still 16
        result = essa(*engine_args(request), "run", "--namespace", "wc", str(word_count))
        assert result.returncode == 0, result.stderr
        assert result.stdout == MAIN_OUTPUT


# -- the functions, called with bincode arguments ---------------------------------------


def string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def strings(data: bytes) -> list[str]:
    (count,), pos, items = struct.unpack_from("<Q", data), 8, []
    for _ in range(count):
        (length,) = struct.unpack_from("<Q", data, pos)
        items.append(data[pos + 8 : pos + 8 + length].decode())
        pos += 8 + length
    assert pos == len(data)
    return items


@pytest.fixture
def call(engine_name, word_count):
    from essa.cluster.embedded import EmbeddedRuntime
    from essa.testing.conformance.support import Output

    with EmbeddedRuntime(engine=engine_name, store="memory", executors=2) as runtime:
        module = runtime.client.publish(word_count.read_bytes())

        def call(function: str, args: bytes, namespace: str = "wc"):
            output = Output()
            outcome = runtime.client.call(module, f"__essa_wrapper__{function}", args, namespace=namespace,
                                          output=output, timeout=120)
            return outcome, output.stderr

        call.store = runtime.store
        yield call


def u64(outcome) -> int:
    assert outcome.code == EssaResult.Ok, outcome.message
    (value,) = struct.unpack("<Q", outcome.value)
    return value


def test_count_words_counts_runs_of_letters_digits_and_apostrophes(call):
    assert u64(call("count_words", string("Hello, HELLO world! It's 2-for-1 o'clock\n"))[0]) == 8
    assert call.store.get("wc/data/vocab") == SetLattice(
        {b"hello", b"world", b"it's", b"2", b"for", b"1", b"o'clock"})


def test_count_words_of_no_words_is_zero_and_stores_nothing(call):
    assert u64(call("count_words", string(" ,.;\n\t"))[0]) == 0
    assert u64(call("count_words", string(""))[0]) == 0
    assert call.store.get("wc/data/vocab") is None


def test_count_lines_sums_the_lines_counted_remotely(call):
    text = "one two\r\n\nthree  four five\n\n\nsix\n"
    assert u64(call("count_lines", string(text))[0]) == 6
    assert u64(call("count_lines", string(""))[0]) == 0


def test_vocabulary_lists_the_words_sorted_by_bytes(call):
    outcome, _ = call("vocabulary", b"")
    assert outcome.code == EssaResult.Ok and strings(outcome.value) == []
    call("count_lines", string("b a\nB c\nab zz a'"))
    outcome, _ = call("vocabulary", b"")
    assert strings(outcome.value) == ["a", "a'", "ab", "b", "c", "zz"]
    other, _ = call("vocabulary", b"", namespace="another")
    assert strings(other.value) == []


@pytest.mark.parametrize("args", [b"", b"\x05\x00", struct.pack("<Q", 10) + b"short", string("x")[:-1] + b"\xff"],
                         ids=["empty", "truncated-length", "truncated-text", "not-utf8"])
def test_arguments_that_are_not_a_string_fail_the_call(call, args):
    outcome, stderr = call("count_words", args)
    assert outcome.code == EssaResult.UnknownError
    assert "count_words" in stderr
    assert call.store.get("wc/data/vocab") is None
