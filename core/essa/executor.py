"""The executor: runs function calls of Wasm modules.

An executor serves ``essa/executor/{id}/call`` on its transport. Each request
names a module, a function, the argument bytes, the state namespace and the
run it belongs to; the executor runs it on its work pool and replies with the
outcome. While a guest runs, its host functions reach the rest of the system
through :class:`_CallHost`: remote calls go to the scheduler, state goes to the
store under ``{namespace}/data/{key}``, and output is published to the run's
output topic so it reaches the ``essa run`` console.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from . import topics
from .abi import CallOutcome, EssaResult, Invocation
from .engine import START
from .errors import EssaError, GuestExit, GuestTrap, ModuleError
from .pool import WorkPool
from .programs import ProgramCache
from .store import Store
from .transport.base import Message, Reply, Transport

log = logging.getLogger("essa.executor")

_CALLABLE_STATUS = {
    "ok": EssaResult.Ok,
    "missing": EssaResult.NoSuchFunction,
    "bad-signature": EssaResult.InvalidFunctionSignature,
}


def call_request(module: str, function: str, args: bytes, namespace: str, run: str) -> Message:
    """The message asking for one call (or, with ``function="_start"``, a run)."""
    return {"module": module, "function": function, "args": args, "namespace": namespace, "run": run}


def outcome_from_reply(reply: Message) -> CallOutcome:
    return CallOutcome(EssaResult(reply["code"]), reply.get("value", b""), reply.get("message", ""))


@dataclass
class ExecutorStats:
    """Counters an executor keeps (shown by status commands and tests)."""

    calls: int = 0
    runs: int = 0
    failures: int = 0
    by_function: dict[str, int] = field(default_factory=dict)


class Executor:
    """Runs calls sent to it over a transport.

    :param executor_id: unique among the cluster's executors.
    :param programs: compiled modules (shared by executors of one process).
    :param workers: threads for queued calls (blocked callers get helpers).
    """

    def __init__(
        self,
        executor_id: str,
        programs: ProgramCache,
        store: Store,
        transport: Transport,
        workers: int = 1,
    ) -> None:
        self.id = executor_id
        self.programs = programs
        self.store = store
        self.transport = transport
        self.pool = WorkPool(workers, name=f"essa-executor-{executor_id}")
        self.stats = ExecutorStats()
        self._stats_lock = threading.Lock()
        self._served: list[Any] = []

    def start(self) -> None:
        """Begin serving calls."""
        self._served.append(self.transport.serve(topics.executor_call(self.id), self.submit))

    def stop(self) -> None:
        for served in self._served:
            served.close()
        self._served.clear()
        self.pool.close()

    def submit(self, request: Message) -> Reply:
        """Queue a call request; the returned reply completes with its outcome."""
        return self.pool.submit(self.execute, request)

    def execute(self, request: Message) -> Message:
        """Run one call request to its end and return the reply message."""
        function = request["function"]
        is_run = function == START
        with self._stats_lock:
            if is_run:
                self.stats.runs += 1
            else:
                self.stats.calls += 1
            self.stats.by_function[function] = self.stats.by_function.get(function, 0) + 1
        output = RunOutput(self.transport, request["run"])
        try:
            program = self.programs.get(request["module"])
            status = program.info.callable_status(function)
            if is_run and status == "missing":
                raise ModuleError("the module has no _start function (is it a WASI command?)")
            if not is_run and status != "ok":
                return _reply(_CALLABLE_STATUS[status], message=f"cannot call {function}: {status}")
            invocation = Invocation(request["args"], _CallHost(self, program, request, output), output)
            program.run(invocation, function, None if is_run else len(request["args"]))
        except GuestExit as exc:
            if is_run:  # the guest's own way to fail; it printed why
                return _reply(EssaResult.UnknownError, exit=exc.status)
            output.warn(f"remote call of {function} exited with status {exc.status}")
            return _reply(EssaResult.UnknownError, message=f"{function} exited with status {exc.status}")
        except GuestTrap as exc:
            self._failed()
            if is_run:
                return _reply(EssaResult.UnknownError, message=f"the module trapped: {exc}", exit=1)
            output.warn(f"remote call of {function} trapped: {exc}")
            return _reply(EssaResult.UnknownError, message=f"{function} trapped: {exc}")
        except EssaError as exc:  # a module that cannot be loaded, a store failure, ...
            self._failed()
            if not is_run:
                output.warn(f"remote call of {function} failed: {exc}")
            return _reply(EssaResult.UnknownError, message=str(exc), exit=1)
        if is_run:
            return _reply(EssaResult.Ok, exit=0)
        if invocation.result is None:
            return _reply(EssaResult.NoResult, message=f"{function} returned without essa_set_result")
        return _reply(EssaResult.Ok, value=invocation.result)

    def _failed(self) -> None:
        with self._stats_lock:
            self.stats.failures += 1


def _reply(code: EssaResult, value: bytes = b"", message: str = "", exit: int | None = None) -> Message:
    reply: Message = {"code": int(code), "value": value, "message": message}
    if exit is not None:
        reply["exit"] = exit
    return reply


class RunOutput:
    """A guest's stdout/stderr, published to its run's output topic."""

    __slots__ = ("_transport", "_topic")

    def __init__(self, transport: Transport, run: str) -> None:
        self._transport = transport
        self._topic = topics.run_output(run)

    def write(self, stream: int, data: bytes) -> None:
        self._transport.publish(self._topic, {"stream": stream, "data": data})

    def warn(self, message: str) -> None:
        self.write(2, f"essa: {message}\n".encode())


class _PendingCall:
    __slots__ = ("_reply",)

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def wait(self) -> CallOutcome:
        try:
            return outcome_from_reply(self._reply.result())
        except EssaError as exc:
            return CallOutcome(EssaResult.UnknownError, message=str(exc))


class _CallHost:
    """The ABI's view of the runtime, for one invocation."""

    __slots__ = ("_executor", "_program", "_request", "_output", "_prefix")

    def __init__(self, executor: Executor, program, request: Message, output: RunOutput) -> None:
        self._executor = executor
        self._program = program
        self._request = request
        self._output = output
        self._prefix = f"{request['namespace']}/data/"

    def function_status(self, name: str) -> EssaResult:
        return _CALLABLE_STATUS[self._program.info.callable_status(name)]

    def start_call(self, name: str, args: bytes) -> _PendingCall:
        req = self._request
        message = call_request(req["module"], name, args, req["namespace"], req["run"])
        try:
            reply = self._executor.transport.request(topics.SCHEDULER_CALL, message)
        except EssaError as exc:
            return _FailedCall(str(exc))  # type: ignore[return-value]
        return _PendingCall(reply)

    def get_state(self, key: str) -> bytes | None:
        return self._executor.store.get_bytes(self._prefix + key)

    def merge_state(self, key: str, value: bytes) -> None:
        self._executor.store.merge_bytes(self._prefix + key, value)

    def warn(self, message: str) -> None:
        self._output.warn(message)


class _FailedCall:
    __slots__ = ("_message",)

    def __init__(self, message: str) -> None:
        self._message = message

    def wait(self) -> CallOutcome:
        return CallOutcome(EssaResult.UnknownError, message=self._message)
