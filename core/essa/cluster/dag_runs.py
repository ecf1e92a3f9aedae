"""The scheduler's side of DAG calls: placing every stage at once, and tracking the call.

A DAG call reaches the scheduler as one call request carrying its plan
(``request["dag"]``, :func:`essa.cluster.dags.call_plan`). The scheduler
places every stage at once and writes the executors into the plan; then it
sends each source stage its input (the call's arguments, with the request's
causal ``deps`` if it has some) on its executor's
stage topic (:func:`essa.cluster.topics.executor_stages`), one message per
executor. From there the stages trigger each other executor to executor
(:mod:`essa.cluster.stages`): no stage passes through the scheduler again,
and the sink (or the first stage that fails) answers the caller, under the
DAG call's id, and sends the scheduler the DAG's one done notice.

Placement: a stage that is the only one fed by its upstream stage runs where
that stage runs (a chain costs no hop), unless that executor has
:attr:`DagRuns.follow_slack` more calls in flight than the least loaded one;
every other stage (a source, a branch of a fan-out, a fan-in) is placed by
the scheduler's placement policy, as a call would be. Each stage counts as a
call in flight on its executor until the DAG is answered (stages send no
done notices of their own: that would be a message per stage), except a
stage that follows its upstream stage: it runs after that one, never beside
it, so a chain weighs on its executor as one call (and the keys its stages
read keep its next call there, as they keep a call's).

Tracking: a DAG call is tracked from placing to its caller's receipt, like a
call (the caller confirms the DAG's reply by its id). An executor that goes
away before the DAG is answered while it was given one of its stages, or
after it answered and before the caller confirmed, fails the DAG call with
a message naming the stages it held (stages are not placed again: some may have run
and written state). A DAG whose reply is not confirmed within the
scheduler's ``receipt_timeout`` is forgotten; one not answered within
:attr:`DagRuns.answer_timeout` per stage (plus one: an input was lost on its
way, since every stage ends within its time limit) fails.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from essa.cluster.authorize import Refused
from essa.cluster.consistency import check_fields
from essa.cluster.dags import check_plan, sources
from essa.cluster.stages import send_inputs
from essa.placement import ExecutorState
from essa.transport.base import Message
from essa.util.ratelimit import RateLimitedLog

log = logging.getLogger("essa.cluster.dag_runs")
_problems = RateLimitedLog(log)


@dataclass(slots=True)
class _DagRun:
    """A DAG call placed on executors, tracked until its caller confirms the reply."""

    request: Message
    #: The executor of each stage, by stage index.
    executors: list[str]
    #: The stages held on their executors (all of them until the DAG is answered).
    open: set[int]
    #: The stages that followed their upstream stage to its executor: no load of their own.
    followers: frozenset[int] = frozenset()
    #: The executor that sent the DAG's reply, and when (``None`` before).
    replier: str | None = None
    replied: float | None = None
    #: When it was placed (``time.monotonic()``).
    placed: float = field(default_factory=time.monotonic)


class DagRuns:
    """The DAG calls of one scheduler. Its methods take the scheduler's lock unless they say it is held."""

    #: Calls in flight by which a chained stage's executor may exceed the least loaded before the stage moves.
    follow_slack = 4
    #: Seconds per stage (plus one) a DAG call may go unanswered before it fails.
    answer_timeout = 60.0

    def __init__(self, scheduler: Any) -> None:
        """``scheduler``: the :class:`essa.cluster.scheduler.Scheduler` that owns these (its lock, executors, sending)."""
        self._scheduler = scheduler
        self._runs: dict[str, _DagRun] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._runs

    def place(self, request: Message) -> None:
        """Place every stage of the DAG call ``request`` and start its source stages."""
        s = self._scheduler
        problem = check_plan(request.get("dag")) or check_fields(request)
        if problem is not None:
            s._refuse(request, problem)
            return
        plan = request["dag"]
        stages = plan["stages"]
        if s.authorizer is not None:
            fields = _call_fields(request)
            for stage in stages:
                try:
                    s.authorizer.check_call(_stage_request(fields, stage))
                except Refused as exc:
                    _problems.warning("unauthorized", "refused DAG call %.80s: %s", request["id"], exc.reason)
                    s._fail(request, f"DAG {plan['name']}, stage {stage['name']}: {exc}", kind=exc.kind)
                    return
        with s._lock:
            if request["id"] in self._runs:
                log.debug("dropped DAG call %.80s: it is placed already", request["id"])
                return
            if not s.executors:
                if len(s._backlog) < s.max_backlog:
                    s._backlog.append((time.monotonic() + s.wait_for_executors, request))
                    return
                executors = None
            else:
                executors, followers = self._assign(request, stages)
                self._runs[request["id"]] = _DagRun(request, executors, set(range(len(stages))), followers)
        if executors is None:
            s._fail(request, f"no executor is available, and {s.max_backlog} calls already wait for one")
            return
        head = {"dag": request["id"], "reply_to": request["reply_to"], "run": request["run"], "name": plan["name"],
                "scheduler": self._scheduler.id}  # where the stage that answers sends its done notice
        if "token" in request:
            head["token"] = request["token"]
        if "consistency" in request:
            head["consistency"] = request["consistency"]
        placed = {i: {**stage, "executor": executors[i]} for i, stage in enumerate(stages)}
        args, deps = request.get("args", b""), request.get("deps")
        # The caller's causal dependencies go with the arguments, as a stage's go with its result.
        inputs = [[i, 0, args] if not deps else [i, 0, args, deps] for i in sources(plan)]
        send_inputs(s.transport, head, placed, inputs)

    def _assign(self, request: Message, stages: list[Message]) -> tuple[list[str], frozenset[int]]:  # lock held
        """The executor of each stage, and the stages that follow their upstream stage (no load of their own)."""
        s = self._scheduler
        feeders: list[list[int]] = [[] for _ in stages]
        for i, stage in enumerate(stages):
            for j, _part in stage["next"]:
                feeders[j].append(i)
        candidates = list(s.executors.values())
        chosen: list[ExecutorState] = []
        followers: set[int] = set()
        base = _call_fields(request)
        for i, stage in enumerate(stages):
            target = None
            feeding = feeders[i]
            if len(feeding) == 1 and len(stages[feeding[0]]["next"]) == 1:  # a chain: follow
                target = chosen[feeding[0]]
                least = min(e.in_flight for e in candidates)
                if target.in_flight - least <= self.follow_slack:
                    target.placed += 1
                    followers.add(i)
                else:
                    target = None
            if target is None:
                target = s._choose(_stage_request(base, stage), candidates)
            chosen.append(target)
        return [e.id for e in chosen], frozenset(followers)

    def done(self, notice: Message) -> None:
        """An executor answered a DAG call: ``{"id": DAG call, "executor", "dag": True, "replied": True}``."""
        s = self._scheduler
        executor, dag = notice.get("executor"), notice.get("id")
        if not (isinstance(executor, str) and isinstance(dag, str)):
            _problems.warning("done", "ignored a malformed DAG done notice (it needs 'id' and 'executor')")
            return
        with s._lock:
            run = self._runs.get(dag)
            if run is None or run.replier is not None or executor not in run.executors:
                return  # confirmed or failed already, answered twice (two stages failed), or not its executor
            run.replier, run.replied = executor, time.monotonic()
            for stage in run.open:
                self._release(run, stage)
            run.open.clear()

    def received(self, inbox: str, ids: list) -> None:  # lock held
        """The caller ``inbox`` confirmed the replies to ``ids``: forget those DAG calls."""
        for call_id in ids:
            run = self._runs.get(call_id) if isinstance(call_id, str) else None
            if run is not None and run.request["reply_to"] == inbox:
                del self._runs[call_id]
                for stage in run.open:
                    self._release(run, stage)

    def _release(self, run: _DagRun, stage: int) -> None:  # lock held
        state = self._scheduler.executors.get(run.executors[stage])
        if state is not None:
            if stage not in run.followers:
                state.in_flight -= 1
            state.modules.add(run.request["dag"]["stages"][stage]["module"])

    def executor_gone(self, executor: str) -> int:
        """Fail the DAG calls that ``executor`` (gone) held a stage or an unconfirmed reply of; return how many."""
        s = self._scheduler
        failed: list[tuple[_DagRun, str]] = []
        with s._lock:
            for call_id, run in list(self._runs.items()):
                lost = [i for i in sorted(run.open) if run.executors[i] == executor]
                if not lost and run.replier != executor:
                    continue  # answered already, by another executor
                del self._runs[call_id]
                for stage in run.open:
                    self._release(run, stage)
                plan = run.request["dag"]
                held = ", ".join(plan["stages"][i]["name"] for i in lost)
                what = f"stage{'s' if len(lost) > 1 else ''} {held}" if lost else "its answer"
                failed.append((run, f"executor {executor} went away during DAG {plan['name']} (it held {what})"))
        for run, message in failed:
            s._fail(run.request, message)
        return len(failed)

    def fail_overdue(self) -> int:
        """Fail the DAG calls not answered within :attr:`answer_timeout`; return how many."""
        s = self._scheduler
        now = time.monotonic()
        with s._lock:
            overdue = [k for k, run in self._runs.items() if run.replier is None
                       and run.placed + self.answer_timeout * (len(run.executors) + 1) <= now]
            runs = [self._runs.pop(k) for k in overdue]
            for run in runs:
                for stage in run.open:
                    self._release(run, stage)
        for run in runs:
            limit = self.answer_timeout * (len(run.executors) + 1)
            s._fail(run.request, f"DAG {run.request['dag']['name']} did not answer within {limit:g} s")
        return len(runs)

    def expire(self, cutoff: float) -> int:  # lock held
        """Forget the DAG calls answered before ``cutoff`` whose caller sent no receipt; return how many."""
        stale = [k for k, run in self._runs.items() if run.replied is not None and run.replied <= cutoff]
        for call_id in stale:
            run = self._runs.pop(call_id)
            for stage in run.open:
                self._release(run, stage)
        return len(stale)


def _call_fields(request: Message) -> Message:
    """The fields of a DAG call's request that each of its stages' calls shares (not the plan, not the arguments)."""
    return {k: v for k, v in request.items() if k not in ("dag", "args")}


def _stage_request(fields: Message, stage: Message) -> Message:
    """What placement and authorization see of one stage: a call of its function (``fields``: :func:`_call_fields`)."""
    return {**fields, "module": stage["module"], "function": stage["function"], "namespace": stage["namespace"],
            "deployment": stage["deployment"]}


__all__ = ["DagRuns"]
