"""The scheduler's side of DAG calls, in one process: placing, tracking, refusing (essa.cluster.dag_runs).

Executors here are recorders on the stage topic, so each test sees exactly
what the scheduler sent and answers (or dies) as it needs.
"""

from __future__ import annotations

import pytest
from test_scheduler import eventually  # noqa: E402  (tests/unit is on sys.path)

from essa.cluster.calls import Caller, call_request
from essa.cluster.dags import call_plan, check_dag, check_plan
from essa.cluster.deployments import Deployment
from essa.cluster.processes import topics
from essa.cluster.scheduler import Scheduler
from essa.cluster.stages import check_inputs
from essa.transport.local import LocalTransport


class StageRecorder:
    """An executor that records the stage inputs it gets."""

    def __init__(self, transport: LocalTransport, executor_id: str) -> None:
        self.transport = transport
        self.id = executor_id
        self.received: list[dict] = []
        self._sub = transport.subscribe(topics.executor_stages(executor_id), self.received.append)
        self._token = transport.declare_token(topics.live_executor(executor_id))

    def answer(self, message: dict, value: bytes = b"ok") -> None:
        """Answer the DAG call as its sink would, and tell the scheduler."""
        self.transport.publish(message["reply_to"], {"id": message["dag"], "code": 0, "value": value, "message": ""})
        self.transport.publish(topics.scheduler_done(message["scheduler"]), {
            "id": message["dag"], "executor": self.id, "dag": True, "replied": True})

    def die(self) -> None:
        self._sub.close()
        self._token.close()


def deployment(name: str) -> Deployment:
    return Deployment(name, 1, f"module-{name}", 10, ("f", "g", "h", "s"), 0)


def plan(functions: list[str], edges: list[tuple[str, str]]) -> dict:
    return call_plan(check_dag("d", functions, edges), deployment)


def dag_request(p: dict, **extra) -> dict:
    return call_request("module-t", "f", b"args", "t", "run", dag=p, **extra)


@pytest.fixture
def cluster():
    transport = LocalTransport()
    scheduler = Scheduler(transport, wait_for_executors=0.5)
    scheduler.start()
    caller = Caller(transport)
    executors = [StageRecorder(transport, str(i)) for i in range(2)]
    yield transport, scheduler, caller, executors
    caller.close()
    scheduler.stop()


def loads(scheduler: Scheduler) -> list[int]:
    return [scheduler.executors[e].in_flight for e in sorted(scheduler.executors)]


def test_a_chain_stays_on_one_executor_and_a_fan_out_spreads(cluster):
    _transport, scheduler, caller, executors = cluster
    chain = plan(["t.f", "t.g", "t.h"], [("t.f", "t.g"), ("t.g", "t.h")])
    future = caller.start(dag_request(chain))
    sent = [m for e in executors for m in e.received]
    assert len(sent) == 1 and sent[0]["inputs"] == [[0, 0, b"args"]]
    placed = {i: stage["executor"] for i, stage in sent[0]["stages"]}
    assert len(set(placed.values())) == 1 and sorted(loads(scheduler)) == [0, 1]  # a chain weighs as one call
    assert check_inputs(sent[0])[0] is None
    owner = executors[int(placed[0])]
    owner.answer(sent[0], b"done")
    assert future.result(10)["value"] == b"done"
    eventually(lambda: not len(scheduler._dags), "the receipt ended the DAG call")
    assert loads(scheduler) == [0, 0]

    branches = [f"{d}.{f}" for d in "tuv" for f in "fg"]  # more than the placement's bonus for a loaded module
    fan = plan(["w.s", *branches, "t.s"], [("w.s", b) for b in branches] + [(b, "t.s") for b in branches])
    caller.start(dag_request(fan))
    message = next(m for e in executors for m in e.received if m["dag"] != sent[0]["dag"])
    stages = dict((i, s) for i, s in message["stages"])
    assert {stages[i]["executor"] for i in range(1, 7)} == {"0", "1"}  # the branches spread


