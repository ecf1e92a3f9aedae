"""The executor's side of DAG calls: stage inputs in, stage results on to the next executor.

Stage inputs travel in *input messages* on an executor's stage topic
(:func:`essa.cluster.topics.executor_stages`): from the scheduler for the
source stages (the DAG call's arguments), from the executor of an upstream
stage otherwise (its result). One message carries every input its sender
has at once for that executor (a fan-out sends one message per executor, not
one per branch)::

    {"dag": DAG call id, "reply_to", "run", "name": the DAG's name, ["token"], ["consistency"],
     "stages": [[index, stage], ...],    # the stages fed, and every stage after them
     "inputs": [[stage, part, args], ...]}   # args None: that upstream stage failed;
                                             # [stage, part, args, deps]: with causal dependencies

A stage is the plan's (:func:`essa.cluster.dags.call_plan`) plus its
``executor``. A message names only the stages its inputs feed and the stages
downstream of them (what their executors need to pass results on), so the
messages shrink towards the sink.

:class:`Stages` gathers a stage's parts (a fan-in waits for one per
upstream stage) and, once all are in, runs the stage as a call on this
executor with the parts concatenated in order: the stages of one message
that are ready together go to
:meth:`essa.cluster.executor.Executor.submit_stages` at once (the same
checks, authorization and limits as any call; one pool task works through
them, or, on an idle executor, the thread that received them when they are
short, and their results go on together).
The call request carries ``dag_run``, the DAG call's id, on every stage.
A stage's consistency level is the call's (``consistency`` in the message),
else its deployment's (the plan's stage says it); at ``repeatable-read``
every stage (and every call a stage starts) reads one snapshot, keyed by the
DAG call's id and owned by the sink's executor
(:class:`essa.cluster.consistency.Snapshots`), which ends it when the sink
ends or gets a failed input. At ``causal`` an input carries ``deps`` (as a
call request does, see :mod:`essa.cluster.consistency`): the keys its
upstream stage's reply named (its own inputs' deps, its reads and writes),
or for a source the DAG request's; the stage's call request carries the
union of its parts' (:func:`gather_deps`, bounded: beyond ``MAX_DEPS`` keys,
``True``; parts of one stage that leave in one message carry their union
once, on the first), so its reads of them skip this executor's cache once, and its
reply, the sink's included, carries them on. A stage at another level passes
the deps it got on unchanged (a causal stage after it still sees what the
causal ones before it did); where no stage is causal, inputs carry none.
Malformed deps fail their stage, in one line, when its call is checked
(:func:`essa.cluster.consistency.check_fields`).
When the stage ends (:meth:`Stages.finished`):

- it succeeded and has downstream stages: its result goes to each, straight
  to that stage's executor (a function call when it is this one);
- it is the sink: its result answers the caller, under the DAG call's id,
  and the scheduler gets a done notice (``"dag": True, "replied": True``);
- it failed: the caller gets the failure, naming the stage, and so does the
  scheduler; the downstream stages get a failed input, so every stage after
  it ends without running.

Results for a fan-in stage leave together: while other stages of this
executor that feed the same fan-in still run, a finished one's result waits
for theirs (the fan-in waits for all of them anyway), so a fan-out of N
branches over two executors costs one message each way, not N.

Only the stage that answers sends the scheduler a done notice (one message
per DAG call, not one per stage). Parts wait at most
:attr:`Stages.join_timeout` seconds for the rest of their stage's parts (an
upstream executor died: the scheduler failed the DAG call), and at most
:attr:`Stages.max_joins` stages wait at once.
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
from essa.cluster.consistency import DAG_TREE, DEFAULT, REPEATABLE_READ, check_deps, check_level, union_deps
from essa.cluster.dags import MAX_STAGES, STAGE_TEXT, check_stage_level
from essa.transport.base import Message, Transport
from essa.util.ratelimit import RateLimitedLog, describe
from essa.wasm.abi import EssaResult

log = logging.getLogger("essa.cluster.stages")
_problems = RateLimitedLog(log)


def downstream(stages: dict[int, Message], fed: list[int]) -> dict[int, Message]:
    """The stages of ``stages`` that ``fed`` are, and every stage after them."""
    found: dict[int, Message] = {}
    todo = list(fed)
    while todo:
        i = todo.pop()
        if i not in found:
            found[i] = stages[i]
            todo.extend(j for j, _part in stages[i]["next"])
    return found


def send_inputs(transport: Transport, head: Message, stages: dict[int, Message],
                inputs: list[list], local: Any = None) -> None:
    """Send ``inputs`` (``[stage, part, args]``) to the executors of their stages, one message per executor.

    ``head`` holds the message's ``dag``, ``reply_to``, ``run``, ``name`` and
    ``token``; ``stages`` at least every stage downstream of the inputs'.
    ``local`` (``(executor id, accept)``) takes the messages of one executor
    without the transport.
    """
    by_executor: dict[str, list[list]] = {}
    for item in inputs:
        by_executor.setdefault(stages[item[0]]["executor"], []).append(item)
    if local is not None and local[0] in by_executor:
        # This executor's own inputs last: taking them may wake a worker, which would hold the interpreter
        # lock while a publish to another executor waits for it (a put lets the lock go).
        by_executor[local[0]] = by_executor.pop(local[0])
    for executor, items in by_executor.items():
        items = _deps_once(items)
        known = downstream(stages, [item[0] for item in items])
        message = {**head, "stages": [[i, stage] for i, stage in known.items()], "inputs": items}
        try:
            if local is not None and executor == local[0]:
                local[1](message, known)
            else:
                transport.publish(topics.executor_stages(executor), message, patient=True)
        except Exception as exc:  # the scheduler fails the DAG if the executor went away
            _problems.warning("send", "cannot send DAG stage inputs to executor %s: %s", executor, describe(exc))


def _deps_once(items: list[list]) -> list[list]:
    """``items`` with the deps of each stage's inputs joined on the first of them (the stage takes their union
    anyway): a fan-in's parts in one message do not each carry up to ``MAX_DEPS`` keys."""
    first: dict[int, list] = {}
    result = []
    for item in items:
        if len(item) < 4:
            result.append(item)
        elif item[0] not in first:
            first[item[0]] = item = list(item)  # its deps may change: a copy
            result.append(item)
        else:
            first[item[0]][3] = union_deps(first[item[0]][3], item[3])
            result.append(item[:3])
    return result


