"""DAGs: registered compositions of deployed functions, called as one (embedded, CLI, cluster).

The module's ``tag_X`` functions append their letter to their arguments, so
a result spells the path the bytes took: ``x`` through ``tag_a -> tag_b``
is ``xab``, and a fan-in's ``echo`` answers its inputs in edge order.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

import essa
from essa.api.connection import Connection
from essa.cluster.embedded import EmbeddedRuntime
from essa.errors import EssaError, NotFound
from essa.testing.dag_modules import tags_module

from .test_cli import assert_one_line_error
from .test_cli import essa as essa_cli
from .test_cluster import cluster  # noqa: F401  (the fixture)
from .test_secure import deployed, secure  # noqa: F401  (the fixtures)

TAGS = tags_module()
CHAIN = (["t.tag_a", "t.tag_b", "t.tag_c"], [("t.tag_a", "t.tag_b"), ("t.tag_b", "t.tag_c")])


def fan(width: int, letters: str = "bcdefghijklmnopqrstuvwxyz") -> tuple[list[str], list[tuple[str, str]]]:
    """``tag_a`` fanning out to ``width`` branches (``width`` <= 25) that fan in to ``echo``."""
    branches = [f"t.tag_{c}" for c in letters[:width]]
    return ["t.tag_a", *branches, "t.echo"], [("t.tag_a", b) for b in branches] + [(b, "t.echo") for b in branches]


@pytest.fixture
def runtime(engine_name):
    with EmbeddedRuntime(engine_name, "memory", executors=2) as rt:
        yield rt


@pytest.fixture
def es(runtime):
    connection = Connection(runtime.client, lambda: None, "embedded")
    connection.deploy(TAGS, name="t")
    return connection


def settled(runtime: EmbeddedRuntime, timeout: float = 60) -> None:
    """Wait until the scheduler tracks no DAG call and no executor holds stage inputs or load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduler = runtime.scheduler
        if (not len(scheduler._dags) and all(e.in_flight == 0 for e in scheduler.executors.values())
                and not any(x._stages._joins for x in runtime.executors)):
            return
        time.sleep(0.05)
    raise AssertionError(f"DAG calls still tracked: {len(runtime.scheduler._dags)}, loads "
                         f"{[e.in_flight for e in runtime.scheduler.executors.values()]}")


