"""Durable LMDB puts: ``sync=on`` against ``sync=off`` in one run, and flushes per commit; prints JSON.

For ``--rounds`` rounds, alternating, a fresh LMDB store with ``sync=on`` and
one with ``sync=off`` take ``--threads`` threads x ``--puts`` Lww puts to
distinct keys (the issue's target: ``sync=on`` at >= 60 % of ``sync=off``).
Reports each round's puts/s, their medians and ``ratio`` (median on / median
off), and what the store counted itself in its ``sync=on`` rounds (``counted``:
commits and explicit flushes; with ``metasync`` off each commit flushes once,
so ``flushes_per_commit`` is (commits + explicit flushes) / commits), and the
p50 of a lone put (one thread, ``sync=on``).

With ``--baseline DIR`` (a directory holding an older ``essa_lmdb`` package,
e.g. ``git archive OLD plugins/store_lmdb/essa_lmdb | tar -x -C /tmp/old`` and
``DIR=/tmp/old/plugins/store_lmdb``), that code's ``sync=on`` rounds are
interleaved with the others in the same process (``baseline_sync_on``,
``on_over_baseline``), its lone puts alternate put by put with the current
code's, and ``--strace`` counts its flushes too.

With ``--strace`` (needs ``strace``), the ``sync=on`` workload runs once more
in a child process under ``strace`` and the report counts what reached the
disk: ``commits`` (meta page writes to ``data.mdb``, one per commit),
``flushes`` (``fdatasync``/``fsync`` calls plus writes to a descriptor opened
with ``O_DSYNC``, each a flush of its own) and ``flushes_per_commit``.

Usage: python bench/lmdb_sync.py [--puts 500] [--threads 8] [--rounds 5] [--strace] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def lww(i: int) -> bytes:
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import LwwLattice

    return encode_lattice(LwwLattice(1_700_000_000_000_000_000 + i, b"v" * 64))


def baseline_store(directory: str):
    """The ``LmdbStore`` class of the ``essa_lmdb`` package in ``directory``, imported beside the current one."""
    package = Path(directory) / "essa_lmdb"
    spec = importlib.util.spec_from_file_location("baseline_essa_lmdb", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    if spec is None or not (package / "__init__.py").is_file():
        raise SystemExit(f"lmdb_sync: no essa_lmdb package in {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.LmdbStore


def distinct_puts(path: str, sync: str, threads: int, puts: int, store_class=None, counts: dict | None = None) -> float:
    """Puts per second of ``threads`` threads x ``puts`` puts to distinct keys on a fresh store.

    ``counts`` (if given) adds up the store's own commits and explicit flushes
    (stores that count them: the current code).
    """
    if store_class is None:
        from essa_lmdb import LmdbStore as store_class

    store = store_class({"path": path, "sync": sync})
    try:
        values = [[lww(t * puts + i) for i in range(puts)] for t in range(threads)]
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            barrier.wait()
            try:
                for i, value in enumerate(values[t]):
                    store.merge_bytes(f"distinct/{t}/{i}", value)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        assert len(store.keys("distinct/")) == threads * puts, "puts were lost"
        if counts is not None and hasattr(store._live(), "flushes"):
            counts["commits"] = counts.get("commits", 0) + store._live().commits
            counts["explicit_flushes"] = counts.get("explicit_flushes", 0) + store._live().flushes
        return threads * puts / elapsed
    finally:
        store.close()


def lone_puts(stores: dict, n: int = 300) -> dict[str, float]:
    """p50 in microseconds of one thread's puts on each of ``stores``, alternating put by put."""
    took: dict[str, list[float]] = {name: [] for name in stores}
    for i in range(n):
        value = lww(i)
        for name in (list(stores) if i % 2 else list(stores)[::-1]):
            started = time.perf_counter()
            stores[name].merge_bytes(f"lone/{i}", value)
            took[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(t) * 1e6) for name, t in took.items()}


_OPEN = re.compile(r'^(\d+\s+)?openat\(.*"([^"]*data\.mdb)", ([A-Z_|]+).*\)\s*=\s*(\d+)')
_WRITE = re.compile(r"^(\d+\s+)?pwrite64\((\d+), .*, (\d+), (\d+)\)\s*=")
_FLUSH = re.compile(r"^(\d+\s+)?f(data)?sync\(")


