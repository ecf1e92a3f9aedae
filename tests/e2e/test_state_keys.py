"""Issue 19 item 2: any state key a guest or the CLI can write lists, reads and deletes back exactly.

A key of 511 bytes or more used to break `essa state ls` for its whole
namespace: the LMDB store listed the shortened record key (479 bytes and a
SHA-256), which printed as garbage on this machine and, on a cluster, could
not be encoded into the executor's answer ("no executor answered the
request"). Real `essa` processes throughout: embedded on the default LMDB
store in the test's ESSA_HOME, and a cluster started with `essa up`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from essa.testing.conformance.wat import module

from .test_cli import assert_one_line_error, essa
from .test_service import Up, ok

#: A key a guest writes from its `_start`: 600 bytes, over LMDB's 511-byte key limit.
RUN_KEY = ("guest-" + "x" * 594).encode()
PAGE = 0x10000

#: put(ARG): merge the Set {"v"} into the key named by its argument bytes; the result is the
#: essa_put_lattice code (i32 LE), so a test sees a refused key. _start puts RUN_KEY.
KEYS = module(
    f"""
  (func (export "__essa_wrapper__put") (param $len i32)
    (if (call $essa_get_args (i32.const {PAGE}) (local.get $len)) (then unreachable))
    (i32.store (i32.const 0x40) (call $essa_put_lattice (i32.const {PAGE}) (local.get $len)
                                                         (i32.const 0x10) (i32.const 21)))
    (drop (call $essa_set_result (i32.const 0x40) (i32.const 4))))
""",
    data={0x10: bytes.fromhex("01000000" "0100000000000000" "0100000000000000") + b"v", 0x100: RUN_KEY},
    start=f"(if (call $essa_put_lattice (i32.const 0x100) (i32.const {len(RUN_KEY)}) (i32.const 0x10) (i32.const 21))"
          " (then unreachable))",
    memory="2",
)

#: Keys the CLI puts: around LMDB's 511-byte limit, multi-byte characters cut at byte 479, and
#: long keys that share their first 479 bytes (and so the readable part of their record keys).
LONG_KEYS = [
    "k" * 510, "k" * 511, "k" * 600, "é" * 300, "a/b/" * 200,
    "p" * 479 + "-first" + "z" * 40, "p" * 479 + "-second" + "z" * 40, "p" * 478 + "é" + "q" * 100,
]


@pytest.fixture
def wasm(tmp_path):
    path = tmp_path / "keys.wasm"
    path.write_bytes(KEYS)
    return str(path)


def put_by_guest(key: bytes, tmp_path, *connect: str) -> int:
    """Call the deployment's put with ``key`` as its argument bytes; the essa_put_lattice code."""
    arg = tmp_path / "key.bin"
    arg.write_bytes(key)
    result = subprocess.run([sys.executable, "-m", "essa", "call", "keys", "put", "@" + str(arg), *connect],
                            capture_output=True, timeout=120)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    return int.from_bytes(result.stdout, "little", signed=True)


def listed(*args: str) -> list[str]:
    """`essa state ls ... --json`, parsed."""
    return json.loads(ok(essa("state", "ls", *args, "--json")))


def test_long_keys_put_by_the_cli_list_read_and_delete_back_exactly():
    for n, key in enumerate(LONG_KEYS):
        assert ok(essa("state", "put", "-n", "A", key, str(n))).startswith(f'Lww "{n}"')
    assert listed("-n", "A") == sorted(LONG_KEYS)
    assert ok(essa("state", "ls", "-n", "A")) == "".join(key + "\n" for key in sorted(LONG_KEYS))
    assert listed("-n", "A", "p" * 479 + "-s") == ["p" * 479 + "-second" + "z" * 40]  # a prefix past byte 479
    for n, key in enumerate(LONG_KEYS):
        assert json.loads(ok(essa("state", "get", "-n", "A", key, "--json")))["value"] == str(n)
    for key in LONG_KEYS[::2]:
        assert ok(essa("state", "rm", "-n", "A", key)) == f"deleted {key} from namespace A\n"
    assert listed("-n", "A") == sorted(LONG_KEYS[1::2])
    for key in LONG_KEYS[1::2]:
        ok(essa("state", "rm", "-n", "A", key))
    assert listed("-n", "A") == []
    assert_one_line_error(essa("state", "get", "-n", "A", LONG_KEYS[0]), "no key 'kkkk")