def by_function(es: Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in es.status():
        for function, n in (answer.get("by_function") or {}).items():
            counts[function] = counts.get(function, 0) + n
    return counts


# -- embedded ----------------------------------------------------------------------


def test_sequence_fan_out_and_fan_in_give_the_sinks_result(es, runtime):
    dag = es.register_dag("chain", *CHAIN)
    assert (dag.name, dag.sink, dag.functions) == ("chain", "t.tag_c", tuple(CHAIN[0]))
    assert es.call_dag("chain", b"x") == b"xabc"
    es.register_dag("fan", *fan(3))
    assert es.call_dag("fan", b"x") == b"xabxacxad"  # the fan-in's inputs in the order of its edges
    es.register_dag("wide", *fan(25))
    assert es.call_dag("wide", b"-") == b"".join(b"-a" + c.encode() for c in "bcdefghijklmnopqrstuvwxyz")
    es.register_dag("one", ["t.tag_z"])
    assert es.call_dag("one", b"x") == b"xz"
    # Two sources get the call's arguments each; a diamond joins them.
    es.register_dag("two-sources", ["t.tag_a", "t.tag_b", "t.echo"], [("t.tag_b", "t.echo"), ("t.tag_a", "t.echo")])
    assert es.call_dag("two-sources", b"x") == b"xbxa"
    futures = [es.call_dag_async("chain", b"%d" % i) for i in range(50)]
    assert [f.result(60) for f in futures] == [b"%dabc" % i for i in range(50)]
    settled(runtime)


def test_a_dag_call_takes_a_consistency_level_and_its_snapshot_ends_with_it(es, runtime):
    """Repeatable read across the stages (the anna tests check what they read): every level runs, the
    sink's executor's snapshot of the DAG call is gone once it answers, even when a stage failed."""
    es.register_dag("fan", *fan(4))
    es.register_dag("broken", ["t.tag_a", "t.trap", "t.tag_c"], [("t.tag_a", "t.trap"), ("t.trap", "t.tag_c")])
    for level in ("default", "repeatable-read", "causal"):
        assert es.call_dag("fan", b"x", consistency=level) == b"xabxacxadxae"
    with pytest.raises(essa.CallError, match="stage t.trap"):
        es.call_dag("broken", b"x", consistency="repeatable-read")
    es.deploy(TAGS, name="t", consistency="repeatable-read")  # the deployment's level, when the call names none
    assert es.call_dag("fan", b"y") == b"yabyacyadyae"
    with pytest.raises(EssaError, match="unknown consistency level 'serializable'"):
        es.call_dag("fan", b"x", consistency="serializable")
    settled(runtime)
    assert all(x.snapshots.status()["trees_owned"] == 0 for x in runtime.executors)


def test_stages_pin_versions_and_resolve_the_latest_at_call_time(es):
    es.register_dag("pinned", ["t@1.tag_a", "t.tag_b"], [("t@1.tag_a", "t.tag_b")])
    assert es.call_dag("pinned", b"x") == b"xab"
    es.deploy(TAGS, name="t")  # version 2: the DAG's unpinned stage now runs it
    assert es.call_dag("pinned", b"y") == b"yab"


def test_a_failed_stage_fails_the_dag_with_its_error_and_later_stages_do_not_run(es, runtime):
    es.register_dag("broken", ["t.tag_a", "t.trap", "t.tag_c"], [("t.tag_a", "t.trap"), ("t.trap", "t.tag_c")])
    with pytest.raises(essa.CallError, match=r"^DAG broken, stage t\.trap: trap trapped: ") as info:
        es.call_dag("broken", b"x")
    assert info.value.kind == "trap"
    # A failing branch of a fan-out: one answer, and the fan-in never runs.
    functions, edges = fan(3)
    functions[2] = "t.trap"
    edges = [(a if a != "t.tag_c" else "t.trap", b if b != "t.tag_c" else "t.trap") for a, b in edges]
    es.register_dag("branch", functions, edges)
    with pytest.raises(essa.CallError, match="DAG branch, stage t.trap"):
        es.call_dag("branch", b"x")
    settled(runtime)
    counts = by_function(es)
    assert "__essa_wrapper__tag_c" not in counts and "__essa_wrapper__echo" not in counts, counts
    assert counts["__essa_wrapper__trap"] == 2


def test_malformed_dags_are_refused_in_one_line(es):
    cases = [
        (("c", ["t.tag_a", "t.tag_b"], [("t.tag_a", "t.tag_b"), ("t.tag_b", "t.tag_a")]), "has a cycle"),
        (("c", ["t.tag_a", "t.tag_b"], []), "has 2 stages without downstream stages"),
        (("c", ["t.tag_a", "t.tag_a"], []), "names stage 't.tag_a' twice"),
        (("c", ["tag_a"], []), "is not DEPLOYMENT.FUNCTION"),
        (("c", ["t.tag_a", "t.tag_b"], [("t.tag_a", "t.nope")]), "which is not one of its stages"),
        (("c", ["t.tag_a", "t.tag_b"], [("t.tag_a", "t.tag_a")]), "joins a stage to itself"),
        (("c", ["t.tag_a", "t.tag_b"], [("t.tag_a",)]), "is a pair"),
        (("c d", ["t.tag_a"], []), "is not a valid DAG name"),
        (("c", [], []), "needs at least one stage"),
    ]
    for args, message in cases:
        with pytest.raises(EssaError, match=message) as info:
            es.register_dag(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(NotFound, match="no function 'nope'"):
        es.register_dag("c", ["t.nope"])
    with pytest.raises(NotFound, match="no deployment named 'u'"):
        es.register_dag("c", ["u.tag_a"])
    with pytest.raises(NotFound, match="no DAG named 'c'"):
        es.call_dag("c", b"x")
    assert es.dags() == []


def test_list_replace_and_remove(es):
    es.register_dag("chain", *CHAIN)
    es.register_dag("one", ["t.tag_z"])
    assert [d.name for d in es.dags()] == ["chain", "one"]
    es.register_dag("one", ["t.tag_y"])  # replaces it
    assert es.call_dag("one", b"x") == b"xy"
    assert es.remove_dag("one").name == "one"
    assert [d.name for d in es.dags()] == ["chain"]
    with pytest.raises(NotFound, match="no DAG named 'one'"):
        es.call_dag("one", b"x")
    with pytest.raises(NotFound, match="no DAG named 'one'"):
        es.remove_dag("one")


def test_tracking_stays_empty_over_many_dag_calls(es, runtime):
    es.register_dag("chain", *CHAIN)
    es.register_dag("fan", *fan(8))
    for i in range(300):
        assert es.call_dag("chain" if i % 2 else "fan", b"x")
    settled(runtime)


# -- the command line -------------------------------------------------------------


def test_cli_creates_lists_calls_and_removes_dags(tmp_path):
    wasm = tmp_path / "tags.wasm"
    wasm.write_bytes(TAGS)
    assert essa_cli("deploy", str(wasm), "--name", "t").returncode == 0

    def ok(*args: str) -> str:
        result = essa_cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    assert ok("dag", "create", "chain", "t.tag_a", "t.tag_b", "t.tag_c") == \
        "created DAG chain: 3 stages, 2 edges, sink t.tag_c\n"
    ok("dag", "create", "fan", "t.tag_a", "t.tag_b", "t.tag_c", "t.echo", "-e", "t.tag_a:t.tag_b",
       "-e", "t.tag_a:t.tag_c", "-e", "t.tag_b:t.echo", "-e", "t.tag_c:t.echo")
    assert ok("dag", "call", "chain", "x") == "xabc"
    assert ok("dag", "call", "chain", "x", "--consistency", "repeatable-read") == "xabc"
    # bytes in JSON are base64, as `essa call --json` prints a raw function's result
    assert json.loads(ok("dag", "call", "fan", "x", "--json")) == {"dag": "fan", "result": {"base64": "eGFieGFj"}}
    listed = json.loads(ok("dag", "ls", "--json"))
    assert [(d["name"], d["sink"]) for d in listed] == [("chain", "t.tag_c"), ("fan", "t.echo")]
    assert ok("dag", "rm", "fan") == "removed DAG fan\n"
    assert "chain" in ok("dag", "ls") and "fan" not in ok("dag", "ls")
    for args, message in [
        (("dag", "create", "c", "t.tag_a", "-e", "t.tag_a"), "is not FROM:TO"),
        (("dag", "create", "c", "t.tag_a", "t.nope"), "no function 'nope'"),
        (("dag", "call", "fan", "x"), "no DAG named 'fan'"),
        (("dag", "create", "c", "t.tag_a", "t.trap"), None),
        (("dag", "call", "c", "x"), "DAG c, stage t.trap: trap trapped"),
    ]:
        result = essa_cli(*args)
        if message is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode != 0 and "Traceback" not in result.stderr
        line = result.stderr.strip()
        assert line.startswith("essa: error: ") and "\n" not in line and message in line, result.stderr


# -- a cluster of processes ---------------------------------------------------------


def test_dags_on_two_executors_run_stages_on_both(cluster, tmp_path):  # noqa: F811
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    with essa.connect(cluster.endpoint, timeout=60) as es:
        es.deploy(TAGS, name="t")
        es.register_dag("chain", *CHAIN)
        es.register_dag("fan", *fan(16))
        assert es.call_dag("chain", b"x") == b"xabc"
        expected = b"".join(b"xa" + c.encode() for c in "bcdefghijklmnopq")
        futures = [es.call_dag_async("fan", b"x") for _ in range(20)]
        assert [f.result(60) for f in futures] == [expected] * 20
        es.register_dag("broken", ["t.tag_a", "t.trap"], [("t.tag_a", "t.trap")])
        with pytest.raises(essa.CallError, match="stage t.trap"):
            es.call_dag("broken", b"x", timeout=60)
        ran = {a["id"]: a["by_function"] for a in es.status(complete_within=30) if a["role"] == "executor"}
    assert set(ran) == {"0", "1"}
    branches = [f"__essa_wrapper__tag_{c}" for c in "bcdefghijklmnopq"]
    for counts in ran.values():  # the branches spread over both executors
        assert sum(counts.get(b, 0) for b in branches) >= 20, ran


def test_an_executor_killed_during_a_stage_fails_the_dag_naming_its_stages(cluster):  # noqa: F811
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    with essa.connect(cluster.endpoint, timeout=60) as es:
        es.deploy(TAGS, name="t")
        es.register_dag("slow", ["t.tag_a", "t.spin", "t.tag_c"], [("t.tag_a", "t.spin"), ("t.spin", "t.tag_c")])
        future = es.call_dag_async("slow", b"x")
        deadline = time.monotonic() + 90
        spinning = None
        while spinning is None and time.monotonic() < deadline:
            for answer in es.status():
                if answer.get("role") == "executor" and answer.get("running"):
                    spinning = answer["id"]
            time.sleep(0.1)
        assert spinning is not None, cluster.log_text()
        cluster.procs[f"executor-{spinning}"].send_signal(signal.SIGKILL)
        with pytest.raises(essa.CallError, match=rf"executor {spinning} went away during DAG slow \(it held stages? "
                                                 r"[^)]*t\.spin") as info:
            future.result(90)
        assert info.value.kind == "unavailable"
        # The cluster goes on with the executor that is left.
        es.register_dag("chain", *CHAIN)
        assert es.call_dag("chain", b"y", timeout=60) == b"yabc"
    cluster.procs[f"executor-{spinning}"].wait(30)


def test_executors_threads_descriptors_and_memory_stay_flat_over_many_dag_calls(cluster):  # noqa: F811
    from essa.testing.resources import sample

    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    procs = [cluster.procs["scheduler"], cluster.procs["executor-0"], cluster.procs["executor-1"]]
    with essa.connect(cluster.endpoint, timeout=60) as es:
        es.deploy(TAGS, name="t")
        es.register_dag("fan", *fan(8))
        es.register_dag("broken", ["t.tag_a", "t.trap", "t.tag_c"], [("t.tag_a", "t.trap"), ("t.trap", "t.tag_c")])
        expected = b"".join(b"xa" + c.encode() for c in "bcdefghi")

        def burst(n: int) -> None:
            for start in range(0, n, 50):  # 50 at once: the executors' queues and joins fill
                futures = [es.call_dag_async("fan" if i % 10 else "broken", b"x") for i in range(start, start + 50)]
                for i, future in zip(range(start, start + 50), futures):
                    if i % 10:
                        assert future.result(60) == expected
                    else:
                        with pytest.raises(essa.CallError, match="stage t.trap"):
                            future.result(60)

        burst(1000)  # warm: threads started, caches filled
        before = [sample(p.pid) for p in procs]
        burst(3000)
        after = [sample(p.pid) for p in procs]
    for b, a in zip(before, after):
        assert a.fds <= b.fds + 2, (b, a)
        assert a.threads <= b.threads + 2, (b, a)
        assert a.rss <= b.rss + (32 << 20), (b, a)


def test_malformed_stage_inputs_plans_and_notices_change_nothing(cluster):  # noqa: F811
    """Rogue DAG messages, near-valid and random, on the stage topic, the scheduler's and its done topic."""
    import random

    from essa.cluster.processes import open_transport

    from .test_bad_messages import fuzzed_value

    cluster.scheduler()
    cluster.executor("0")
    cluster.wait_for_executors(1)
    rng = random.Random(20261207)
    with essa.connect(cluster.endpoint, timeout=60) as es:
        es.deploy(TAGS, name="t")
        es.register_dag("chain", *CHAIN)
        assert es.call_dag("chain", b"x") == b"xabc"
        plan = es._dag_plan("chain")[1]
        stages = [[i, {**s, "executor": "0"}] for i, s in enumerate(plan["stages"])]
        scheduler = next(a["id"] for a in es.status(complete_within=5.0) if a.get("role") == "scheduler")
        valid = {"dag": "rogue/1", "reply_to": "essa/inbox/rogue", "run": "rogue", "name": "chain",
                 "scheduler": scheduler, "stages": stages, "inputs": [[0, 0, b"x"]]}
        transport = open_transport(connect=[cluster.endpoint], connect_timeout=60)
        try:
            for n in range(300):
                message = json.loads(json.dumps(valid, default=lambda b: b.decode()))  # a deep copy
                message["inputs"] = [[0, 0, b"x"]]
                target = rng.choice([message, message["stages"][rng.randrange(3)][1], message["inputs"][0]])
                key = rng.choice(list(target) if isinstance(target, dict) else range(len(target)))
                target[key] = fuzzed_value(rng)
                transport.publish("essa/executor/0/stages", message)
                transport._session.put("essa/executor/0/stages", rng.randbytes(rng.randint(0, 40)))
                transport.publish(f"essa/scheduler/{scheduler}/calls", {
                    "id": f"rogue/{n}", "reply_to": "essa/inbox/rogue", "module": "m", "function": "f",
                    "namespace": "n", "run": "r", "dag": fuzzed_value(rng)})
                transport.publish(f"essa/scheduler/{scheduler}/done", {
                    "id": fuzzed_value(rng), "executor": "0", "dag": True, "replied": fuzzed_value(rng)})
        finally:
            transport.close()
        assert es.call_dag("chain", b"y", timeout=60) == b"yabc"
    cluster.stop()
    logs = cluster.log_text()
    assert "Traceback" not in logs, logs
    assert "dropped DAG stage inputs" in logs  # noticed, in rate-limited lines
    assert logs.count("dropped DAG stage inputs") < 60, logs


def test_cluster_process_output_is_clean(cluster):  # noqa: F811
    """No warning or traceback in any process's log after DAG calls (malformed-message guards stay quiet)."""
    cluster.scheduler()
    cluster.executor("0")
    cluster.wait_for_executors(1)
    with essa.connect(cluster.endpoint, timeout=60) as es:
        es.deploy(TAGS, name="t")
        es.register_dag("chain", *CHAIN)
        for _ in range(20):
            assert es.call_dag("chain", b"x") == b"xabc"
    cluster.stop()
    logs = cluster.log_text()
    assert "Traceback" not in logs and "dropped" not in logs and "malformed" not in logs, logs


# -- a secure cluster ----------------------------------------------------------------


def test_dags_on_a_secure_cluster_pass_results_and_check_every_stage_against_the_token(secure, deployed):  # noqa: F811
    c = ("--connect", secure.endpoint, "--timeout", "60")
    admin, token_a = secure.token(deployments=["*"]), secure.token(deployments=["a"])
    reader = secure.token(deployments=["a"], read_only=True)
    for name, stages in (("in-a", ["a.remember", "a.echo"]), ("a-and-b", ["a.echo", "b.echo"])):
        created = secure.essa("dag", "create", name, *stages, *c, token=admin)
        assert created.returncode == 0, created.stderr + secure.logs()
    called = secure.essa("dag", "call", "in-a", "plum", *c, token=token_a)
    assert (called.returncode, called.stdout) == (0, "plum"), called.stderr + secure.logs()
    # The client cannot even resolve stage b.echo with this token (and the scheduler checks every stage).
    assert_one_line_error(secure.essa("dag", "call", "a-and-b", "x", *c, token=token_a),
                          "the cluster refused this client: no valid token for deployment 'b'")
    assert_one_line_error(secure.essa("dag", "create", "mine", "a.echo", *c, token=reader),
                          "the token is read-only: it cannot change DAGs")
