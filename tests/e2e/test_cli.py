"""The essa command line as a user meets it: real processes, real output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from essa.testing import TEST_FUNCTION_OUTPUT

ROOT = Path(__file__).resolve().parents[2]
TEST_FUNCTION = ROOT / "examples" / "test-function.wasm"

EXPECTED_TEST_FUNCTION_OUTPUT = TEST_FUNCTION_OUTPUT


def essa(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``essa ARGS`` in a child process (with this test's ESSA_HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "essa", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("essa: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands():
    result = essa("--help")
    assert result.returncode == 0
    for command in ("run", "plugins"):
        assert command in result.stdout


def test_plugins_lists_builtin_parts():
    result = essa("plugins")
    assert result.returncode == 0
    assert "builtin" in result.stdout and "transport local" in result.stdout and "store memory" in result.stdout


def test_missing_file(tmp_path):
    assert_one_line_error(essa("run", str(tmp_path / "nope.wasm")), "nope.wasm", "no such file")


def test_non_wasm_file(tmp_path):
    path = tmp_path / "script.wasm"
    path.write_text("#!/bin/sh\necho hello\n")
    assert_one_line_error(essa("run", str(path)), "script.wasm", "not a WebAssembly module")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run"], ["missing argument 'FILE.wasm'", "`essa run --help`"]),
        (["run", "--no-such-flag", "f.wasm"], ["no such option '--no-such-flag'", "`essa run --help`"]),
        (["no-such-command"], ["no such command 'no-such-command'", "`essa --help`"]),
        (["run", "--time-limit", "soon", "f.wasm"], ["--time-limit", "'soon' is not a duration", "`essa run --help`"]),
        (["--store-option", "x", "plugins"], ["--store-option", "'x' is not KEY=VALUE", "`essa --help`"]),
    ],
    ids=["missing-argument", "unknown-option", "unknown-command", "bad-value", "bad-global-value"],
)
def test_usage_errors_are_one_line_with_status_2(args, fragments):
    result = essa(*args)
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2
    assert "Usage:" not in result.stderr and "Try '" not in result.stderr


@pytest.mark.parametrize(
    "args, corrected",
    [
        (["up", "--store-option", "x"], "`essa --store-option x up`"),
        (["up", "--executors", "3", "--store-option=path=/tmp/d"], "`essa --store-option=path=/tmp/d up --executors 3`"),
        (["run", "--engine", "wasmer", "f.wasm"], "`essa --engine wasmer run f.wasm`"),
        (["run", "-v", "f.wasm"], "`essa -v run f.wasm`"),
    ],
)
def test_a_global_option_after_the_command_says_it_goes_before(args, corrected):
    result = essa(*args)
    option = next(a for a in args if a.startswith("-") and a != "--executors").split("=")[0]
    assert_one_line_error(result, f"{option} is a global option", "before the command", corrected)
    assert result.returncode == 2


def test_new_writes_a_project_and_never_overwrites_one(tmp_path):
    created = essa("new", "c", "hello", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    assert "essa.h" in created.stdout and "hello.c" in created.stdout and "essa.toml" in created.stdout
    assert "essa build && essa run hello.wasm" in created.stdout
    assert "compiles wasi-libc" in created.stdout
    before = {p.name: p.read_bytes() for p in (tmp_path / "hello").iterdir()}
    assert_one_line_error(essa("new", "c", "hello", "--dir", str(tmp_path)), "already exists")
    assert {p.name: p.read_bytes() for p in (tmp_path / "hello").iterdir()} == before
    assert_one_line_error(essa("new", "rust", "fn", "--dir", str(tmp_path)), "'fn' cannot name a Rust project")
    ts = essa("new", "ts", "greeter", "--dir", str(tmp_path))
    assert ts.returncode == 0, ts.stderr
    assert "assembly/index.ts" in ts.stdout and "package.json" in ts.stdout and "Node.js 20" in ts.stdout
    assert_one_line_error(essa("new", "go", "x", "--dir", str(tmp_path)), "'go' is not one of 'c', 'rust', 'ts'")


def test_unknown_engine_names_the_package_for_known_engines():
    assert_one_line_error(essa("--store", "memory", "--engine", "nosuch", "run", str(TEST_FUNCTION)), "unknown engine 'nosuch'")
    from essa.plugins import get_plugin_manager

    if "wasmer" in get_plugin_manager().engines:
        return  # installed and usable here (Python 3.10): nothing to name
    result = essa("--store", "memory", "--engine", "wasmer", "run", str(TEST_FUNCTION))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "essa-plugin-wasmer" in result.stderr or "Python 3.10" in result.stderr


def test_unknown_store_names_the_package_for_known_stores():
    import importlib.util

    if importlib.util.find_spec("essa_anna") is None:
        assert_one_line_error(essa("--store", "anna", "run", str(TEST_FUNCTION)), "store 'anna'", "essa-plugin-anna")
    assert_one_line_error(essa("--store", "nosuch", "run", str(TEST_FUNCTION)), "unknown store 'nosuch'")


@pytest.fixture
def wasm_file(tmp_path):
    wasmtime = pytest.importorskip("wasmtime")

    def make(wat: str) -> str:
        path = tmp_path / "m.wasm"
        path.write_bytes(wasmtime.wat2wasm(wat))
        return str(path)

    return make


def test_module_without_start(engine_name, wasm_file):
    path = wasm_file('(module (func (export "__essa_wrapper__f") (param i32)))')
    assert_one_line_error(essa("--store", "memory", "--engine", engine_name, "run", path), "no _start function")


def test_trap_gives_message_and_nonzero_status(engine_name, wasm_file):
    path = wasm_file('(module (memory (export "memory") 1) (func (export "_start") unreachable))')
    assert_one_line_error(
        essa("--store", "memory", "--engine", engine_name, "run", path), "trapped", "unreachable"
    )


def test_guest_exit_status_is_essa_exit_status(engine_name, wasm_file):
    path = wasm_file(
        '(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
        ' (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 7))))'
    )
    result = essa("--store", "memory", "--engine", engine_name, "run", path)
    assert result.returncode == 7
    assert "Traceback" not in result.stderr


def test_test_function_runs_to_done_and_reuses_its_artifact(engine_name):
    pytest.importorskip("essa_lmdb")
    first = essa("-v", "--engine", engine_name, "run", str(TEST_FUNCTION))
    assert first.returncode == 0, first.stderr
    assert first.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
    assert "compiled with" in first.stderr and "artifact stored" in first.stderr

    second = essa("-v", "--engine", engine_name, "run", str(TEST_FUNCTION))
    assert second.returncode == 0, second.stderr
    assert second.stdout == EXPECTED_TEST_FUNCTION_OUTPUT  # state is fresh per run
    assert "loaded" in second.stderr and "artifact from the store" in second.stderr
    assert "compiled with" not in second.stderr
