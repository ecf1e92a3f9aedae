"""Embedded essa benchmarks; prints one JSON document.

- ``call``: warm remote-call round trip of an 8-byte echo function, measured
  from the client: scheduler -> executor -> fresh instance -> result.
- ``guest_call``: the same echo called from inside a guest (essa_call +
  essa_get_result_len + essa_get_result), per call over a loop of ``--calls``
  calls in Wasm, repeated ``--guest-loops`` times: the median (and min) of the
  loops' means, and the process CPU time per call (``cpu_ms``: what the call
  costs, whatever else keeps the machine's cores busy).
- ``essa_run``: wall time of a whole ``essa run examples/test-function.wasm``
  process (artifact already stored), including Python start-up.

``load_avg`` is the machine's 1-minute load average before and after: on a
machine busy with other work, wall times grow and ``cpu_ms`` barely moves.

Usage: python bench/embedded.py [--engine wasmtime] [--calls 2000] [--guest-loops 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ECHO_WAT = """
(module
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_result_len" (func $get_result_len (param i32 i32) (result i32)))
  (import "host" "essa_get_result" (func $get_result (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "__essa_wrapper__echo")
  (data (i32.const 64) "12345678")
  (func (export "__essa_wrapper__echo") (param $len i32)
    (drop (call $get_args (i32.const 1024) (local.get $len)))
    (drop (call $set_result (i32.const 1024) (local.get $len))))
  ;; loop(n): call echo n times from inside the guest
  (func (export "__essa_wrapper__loop") (param $len i32) (local $n i32)
    (drop (call $get_args (i32.const 512) (i32.const 4)))
    (local.set $n (i32.load (i32.const 512)))
    (block $done (loop $again
      (br_if $done (i32.eqz (local.get $n)))
      (if (call $call (i32.const 16) (i32.const 20) (i32.const 64) (i32.const 8) (i32.const 200)) (then unreachable))
      (if (call $get_result_len (i32.load (i32.const 200)) (i32.const 204)) (then unreachable))
      (if (call $get_result (i32.load (i32.const 200)) (i32.const 2048) (i32.const 8) (i32.const 204)) (then unreachable))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $again)))
    (drop (call $set_result (i32.const 2048) (i32.const 8))))
  (func (export "_start")))
"""


#: :data:`ECHO_WAT` with a signature, ``echo(x: u64) -> u64`` (the 8 bytes it echoes are one u64), in its
#: ``essa.signatures`` custom section (docs/signatures.md).
TYPED_ECHO_WAT = ECHO_WAT.replace("(module", """(module
  (@custom "essa.signatures" "{\\"name\\":\\"echo\\",\\"params\\":[{\\"name\\":\\"x\\",\\"type\\":\\"u64\\"}],\\"result\\":\\"u64\\"}\\n")""", 1)
#: The u64 whose bytes are the raw echo's 8 argument bytes.
ECHO_U64 = int.from_bytes(b"12345678", "little")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 4)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "mean_ms": round(statistics.mean(ordered) * 1e3, 4)}


def bench_calls(engine: str, store: str, calls: int, guest_loops: int = 5) -> dict:
    import struct

    import wasmtime

    from essa.cluster.embedded import EmbeddedRuntime

    with EmbeddedRuntime(engine=engine, store=store) as runtime:
        module = runtime.client.publish(wasmtime.wat2wasm(ECHO_WAT))
        for _ in range(200):  # warm: compiled, threads started
            runtime.client.call(module, "__essa_wrapper__echo", b"12345678")
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            outcome = runtime.client.call(module, "__essa_wrapper__echo", b"12345678")
            samples.append(time.perf_counter() - started)
            assert outcome.value == b"12345678", outcome
        runtime.client.call(module, "__essa_wrapper__loop", struct.pack("<I", 200))  # warm
        wall, cpu = [], []
        for _ in range(guest_loops):
            started, started_cpu = time.perf_counter(), time.process_time()
            outcome = runtime.client.call(module, "__essa_wrapper__loop", struct.pack("<I", calls))
            wall.append((time.perf_counter() - started) / calls)
            cpu.append((time.process_time() - started_cpu) / calls)
            assert outcome.value == b"12345678", outcome
    return {
        "call": {"calls": calls, **percentiles(samples)},
        "guest_call": {
            "calls": calls,
            "loops": guest_loops,
            "mean_ms": round(statistics.median(wall) * 1e3, 4),
            "min_ms": round(min(wall) * 1e3, 4),
            "cpu_ms": round(statistics.median(cpu) * 1e3, 4),
        },
    }


def load_avg() -> float:
    """The machine's 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def bench_run(engine: str, runs: int) -> dict:
    cmd = [sys.executable, "-m", "essa", "--engine", engine, "run", str(ROOT / "examples" / "test-function.wasm")]
    subprocess.run(cmd, check=True, capture_output=True)  # stores the artifact
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        samples.append(time.perf_counter() - started)
        assert result.returncode == 0 and result.stdout.endswith("DONE\n"), result.stderr
    startup = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "essa", "--version"], check=True, capture_output=True)
        startup.append(time.perf_counter() - started)
    return {
        "runs": runs,
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "python_and_cli_startup_median_s": round(statistics.median(startup), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--store", default="lmdb")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--guest-loops", type=int, default=5, help="loops of --calls guest-side calls")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = load_avg()
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        result = {
            "engine": args.engine,
            "store": args.store,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            **bench_calls(args.engine, args.store, args.calls, args.guest_loops),
            "essa_run_test_function": bench_run(args.engine, args.runs),
        }
    result["load_avg"] = {"before": load_before, "after": load_avg()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