def count_flushes(threads: int, puts: int, baseline: str | None = None) -> dict:
    """Run the ``sync=on`` workload under strace (the ``baseline`` package's, if given); count commits and flushes."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        first = f"sys.path.insert(0, {str(Path(baseline).resolve())!r}); " if baseline else ""
        code = (f"import sys; {first}sys.path.insert(0, {str(_HERE)!r}); import lmdb_sync; "
                f"lmdb_sync.distinct_puts({str(Path(tmp) / 'db')!r}, 'on', {threads}, {puts})")
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,pwrite64,fdatasync,fsync", "-o", str(trace),
                        sys.executable, "-c", code], check=True)
        dsync_fds, data_fds = set(), set()
        commits = flushes = 0
        page = os.sysconf("SC_PAGE_SIZE")
        for line in trace.read_text().splitlines():
            if (m := _OPEN.match(line)) is not None:
                fd = int(m.group(4))
                data_fds.add(fd)
                if "O_DSYNC" in m.group(3) or "O_SYNC" in m.group(3):
                    dsync_fds.add(fd)
            elif (m := _WRITE.match(line)) is not None:
                fd, offset = int(m.group(2)), int(m.group(4))
                if fd in data_fds and offset < 2 * page:
                    commits += 1  # the meta pages are the file's first two pages
                if fd in dsync_fds:
                    flushes += 1
            elif _FLUSH.match(line):
                flushes += 1
        return {"commits": commits, "flushes": flushes,
                "flushes_per_commit": round(flushes / commits, 3) if commits else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=500, help="puts per thread")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strace", action="store_true", help="also count flushes per commit (needs strace)")
    parser.add_argument("--baseline", metavar="DIR", help="a directory holding an older essa_lmdb package to compare")
    args = parser.parse_args()
    baseline = baseline_store(args.baseline) if args.baseline else None
    result: dict = {
        "benchmark": "lmdb_sync",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "config": {"puts": args.puts, "threads": args.threads, "rounds": args.rounds, "baseline": args.baseline},
    }
    kinds = [("on", "on", None), ("off", "off", None)] + ([("baseline_on", "on", baseline)] if baseline else [])
    rounds: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    counts: dict = {}
    for n in range(args.rounds):
        for name, sync, store_class in (kinds if n % 2 == 0 else kinds[::-1]):
            tmp = tempfile.mkdtemp(prefix="essa-bench-lmdb-")
            try:
                rate = distinct_puts(tmp, sync, args.threads, args.puts, store_class, counts if name == "on" else None)
                rounds[name].append(rate)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    on, off = statistics.median(rounds["on"]), statistics.median(rounds["off"])
    result["distinct_puts_per_s"] = {
        "sync_on": round(on), "sync_off": round(off),
        "rounds_on": [round(x) for x in rounds["on"]], "rounds_off": [round(x) for x in rounds["off"]],
    }
    result["ratio"] = round(on / off, 3)
    if counts:
        counts["flushes_per_commit"] = round((counts["commits"] + counts["explicit_flushes"]) / counts["commits"], 3)
        result["counted"] = counts
    if baseline:
        base = statistics.median(rounds["baseline_on"])
        result["distinct_puts_per_s"]["baseline_sync_on"] = round(base)
        result["distinct_puts_per_s"]["rounds_baseline_on"] = [round(x) for x in rounds["baseline_on"]]
        result["ratio_baseline"] = round(base / off, 3)
        result["on_over_baseline"] = round(on / base, 3)
    from essa_lmdb import LmdbStore

    with tempfile.TemporaryDirectory(prefix="essa-bench-lmdb-") as tmp:
        stores = {"current": LmdbStore({"path": f"{tmp}/current"})}
        if baseline:
            stores["baseline"] = baseline({"path": f"{tmp}/baseline"})
        try:
            result["lone_put_p50_us"] = lone_puts(stores)
        finally:
            for store in stores.values():
                store.close()
    if args.strace:
        if shutil.which("strace") is None:
            result["flushes"] = "strace is not installed"
        else:
            result["flushes"] = count_flushes(args.threads, args.puts)
            if args.baseline:
                result["flushes_baseline"] = count_flushes(args.threads, args.puts, args.baseline)
    result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