def stage_level(message: Message, stage: Message) -> str:
    """A stage's consistency level: the DAG call's, else its deployment's (the plan's stage)."""
    return message.get("consistency") or stage.get("consistency") or DEFAULT


def repeatable(level: str | None, stages: dict[int, Message]) -> bool:
    """Whether a stage of ``stages`` reads the DAG call's snapshot (``level``: the call's, if it names one)."""
    if level is not None:
        return level == REPEATABLE_READ
    return any(stage.get("consistency") == REPEATABLE_READ for stage in stages.values())


def check_inputs(message: object) -> tuple[str | None, dict[int, Message]]:
    """Why an input message (from a peer) cannot be used (one line, or ``None``), and its stages by index.

    Every ``next`` must point to a later stage the message names (so no
    message can make stages loop), every part index must be one its stage
    waits for.
    """
    if not isinstance(message, dict):
        return "not a DAG input message", {}
    if not isinstance(message.get("dag"), str) or not 0 < len(message["dag"]) <= 1024:
        return "malformed DAG input message: 'dag' is not a call id", {}
    if not topics.is_inbox(message.get("reply_to")) or not topics.is_chunk(message.get("run")):
        return "malformed DAG input message: 'reply_to' or 'run' is missing", {}
    if not isinstance(message.get("name"), str) or len(message["name"]) > 63:
        return "malformed DAG input message: 'name' is missing", {}
    if not topics.is_chunk(message.get("scheduler")):
        return "malformed DAG input message: 'scheduler' is not a scheduler id", {}
    problem = check_level(message.get("consistency"))
    if problem is not None:
        return f"malformed DAG input message: {problem}", {}
    pairs, inputs = message.get("stages"), message.get("inputs")
    if not (isinstance(pairs, list) and 0 < len(pairs) <= MAX_STAGES and isinstance(inputs, list)
            and 0 < len(inputs) <= MAX_STAGES):
        return "malformed DAG input message: 'stages' or 'inputs' is not a list of 1 to 256", {}
    stages: dict[int, Message] = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int and 0 <= pair[0] < MAX_STAGES
                and isinstance(pair[1], dict)):
            return "malformed DAG input message: a stage is not [index, stage]", {}
        stages[pair[0]] = pair[1]
    for i, stage in stages.items():
        for key in STAGE_TEXT:
            value = stage.get(key)
            if type(value) is not str or len(value) > 1024:
                return f"malformed DAG input message: stage {i} lacks one of {', '.join(STAGE_TEXT)}", {}
        parts, nexts = stage.get("parts"), stage.get("next")
        if not (type(parts) is int and 1 <= parts <= MAX_STAGES and isinstance(nexts, list)
                and topics.is_chunk(stage.get("executor"))):
            return f"malformed DAG input message: stage {i} needs 'parts', 'next' and 'executor'", {}
        problem = check_stage_level(i, stage)
        if problem is not None:
            return f"malformed DAG input message: {problem}", {}
    for i, stage in stages.items():
        for edge in stage["next"]:
            if type(edge) is not list or len(edge) != 2:
                return f"malformed DAG input message: stage {i} sends its result to no later stage", {}
            j, part = edge
            if type(j) is not int or type(part) is not int or j <= i or j not in stages \
                    or not 0 <= part < stages[j]["parts"]:
                return f"malformed DAG input message: stage {i} sends its result to no later stage", {}
    for item in inputs:  # an input's deps are checked when its stage is (check_fields): that stage fails
        if not (isinstance(item, list) and len(item) in (3, 4) and type(item[0]) is int and item[0] in stages
                and type(item[1]) is int and 0 <= item[1] < stages[item[0]]["parts"]
                and (item[2] is None or isinstance(item[2], (bytes, bytearray)))):
            return "malformed DAG input message: an input is not [stage, part, args] (or [..., deps])", {}
    return None, stages


