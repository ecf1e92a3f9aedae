"""The service commands as a user meets them: deploy, ls, functions, call, state, rm, run --namespace.

Real `essa` processes: embedded (the default LMDB store in the test's own
ESSA_HOME, so state outlives each process), and on a cluster of real
processes started with `essa up`, stopped, and started again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from essa.testing.conformance.wat import module

from .test_cli import assert_one_line_error, essa

DEADLINE = 90.0
KEY = b"seen"

#: echo, trap, ... (the conformance helpers) plus remember(ARG): merge ARG into the Set at key "seen";
#: _start merges "from-run" into it.
STATEFUL = module(
    f"""
  (func $remember (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x3000) (i32.const 1))                         ;; LatticeValue::Set
    (i64.store (i32.const 0x3004) (i64.const 1))                         ;; one element
    (i64.store (i32.const 0x300c) (i64.extend_i32_u (local.get $len)))   ;; its length
    (memory.copy (i32.const 0x3014) (local.get $ptr) (local.get $len))
    (if (call $essa_put_lattice (i32.const 0x700) (i32.const {len(KEY)}) (i32.const 0x3000)
                                (i32.add (i32.const 20) (local.get $len)))
      (then unreachable)))
  (func (export "__essa_wrapper__remember") (param $len i32)
    (if (call $essa_get_args (i32.const 0x8000) (local.get $len)) (then unreachable))
    (call $remember (i32.const 0x8000) (local.get $len))
    (drop (call $essa_set_result (i32.const 0x8000) (local.get $len))))
