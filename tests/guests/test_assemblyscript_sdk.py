"""The AssemblyScript SDK's tests (``tox -e ts-guests``): tests/guests/assemblyscript-sdk built and called.

The module is built with the real compiler (``npm ci`` from its
package-lock.json, then ``npm run build``, which runs the SDK's transform)
and called on a real embedded runtime. Its bytes are checked against essa's
own encoders: the lattice values of docs/lattice-encoding.md's worked
examples, timestamps as chrono writes them, and every signature type there
and back. Building installs AssemblyScript from the npm registry, so this
runs only when ESSA_TEST_GUEST_BUILDS names ``ts``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = "guest/assemblyscript"
TESTS = "tests/guests/assemblyscript-sdk"


def npm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NPM_CONFIG_UPDATE_NOTIFIER="false")
    return subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    if "ts" not in os.environ.get("ESSA_TEST_GUEST_BUILDS", "").split(","):
        pytest.skip("building the AssemblyScript SDK's tests installs AssemblyScript from npm: set "
                    "ESSA_TEST_GUEST_BUILDS=ts (tox -e ts-guests)")
    # Laid out as in the repository, so that the project's file:../../../guest/assemblyscript resolves.
    work = tmp_path_factory.mktemp("as")
    for part in (SDK, TESTS):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("node_modules", "build"))
    tests = work / TESTS
    installed = npm("ci", "--ignore-scripts", "--no-audit", "--no-fund", cwd=tests)
    assert installed.returncode == 0, installed.stderr
    built = npm("run", "--silent", "build", cwd=tests)
    assert built.returncode == 0, built.stdout + built.stderr
    return tests


@pytest.fixture(scope="module")
def es(project, engine_name):
    import essa

    with essa.connect(engine=engine_name, store="memory") as connection:
        connection.deploy(str(project / "build" / "sdk-tests.wasm"), name="sdk")
        yield connection


def examples():
    """docs/lattice-encoding.md's worked examples of guest lattices, in its order."""
    from essa.state.lattice import (
        LwwLattice,
        MultiCausalLattice,
        OrderedSetLattice,
        SetLattice,
        SingleCausalLattice,
    )
    from essa.state.timestamps import parse_timestamp

    return [
        SetLattice({b"a"}),
        LwwLattice(parse_timestamp("2026-11-24T04:28:17.057686123Z"), b"hi"),
        LwwLattice(parse_timestamp("2026-11-24T04:28:17.057Z"), b""),
        OrderedSetLattice({b"b", b"ab", b"a"}),
        SingleCausalLattice({"n": 7}, {b"x"}),
        MultiCausalLattice({"n": 7}, {"k": {"n": 7}}, set()),
        SetLattice({b"two", b"one"}),
    ]


def test_lattice_values_have_the_contracts_bytes(es):
    from essa.state.bincode import encode_lattice

    assert es.call("sdk", "lattice_examples") == [encode_lattice(value) for value in examples()]


def test_the_host_stores_what_the_guest_puts_and_the_guest_reads_it_back(es):
    from essa.state.bincode import encode_lattice

    assert es.call("sdk", "put_examples") == 7
    state = es.state("sdk")
    for i, value in enumerate(examples()):
        assert state.get(f"ex{i}") == value
        assert es.call("sdk", "read", f"ex{i}") == encode_lattice(value)
        assert es.call("sdk", "roundtrip", value=encode_lattice(value)) == encode_lattice(value)
    assert es.call("sdk", "read", "no such key") is None
    # A put of an Lww over the Set under ex0 is refused with UnknownError, and changes nothing.
    assert es.call("sdk", "put_conflict", "ex0") == -1
    assert state.get("ex0") == examples()[0]


@pytest.mark.parametrize("nanos", [0, 1_764_000_000_000_000_000, 1_764_000_000_057_000_000,
                                   1_764_000_000_057_686_000, 1_764_000_000_057_686_123, 2**64 - 1])
def test_timestamps_are_written_as_chrono_writes_them(es, nanos):
    from essa.state.timestamps import format_timestamp, parse_timestamp

    assert es.call("sdk", "timestamp", nanos) == format_timestamp(nanos)
    now = es.call("sdk", "lww_now")
    assert format_timestamp(parse_timestamp(now)) == now


@pytest.mark.parametrize("function, value", [
    ("echo_bool", True), ("echo_i8", -128), ("echo_u16", 65535), ("echo_i32", -2**31), ("echo_u64", 2**64 - 1),
    ("echo_i64", -2**63), ("echo_f32", 1.5), ("echo_f64", -0.1), ("echo_string", "héllo ✓ 𝄞"),
    ("echo_bytes", b"\x00\xff\x80"), ("echo_option", None), ("echo_option", "some"), ("echo_list", [0, 1, 2**32 - 1]),
    ("echo_map", {"a": -1, "b": 2**62}), ("echo_nested", [["x", "y"], None, []]),
])
def test_every_signature_type_goes_there_and_back(es, function, value):
    assert es.call("sdk", function, x=value) == value  # by name: one bytes value alone would be raw bytes


def test_signatures_are_recorded_and_a_function_has_its_own_name(es):
    shown = {str(es.function("sdk", name).signature) for name in ("describe", "echo_nested", "nothing", "echo_map")}
    assert shown == {"describe(count: u8, label: string, ratio: f64) -> string",
                     "echo_nested(x: list<option<list<string>>>) -> list<option<list<string>>>",
                     "nothing() -> unit", "echo_map(x: map<string,i64>) -> map<string,i64>"}
    assert es.call("sdk", "describe", 3, "ab", 0.5) == "ab x3 @0.5 ab"  # it calls echo_string remotely
    assert es.call("sdk", "nothing") is None
    assert math.isnan(es.call("sdk", "echo_f64", float("nan")))


def test_a_failing_function_says_why_and_its_caller_gets_an_error(es):
    import essa

    with pytest.raises(essa.CallError) as failure:
        es.call("sdk", "fails")
    assert "fails" in str(failure.value)


def essa_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_main_runs_and_console_output_reaches_the_run(project):
    ran = essa_cli("--store", "memory", "run", "build/sdk-tests.wasm", cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "main starts\nfrom noisy\nfails: UnknownError\n"
    lines = ran.stderr.splitlines()
    assert lines[0] == "noisy on stderr" and lines[-1] == "main ends"
    # The abort's own line, then essa's line about the trap.
    assert "\nfails: on purpose\n" in ran.stderr and "remote call of fails trapped" in ran.stderr


def test_functions_the_transform_cannot_export_are_refused_one_line_each(project):
    refused = npm("exec", "--", "asc", "--config", "bad.asconfig.json", "--target", "release", cwd=project)
    assert refused.returncode != 0
    messages = [line for line in refused.stdout.splitlines() + refused.stderr.splitlines() if "essa:" in line]
    assert [m.split("essa: ", 1)[1] for m in messages] == [
        "narrow: parameter n: usize is 4 bytes here but 8 in essa's encoding: use u64",
        "point: parameter p: Point has no essa type (use string, Uint8Array, bool, u8..u64, i8..i64, f32, f64, "
        "Array<T>, Map<K, V>, T | null)",
        'spaced: "not a name" is not a function name for essa ([A-Za-z_][A-Za-z0-9_]*, at most 255 characters); '
        'name it with @essa("name")',
    ]
    assert "Traceback" not in refused.stderr and "    at " not in refused.stderr  # no stack trace
