"""Consistency levels across executors with caches (real scheduler, executors and Anna processes).

The KVS nodes hold every push to the caches for a while (``--push-delay``: a
slow link to the caches), so an executor's cache is stale for that long after a
write elsewhere. Each test first shows, at the default level, the anomaly its
level rules out (waiting for it with a generous deadline), then runs the
level and checks the history: no anomaly.
"""

from __future__ import annotations

import itertools
import json
import signal
import struct
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

import essa  # noqa: E402
from essa.cluster import topics  # noqa: E402
from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa.testing.dag_modules import appended_values, state_args, state_module  # noqa: E402
from essa_anna import AnnaStore  # noqa: E402

from .helpers import READY_TIMEOUT, AnnaCluster, free_port  # noqa: E402
from .helpers import essa as run_essa  # noqa: E402
from .history import Record, causal_violations, repeatable_read_violations  # noqa: E402

STATE_OPS = Path(__file__).resolve().parents[2] / "examples" / "state-ops.wasm"
#: How long the KVS nodes hold each push to the caches.
PUSH_DELAY = "0.5"


def text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def blob(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def members(value: bytes) -> frozenset[bytes] | None:
    return frozenset(decode_lattice(value).values) if value else None


def split(result: bytes) -> list[bytes]:
    values, offset = [], 0
    while offset < len(result):
        (length,) = struct.unpack_from("<Q", result, offset)
        values.append(result[offset + 8:offset + 8 + length])
        offset += 8 + length
    return values


class Cluster:
    """Anna (3 KVS nodes, pushes held), a scheduler and two executors with caches; a connection; a deployment."""

    def __init__(self, anna: AnnaCluster, engine_name: str) -> None:
        anna.start(3, "--push-delay", PUSH_DELAY)
        self.anna = anna
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        anna.spawn("scheduler", "scheduler", "--listen", self.endpoint)
        for i in range(2):
            anna.spawn(f"executor-{i}", "--engine", engine_name, "--store", "anna",
                       "--store-option", f"routing={anna.endpoint}", "--store-option", "timeout=30",
                       "executor", str(i), "--connect", self.endpoint,
                       "--listen", f"tcp/127.0.0.1:{free_port()}", "--workers", "4")
        for i in range(2):
            anna.wait_ready(f"executor-{i}", f"essa executor {i}:")
        self.connection = essa.connect(self.endpoint, timeout=READY_TIMEOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self.executors()) < 2:
            assert time.monotonic() < deadline, "the scheduler does not see two executors"
            time.sleep(0.05)
        self.deployment = self.connection.deploy(STATE_OPS, "ops")
        self.store = AnnaStore({"routing": anna.endpoint, "timeout": "30", "connect_timeout": str(READY_TIMEOUT)})

    def executors(self) -> dict[str, dict]:
        answer = run_essa("status", "--connect", self.endpoint, "--json", timeout=60)
        if answer.returncode != 0:
            return {}
        return {e["id"]: e for e in json.loads(answer.stdout) if e.get("role") == "executor"}

    def key(self, name: str) -> str:
        return f"{self.deployment.namespace}/data/{name}"

    def call(self, function: str, args: bytes, consistency: str | None = None) -> bytes:
        return self.connection.call("ops", function, args, timeout=60, consistency=consistency)

    def close(self) -> None:
        self.connection.close()
        self.store.close()


@pytest.fixture
def cluster(anna, engine_name):
    c = Cluster(anna, engine_name)
    yield c
    c.close()


def warm(cluster: Cluster, key: str) -> None:
    """Have both executors' caches hold ``key`` (many concurrent reads land on both)."""
    futures = [cluster.connection.call_async("ops", "read_key", text(key)) for _ in range(16)]
    for future in futures:
        future.result(60)


def test_repeatable_read_gives_every_function_of_a_call_tree_one_version(cluster):
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # another client adds a member to the key every 5 ms
        while not stop.wait(0.005):
            written[0] += 1
            cluster.store.put(cluster.key("hot"), SetLattice({str(written[0]).encode()}))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        warm(cluster, "hot")

        def tree(level: str | None) -> Record:
            reads = [members(v) for v in split(cluster.call("read_call_read", text("hot"), level))]
            return Record(level or "default", reads=reads)

        # The default level: the root's reads and its callee's read (another executor's cache) differ.
        deadline = time.monotonic() + 90
        history = []
        while not repeatable_read_violations(history):
            assert time.monotonic() < deadline, "no call tree saw two versions at the default level"
            history.append(tree(None))
        # Repeatable read: never.
        history = [tree("repeatable-read") for _ in range(30)]
        assert not repeatable_read_violations(history), repeatable_read_violations(history)[:3]
        assert any(r.reads[0] for r in history)  # not vacuous (the very first reads may predate the key)
        seen = sum(e.get("snapshots", {}).get("trees_seen", 0) for e in cluster.executors().values())
        assert seen > 0  # callees did read the snapshot from the other executor
        # The level of a deployment: a new version of "ops" whose calls are repeatable-read unless they say.
        version = cluster.connection.deploy(STATE_OPS, "ops", consistency="repeatable-read")
        assert version.consistency == "repeatable-read"
        assert cluster.connection.deployment("ops").consistency == "repeatable-read"
        history = [tree(None) for _ in range(20)]
        assert not repeatable_read_violations(history), repeatable_read_violations(history)[:3]
    finally:
        stop.set()
        thread.join(30)


def test_causal_calls_see_the_writes_that_precede_them(cluster):
    warm(cluster, "c")

    def write_then_read(i: int, level: str | None) -> Record:
        value = f"w{i}".encode()
        seen = cluster.call("write_call_read", text("c") + blob(encode_lattice(SetLattice({value}))), level)
        return Record(level or "default", wrote=frozenset({value}), reads=[members(seen)])

    # The default level: the callee, on the other executor, reads its stale cache.
    deadline = time.monotonic() + 90
    history, i = [], 0
    while not causal_violations(history):
        assert time.monotonic() < deadline, "no callee missed its caller's write at the default level"
        i += 1
        history.append(write_then_read(i, None))
    # Causal: the callee sees its caller's write, every time.
    history = [write_then_read(1000 + j, "causal") for j in range(30)]
    assert not causal_violations(history), causal_violations(history)[:3]


def test_an_unknown_level_is_refused_in_one_line(cluster):
    with pytest.raises(essa.EssaError, match="unknown consistency level 'serializable'"):
        cluster.call("read_key", text("x"), "serializable")


def test_calls_follow_their_keys_to_the_executor_that_caches_them(cluster):
    """Locality-aware placement: a function that reads a fixed key, called one call at a time, stays where
    that key is cached (without it, ties alternate between the two idle executors)."""
    before = {i: e["by_function"].get("__essa_wrapper__read_key", 0) for i, e in cluster.executors().items()}
    for _ in range(20):
        cluster.call("read_key", text("fixed"))
    after = {i: e["by_function"].get("__essa_wrapper__read_key", 0) for i, e in cluster.executors().items()}
    ran = sorted(after[i] - before.get(i, 0) for i in after)
    assert ran[-1] >= 17, ran  # the first two calls teach the scheduler the key; then it sticks
    # Declared keys work from the first call.
    before = after
    for _ in range(10):
        cluster.connection.call("ops", "read_key", text("declared"), keys=["declared"], timeout=60)
    after = {i: e["by_function"].get("__essa_wrapper__read_key", 0) for i, e in cluster.executors().items()}
    ran = sorted(after[i] - before.get(i, 0) for i in after)
    assert ran[-1] >= 9, ran


def test_the_levels_hold_through_a_killed_kvs_node_and_a_stopped_executor(cluster):
    """Faults while histories are recorded: kill -9 of a KVS node (replication 2: every acknowledged write
    survives; the caches start over), then SIGSTOP of an executor for 2 s (its calls wait for it)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        while not stop.wait(0.005):
            i += 1
            try:
                cluster.store.put(cluster.key("hot"), SetLattice({f"f{i}".encode()}))
            except Exception as exc:  # a put racing the kill may time out: the next one goes on
                errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        warm(cluster, "hot")
        warm(cluster, "c")
        counter = itertools.count()

        def rounds() -> tuple[list[Record], list[Record]]:
            trees = [Record("repeatable-read", reads=[members(v) for v in split(
                cluster.call("read_call_read", text("hot"), "repeatable-read"))]) for _ in range(8)]
            causal = []
            for _ in range(8):
                value = f"x{next(counter)}".encode()
                seen = cluster.call("write_call_read", text("c") + blob(encode_lattice(SetLattice({value}))), "causal")
                causal.append(Record("causal", wrote=frozenset({value}), reads=[members(seen)]))
            return trees, causal

        histories = [rounds()]
        cluster.anna.kill("kvs-n0")
        histories.append(rounds())
        executor = cluster.anna.procs["executor-1"]
        executor.send_signal(signal.SIGSTOP)
        resume = threading.Timer(2.0, executor.send_signal, (signal.SIGCONT,))
        resume.start()
        try:
            histories.append(rounds())
        finally:
            resume.join()
        for trees, causal in histories:
            assert not repeatable_read_violations(trees), repeatable_read_violations(trees)[:3]
            assert not causal_violations(causal), causal_violations(causal)[:3]
    finally:
        stop.set()
        thread.join(30)


def op(kind: int, key: str, value: bytes = b"") -> bytes:
    return bytes([kind]) + text(key) + blob(value)


def test_a_calls_writes_are_in_the_store_when_it_replies_and_a_wrong_type_is_refused_at_once(cluster):
    """With caches, a call's writes are kept in the call and stored together before its reply: a reader
    elsewhere sees them as soon as the call returns. A put of another lattice type is refused when made."""
    for i in range(5):
        payload = struct.pack("<Q", 2) + op(1, "acked", encode_lattice(SetLattice({f"m{i}".encode()}))) + op(0, "acked")
        found = cluster.call("ops", payload)
        assert struct.unpack("<Q", found)[0] == 1  # the call read its own write
        assert f"m{i}".encode() in members(cluster.store.get_bytes(cluster.key("acked")))  # stored before the reply
    cluster.store.put(cluster.key("typed"), SetLattice({b"s"}))
    lww = encode_lattice(LwwLattice(1, b"not a set"))
    with pytest.raises(essa.CallError, match="without essa_set_result"):  # ops gave up on the refused put
        cluster.call("ops", struct.pack("<Q", 1) + op(1, "typed", lww))
    assert members(cluster.store.get_bytes(cluster.key("typed"))) == {b"s"}


def deploy_stages(cluster: Cluster, count: int, consistency: str | None = None) -> list[str]:
    """``count`` DAG stages of ``ops``'s ``read_append``, all in its namespace: ``ops.read_append`` and
    ``ops@s2.read_append`` ... (a DAG names each stage once; tags name the version ``ops`` means)."""
    if consistency is not None:
        cluster.connection.deploy(STATE_OPS, "ops", consistency=consistency)
    tags = [f"s{i}" for i in range(2, count + 1)]
    for tag in tags:
        cluster.connection.tag("ops", tag)
    return ["ops.read_append"] + [f"ops@{tag}.read_append" for tag in tags]


def read_append_counts(cluster: Cluster) -> dict[str, int]:
    return {i: e["by_function"].get("__essa_wrapper__read_append", 0) for i, e in cluster.executors().items()}


def test_repeatable_read_spans_a_dags_stages_on_every_executor(cluster):
    """A fan-out/fan-in DAG whose four stages (on both executors) read one key that another client keeps
    changing: at the default level the stages see several versions; at repeatable-read (per call, then per
    deployment) every stage sees the version the first read pinned, and the snapshots end with the DAG."""
    source, left, right, sink = deploy_stages(cluster, 4)
    cluster.connection.register_dag("rr", [source, left, right, sink],
                                    [(source, left), (source, right), (left, sink), (right, sink)])
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # another client adds a member to the key every 5 ms
        while not stop.wait(0.005):
            written[0] += 1
            cluster.store.put(cluster.key("hot"), SetLattice({str(written[0]).encode()}))

    def dag_call(level: str | None) -> Record:
        result = cluster.connection.call_dag("rr", text("hot"), timeout=60, consistency=level)
        # the sink's arguments (each branch's: the key, the source's read, the branch's read) and its own read
        reads = [members(v) for v in split(result) if v != b"hot"]
        assert len(reads) == 5, reads
        return Record(level or "default", reads=reads)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        warm(cluster, "hot")
        before = read_append_counts(cluster)
        deadline = time.monotonic() + 90
        history: list[Record] = []
        while not repeatable_read_violations(history):
            assert time.monotonic() < deadline, "no DAG call's stages saw two versions at the default level"
            history.append(dag_call(None))
        history = [dag_call("repeatable-read") for _ in range(30)]
        assert not repeatable_read_violations(history), repeatable_read_violations(history)[:3]
        assert any(r.reads[0] for r in history)  # not vacuous
        after = read_append_counts(cluster)
        assert all(after[i] > before.get(i, 0) for i in after) and len(after) == 2, (before, after)  # both ran stages
        executors = cluster.executors().values()
        assert sum(e["snapshots"]["trees_seen"] for e in executors) > 0  # stages read the owner's snapshot remotely
        assert all(e["snapshots"]["trees_owned"] == 0 for e in executors)  # every DAG's snapshot ended with it
        # The level of the stages' deployments, when the call names none.
        deploy_stages(cluster, 4, consistency="repeatable-read")
        history = [dag_call(None) for _ in range(20)]
        assert not repeatable_read_violations(history), repeatable_read_violations(history)[:3]
    finally:
        stop.set()
        thread.join(30)


def test_dag_stages_follow_their_keys_to_the_executor_that_caches_them(cluster):
    """Stages report what they read, as calls do: once both executors have the module, a DAG whose stages
    read a fixed key, called one call at a time, stays on the executor that caches it (without the reports,
    ties alternate between the two idle executors)."""
    first, second = deploy_stages(cluster, 2)
    cluster.connection.register_dag("loc", [first, second], [(first, second)])
    warm = [cluster.connection.call_dag_async("loc", text(f"w{i}")) for i in range(16)]  # both load the module
    for future in warm:
        future.result(60)
    before = read_append_counts(cluster)
    assert all(before.values()) and len(before) == 2, before
    for _ in range(20):
        cluster.connection.call_dag("loc", text("fixed"), timeout=60)
        # One call at a time, as the docstring says: the scheduler has taken in the call's done notice and its
        # caller's receipt (so its stages' reads, sent before its sink ran) before the next call is placed. On
        # a busy machine a next call placed before them saw the first executor still loaded, went to the other,
        # which then cached the key too, and the two alternated from there (a CI run: [16, 24]).
        wait_until_scheduler_idle(cluster)
    after = read_append_counts(cluster)
    ran = sorted(after[i] - before[i] for i in after)
    assert sum(ran) == 40 and ran[-1] >= 36, ran  # the first call's two stages teach the scheduler the key


def wait_until_scheduler_idle(cluster: Cluster) -> None:
    """Wait until the scheduler tracks no call or DAG call (every done notice and receipt is in)."""
    deadline = time.monotonic() + 60
    while True:
        schedulers = [a for a in cluster.connection.status() if a.get("role") == "scheduler"]
        if schedulers and all(a["in_flight"] == 0 and a["unconfirmed"] == 0 and a["dags"] == 0
                              and all(e["in_flight"] == 0 for e in a["executors"].values()) for a in schedulers):
            return
        assert time.monotonic() < deadline, f"the scheduler is still busy: {schedulers}"
        time.sleep(0.01)


def executor_counts(cluster: Cluster, function: str) -> dict[str, int]:
    """How many calls of ``function`` each executor ran (asked of each executor directly: no wait for stragglers)."""
    counts = {}
    for executor in ("0", "1"):
        answers = cluster.connection._client.transport.query(f"{topics.STATUS}/executor/{executor}", {}, timeout=60)
        counts[executor] = next(a for a in answers if isinstance(a, dict))["by_function"].get(function, 0)
    return counts


def test_causal_spans_a_dags_stages_on_every_executor(cluster):
    """A DAG whose first stage writes a new member into a key and whose two later stages (one of them a fan-in,
    so the scheduler places each, often on the other executor) read it: at the default level a later stage on
    the other executor reads its cache's older value; at causal the writer's deps travel with its result, and
    every later stage, on either executor, sees the write; so does the client's next causal call (the sink's
    reply carries the deps back, and the client sends them with its later causal calls).

    (Not a two-stage chain: its second stage follows the first to its executor, whose cache has the write.)"""
    es = cluster.connection
    es.deploy(state_module(), name="s")
    es.tag("s", "two")  # a DAG names each stage once: the sink is get_append by another name
    es.register_dag("wr", ["s.put_pass", "s.get_append", "s@two.get_append"],
                    [("s.put_pass", "s.get_append"), ("s.put_pass", "s@two.get_append"),
                     ("s.get_append", "s@two.get_append")])
    es.register_dag("w", ["s.put_pass"])
    key = f"{es.deployment('s').namespace}/data/k"
    cluster.store.put(key, SetLattice({b"w0"}))
    for future in [es.call_async("s", "get_append", state_args("k")) for _ in range(16)]:  # both caches hold k
        future.result(60)

    def dag_call(i: int, level: str | None) -> Record:
        value = f"w{i}".encode()
        args = state_args("k", encode_lattice(SetLattice({value})))
        result = es.call_dag("wr", args, timeout=60, consistency=level)
        reads = [members(v) for v in appended_values(result, 2 * len(args))]  # the branch's, then the sink's
        assert len(reads) == 2, result
        return Record(level or "default", wrote=frozenset({value}), reads=reads)

    def write_then_call(i: int) -> Record:  # a one-stage DAG writes, then a call of the same client reads
        value = f"x{i}".encode()
        es.call_dag("w", state_args("k", encode_lattice(SetLattice({value}))), timeout=60, consistency="causal")
        seen = es.call("s", "get_append", state_args("k"), timeout=60, consistency="causal")
        (read,) = appended_values(seen, len(state_args("k")))
        return Record("causal", wrote=frozenset({value}), reads=[members(read)])

    deadline = time.monotonic() + 90
    history, i = [], 0
    while not causal_violations(history):
        assert time.monotonic() < deadline, "no later stage missed the first stage's write at the default level"
        i += 1
        history.append(dag_call(i, None))
    history, crossed = [], 0
    for j in range(30):
        before = (executor_counts(cluster, "__essa_wrapper__put_pass"),
                  executor_counts(cluster, "__essa_wrapper__get_append"))
        history.append(dag_call(1000 + j, "causal"))
        writer = next(e for e, n in executor_counts(cluster, "__essa_wrapper__put_pass").items() if n > before[0][e])
        readers = executor_counts(cluster, "__essa_wrapper__get_append")
        crossed += any(n > before[1][e] for e, n in readers.items() if e != writer)
    history += [write_then_call(j) for j in range(30)]
    assert not causal_violations(history), causal_violations(history)[:3]
    assert crossed >= 5, f"only {crossed} of 30 DAG calls read on the other executor than the writer's"