""",
    data={0x700: KEY, 0x800: b"from-run"},
    start="(call $remember (i32.const 0x800) (i32.const 8))",
)


@pytest.fixture
def wasm(tmp_path):
    path = tmp_path / "stateful.wasm"
    path.write_bytes(STATEFUL)
    return str(path)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


# -- embedded -------------------------------------------------------------------------


def test_deploy_call_and_read_state_across_processes(wasm, tmp_path):
    first = ok(essa("deploy", wasm, "--name", "memo"))
    assert first.startswith("deployed memo@1: module ") and "functions: echo, exits, no_result, remember, trap" in first
    assert ok(essa("deploy", wasm, "--name", "memo")) == "unchanged: memo@1\n"  # the same bytes: no new version
    assert ok(essa("functions", "memo")).split() == ["echo", "exits", "no_result", "remember", "trap"]
    listed = json.loads(ok(essa("ls", "--json")))
    assert [(d["name"], d["version"], d["namespace"]) for d in listed] == [("memo", 1, "memo")]

    assert ok(essa("call", "memo", "remember", "apple")) == "apple"
    (tmp_path / "arg.txt").write_text("pear")
    assert ok(essa("call", "memo@1", "remember", "@" + str(tmp_path / "arg.txt"))) == "pear"
    piped = subprocess.run([sys.executable, "-m", "essa", "call", "memo", "remember", "-"], input=b"plum",
                           capture_output=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout == b"plum", piped.stderr
    # A run in the deployment's namespace shares its state.
    assert ok(essa("run", "--namespace", "memo", wasm)) == ""

    assert ok(essa("state", "ls", "--deployment", "memo")).split() == ["seen"]
    assert ok(essa("state", "get", "-d", "memo", "seen")) == 'Set {"apple", "from-run", "pear", "plum"} (4 elements)\n'
    view = json.loads(ok(essa("state", "get", "-n", "memo", "seen", "--json")))
    assert view == {"type": "Set", "values": ["apple", "from-run", "pear", "plum"]}
    assert ok(essa("state", "put", "-d", "memo", "seen", "--type", "set", "fig")).startswith('Set {"apple", "fig"')
    assert ok(essa("state", "put", "-d", "memo", "greeting", "hello")).startswith('Lww "hello"')
    assert ok(essa("state", "rm", "-d", "memo", "greeting")) == "deleted greeting from namespace memo\n"

    # rm keeps the state; a redeploy finds it, and its versions go on.
    assert "its state stays in namespace memo" in ok(essa("rm", "memo"))
    assert ok(essa("ls")).startswith("no deployments")
    assert_one_line_error(essa("call", "memo", "echo"), "no deployment named 'memo'")
    assert ok(essa("deploy", wasm, "--name", "memo")).startswith("deployed memo@2")
    assert "fig" in ok(essa("state", "get", "-d", "memo", "seen"))
    assert "and 1 keys of its state" in ok(essa("rm", "memo", "--purge"))
    assert ok(essa("state", "ls", "-n", "memo")) == ""


def test_typed_arguments_and_results_and_json(wasm):
    ok(essa("deploy", wasm, "--name", "memo"))
    # echo returns its argument bytes: a String argument comes back as a String result.
    assert ok(essa("call", "memo", "echo", "--args", "string", "héllo", "--result", "string")) == "héllo\n"
    assert ok(essa("call", "memo", "echo", "--args", "strings", "a,b,c", "--result", "strings")) == "a\nb\nc\n"
    assert ok(essa("call", "memo", "echo", "--args", "u64", "42", "--result", "u64")) == "42\n"
    # without a signature or --result, the result is bytes: JSON holds them as base64
    assert json.loads(ok(essa("call", "memo", "echo", "hi", "--json"))) == {
        "deployment": "memo@1", "function": "echo", "result": {"base64": "aGk="}}


def test_errors_are_one_line(wasm, tmp_path):
    ok(essa("deploy", wasm, "--name", "memo"))
    assert_one_line_error(essa("call", "memo", "rememberr", "x"), "no function 'rememberr'", "did you mean 'remember'")
    assert_one_line_error(essa("call", "memo@7", "echo"), "has no version 7")
    assert_one_line_error(essa("call", "nope", "echo"), "no deployment named 'nope'")
    result = essa("call", "memo", "trap")
    assert_one_line_error(result, "trap trapped: ")
    assert "__essa_wrapper__" not in result.stderr
    assert_one_line_error(essa("call", "memo", "echo", "--args", "u8", "300"),
                          "argument 1: expected u8 (0 to 255), got 300")
    assert_one_line_error(essa("call", "memo", "echo", "--args", "u32", "abc"),
                          'expected u32 (a whole number), got "abc"')
    assert_one_line_error(essa("call", "memo", "echo", "a", "b"), "takes one ARG of raw bytes, not 2 (or pass --args")
    assert_one_line_error(essa("call", "memo", "echo", "--args", "string", "x", "--result", "u64"), "not a u64")
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0\xff")
    assert_one_line_error(essa("deploy", str(bad), "--name", "bad"), "not a valid Wasm module")
    assert_one_line_error(essa("deploy", wasm, "--name", "no/slash"), "is not a valid deployment name")
    assert_one_line_error(essa("state", "get", "-d", "memo", "missing"), "no key 'missing' in namespace memo")
    assert_one_line_error(essa("state", "ls"), "--deployment NAME or --namespace NS")
    assert_one_line_error(essa("rm", "nope"), "no deployment named 'nope'")


# -- a cluster ------------------------------------------------------------------------


class Up:
    """`essa up` as a child process (its own session, so its children stop with it)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "essa", "up", "--executors", "2", "--listen", self.endpoint],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + DEADLINE
        while True:
            status = essa("status", "--connect", self.endpoint, "--json", timeout=DEADLINE)
            if status.returncode == 0 and len([a for a in json.loads(status.stdout) if a["role"] == "executor"]) == 2:
                return
            assert time.monotonic() < deadline and self.proc.poll() is None, self.stop()
            time.sleep(0.3)

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=DEADLINE)
        self.proc = None
        return out + err


@pytest.fixture
def up():
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from essa.testing.ports import free_port

    cluster = Up(f"tcp/127.0.0.1:{free_port()}")
    yield cluster
    cluster.stop()


def test_a_cluster_keeps_deployments_and_state_across_a_restart(up, wasm):
    up.start()
    c = ("--connect", up.endpoint, "--timeout", "60")
    assert ok(essa("deploy", wasm, "--name", "memo", *c)).startswith("deployed memo@1")
    for fruit in ("apple", "pear", "plum", "fig"):  # calls land on both executors
        assert ok(essa("call", "memo", "remember", fruit, *c)) == fruit
    assert ok(essa("run", *c, "--namespace", "memo", wasm)) == ""
    served = [a["calls"] for a in json.loads(ok(essa("status", "--connect", up.endpoint, "--json")))
              if a["role"] == "executor"]
    assert sum(served) == 4
    logs = up.stop()
    assert "Traceback" not in logs

    up.start()
    assert [d["name"] for d in json.loads(ok(essa("ls", "--json", *c)))] == ["memo"]
    assert ok(essa("state", "get", "-d", "memo", "seen", *c)) == (
        'Set {"apple", "fig", "from-run", "pear", "plum"} (5 elements)\n')
    assert ok(essa("call", "memo", "echo", "after a restart", *c)) == "after a restart"
    assert_one_line_error(essa("call", "memo", "remembr", "x", *c), "did you mean 'remember'")