def test_an_executor_that_dies_with_a_stage_fails_the_dag_call_naming_it(cluster):
    _transport, scheduler, caller, executors = cluster
    future = caller.start(dag_request(plan(["t.f", "t.g"], [("t.f", "t.g")])))
    message = next(m for e in executors for m in e.received)
    holder = executors[int(message["stages"][0][1]["executor"])]
    holder.die()
    reply = future.result(10)
    assert reply["kind"] == "unavailable"
    assert reply["message"] == f"executor {holder.id} went away during DAG d (it held stages t.f, t.g)"
    eventually(lambda: not len(scheduler._dags), "the failed DAG call is forgotten")


def test_a_dag_call_waits_for_an_executor_then_fails(cluster):
    _transport, scheduler, caller, executors = cluster
    for e in executors:
        e.die()
    eventually(lambda: not scheduler.executors, "the executors left")
    reply = caller.start(dag_request(plan(["t.f"], []))).result(10)
    assert reply["message"] == "no executor joined within 0.5 s"


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p["stages"][0]["next"].__setitem__(0, [0, 0]), "sends its result to no later stage"),
    (lambda p: p["stages"][0].__setitem__("parts", 2), "source stage 0 waits for more"),
    (lambda p: p["stages"][1].__setitem__("next", []), "the last stage, and only it, is the sink"),
    (lambda p: p["stages"][2].__setitem__("parts", 3), "waits for 3 parts but is fed 2"),
    (lambda p: p["stages"][0]["next"].append([2, 1]), "is fed twice"),
    (lambda p: p["stages"][1].pop("module"), "has no 'module'"),
    (lambda p: p.__setitem__("stages", []), "must list 1 to 256 stages"),
    (lambda p: p["stages"][1].__setitem__("consistency", "serializable"),
     "stage 1: unknown consistency level 'serializable'"),
])
def test_a_malformed_plan_is_refused_in_one_line_and_nothing_runs(cluster, damage, problem):
    _transport, _scheduler, caller, executors = cluster
    p = plan(["t.f", "t.g", "t.s"], [("t.f", "t.g"), ("t.f", "t.s"), ("t.g", "t.s")])
    assert check_plan(p) is None
    damage(p)
    reply = caller.start(dag_request(p)).result(10)
    assert reply["kind"] == "invalid" and problem in reply["message"] and "\n" not in reply["message"]
    assert not any(e.received for e in executors)


def test_the_callers_causal_deps_go_to_every_source_stage_and_malformed_ones_are_refused(cluster):
    _transport, _scheduler, caller, executors = cluster
    two_sources = plan(["t.f", "t.g", "t.s"], [("t.f", "t.s"), ("t.g", "t.s")])
    caller.start(dag_request(two_sources, consistency="causal", deps=["a", "b"]))
    eventually(lambda: sum(len(m["inputs"]) for e in executors for m in e.received) == 2, "both sources got input")
    inputs = sorted(item for e in executors for m in e.received for item in m["inputs"])
    assert inputs == [[0, 0, b"args", ["a", "b"]], [1, 0, b"args", ["a", "b"]]]
    assert all(check_inputs(m)[0] is None for e in executors for m in e.received)
    for e in executors:
        e.received.clear()
    reply = caller.start(dag_request(two_sources, consistency="causal", deps=[1])).result(10)
    assert reply["kind"] == "invalid" and reply["message"].endswith("'deps' is not a list of at most 1024 keys")
    assert not any(e.received for e in executors)


