"""Durable LMDB puts: ``sync=on`` against ``sync=off`` in one run, and flushes per commit; prints JSON.

For ``--rounds`` rounds, alternating, a fresh LMDB store with ``sync=on`` and
one with ``sync=off`` take ``--threads`` threads x ``--puts`` Lww puts to
distinct keys (the issue's target: ``sync=on`` at >= 60 % of ``sync=off``).
Reports each round's puts/s, their medians and ``ratio`` (median on / median
off).

With ``--strace`` (needs ``strace``), the ``sync=on`` workload runs once more
in a child process under ``strace`` and the report counts what reached the
disk: ``commits`` (meta page writes to ``data.mdb``, one per commit),
``flushes`` (``fdatasync``/``fsync`` calls plus writes to a descriptor opened
with ``O_DSYNC``, each a flush of its own) and ``flushes_per_commit``.

Usage: python bench/lmdb_sync.py [--puts 500] [--threads 8] [--rounds 5] [--strace]
"""

from __future__ import annotations

import argparse
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

# The standard library first: bench/http.py would shadow it (python puts the script's directory first).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def lww(i: int) -> bytes:
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import LwwLattice

    return encode_lattice(LwwLattice(1_700_000_000_000_000_000 + i, b"v" * 64))


def distinct_puts(path: str, sync: str, threads: int, puts: int) -> float:
    """Puts per second of ``threads`` threads x ``puts`` puts to distinct keys on a fresh store."""
    from essa_lmdb import LmdbStore

    store = LmdbStore({"path": path, "sync": sync})
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
        return threads * puts / elapsed
    finally:
        store.close()


_OPEN = re.compile(r'^(\d+\s+)?openat\(.*"([^"]*data\.mdb)", ([A-Z_|]+).*\)\s*=\s*(\d+)')
_WRITE = re.compile(r"^(\d+\s+)?pwrite64\((\d+), .*, (\d+), (\d+)\)\s*=")
_FLUSH = re.compile(r"^(\d+\s+)?f(data)?sync\(")


def count_flushes(threads: int, puts: int) -> dict:
    """Run the ``sync=on`` workload under strace; count commits and flushes."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        code = (f"import sys; sys.path.insert(0, {str(_HERE)!r}); import lmdb_sync; "
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
    args = parser.parse_args()
    result: dict = {
        "benchmark": "lmdb_sync",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "config": {"puts": args.puts, "threads": args.threads, "rounds": args.rounds},
    }
    rounds: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for sync in ("on", "off"):
            tmp = tempfile.mkdtemp(prefix="essa-bench-lmdb-")
            try:
                rounds[sync].append(distinct_puts(tmp, sync, args.threads, args.puts))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    on, off = statistics.median(rounds["on"]), statistics.median(rounds["off"])
    result["distinct_puts_per_s"] = {
        "sync_on": round(on), "sync_off": round(off),
        "rounds_on": [round(x) for x in rounds["on"]], "rounds_off": [round(x) for x in rounds["off"]],
    }
    result["ratio"] = round(on / off, 3)
    if args.strace:
        if shutil.which("strace") is None:
            result["flushes"] = "strace is not installed"
        else:
            result["flushes"] = count_flushes(args.threads, args.puts)
    result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
