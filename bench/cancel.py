"""How fast Ctrl-C stops a run; prints JSON.

For a module whose ``_start`` waits for a remote call that computes forever
(no time limit), it starts ``essa run``, waits for the guest's first line,
sends SIGINT, and measures:

- ``exit_s``: from the signal until the ``essa run`` process exited (130);
- ``cluster_idle_s`` (cluster mode): from the signal until the executors
  report nothing running (both the run and its remote call were cancelled).

Usage: python bench/cancel.py [--engine wasmtime] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from essa.testing.ports import free_port


def caller_module() -> bytes:
    from essa.testing.conformance.wat import module

    name = b"__essa_wrapper__spin"
    return module(
        f"""
  (func (export "__essa_wrapper__spin") (param i32) (loop $l (br $l)))
  (func $call_spin
    (if (call $essa_call (i32.const 0x600) (i32.const {len(name)}) (i32.const 0) (i32.const 0) (i32.const 0x400))
      (then unreachable))
    (drop (call $essa_get_result_len (i32.load (i32.const 0x400)) (i32.const 0x404))))""",
        data={0x600: name, 0x700: b"calling\n"},
        start="""
    (i32.store (i32.const 0x100) (i32.const 0x700))
    (i32.store (i32.const 0x104) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))
    (call $call_spin)""",
    )


def running(endpoint: str) -> int:
    from essa.cluster.processes import cluster_status

    return sum(a.get("running", 0) for a in cluster_status([endpoint], timeout=10) if a.get("role") == "executor")


def interrupt(command: list[str], endpoint: str | None) -> dict:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"calling\n"
    if endpoint:
        while running(endpoint) < 2:
            time.sleep(0.05)
    else:
        time.sleep(0.5)  # the remote call has started
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    result = {"exit_s": round(time.monotonic() - sent, 3), "status": proc.returncode}
    if endpoint:
        while running(endpoint):
            time.sleep(0.02)
        result["cluster_idle_s"] = round(time.monotonic() - sent, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    essa = [sys.executable, "-m", "essa", "--engine", args.engine]
    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        path = os.path.join(home, "caller.wasm")
        with open(path, "wb") as f:
            f.write(caller_module())
        embedded = [interrupt([*essa, "--store", "memory", "run", "--time-limit", "none", path], None)
                    for _ in range(args.repeat)]
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        up = subprocess.Popen([*essa, "up", "--executors", "2", "--listen", endpoint, "--time-limit", "none"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    running(endpoint)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            cluster = [interrupt([*essa, "run", "--connect", endpoint, "--timeout", "60", path], endpoint)
                       for _ in range(args.repeat)]
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    for name, results in (("embedded", embedded), ("cluster", cluster)):
        report[name] = {key: {"median": statistics.median(r[key] for r in results), "max": max(r[key] for r in results)}
                        for key in results[0] if key != "status"}
        report[name]["statuses"] = sorted({r["status"] for r in results})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
