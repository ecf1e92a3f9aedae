"""How long a client takes to say a cluster is not there: an endpoint where nothing listens (the connection is
refused), and a silent one (a listener that never answers), from the command line and from Python.

    python bench/connect.py [--rounds 5] [--timeout 3]

Prints JSON: seconds per attempt (p50, max) for ``essa ls --connect ENDPOINT --timeout T`` (a whole
process, so Python's start-up is in it: ``startup_s`` is ``essa --version`` alone) and for
``essa.connect(ENDPOINT, timeout=T)`` in this process. A refused endpoint should fail within a second; a
silent one waits at least the timeout. Runs in a fresh ESSA_HOME (no context applies).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import essa
from essa.testing.ports import free_port


def seconds(samples: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(samples), 3), "max": round(max(samples), 3)}


def cli(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, timeout=120)
    return time.monotonic() - started


def api(endpoint: str, timeout: float) -> float:
    started = time.monotonic()
    try:
        essa.connect(endpoint, timeout=timeout).close()
    except essa.EssaError:
        pass
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=3.0, help="the client's connect timeout (seconds)")
    options = parser.parse_args()
    os.environ["ESSA_HOME"] = tempfile.mkdtemp(prefix="essa-bench-connect-")
    timeout = str(options.timeout)
    result: dict = {"timeout_s": options.timeout, "rounds": options.rounds,
                    "startup_s": seconds([cli("--version") for _ in range(options.rounds)])}
    refused = [f"tcp/127.0.0.1:{free_port()}" for _ in range(options.rounds)]
    result["refused"] = {"cli_s": seconds([cli("ls", "--connect", e, "--timeout", timeout) for e in refused]),
                         "api_s": seconds([api(e, options.timeout) for e in refused])}
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        endpoint = f"tcp/127.0.0.1:{silent.getsockname()[1]}"
        result["silent"] = {"cli_s": seconds([cli("ls", "--connect", endpoint, "--timeout", timeout)
                                              for _ in range(options.rounds)]),
                            "api_s": seconds([api(endpoint, options.timeout) for _ in range(options.rounds)])}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