def test_a_guest_long_key_lists_reads_and_deletes_back(wasm, tmp_path):
    """A guest's 600-byte key (from _start, then from a deployed function) followed by `essa state ls`."""
    assert ok(essa("run", "--namespace", "keys", wasm)) == ""
    assert listed("-n", "keys") == [RUN_KEY.decode()]
    ok(essa("deploy", wasm, "--name", "keys"))
    called = ("called-" + "ü" * 400).encode()
    assert put_by_guest(called, tmp_path) == 0
    assert listed("-d", "keys") == sorted([RUN_KEY.decode(), called.decode()])
    assert ok(essa("state", "get", "-d", "keys", called.decode())) == 'Set {"v"} (1 elements)\n'
    ok(essa("state", "rm", "-d", "keys", RUN_KEY.decode()))
    assert ok(essa("state", "ls", "-d", "keys")) == called.decode() + "\n"


def test_keys_that_would_print_ambiguously_are_quoted(wasm, tmp_path):
    """A key that is empty, holds a line break or a control character, or starts with a quote is
    printed as a JSON string by `essa state ls`; a plain key as it is. --json is exact."""
    ok(essa("deploy", wasm, "--name", "keys"))
    odd = ["", "two\nlines", "tab\there", '"quoted"', " space", "bell\x07", "plain/with spaces"]
    for key in odd:
        assert put_by_guest(key.encode(), tmp_path) == 0
    assert listed("-d", "keys") == sorted(odd)
    lines = ok(essa("state", "ls", "-d", "keys")).splitlines()
    assert lines == ['""', '" space"', '"\\"quoted\\""', '"bell\\u0007"', "plain/with spaces", '"tab\\there"',
                     '"two\\nlines"']
    assert sorted(json.loads(line) if line.startswith('"') else line for line in lines) == sorted(odd)
    assert ok(essa("state", "get", "-d", "keys", "")) == 'Set {"v"} (1 elements)\n'
    assert ok(essa("state", "rm", "-d", "keys", "two\nlines")).startswith("deleted ")


def test_a_key_that_is_not_utf8_is_refused_in_one_line_and_listing_goes_on(wasm, tmp_path):
    ok(essa("state", "put", "-n", "A", "fine", "v"))
    refused = subprocess.run([sys.executable, "-m", "essa", "state", "put", "-n", "A", b"bad\xff", "v"],
                             capture_output=True, text=True, timeout=120)
    assert_one_line_error(refused, "state key 'bad\\udcff' is not UTF-8 text")
    ok(essa("deploy", wasm, "--name", "keys"))
    # The ABI refuses it too (UnknownError, one warning line on the call's stderr).
    assert put_by_guest(b"bad\xff", tmp_path) == -1
    assert put_by_guest("k".encode() * 700, tmp_path) == 0
    assert listed("-n", "A") == ["fine"]
    assert listed("-d", "keys") == ["k" * 700]


def test_a_guest_long_key_lists_on_a_cluster(wasm, tmp_path):
    """The reported failure: on a cluster, `essa state ls` answered "no executor answered the request"."""
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from essa.testing.ports import free_port

    up = Up(f"tcp/127.0.0.1:{free_port()}")
    try:
        up.start()
        c = ("--connect", up.endpoint, "--timeout", "60")
        ok(essa("deploy", wasm, "--name", "keys", *c))
        assert ok(essa("state", "put", "-d", "keys", "short", "v", *c))
        assert put_by_guest(("c" * 600).encode(), tmp_path, *c) == 0
        assert ok(essa("run", *c, "--namespace", "keys", wasm)) == ""
        expected = sorted(["short", "c" * 600, RUN_KEY.decode()])
        assert listed("-d", "keys", *c) == expected
        assert ok(essa("state", "ls", "-d", "keys", *c)) == "".join(k + "\n" for k in expected)
        assert ok(essa("state", "get", "-d", "keys", "c" * 600, *c)) == 'Set {"v"} (1 elements)\n'
        assert ok(essa("state", "rm", "-d", "keys", "c" * 600, *c)).startswith("deleted ")
        assert listed("-d", "keys", *c) == sorted(["short", RUN_KEY.decode()])
        logs = up.stop()
        assert "Traceback" not in logs and "surrogates not allowed" not in logs, logs
    finally:
        up.stop()
