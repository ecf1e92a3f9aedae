"""The Anna store with real processes: a routing node and KVS nodes over zenoh on loopback."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.errors import LatticeTypeError  # noqa: E402
from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.lattice import (  # noqa: E402
    BoolLattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
)

from .helpers import (  # noqa: E402
    ESSA,
    READY_TIMEOUT,
    TEST_FUNCTION,
    AnnaCluster,
    essa,
    expected_test_function_output,
    free_port,
    wait_until,
)


def set_value(*members: bytes) -> bytes:
    return encode_lattice(SetLattice(members))


def replicas(cluster: AnnaCluster, client, key: str) -> dict:
    """The value of ``key`` at each of its owners, asked directly."""
    return {owner: client.fetch(owner, [key])[key] for owner in client.owners(key)}


def test_test_function_runs_on_executors_with_the_anna_store(anna, engine_name):
    anna.start(3)
    scheduler = f"tcp/127.0.0.1:{free_port()}"
    anna.spawn("scheduler", "scheduler", "--listen", scheduler)
    for i in range(2):
        anna.spawn(f"executor-{i}", "--engine", engine_name, "--store", "anna",
                   "--store-option", f"routing={anna.endpoint}", "executor", str(i), "--connect", scheduler,
                   "--listen", f"tcp/127.0.0.1:{free_port()}", "--workers", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = essa("status", "--connect", scheduler, "--json", timeout=60)
        if status.returncode == 0 and status.stdout.count('"role": "executor"') == 2:
            break
        time.sleep(0.2)
    result = essa("run", "--connect", scheduler, "--timeout", "60", str(TEST_FUNCTION), timeout=120)
    assert result.returncode == 0, result.stderr + anna.log_text()
    assert result.stdout == expected_test_function_output()
    # Guest state, the module and its compiled artifact went to the KVS nodes.
    assert sum(n["puts"] for n in anna.status().values()) > 60
    # essa run embedded, on the same anna cluster
    result = essa("--engine", engine_name, "--store", "anna", "--store-option", f"routing={anna.endpoint}",
                  "run", "--executors", "2", str(TEST_FUNCTION), timeout=120)
    assert result.returncode == 0, result.stderr + anna.log_text()
    assert result.stdout == expected_test_function_output()


def test_acknowledged_keys_survive_a_sigkilled_node(anna):
    anna.start(3)
    client = anna.client()
    keys = {f"survive/{i}": set_value(b"%d" % i) for i in range(300)}
    client.put_many(keys.items())  # every put returned: acknowledged
    lww = LwwLattice.now(b"last")
    client.put("survive/lww", encode_lattice(lww))
    victim = max(anna.status().values(), key=lambda n: n["keys"])["id"]
    anna.kill(f"kvs-{victim}")
    # nothing is lost
    values = client.get_many(keys)
    assert values == list(keys.values())
    assert decode_lattice(client.get("survive/lww")) == lww
    # a fresh client too, and the keys are back at two replicas each
    fresh = anna.client()
    assert fresh.get_many(keys) == list(keys.values())
    copies = wait_until(lambda: sum(n["keys"] for n in anna.status().values()) == 2 * 301)
    assert copies, anna.status()
    assert victim not in anna.status()


def test_a_node_added_later_receives_its_share_of_the_keys(anna):
    anna.start(3)
    client = anna.client()
    keys = {f"share/{i}": set_value(b"%d" % i) for i in range(400)}
    client.put_many(keys.items())
    anna.kvs("n3")
    anna.wait_for_nodes(4)
    # each node ends up with exactly the keys it owns: 2 copies of every key in all
    settled = wait_until(lambda: sum(n["keys"] for n in anna.status().values()) == 800)
    status = anna.status()
    assert settled, {k: v["keys"] for k, v in status.items()}
    assert 400 * 2 / 4 * 0.5 < status["n3"]["keys"] < 400 * 2 / 4 * 1.5
    assert client.get_many(keys) == list(keys.values())
    owned = [k for k in keys if "n3" in {n for n, _w in client.owners(k)}]
    assert len(owned) == status["n3"]["keys"]
    assert all(v == keys[k] for k, v in client.fetch(("n3", 0), owned).items())


def test_concurrent_set_puts_converge_to_the_union_on_every_replica(anna):
    anna.start(3)
    members = [b"m%03d" % i for i in range(160)]
    failures = []

    def writer(chunk):
        client = anna.client()
        try:
            for member in chunk:
                client.put("union", set_value(member))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(members[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    client = anna.client()
    expected = SetLattice(members)
    values = replicas(anna, client, "union")
    assert len(values) == 2
    assert all(decode_lattice(v) == expected for v in values.values()), values


def test_every_lattice_type_merges_across_replicas(anna):
    anna.start(3, "--workers", "2", "--local-replication", "2")  # each key: 2 nodes x 2 workers
    client = anna.client()
    cases = {
        "t/lww": [LwwLattice(10, b"old"), LwwLattice(20, b"new"), LwwLattice(15, b"mid")],
        "t/set": [SetLattice([b"a"]), SetLattice([b"b"])],
        "t/oset": [OrderedSetLattice([b"z"]), OrderedSetLattice([b"a"])],
        "t/single": [SingleCausalLattice({"x": 1}, [b"1"]), SingleCausalLattice({"y": 1}, [b"2"])],
        "t/multi": [MultiCausalLattice({"x": 1}, {"d": {"x": 1}}, [b"1"]),
                    MultiCausalLattice({"x": 2}, {"d": {"x": 2}}, [b"2"])],
        "t/max": [MaxLattice(3), MaxLattice(7), MaxLattice(5)],
        "t/bool": [BoolLattice(False), BoolLattice(True)],
        "t/map": [MapLattice({"a": MaxLattice(1)}), MapLattice({"a": MaxLattice(4), "b": SetLattice([b"x"])})],
    }
    for key, values in cases.items():
        for value in values:
            client.put(key, encode_lattice(value))
    for key, values in cases.items():
        expected = values[0]
        for value in values[1:]:
            expected = expected.merge(value)
        got = replicas(anna, client, key)
        assert len(got) == 4 and len({node for node, _w in got}) == 2
        assert all(v is not None and decode_lattice(v) == expected for v in got.values()), (key, got)


def test_type_mismatch_is_refused_and_changes_nothing(anna):
    anna.start(3)
    client = anna.client()
    client.put("typed", set_value(b"a"))
    with pytest.raises(LatticeTypeError, match="Lww.*Set|Set.*Lww"):
        client.put("typed", encode_lattice(LwwLattice(1, b"x")))
    assert all(decode_lattice(v) == SetLattice([b"a"]) for v in replicas(anna, client, "typed").values())
    # the command line says it in one line
    result = essa("anna", "put", "--connect", anna.endpoint, "--timeout", "30", "typed", "x")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("essa: error: cannot merge") and len(result.stderr.splitlines()) == 1
    assert all(decode_lattice(v) == SetLattice([b"a"]) for v in replicas(anna, client, "typed").values())


def test_timer_gossip_brings_an_idle_replica_up_to_date(anna):
    anna.start(3)
    client = anna.client(ack="owner")  # acknowledged by the primary alone
    client.put("gossiped", set_value(b"g"))
    primary, replica = client.owners("gossiped")
    # no other traffic: only the gossip timer can bring the value to the replica
    assert wait_until(lambda: client.fetch(replica, ["gossiped"])["gossiped"] == set_value(b"g"))


def test_command_line_client(anna):
    anna.start(3)
    run = lambda *args: essa("anna", *args[:1], "--connect", anna.endpoint, "--timeout", "30", *args[1:])  # noqa: E731
    assert run("put", "greeting", "hello").returncode == 0
    assert run("get", "greeting").stdout == "hello\n"
    assert run("put-set", "s", "one", "two").returncode == 0
    assert run("put-set", "s", "three").returncode == 0
    assert run("get-set", "s").stdout == '{"one", "three", "two"}\n'
    missing = run("get", "nope")
    assert missing.returncode == 1 and missing.stderr == "essa: error: key 'nope' does not exist\n"
    not_a_set = run("get-set", "greeting")
    assert not_a_set.returncode == 1 and "holds a Lww value, not a Set" in not_a_set.stderr
    status = run("status")
    assert status.returncode == 0, status.stderr
    for node in ("n0", "n1", "n2"):
        assert node in status.stdout
    assert "ops/s" in status.stdout and "keys" in status.stdout


def test_graceful_leave_hands_keys_off(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs", replication=1)  # one copy: only the hand-off keeps keys
    try:
        cluster.start(3)
        client = cluster.client()
        keys = {f"leave/{i}": set_value(b"%d" % i) for i in range(300)}
        client.put_many(keys.items())
        leaver = max(cluster.status().values(), key=lambda n: n["keys"])["id"]
        cluster.kill(f"kvs-{leaver}", signal.SIGTERM)
        assert "left the cluster" in (cluster.logs / f"kvs-{leaver}.log").read_text()
        assert client.get_many(keys) == list(keys.values())
        assert sum(n["keys"] for n in cluster.status().values()) == 300
    finally:
        cluster.stop()


def test_routing_node_started_after_the_kvs_nodes(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs")
    try:
        for i in range(2):
            cluster.kvs(f"n{i}")  # waits until each is up (without a routing node)
        cluster.routing()
        cluster.wait_for_nodes(2)
        client = cluster.client()
        client.put("late", set_value(b"x"))
        assert client.get("late") == set_value(b"x")
    finally:
        cluster.stop()


def test_durable_node_recovers_its_data_after_a_restart(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs", replication=1)
    data = tmp_path / "kvs-data"
    try:
        cluster.routing()
        cluster.kvs("d0", "--path", str(data))
        cluster.wait_for_nodes(1)
        client = cluster.client()
        keys = {f"durable/{i}": set_value(b"%d" % i) for i in range(100)}
        client.put_many(keys.items())
        cluster.kill("kvs-d0")  # SIGKILL: no goodbye, no hand-off
        cluster.kvs("d0", "--path", str(data))
        cluster.wait_for_nodes(1)
        assert anna_keys(cluster) == {"d0": 100}
        assert cluster.client().get_many(keys) == list(keys.values())
    finally:
        cluster.stop()


def anna_keys(cluster: AnnaCluster) -> dict[str, int]:
    return {k: v["keys"] for k, v in cluster.status().items()}


def test_a_delete_waits_for_the_first_kvs_node_within_its_timeout(tmp_path):
    # A client that knows of no KVS node yet (just connected; a CI run had one fail a delete at once) waits
    # for one as a read or a write does, instead of saying none is reachable.
    cluster = AnnaCluster(tmp_path / "logs")
    try:
        cluster.routing()
        client = cluster.client(timeout=READY_TIMEOUT)
        outcome: list[object] = []
        deleting = threading.Thread(target=lambda: outcome.append(_attempt(lambda: client.delete("k"))))
        deleting.start()
        cluster.kvs("k0")
        deleting.join(READY_TIMEOUT + 30)
        assert outcome == [False]  # answered by the node that joined: nothing to delete
    finally:
        cluster.stop()


def _attempt(action):
    try:
        return action()
    except Exception as exc:  # the test shows it
        return exc


def test_clear_errors_without_a_cluster(tmp_path):
    nothing = f"tcp/127.0.0.1:{free_port()}"
    result = essa("anna", "get", "--connect", nothing, "--timeout", "2", "k", timeout=60)  # fails, never hangs
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("essa: error: no anna routing node is reachable at " + nothing)
    # a routing node but no KVS node
    cluster = AnnaCluster(tmp_path / "logs")
    try:
        cluster.routing()
        cluster.wait_for_nodes(0)
        result = essa("anna", "get", "--connect", cluster.endpoint, "--timeout", "1", "--connect-timeout", "60", "k",
                      timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("essa: error: no anna KVS node is reachable at " + cluster.endpoint)
        # the store names the problem the same way
        result = essa("--store", "anna", "--store-option", f"routing={cluster.endpoint}",
                      "--store-option", "timeout=1", "--store-option", "connect_timeout=60", "run", str(TEST_FUNCTION),
                      timeout=120)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "no anna KVS node is reachable" in result.stderr
    finally:
        cluster.stop()


def test_essa_up_with_the_anna_store(engine_name, tmp_path):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    up = subprocess.Popen([*ESSA, "--engine", engine_name, "--store", "anna", "--store-option", "kvs_nodes=3",
                           "--store-option", "global_replication=2", "up", "--executors", "2", "--listen", endpoint],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = essa("status", "--connect", endpoint, "--json", timeout=60)
            if status.returncode == 0 and status.stdout.count('"role": "executor"') == 2:
                break
            time.sleep(0.3)
        result = essa("run", "--connect", endpoint, "--timeout", "60", str(TEST_FUNCTION))
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected_test_function_output()
        status = essa("anna", "status", "--connect", endpoint, "--json", timeout=30)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count('"role": "kvs"') == 3
    finally:
        up.send_signal(signal.SIGTERM)
        stdout, stderr = up.communicate(timeout=60)
    assert up.returncode == 0, stderr
    leftover = subprocess.run(["pgrep", "-s", str(up.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "processes of essa up still running"


def test_a_silent_node_gives_a_one_line_timeout(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs", replication=1)
    try:
        cluster.start(1)
        cluster.client().put("frozen", set_value(b"x"))
        cluster.procs["kvs-n0"].send_signal(signal.SIGSTOP)  # alive (its token stays) but silent
        try:
            result = essa("anna", "get", "--connect", cluster.endpoint, "--timeout", "1", "--connect-timeout", "60",
                          "frozen", timeout=120)  # fails, never hangs
        finally:
            cluster.procs["kvs-n0"].send_signal(signal.SIGCONT)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("essa: error: KVS node n0 (worker 0) did not answer within 1 s")
        assert len(result.stderr.splitlines()) == 1
    finally:
        cluster.stop()


def test_keys_are_listed_from_every_node_and_deleted_on_every_replica(anna):
    anna.start(3)
    client = anna.client()
    big = SetLattice(b"w%05d" % i for i in range(3000))  # a big set: kept as members, deleted with them
    for name in ("ns/data/a", "ns/data/b", "other/data/c"):
        client.put(name, set_value(b"x"))
    client.put("ns/data/big", encode_lattice(big))
    assert client.keys("ns/data/") == ["ns/data/a", "ns/data/b", "ns/data/big"]
    assert client.delete("ns/data/big") and client.delete("ns/data/a")
    assert not client.delete("ns/data/a")  # gone everywhere
    assert client.keys("ns/data/") == ["ns/data/b"]
    assert client.get("ns/data/big") is None
    assert set(replicas(anna, client, "ns/data/big").values()) == {None}  # on no replica either
    client.put("ns/data/big", set_value(b"fresh"))  # a deleted key starts anew
    assert decode_lattice(client.get("ns/data/big")) == SetLattice({b"fresh"})


def test_kvs_and_routing_nodes_serve_prometheus_metrics(tmp_path):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    cluster = AnnaCluster(tmp_path, replication=1)
    routing_port, kvs_port = free_port(), free_port()
    try:
        cluster.spawn("routing", "anna", "routing", "--id", "r0", "--listen", cluster.endpoint,
                      "--metrics", f"127.0.0.1:{routing_port}")
        cluster.wait_ready("routing", "essa anna routing r0:")
        cluster.kvs("n0", "--metrics", f"127.0.0.1:{kvs_port}")
        cluster.wait_for_nodes(1)
        client = cluster.client()
        for i in range(3):
            client.put(f"m{i}", set_value(b"x"))
        assert client.get("nope") is None

        def samples(port: int) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
                text = response.read().decode()
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for f in text_string_to_metric_families(text) for s in f.samples}

        kvs = samples(kvs_port)
        assert kvs[("essa_anna_requests_total", (("outcome", "ok"),))] >= 3
        assert kvs[("essa_anna_requests_total", (("outcome", "not_found"),))] >= 1
        assert kvs[("essa_anna_keys", ())] == 3
        assert samples(routing_port)[("essa_anna_address_requests_total", ())] >= 1
    finally:
        cluster.stop()
