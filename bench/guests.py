"""The word count in C, Rust and TypeScript side by side: module size and `count_lines` of the README; prints JSON.

For each committed word-count module (examples/word-count.wasm from C,
word-count-rust.wasm from Rust, word-count-ts.wasm from TypeScript with
AssemblyScript), deployed on one embedded runtime (memory store):

- ``module_bytes``: the size of the committed .wasm;
- ``count_lines``: ``Connection.call(name, "count_lines", README)``, the
  README of this repository (one remote call of ``count_words`` per
  non-empty line, about 900), p50/p90/mean in ms over ``--rounds`` rounds;
  the modules take turns in a shuffled order each round, so all see the same
  machine load;
- ``guest_cpu_ms_p50``: the CPU time of this process per ``count_lines``
  (the executors are threads here, so this is the work of the calls, less
  sensitive than wall time to other programs on the machine);
- ``count_words``: ``count_words`` of the whole README in one call, the
  guest's own work (tokenizing 66 KB, sorting the words, one put) rather than
  the host's per-call cost that dominates ``count_lines``: p50 wall and CPU;
- ``vs_c``: each module's p50 wall and CPU times as a ratio of C's.

The target (issue 25): the TypeScript module's ``count_lines`` within 2x of
C's. Every module must give the same result (checked each round).

Usage: python bench/guests.py [--engine wasmtime] [--rounds 15] [--executors 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent

ROOT = _HERE.parent
MODULES = {
    "c": ROOT / "examples" / "word-count.wasm",
    "rust": ROOT / "examples" / "word-count-rust.wasm",
    "ts": ROOT / "examples" / "word-count-ts.wasm",
}


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1e3, 2),
        "mean_ms": round(statistics.mean(ordered) * 1e3, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--executors", type=int, default=2)
    args = parser.parse_args(argv)

    import essa

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    present = {name: path for name, path in MODULES.items() if path.is_file()}
    wall: dict[str, list[float]] = {name: [] for name in present}
    cpu: dict[str, list[float]] = {name: [] for name in present}
    one_wall: dict[str, list[float]] = {name: [] for name in present}
    one_cpu: dict[str, list[float]] = {name: [] for name in present}
    with essa.connect(engine=args.engine, store="memory", executors=args.executors) as es:
        for name, path in present.items():
            es.deploy(str(path), name=f"wc-{name}")
        expected = {es.call(f"wc-{name}", "count_lines", text) for name in present}  # warm: compiled, cached
        if len(expected) != 1:
            print(f"error: the modules disagree on count_lines: {sorted(expected)}", file=sys.stderr)
            return 1
        words = expected.pop()
        if {es.call(f"wc-{name}", "count_words", text) for name in present} != {words}:
            print("error: count_words of the whole text disagrees with count_lines", file=sys.stderr)
            return 1
        order = list(present)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                started, started_cpu = time.perf_counter(), time.process_time()
                assert es.call(f"wc-{name}", "count_lines", text) == words
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - started_cpu)
                started, started_cpu = time.perf_counter(), time.process_time()
                assert es.call(f"wc-{name}", "count_words", text) == words
                one_wall[name].append(time.perf_counter() - started)
                one_cpu[name].append(time.process_time() - started_cpu)
    result: dict = {
        "engine": args.engine,
        "executors": args.executors,
        "rounds": args.rounds,
        "text": {"file": "README.md", "bytes": len(text.encode()), "lines": text.count("\n"), "words": words},
        "modules": {},
    }
    for name, path in present.items():
        result["modules"][name] = {
            "module_bytes": path.stat().st_size,
            "count_lines": summary(wall[name]),
            "guest_cpu_ms_p50": round(statistics.median(cpu[name]) * 1e3, 2),
            "count_words": {"p50_ms": summary(one_wall[name])["p50_ms"],
                            "cpu_p50_ms": round(statistics.median(one_cpu[name]) * 1e3, 2)},
        }
    if "c" in present:
        c = result["modules"]["c"]
        for name, entry in result["modules"].items():
            entry["vs_c"] = {
                "module_bytes": round(entry["module_bytes"] / c["module_bytes"], 2),
                "count_lines_p50": round(entry["count_lines"]["p50_ms"] / c["count_lines"]["p50_ms"], 2),
                "cpu_p50": round(entry["guest_cpu_ms_p50"] / c["guest_cpu_ms_p50"], 2),
                "count_words_cpu_p50": round(entry["count_words"]["cpu_p50_ms"] / c["count_words"]["cpu_p50_ms"], 2),
            }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
