"""Forged KVS membership against a real anna cluster; prints one JSON document.

Starts a routing node and 3 KVS nodes (replication 2) on loopback, then a
rogue zenoh peer (a child process) that declares ``--forged`` KVS liveliness
tokens of nodes that do not exist (``--workers`` workers each). Reported:
the resident memory of the routing node, of each KVS node and of this
process (an :class:`essa_anna.AnnaClient`) before the flood and at their
peak during ``--observe`` seconds of it; the rings the nodes then use; how
many of ``--keys`` puts and gets between the real nodes succeed (5 s
timeout each). Then the rogue declares a token claiming to be node ``n0``
with another incarnation and withdraws it, then the same with n0's own
incarnation, and the rings and puts are checked again after each.

With ``--answer`` the rogue also answers the pings for its forged tokens (a
peer that speaks the protocol): they are then proven, and enter the rings up
to the limits (``--max-nodes``, ``--max-workers``); puts routed to them time out.

Usage: python bench/anna_flood.py [--forged 200] [--workers 64] [--observe 30] [--keys 100] [--answer]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def rogue(endpoint: str) -> None:
    """The rogue peer: reads ``declare KEY`` / ``undeclare KEY`` / ``flood PREFIX N W ANSWER`` lines, answers ``ok``."""
    import msgpack
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("connect/endpoints", json.dumps([endpoint]))
    session = zenoh.open(config)
    tokens = {}
    queryables = []
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "declare":
            tokens[words[1]] = session.liveliness().declare_token(words[1])
        elif words[0] == "undeclare":
            tokens.pop(words[1]).undeclare()
        elif words[0] == "flood":
            prefix, count, workers, answer = words[1], int(words[2]), int(words[3]), words[4] == "1"
            for i in range(count):
                key = f"anna/live/kvs/{prefix}{i}/g{i}/{workers}/2/1"
                if answer:
                    payload = msgpack.packb({"tokens": [key]})
                    queryables.append(session.declare_queryable(
                        f"anna/ping/kvs/{prefix}{i}", lambda q, payload=payload: q.reply(q.key_expr, payload)))
                tokens[key] = session.liveliness().declare_token(key)
        print("ok", flush=True)
    os._exit(0)  # zenoh's threads may keep a closing interpreter alive


class Rogue:
    def __init__(self, endpoint: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--rogue", endpoint], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def do(self, *words: object) -> None:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(20)


def rings(client) -> dict:
    """The ring each node uses: the routing node's and each KVS node's node count."""
    answers = client.status(timeout=10.0)
    out = {}
    for a in answers:
        if a.get("role") == "routing":
            out[f"routing {a['id']}"] = len(a["kvs_nodes"])
        elif a.get("role") == "kvs" and a["id"] in ("n0", "n1", "n2"):
            out[f"kvs {a['id']}"] = len(a["ring"])
    return dict(sorted(out.items()))


def round_trip(client, tag: str, keys: int) -> dict:
    """Put ``keys`` keys at once, then get the ones put; counts and the first error."""
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import SetLattice
    from essa_anna.protocol import GET, PUT

    values = {f"flood/{tag}/{i}": encode_lattice(SetLattice([b"%d" % i])) for i in range(keys)}
    errors = []

    def outcomes(futures: dict) -> dict:
        done = {}
        for key, future in futures.items():
            try:
                done[key] = future.result(60)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return done

    put = outcomes({k: client.submit(PUT, k, v) for k, v in values.items()})
    got = outcomes({k: client.submit(GET, k) for k in put})
    ok = sum(got[k] == values[k] for k in got)
    return {"ok": ok, "failed": keys - ok, "first_error": errors[0] if errors else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forged", type=int, default=200)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--observe", type=float, default=30.0)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--answer", action="store_true", help="the rogue answers pings for its forged tokens")
    parser.add_argument("--rogue", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rogue:
        return rogue(args.rogue)

    from essa_anna import AnnaClient

    essa = [sys.executable, "-m", "essa", "anna"]
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    procs = {"routing": subprocess.Popen([*essa, "routing", "--listen", endpoint], stderr=subprocess.DEVNULL)}
    for i in range(3):
        procs[f"kvs n{i}"] = subprocess.Popen(
            [*essa, "kvs", f"n{i}", "--connect", endpoint, "--listen", f"tcp/127.0.0.1:{free_port()}"],
            stderr=subprocess.DEVNULL)
    pids = {name: p.pid for name, p in procs.items()}
    pids["client (this process)"] = os.getpid()
    client = rogue_peer = None
    result: dict = {"benchmark": "anna_flood", "forged_nodes": args.forged, "forged_workers": args.workers,
                    "rogue_answers_pings": args.answer}
    try:
        client = AnnaClient([endpoint], timeout=5, connect_timeout=60)
        client.wait_for_nodes(3, timeout=60)
        while list(rings(client).values()) != [3, 3, 3, 3]:  # every node sees the others
            time.sleep(0.1)
        result["baseline"] = round_trip(client, "baseline", args.keys)
        result["rss_mib_before"] = {name: rss_mib(pid) for name, pid in pids.items()}
        rogue_peer = Rogue(endpoint)
        rogue_peer.do("flood", "ghost", args.forged, args.workers, int(args.answer))
        peak = dict(result["rss_mib_before"])
        end = time.monotonic() + args.observe
        while time.monotonic() < end:
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_mib(pid))
            time.sleep(0.5)
        result["rss_mib_peak_during_flood"] = peak
        result["ring_nodes_during_flood"] = rings(client)
        result["client_membership_nodes"] = len(client.membership.kvs)
        result["round_trip_during_flood"] = round_trip(client, "flood", args.keys)
        result["rss_mib_after"] = {name: rss_mib(pid) for name, pid in pids.items()}
        n0 = client.membership.kvs["n0"]
        for variant, incarnation in (("other", "forged0"), ("same", n0.incarnation)):
            key = f"anna/live/kvs/n0/{incarnation}/{n0.workers}/{n0.global_replication}/{n0.local_replication}"
            rogue_peer.do("declare", key)
            time.sleep(2)
            rogue_peer.do("undeclare", key)
            time.sleep(2)
            result[f"n0_declared_and_withdrawn_{variant}_incarnation"] = {
                "n0_in_client_membership": "n0" in client.membership.kvs, "rings": rings(client),
                "round_trip": round_trip(client, f"evict-{variant}", args.keys)}
    finally:
        if rogue_peer is not None:
            rogue_peer.close()
        if client is not None:
            client.close()
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
