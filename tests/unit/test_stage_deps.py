"""Causal dependencies across a DAG's stages (essa.cluster.stages): what the stage messages carry, in one process.

A real scheduler and two executors (the memory store, the test engine) run
stages that write and read state; the stage input messages are recorded on
their way into each executor, and the sink's reply is read as the caller
gets it (the deps the anna tests rely on to skip stale caches).
"""

from __future__ import annotations

import pytest
from test_scheduler import eventually  # noqa: E402  (tests/unit is on sys.path)

from essa.api.connection import Connection
from essa.cluster.calls import call_request
from essa.cluster.consistency import MAX_DEPS, CausalSession, check_deps, union_deps
from essa.cluster.embedded import EmbeddedRuntime
from essa.cluster.stages import gather_deps, send_inputs
from essa.state.bincode import encode_lattice
from essa.state.lattice import SetLattice
from essa.testing.dag_modules import appended_values, state_args, state_module
from essa.transport.local import LocalTransport

#: put_pass writes the key; get_append (on a branch, then as the fan-in sink) reads it.
DIAMOND = (["s.put_pass", "s.get_append", "s@two.get_append"],
           [("s.put_pass", "s.get_append"), ("s.put_pass", "s@two.get_append"),
            ("s.get_append", "s@two.get_append")])


def test_deps_fields_are_checked_and_joined_bounded():
    assert check_deps(None) is None and check_deps(True) is None and check_deps(["a"]) is None
    for bad in (False, "k", [1], {"k": 1}, ["k"] * (MAX_DEPS + 1)):
        assert "'deps' is not a list of at most" in check_deps(bad)
    assert union_deps(None, ["b"]) == ["b"] and union_deps(["a"], None) == ["a"] and union_deps(None, None) is None
    assert union_deps(["b", "a"], ["c", "a"]) == ["a", "b", "c"]
    assert union_deps(["a"], True) is True and union_deps(True, None) is True
    many = [f"k{i}" for i in range(MAX_DEPS)]
    assert union_deps(many, many) == sorted(many) and union_deps(many, ["one more"]) is True
    # A stage's parts: a malformed one is kept as it is (the stage's call is then refused by check_fields).
    assert gather_deps(["a"], ["b"]) == ["a", "b"] and gather_deps(None, None) is None
    assert gather_deps(["a"], [7]) == [7] and gather_deps("bad", ["b"]) == "bad"


def test_a_message_carries_the_deps_of_a_fan_ins_parts_once():
    """Parts of one stage that leave together (a fan-in's, from one executor): the first carries their union."""
    transport = LocalTransport()
    sent: list[dict] = []
    subscription = transport.subscribe("essa/executor/1/stages", sent.append)
    stages = {0: {"executor": "1", "next": [[2, 0]]}, 1: {"executor": "1", "next": [[2, 1]]},
              2: {"executor": "1", "next": [[3, 0]], "parts": 3}, 3: {"executor": "1", "next": []}}
    try:
        send_inputs(transport, {"dag": "d"}, stages, [[2, 0, b"a", ["k1", "k2"]], [2, 1, b"b", ["k3"]], [2, 2, b"c"],
                                                      [3, 0, b"d", ["k4"]]])
    finally:
        subscription.close()
    assert sent[0]["inputs"] == [[2, 0, b"a", ["k1", "k2", "k3"]], [2, 1, b"b"], [2, 2, b"c"], [3, 0, b"d", ["k4"]]]


@pytest.fixture
def runtime(engine_name):
    with EmbeddedRuntime(engine_name, "memory", executors=2) as rt:
        es = Connection(rt.client, lambda: None, "embedded")
        es.deploy(state_module(), name="s")
        es.tag("s", "two")  # a DAG names each stage once: the sink is the same function by another name
        es.register_dag("diamond", *DIAMOND)
        rt.connection = es
        received: list[dict] = []
        for executor in rt.executors:  # every input message, whether it crossed the transport or not
            accept = executor._stages.accept
            executor._stages.accept = lambda message, stages, received=False, accept=accept, seen=received: (
                seen.append(message), accept(message, stages, received))[1]
        rt.received = received
        yield rt


def stage_deps(inputs) -> object:
    """The deps a stage's inputs give it together."""
    deps = None
    for item in inputs:
        deps = gather_deps(deps, item[3] if len(item) > 3 else None)
    return deps


def call_diamond(rt: EmbeddedRuntime, args: bytes, **fields) -> dict:
    """The DAG call's reply message as the caller gets it (the request as the client sends it, plus ``fields``)."""
    plan = rt.connection._dag_plan("diamond")[1]
    sink = plan["stages"][-1]
    request = call_request(sink["module"], sink["function"], args, sink["namespace"], "run",
                           deployment=sink["deployment"], dag=plan, **fields)
    return rt.caller.start(request).result(60)


def test_a_causal_dags_stages_pass_their_deps_on_and_the_sink_answers_the_union(runtime):
    namespace = runtime.connection.deployment("s").namespace
    key = f"{namespace}/data/k"
    args = state_args("k", encode_lattice(SetLattice({b"v1"})))
    reply = call_diamond(runtime, args, consistency="causal", deps=["from-the-caller"])
    assert reply["code"] == 0, reply
    assert [v for v in appended_values(reply["value"], 2 * len(args))] == [encode_lattice(SetLattice({b"v1"}))] * 2
    assert reply["deps"] == sorted([key, "from-the-caller"])  # the caller's, the writer's and the readers' keys
    inputs = sorted((item for message in runtime.received for item in message["inputs"]), key=lambda i: i[:2])
    assert [item[:2] for item in inputs] == [[0, 0], [1, 0], [2, 0], [2, 1]], inputs  # the fan-in's two parts
    assert inputs[0][3] == ["from-the-caller"]  # the source's, from the scheduler
    assert inputs[1][3] == sorted([key, "from-the-caller"])  # the writer's, to the branch
    # The fan-in's parts: the writer's and the branch's; in one message, only the first carries their union.
    assert stage_deps(inputs[2:]) == sorted([key, "from-the-caller"]), inputs

    # The default level: no deps anywhere (nor at a level that is not causal and got none).
    runtime.received.clear()
    reply = call_diamond(runtime, args)
    assert reply["code"] == 0 and "deps" not in reply
    assert all(len(item) == 3 for message in runtime.received for item in message["inputs"])