def gather_deps(deps: object, more: object) -> object:
    """A stage's ``deps`` so far, with one more input's: their union, or a malformed one as it is.

    A malformed one is kept so that the stage's call request carries it and
    :func:`essa.cluster.consistency.check_fields` refuses that stage in one line.
    """
    if check_deps(deps) is not None:
        return deps
    if check_deps(more) is not None:
        return more
    return union_deps(deps, more)  # type: ignore[arg-type]  (both are checked)


@dataclass(slots=True)
class _Join:
    """The parts of one stage received so far."""

    parts: dict[int, bytes] = field(default_factory=dict)
    #: The union of the parts' causal dependencies (``None``: none came).
    deps: Any = None
    since: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Outbox:
    """The results for one fan-in stage that this executor's stages produce, held until the last is done."""

    #: Stages of this executor that feed it and have not ended.
    feeders: int = 0
    inputs: list[list] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


class Stages:
    """One executor's DAG stages (see the module documentation).

    :param executor: the :class:`essa.cluster.executor.Executor` they run on.
    """

    #: Seconds a stage's parts wait for the rest (memory is bounded by :attr:`max_joins` anyway).
    join_timeout = 3600.0
    #: Most stages waiting for parts at once; the oldest is dropped for a new one.
    max_joins = 10_000
    #: Stages remembered as failed (their late parts are dropped).
    remembered_failures = 10_000

    def __init__(self, executor: Any) -> None:
        self._executor = executor
        self._joins: collections.OrderedDict[tuple[str, int], _Join] = collections.OrderedDict()
        self._failed: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._outbox: collections.OrderedDict[tuple[str, int], _Outbox] = collections.OrderedDict()
        self._lock = threading.Lock()

    def receive(self, message: Message) -> None:
        """An input message arrived (from a peer): check it, then :meth:`accept` it."""
        problem, stages = check_inputs(message)
        if problem is not None:
            _problems.warning("inputs", "executor %s: dropped DAG stage inputs: %s", self._executor.id, problem)
            return
        self.accept(message, stages, received=True)

    def accept(self, message: Message, stages: dict[int, Message], received: bool = False) -> None:
        """Keep the inputs of a checked message; run each stage whose parts are all in (``received``: on the
        thread that receives inputs, see :meth:`essa.cluster.executor.Executor.submit_stages`)."""
        ready: list[tuple[int, bytes, Any]] = []
        failed: list[int] = []
        dag = message["dag"]
        with self._lock:
            self._expire()
            for index, part, args, *deps in message["inputs"]:
                deps = deps[0] if deps else None
                key = (dag, index)
                if key in self._failed:
                    continue
                if args is None:  # an upstream stage failed: this one ends without running
                    self._joins.pop(key, None)
                    self._remember_failed(key)
                    failed.append(index)
                    continue
                parts = stages[index]["parts"]
                if parts == 1:
                    ready.append((index, bytes(args), deps))
                    continue
                join = self._joins.get(key)
                if join is None:
                    join = self._joins[key] = _Join()
                join.parts[part] = bytes(args)
                join.deps = gather_deps(join.deps, deps)  # a fan-in depends on what each of its parts did
                if len(join.parts) == parts:
                    del self._joins[key]
                    ready.append((index, b"".join(join.parts[p] for p in range(parts)), join.deps))
            for index, _args, _deps in ready:  # their results for a fan-in wait for each other (see finished)
                for j, _part in stages[index]["next"]:
                    if stages[j]["parts"] > 1:
                        box = self._outbox.get((dag, j))
                        if box is None:
                            box = self._outbox[(dag, j)] = _Outbox()
                        box.feeders += 1
        if failed:
            if any(not stages[i]["next"] for i in failed) and repeatable(message.get("consistency"), stages):
                self._executor.snapshots.end_dag(dag)  # the sink will not run: the DAG call ended
            self._pass_on(message, stages, [[j, p, None] for i in failed for j, p in stages[i]["next"]])
        requests = []
        for index, args, deps in ready:
            stage = stages[index]
            extra = {"id": f"{dag}/{index}", "reply_to": message["reply_to"], "deployment": stage["deployment"],
                     "dag_run": dag, "dag_name": message["name"], "stage": index, "dag_stages": stages,
                     "dag_scheduler": message["scheduler"]}
            if "token" in message:
                extra["token"] = message["token"]
            if "consistency" in message:
                extra["dag_consistency"] = message["consistency"]
            level = stage_level(message, stage)
            if level != DEFAULT:
                extra["consistency"] = level
                if level == REPEATABLE_READ:  # the sink's executor owns the snapshot (the sink is the last stage)
                    extra["snapshot"] = [dag, stages[max(stages)]["executor"], DAG_TREE]
            if deps is not None:  # at causal its reads see them; at another level it only passes them on
                extra["deps"] = deps
            requests.append(call_request(stage["module"], stage["function"], args, stage["namespace"],
                                         message["run"], **extra))
        if requests:
            self._executor.submit_stages(requests, received)

    def _expire(self) -> None:  # lock held
        cutoff = time.monotonic() - self.join_timeout
        while self._outbox:
            key, box = next(iter(self._outbox.items()))
            if box.since > cutoff and len(self._outbox) <= self.max_joins:
                break
            del self._outbox[key]  # a stage counted as a feeder never ended (a duplicate call id)
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
        """Stage ``request`` (a call request made by :meth:`accept`) ended with ``reply``: pass it on."""
        self.finished_many([(request, reply)])

    def finished_many(self, results: list[tuple[Message, Message]]) -> None:
        """Stages of one input message ended (``(request, reply)`` each): their results go on together."""
        inputs: list[list] = []
        for request, reply in results:
            inputs.extend(self._outcome(request, reply))
        if inputs:
            request = results[0][0]
            self._pass_on(request, request["dag_stages"], inputs)

    def _outcome(self, request: Message, reply: Message) -> list[list]:
        """Answer the caller if stage ``request`` is the sink or failed; the inputs it gives the next stages."""
        stages, index, dag = request["dag_stages"], request["stage"], request["dag_run"]
        stage = stages[index]
        if not stage["next"] and repeatable(request.get("dag_consistency"), stages):
            self._executor.snapshots.end_dag(dag)  # the DAG call ends with its sink
        if check_reply(reply) is not None and reply["code"] == EssaResult.Ok:
            if stage["next"]:
                value = reply.get("value", b"")
                # A causal stage's reply carries its deps (its inputs', its reads and writes); another passes its
                # inputs' on, so a causal stage after it still sees what the causal ones before it did.
                deps = reply.get("deps", request.get("deps"))
                if deps:
                    return [[j, p, value, deps] for j, p in stage["next"]]
                return [[j, p, value] for j, p in stage["next"]]
            # The notice first (as an idle executor does for a call): the caller's next call then finds
            # this DAG's stages no longer counted as load (its placement may follow the keys they read).
            self._done(dag, request["dag_scheduler"])
            send_reply(self._executor.transport, request["reply_to"], {**reply, "id": dag})
            return []
        message = reply.get("message") or EssaResult(reply.get("code", EssaResult.UnknownError)).name
        failure = reply_message(dag, EssaResult(reply["code"]), message=f"DAG {request['dag_name']}, stage "
                                f"{stage['name']}: {message}", kind=reply.get("kind") or "error")
        with self._lock:
            self._remember_failed((dag, index))
        self._done(dag, request["dag_scheduler"])
        send_reply(self._executor.transport, request["reply_to"], failure)
        return [[j, p, None] for j, p in stage["next"]]

    def _pass_on(self, source: Message, stages: dict[int, Message], inputs: list[list]) -> None:
        """Send ``inputs`` to their stages' executors (this one's without the transport).

        Inputs of a fan-in stage that other stages of this executor still
        feed wait in its outbox; the last one sends them all.
        """
        dag = source.get("dag_run") or source["dag"]
        if "dag_run" in source:  # a stage that ran here (not a failure passed through): it was counted
            ready: list[list] = []
            with self._lock:
                for item in inputs:
                    box = self._outbox.get((dag, item[0]))
                    if box is None:
                        ready.append(item)
                        continue
                    box.inputs.append(item)
                    box.feeders -= 1
                    if box.feeders <= 0:
                        del self._outbox[(dag, item[0])]
                        ready.extend(box.inputs)
            inputs = ready
        if not inputs:
            return
        head = {"dag": dag, "reply_to": source["reply_to"], "run": source["run"],
                "name": source.get("dag_name") or source["name"],
                "scheduler": source.get("dag_scheduler") or source["scheduler"]}
        if "token" in source:
            head["token"] = source["token"]
        level = source.get("dag_consistency") if "dag_run" in source else source.get("consistency")
        if level is not None:
            head["consistency"] = level
        send_inputs(self._executor.transport, head, stages, inputs, (self._executor.id, self.accept))

    def _done(self, dag: str, scheduler: str) -> None:
        """Tell ``scheduler`` (the one that placed it) this executor answered DAG call ``dag``."""
        try:
            self._executor.transport.publish(topics.scheduler_done(scheduler), {
                "id": dag, "executor": self._executor.id, "dag": True, "replied": True})
        except Exception as exc:
            _problems.warning("done", "executor %s: cannot send a done notice: %s", self._executor.id, describe(exc))


__all__ = ["Stages", "check_inputs", "downstream", "gather_deps", "send_inputs"]