def test_every_stage_is_checked_against_the_callers_token(tmp_path):
    from essa.cluster.authorize import Authorizer
    from essa.security import tokens

    private, public = tokens.create_keys(tmp_path)
    transport = LocalTransport()
    scheduler = Scheduler(transport, authorizer=Authorizer(tokens.Verifier(public)))
    scheduler.start()
    caller = Caller(transport)
    executor = StageRecorder(transport, "0")
    try:
        token = tokens.create(private, deployments=["t"])
        p = plan(["t.f", "u.g"], [("t.f", "u.g")])
        reply = caller.start(dag_request(p, token=token, deployment="u")).result(10)
        assert reply["kind"] == "refused"
        assert reply["message"].startswith("DAG d, stage u.g: the cluster refused this client: ")
        assert "deployment 'u'" in reply["message"] and not executor.received
        allowed = plan(["t.f", "t.g"], [("t.f", "t.g")])
        caller.start(dag_request(allowed, token=token, deployment="t"))
        assert len(executor.received) == 1 and executor.received[0]["token"] == token
    finally:
        caller.close()
        scheduler.stop()


def _inputs_message() -> dict:
    p = plan(["t.f", "t.g", "t.s"], [("t.f", "t.g"), ("t.f", "t.s"), ("t.g", "t.s")])
    stages = [[i, {**s, "executor": "0"}] for i, s in enumerate(p["stages"])]
    return {"dag": "c/1", "reply_to": "essa/inbox/c", "run": "run", "name": "d", "scheduler": "s1", "stages": stages,
            "inputs": [[0, 0, b"x"]]}


@pytest.mark.parametrize("damage, problem", [
    (lambda m: m.pop("dag"), "'dag' is not a call id"),
    (lambda m: m.pop("scheduler"), "'scheduler' is not a scheduler id"),
    (lambda m: m.__setitem__("reply_to", "essa/*"), "'reply_to' or 'run'"),
    (lambda m: m.__setitem__("inputs", []), "'stages' or 'inputs'"),
    (lambda m: m["stages"].__setitem__(0, [0]), "a stage is not [index, stage]"),
    (lambda m: m["stages"][0][1].__setitem__("executor", "a/b"), "needs 'parts', 'next' and 'executor'"),
    (lambda m: m["stages"][1][1]["next"].__setitem__(0, [1, 0]), "sends its result to no later stage"),
    (lambda m: m["stages"].pop(), "sends its result to no later stage"),  # a stage downstream is missing
    (lambda m: m["stages"][0][1]["next"].__setitem__(0, [1, 5]), "sends its result to no later stage"),
    (lambda m: m["inputs"].__setitem__(0, [9, 0, b""]), "an input is not [stage, part, args]"),
    (lambda m: m["inputs"].__setitem__(0, [0, 0, "text"]), "an input is not [stage, part, args]"),
    (lambda m: m["inputs"].__setitem__(0, [0, 0, b"x", ["k"], "more"]), "an input is not [stage, part, args]"),
    (lambda m: m["stages"][0][1].__setitem__("name", 7), "lacks one of name"),
    (lambda m: m.__setitem__("consistency", ["x"]), "unknown consistency level"),
    (lambda m: m["stages"][2][1].__setitem__("consistency", 3), "stage 2: unknown consistency level"),
])
def test_malformed_stage_inputs_are_named_in_one_line(damage, problem):
    message = _inputs_message()
    assert check_inputs(message)[0] is None
    damage(message)
    found, _stages = check_inputs(message)
    assert found is not None and problem in found and "\n" not in found


@pytest.mark.parametrize("junk", [None, [], "x", 7, {"dag": 1}, {"stages": "x"}])
def test_stage_inputs_that_are_not_messages_are_refused(junk):
    assert check_inputs(junk)[0] is not None


def test_a_dag_call_never_answered_fails_after_its_timeout(cluster, monkeypatch):
    _transport, scheduler, caller, executors = cluster
    monkeypatch.setattr(scheduler._dags, "answer_timeout", 0.25)
    reply = caller.start(dag_request(plan(["t.f", "t.g"], [("t.f", "t.g")]))).result(60)  # nobody answers
    assert reply["message"] == "DAG d did not answer within 0.75 s" and reply["kind"] == "unavailable"
    eventually(lambda: not len(scheduler._dags) and loads(scheduler) == [0, 0], "the DAG call is forgotten")