def test_a_fan_in_depends_on_every_part_and_deps_pass_through_a_stage_of_another_level(runtime):
    """The writer at the default level (its deployment's) between a causal caller and causal readers: it
    passes on what the caller's request carried; the fan-in's deps are its parts' union."""
    runtime.connection.deploy(state_module(), name="s", consistency="causal")  # the stages' deployments
    runtime.connection.tag("s", "two")
    namespace = runtime.connection.deployment("s").namespace
    args = state_args("k", encode_lattice(SetLattice({b"v2"})))
    reply = call_diamond(runtime, args, deps=["x"])
    assert reply["code"] == 0, reply
    assert reply["deps"] == sorted([f"{namespace}/data/k", "x"])

    runtime.received.clear()
    runtime.connection.deploy(state_module(), name="s")  # version 3, the default level: the first two stages
    reply = call_diamond(runtime, args, deps=["x"])  # the sink, s@two, is still version 2: causal
    assert reply["code"] == 0 and reply["deps"] == sorted([f"{namespace}/data/k", "x"]), reply
    passed = [item for message in runtime.received for item in message["inputs"]]
    assert len(passed) == 4 and stage_deps(i for i in passed if i[0] != 2) == ["x"], passed  # through both
    assert stage_deps(i for i in passed if i[0] == 2) == ["x"], passed  # default-level stages


def test_malformed_deps_in_a_stage_input_fail_that_stage_in_one_line(runtime):
    plan = runtime.connection._dag_plan("diamond")[1]
    stages = [[i, {**stage, "executor": "0"}] for i, stage in enumerate(plan["stages"])]
    scheduler = runtime.scheduler.id
    replies: list[dict] = []
    inbox = runtime.transport.subscribe("essa/inbox/rogue", replies.append)
    try:
        for n, deps in enumerate([[7], "k", ["k"] * (MAX_DEPS + 1)]):
            message = {"dag": f"rogue/{n}", "reply_to": "essa/inbox/rogue", "run": "r", "name": "diamond",
                       "scheduler": scheduler, "stages": stages, "inputs": [[0, 0, state_args("k"), deps]]}
            runtime.transport.publish("essa/executor/0/stages", message)
        eventually(lambda: len(replies) == 3, "each rogue DAG call is answered")
    finally:
        inbox.close()
    for reply in replies:
        assert reply["code"] != 0 and "\n" not in reply["message"], reply
        assert reply["message"].startswith("DAG diamond, stage s.put_pass: malformed call request: 'deps' is not")


def test_a_client_session_sends_its_causal_replies_deps_with_its_later_causal_calls():
    session = CausalSession()
    causal_plan = {"stages": [{"consistency": "causal"}, {}]}
    assert session.request_extra({"consistency": "causal"}) == {}  # nothing yet
    session.received({"id": "c1", "deps": ["a", "b"]})
    session.received({"id": "c2", "deps": [3]})  # malformed: ignored
    session.received({"id": "c3"})
    assert session.request_extra({"consistency": "causal"}) == {"deps": ["a", "b"]}
    assert session.request_extra({"dag": causal_plan}) == {"deps": ["a", "b"]}  # a stage's deployment is causal
    assert session.request_extra({"dag": causal_plan, "consistency": "default"}) == {}  # the call's level wins
    assert session.request_extra({"dag": {"stages": [{}]}}) == {} and session.request_extra({}) == {}
    assert session.request_extra({"consistency": "repeatable-read"}) == {}
    assert session.request_extra({"consistency": "causal", "deps": ["mine"]}) == {}  # the request's own stay
    session.received({"id": "c4", "deps": [f"k{i}" for i in range(MAX_DEPS)]})
    assert session.request_extra({"consistency": "causal"}) == {"deps": True}  # bounded like a call's


def test_a_causal_dag_calls_deps_reach_the_same_clients_next_causal_call(runtime):
    es = runtime.connection
    key = f"{es.deployment('s').namespace}/data/k"
    sent: list[dict] = []
    start = runtime.caller.start
    runtime.caller.start = lambda request, *a, **k: (sent.append(request), start(request, *a, **k))[1]
    es.call("s", "get_append", state_args("k"), consistency="causal")
    assert "deps" not in sent[-1]  # the session is empty
    es.call_dag("diamond", state_args("k", encode_lattice(SetLattice({b"v"}))), consistency="causal", timeout=60)
    assert sent[-1]["deps"] == [key]  # the first call's reply's
    es.call("s", "get_append", state_args("other"), consistency="causal")
    assert sent[-1]["deps"] == [key]  # the DAG's sink's reply's (the same key: its writer's and readers')
    es.call("s", "get_append", state_args("other"))
    assert "deps" not in sent[-1]  # the default level carries none
    es.call("s", "get_append", state_args("k"), consistency="causal")
    assert sent[-1]["deps"] == sorted([key, f"{es.deployment('s').namespace}/data/other"])
