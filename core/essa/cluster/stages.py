"""The executor's side of DAG calls: stage inputs in, stage results on to the next executor.

A stage's input arrives as a *part* on the executor's stage topic
(:func:`essa.cluster.topics.executor_stages`): from the scheduler for a
source stage (the DAG call's arguments), from the executor of an upstream
stage otherwise (its result). A part is ``{"dag": DAG call id, "reply_to",
"run", "plan" (with each stage's executor), "stage", "part", "args"}``, plus
the caller's ``token``, or ``"failed": True`` instead of ``args`` when an
upstream stage failed.

:class:`Stages` gathers a stage's parts (a fan-in waits for one per
upstream stage) and, once all are in, runs the stage as a call on this
executor (:meth:`essa.cluster.executor.Executor.submit`: the same checks,
authorization and limits as any call) with the parts concatenated in order.
The call request carries ``dag_run``, the DAG call's id, on every stage:
what a consistency level that spans a DAG's stages (repeatable read) keys
its snapshot on. When the stage ends (:meth:`Stages.finished`):

- it succeeded and has downstream stages: its result goes to each, as a part,
  straight to that stage's executor (a function call when it is this one);
- it is the sink: its result answers the caller, under the DAG call's id;
- it failed: the caller gets the failure, naming the stage, and the
  downstream stages get a failed part, so every stage after it ends without
  running (and the caller gets one answer).

Each stage's end sends the scheduler a done notice (``"dag": True``), so it
knows every executor's load. Parts wait at most :attr:`Stages.join_timeout`
seconds for the rest of their stage's parts (an upstream executor died: the
scheduler failed the DAG call), and at most :attr:`Stages.max_joins` stages
wait at once.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from essa.cluster import topics
from essa.cluster.calls import call_request, check_reply, reply_message, send_reply
from essa.cluster.dags import check_plan
from essa.transport.base import Message
from essa.util.ratelimit import RateLimitedLog, describe
from essa.wasm.abi import EssaResult

log = logging.getLogger("essa.cluster.stages")
_problems = RateLimitedLog(log)


def check_part(part: object) -> str | None:
    """Why a stage part (from a peer) cannot be used (one line), or ``None`` if it can."""
    if not isinstance(part, dict):
        return "not a DAG stage part"
    if not isinstance(part.get("dag"), str) or not 0 < len(part["dag"]) <= 1024:
        return "malformed DAG stage part: 'dag' is not a call id"
    if not topics.is_inbox(part.get("reply_to")) or not topics.is_chunk(part.get("run")):
        return "malformed DAG stage part: 'reply_to' or 'run' is missing"
    plan = part.get("plan")
    problem = check_plan(plan)
    if problem is not None:
        return problem
    executors = plan.get("executors")
    if not (isinstance(executors, list) and len(executors) == len(plan["stages"])
            and all(topics.is_chunk(e) for e in executors)):
        return "malformed DAG stage part: the plan does not name each stage's executor"
    stage, index = part.get("stage"), part.get("part")
    if type(stage) is not int or not 0 <= stage < len(executors):
        return "malformed DAG stage part: 'stage' is not one of the plan's"
    if type(index) is not int or not 0 <= index < plan["stages"][stage]["parts"]:
        return "malformed DAG stage part: 'part' is not one of the stage's"
    if part.get("failed") is not True and not isinstance(part.get("args"), (bytes, bytearray)):
        return "malformed DAG stage part: 'args' is not bytes"
    return None


@dataclass(slots=True)
class _Join:
    """The parts of one stage received so far."""

    parts: dict[int, bytes] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)


class Stages:
    """One executor's DAG stages (see the module documentation).

    :param executor: the :class:`essa.cluster.executor.Executor` they run on.
    """

    #: Seconds a stage's parts wait for the rest.
    join_timeout = 600.0
    #: Most stages waiting for parts at once; the oldest is dropped for a new one.
    max_joins = 10_000
    #: Stages remembered as failed (their late parts are dropped).
    remembered_failures = 10_000

    def __init__(self, executor: Any) -> None:
        self._executor = executor
        self._joins: collections.OrderedDict[tuple[str, int], _Join] = collections.OrderedDict()
        self._failed: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def receive(self, part: Message) -> None:
        """A stage part arrived: keep it; run the stage once all its parts are in."""
        problem = check_part(part)
        if problem is not None:
            _problems.warning("part", "executor %s: dropped a DAG stage part: %s", self._executor.id, problem)
            return
        key = (part["dag"], part["stage"])
        stage = part["plan"]["stages"][part["stage"]]
        with self._lock:
            self._expire()
            if key in self._failed:
                return
            if part.get("failed") is True:
                self._joins.pop(key, None)
                self._remember_failed(key)
                join = None
            else:
                join = self._joins.get(key)
                if join is None:
                    join = self._joins[key] = _Join()
                join.parts[part["part"]] = bytes(part["args"])
                if len(join.parts) < stage["parts"]:
                    return
                del self._joins[key]
        if join is None:  # an upstream stage failed: this one ends without running
            self._pass_on(part, part["stage"], None)
            self._done(part, part["stage"], replied=False)
            return
        args = b"".join(join.parts[i] for i in range(stage["parts"]))
        extra = {"id": f"{part['dag']}/{part['stage']}", "reply_to": part["reply_to"], "deployment": stage["deployment"],
                 "dag_run": part["dag"], "stage": part["stage"], "plan": part["plan"]}
        if "token" in part:
            extra["token"] = part["token"]
        self._executor.submit(call_request(stage["module"], stage["function"], args, stage["namespace"], part["run"],
                                           **extra))

    def _expire(self) -> None:  # lock held
        cutoff = time.monotonic() - self.join_timeout
        while self._joins:
            key, join = next(iter(self._joins.items()))
            if join.since > cutoff and len(self._joins) <= self.max_joins:
                break
            del self._joins[key]
            _problems.warning("join", "executor %s: gave up waiting for the inputs of a DAG stage (call %.80s)",
                              self._executor.id, key[0])

    def _remember_failed(self, key: tuple[str, int]) -> None:  # lock held
        self._failed[key] = None
        while len(self._failed) > self.remembered_failures:
            self._failed.popitem(last=False)

    def finished(self, request: Message, reply: Message) -> None:
        """Stage ``request`` (a call request made by :meth:`receive`) ended with ``reply``: pass it on."""
        plan, index, dag = request["plan"], request["stage"], request["dag_run"]
        stage = plan["stages"][index]
        if check_reply(reply) is not None and reply["code"] == EssaResult.Ok:
            if stage["next"]:
                self._pass_on(request, index, reply.get("value", b""))
                self._done(request, index, replied=False)
            else:
                send_reply(self._executor.transport, request["reply_to"], {**reply, "id": dag})
                self._done(request, index, replied=True)
            return
        message = reply.get("message") or EssaResult(reply.get("code", EssaResult.UnknownError)).name
        failure = reply_message(dag, EssaResult(reply["code"]), message=f"DAG {plan['name']}, stage {stage['name']}: "
                                f"{message}", kind=reply.get("kind") or "error")
        with self._lock:
            self._remember_failed((dag, index))
        send_reply(self._executor.transport, request["reply_to"], failure)
        self._pass_on(request, index, None)
        self._done(request, index, replied=True)

    def _pass_on(self, source: Message, index: int, value: bytes | None) -> None:
        """Send stage ``index``'s result (``None``: it failed) to each of its downstream stages."""
        plan = source["plan"]
        dag = source.get("dag_run") or source["dag"]
        for j, part_index in plan["stages"][index]["next"]:
            part: Message = {"dag": dag, "reply_to": source["reply_to"], "run": source["run"], "plan": plan,
                             "stage": j, "part": part_index}
            if value is None:
                part["failed"] = True
            else:
                part["args"] = value
            if "token" in source:
                part["token"] = source["token"]
            target = plan["executors"][j]
            try:
                if target == self._executor.id:
                    self.receive(part)
                else:
                    self._executor.transport.publish(topics.executor_stages(target), part, patient=True)
            except Exception as exc:  # the scheduler fails the DAG if the target went away
                _problems.warning("send", "executor %s: cannot pass a DAG stage's result on to executor %s: %s",
                                  self._executor.id, target, describe(exc))

    def _done(self, source: Message, index: int, replied: bool) -> None:
        dag = source.get("dag_run") or source["dag"]
        try:
            self._executor.transport.publish(topics.SCHEDULER_DONE, {"id": dag, "executor": self._executor.id,
                                                                      "dag": True, "stage": index, "replied": replied})
        except Exception as exc:
            _problems.warning("done", "executor %s: cannot send a done notice: %s", self._executor.id, describe(exc))


__all__ = ["Stages", "check_part"]
