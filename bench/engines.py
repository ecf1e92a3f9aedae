"""Both engines side by side, in one run; prints one JSON document.

Per engine (``wasmtime:public`` is wasmtime through wasmtime-py's public
API, essa-plugin-wasmtime's fallback binding, ``ESSA_WASMTIME_BINDING=public``):

- ``call``: warm embedded remote-call round trip of an 8-byte echo, measured
  from the client (client -> scheduler -> executor -> fresh instance ->
  result), p50/p90/p99 over ``--calls`` calls;
- ``guest_call``: the guest-to-guest call: the same echo called from inside
  a guest (essa_call + essa_get_result_len + essa_get_result), per call over
  loops of ``--calls`` calls, with the process CPU time per call
  (bench/embedded.py's measurements, reused);
- ``module``: for examples/test-function.wasm, compile vs artifact load
  (``deserialize``) time, ``serialize`` and ``prepare`` time, artifact size,
  and a direct call of ``to_uppercase`` (no runtime around it) warm and as the
  first call on a thread that has not run the program yet (wasmer links a
  module per thread; see plugins/engine_wasmer/README.md);
  wasmer's adapter serializes while compiling (other threads load the
  artifact), so its ``serialize`` is a copy and its compile includes it;
- ``essa_run``: wall time of a whole ``essa run examples/test-function.wasm``
  process with its artifact stored (``--runs 0`` skips it).

``ratios`` divides each engine's figures by the last engine's; ``load_avg``
is the machine's 1-minute load average before and after.

Run it under Python 3.10, where both engines install:

    python bench/engines.py [--engines wasmtime,wasmtime:public,wasmer] [--calls 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import struct
import sys
import tempfile
import threading
import time

from embedded import ROOT, bench_calls, bench_run, load_avg

TEST_FUNCTION = ROOT / "examples" / "test-function.wasm"


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _timed(fn, repeat: int) -> tuple[list[float], object]:
    samples, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        samples.append(time.perf_counter() - started)
    return samples, value


def bench_module(engine_name: str, repeat: int) -> dict:
    """Compile vs artifact load of the test function, and related one-off costs."""
    from essa.cluster.embedded import open_engine
    from essa.testing.conformance.support import invocation

    wasm = TEST_FUNCTION.read_bytes()
    engine = open_engine(engine_name)
    compile_s, compiled = _timed(lambda: engine.compile(wasm), repeat)
    serialize_s, artifact = _timed(lambda: engine.serialize(compiled), repeat)
    deserialize_s, loaded = _timed(lambda: engine.deserialize(artifact), repeat * 4)
    prepare_s, program = _timed(lambda: engine.prepare(loaded), repeat)

    args = struct.pack("<Q", 3) + b"abc"  # bincode String "abc"

    def run_once() -> None:
        inv = invocation(args)
        program.run(inv, "__essa_wrapper__to_uppercase", len(args))
        assert inv.result == struct.pack("<Q", 3) + b"ABC", inv.result

    def first_call_on_a_new_thread() -> float:
        took = []

        def run() -> None:
            started = time.perf_counter()
            run_once()
            took.append(time.perf_counter() - started)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return took[0]

    run_once()
    warm_s, _ = _timed(run_once, repeat * 10)
    new_thread = [first_call_on_a_new_thread() for _ in range(repeat)]
    compile_ms = statistics.median(compile_s)
    deserialize_ms = statistics.median(deserialize_s)
    return {
        "module": TEST_FUNCTION.name,
        "wasm_bytes": len(wasm),
        "artifact_bytes": len(artifact),
        "compile_median_ms": _ms(compile_ms),
        "compile_min_ms": _ms(min(compile_s)),
        "deserialize_median_ms": _ms(deserialize_ms),
        "deserialize_min_ms": _ms(min(deserialize_s)),
        "compile_over_deserialize": round(compile_ms / deserialize_ms, 1),
        "serialize_median_ms": _ms(statistics.median(serialize_s)),
        "prepare_median_ms": _ms(statistics.median(prepare_s)),
        "warm_direct_call_median_ms": _ms(statistics.median(warm_s)),
        "first_call_on_a_new_thread_median_ms": _ms(statistics.median(new_thread)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="wasmtime,wasmtime:public,wasmer", help="NAME or NAME:BINDING, comma-separated")
    parser.add_argument("--store", default="lmdb")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--guest-loops", type=int, default=5, help="loops of --calls guest-side calls")
    parser.add_argument("--repeat", type=int, default=10, help="samples of compile/serialize/prepare (x4 for deserialize)")
    parser.add_argument("--runs", type=int, default=3, help="whole `essa run` processes per engine (0: skip)")
    args = parser.parse_args()

    from essa.plugins import get_plugin_manager

    plugins = get_plugin_manager()
    engines: dict[str, dict] = {}
    load_before = load_avg()
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        for entry in args.engines.split(","):
            name, _, binding = entry.partition(":")
            if name not in plugins.engines:
                reason = plugins.engines.unavailable.get(name, "not installed")
                engines[entry] = {"skipped": reason}
                continue
            with _binding(name, binding):
                engine = plugins.engine_class(name)(None)
                result: dict = {"version": engine.version}
                if hasattr(engine, "binding"):  # wasmtime: which binding, and whether instances come from a pool
                    result.update(binding=engine.binding.name, pooled=engine.pooled)
                result.update(bench_calls(name, args.store, args.calls, args.guest_loops))
                result["module"] = bench_module(name, args.repeat)
                if args.runs:
                    result["essa_run_test_function"] = bench_run(name, args.runs)
            engines[entry] = result
    ran = {entry: e for entry, e in engines.items() if "call" in e}
    report = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "store": args.store,
        "engines": engines,
        "load_avg": {"before": load_before, "after": load_avg()},
    }
    if len(ran) >= 2:
        *firsts, last = ran
        b = ran[last]
        report["ratios"] = {
            f"{entry}/{last}": {
                "call_p50": round(a["call"]["p50_ms"] / b["call"]["p50_ms"], 2),
                "guest_call": round(a["guest_call"]["mean_ms"] / b["guest_call"]["mean_ms"], 2),
                "guest_call_cpu": round(a["guest_call"]["cpu_ms"] / b["guest_call"]["cpu_ms"], 2),
                "compile": round(a["module"]["compile_median_ms"] / b["module"]["compile_median_ms"], 2),
                "deserialize": round(a["module"]["deserialize_median_ms"] / b["module"]["deserialize_median_ms"], 2),
            }
            for entry, a in ((entry, ran[entry]) for entry in firsts)
        }
    print(json.dumps(report, indent=2))


@contextlib.contextmanager
def _binding(engine: str, binding: str):
    """Run with essa-plugin-wasmtime's ``binding`` chosen (``ESSA_WASMTIME_BINDING``), if one is given."""
    if not binding:
        yield
        return
    if engine != "wasmtime":
        raise SystemExit(f"{engine}:{binding}: only wasmtime has bindings to choose from")
    previous = os.environ.get("ESSA_WASMTIME_BINDING")
    os.environ["ESSA_WASMTIME_BINDING"] = binding
    try:
        yield
    finally:
        if previous is None:
            del os.environ["ESSA_WASMTIME_BINDING"]
        else:
            os.environ["ESSA_WASMTIME_BINDING"] = previous


if __name__ == "__main__":
    main()
