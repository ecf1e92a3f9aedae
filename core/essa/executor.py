"""The executor: runs function calls of Wasm modules.

An executor subscribes to ``essa/executor/{id}/calls``, announces itself with
the liveliness token ``essa/live/executor/{id}``, and runs each placed call on
its work pool. While a guest runs, its host functions reach the rest of the
system through :class:`_CallHost`: remote calls start through the process's
:class:`~essa.calls.Caller`, state goes to the store under
``{namespace}/data/{key}``, and output is published to the run's output topic
so it reaches the ``essa run`` console. The reply goes straight to the
caller's inbox; a notice to the scheduler tells it the call is done.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from . import topics
from .abi import EssaResult, Invocation
from .calls import LOCAL, Caller, call_request, reply_message, send_reply
from .engine import START, Grants, format_bytes
from .errors import EssaError, GuestExit, GuestTrap, LimitExceeded, ModuleError
from .pool import WorkPool
from .programs import ProgramCache, publish_module
from .stdin import RemoteStdin
from .store import Store
from .transport.base import Message, Transport

log = logging.getLogger("essa.executor")

_CALLABLE_STATUS = {
    "ok": EssaResult.Ok,
    "missing": EssaResult.NoSuchFunction,
    "bad-signature": EssaResult.InvalidFunctionSignature,
}


@dataclass
class ExecutorStats:
    """Counters an executor keeps (shown by ``essa status`` and used by tests)."""

    calls: int = 0
    runs: int = 0
    failures: int = 0
    by_function: dict[str, int] = field(default_factory=dict)


class Executor:
    """Runs the calls the scheduler places on it.

    :param executor_id: unique among the cluster's executors.
    :param programs: compiled modules (shared by executors of one process).
    :param caller: starts the remote calls of this executor's guests.
    :param workers: threads for queued calls (blocked callers get helpers).
    """

    def __init__(
        self,
        executor_id: str,
        programs: ProgramCache,
        store: Store,
        transport: Transport,
        caller: Caller,
        workers: int = 1,
    ) -> None:
        self.id = executor_id
        self.programs = programs
        self.store = store
        self.transport = transport
        self.caller = caller
        self.workers = workers
        self.pool = WorkPool(workers, name=f"essa-executor-{executor_id}")
        self.stats = ExecutorStats()
        self._stats_lock = threading.Lock()
        self._undo: list[Any] = []
        self._calls: Any = None

    def start(self) -> None:
        """Begin serving calls and announce this executor."""
        self._calls = self.transport.subscribe(topics.executor_calls(self.id), self.submit)
        self._undo.append(self.transport.serve(f"{topics.STATUS}/executor/{self.id}", self.status))
        self._undo.append(self.transport.declare_token(topics.live_executor(self.id)))

    def drain(self, timeout: float = 30.0) -> bool:
        """Stop taking calls and let the running ones finish; return whether they did."""
        if self._calls is not None:
            self._calls.close()
            self._calls = None
        return self.pool.wait_idle(timeout)

    def stop(self) -> None:
        if self._calls is not None:
            self._calls.close()
            self._calls = None
        for undo in reversed(self._undo):
            undo.close()
        self._undo.clear()
        self.pool.close()

    def status(self, _query: Message | None = None) -> Message:
        """Counters and cached modules, for ``essa status``."""
        with self._stats_lock:
            stats = asdict(self.stats)
        return {
            "role": "executor",
            "id": self.id,
            "engine": self.programs.engine.artifact_tag,
            "workers": self.workers,
            "modules": sorted(self.programs.sources),
            "limits": asdict(self.programs.engine.limits),
            "grants": _describe(getattr(self.programs.engine, "grants", None) or Grants()),
            **stats,
        }

    def submit(self, request: Message) -> None:
        """Queue a placed call; its reply goes to the caller when it ends.

        A request that is malformed or larger than the message size limit is
        answered with ``UnknownError`` at once (or dropped with a warning if
        it does not even say where to answer); it never reaches the pool.
        """
        problem = check_request(request, self.programs.engine.limits.max_message_bytes)
        if problem is not None:
            self._refuse(request, problem)
            return
        task = self.pool.submit(self._serve, request)
        LOCAL.tasks[request["id"]] = task  # lets a waiter of this process run it
        if task.started():  # a worker was quicker; it may have missed the entry
            LOCAL.tasks.pop(request["id"], None)

    def _refuse(self, request: Message, problem: str) -> None:
        call_id, reply_to = request.get("id"), request.get("reply_to")
        with self._stats_lock:
            self.stats.failures += 1
        if not (isinstance(call_id, str) and isinstance(reply_to, str)):
            log.warning("executor %s: dropped a call request: %s", self.id, problem)
            return
        log.warning("executor %s: refused call %s: %s", self.id, call_id, problem)
        try:
            send_reply(self.transport, reply_to, reply_message(call_id, EssaResult.UnknownError, message=problem, exit=1))
            self.transport.publish(topics.SCHEDULER_DONE, {"id": call_id, "executor": self.id})
        except Exception as exc:  # the caller's inbox is not a topic, ...
            log.warning("executor %s: cannot answer call %s: %s", self.id, call_id, exc)

    def _serve(self, request: Message) -> None:
        call_id = request["id"]
        LOCAL.tasks.pop(call_id, None)
        try:
            reply = self.execute(request)
        except Exception as exc:  # never leave a caller hanging
            log.exception("executor %s: call %s failed", self.id, call_id)
            reply = reply_message(call_id, EssaResult.UnknownError, message=f"executor {self.id} failed: {exc}")
        send_reply(self.transport, request["reply_to"], reply)
        self.transport.publish(topics.SCHEDULER_DONE, {"id": call_id, "executor": self.id})

    def execute(self, request: Message) -> Message:
        """Run one call request to its end and return the reply message."""
        call_id = request["id"]
        function = request["function"]
        is_run = function == START
        with self._stats_lock:
            if is_run:
                self.stats.runs += 1
            else:
                self.stats.calls += 1
            self.stats.by_function[function] = self.stats.by_function.get(function, 0) + 1
        output = RunOutput(self.transport, request["run"])
        stdin = RemoteStdin(self.transport, request["run"]) if is_run and request.get("stdin") else None
        try:
            if "wasm" in request:
                publish_module(self.store, request["wasm"])
            program = self.programs.get(request["module"])
            status = program.info.callable_status(function)
            if is_run and status == "missing":
                raise ModuleError("the module has no _start function (is it a WASI command?)")
            if is_run and program.info.functions[START] != ((), ()):
                params, results = program.info.functions[START]
                raise ModuleError(
                    f"the module's _start has type ({', '.join(params)}) -> ({', '.join(results)}), "
                    "not () -> () (is it a WASI command?)"
                )
            if not is_run and status != "ok":
                return reply_message(call_id, _CALLABLE_STATUS[status], message=f"cannot call {function}: {status}")
            limits = self.programs.engine.limits
            invocation = Invocation(request["args"], _CallHost(self, program, request, output), output, limits,
                                    argv=request.get("argv", ()), stdin=stdin)
            program.run(invocation, function, None if is_run else len(request["args"]))
        except GuestExit as exc:
            if invocation.exceeded or invocation.memory_refused:  # e.g. malloc failed, then exit(1)
                return self._over_limit(call_id, function, invocation.failure(str(exc)), output, exc.status)
            if is_run:  # the guest's own way to fail; it printed why
                return reply_message(call_id, EssaResult.UnknownError, exit=exc.status)
            output.warn(f"remote call of {function} exited with status {exc.status}")
            return reply_message(call_id, EssaResult.UnknownError, message=f"{function} exited with status {exc.status}")
        except LimitExceeded as exc:
            return self._over_limit(call_id, function, exc, output)
        except GuestTrap as exc:
            self._failed()
            if is_run:
                return reply_message(call_id, EssaResult.UnknownError, message=f"the module trapped: {exc}", exit=1)
            output.warn(f"remote call of {function} trapped: {exc}")
            return reply_message(call_id, EssaResult.UnknownError, message=f"{function} trapped: {exc}")
        except EssaError as exc:  # a module that cannot be loaded, a store failure, ...
            self._failed()
            if not is_run:
                output.warn(f"remote call of {function} failed: {exc}")
            return reply_message(call_id, EssaResult.UnknownError, message=str(exc), exit=1)
        finally:
            if stdin is not None:
                stdin.close()
        if invocation.exceeded is not None:  # an engine that let the guest finish (wasmtime: output)
            return self._over_limit(call_id, function, LimitExceeded(invocation.exceeded), output)
        if is_run:
            return reply_message(call_id, EssaResult.Ok, exit=0)
        if invocation.result is None:
            if invocation.refused_result is not None:
                message = f"{function} returned no result: it refused {invocation.refused_result}"
                return reply_message(call_id, EssaResult.UnknownError, message=message)
            return reply_message(call_id, EssaResult.NoResult, message=f"{function} returned without essa_set_result")
        return reply_message(call_id, EssaResult.Ok, value=invocation.result)

    def _over_limit(self, call_id: str, function: str, exc: Exception, output: "RunOutput", status: int = 1) -> Message:
        """The reply to a call that exceeded a limit, and the warning on the run's console."""
        self._failed()
        if function == START:
            return reply_message(call_id, EssaResult.UnknownError, message=f"the module's {START}: {exc}", exit=status)
        output.warn(f"remote call of {function}: {exc}")
        return reply_message(call_id, EssaResult.UnknownError, message=f"{function}: {exc}")

    def _failed(self) -> None:
        with self._stats_lock:
            self.stats.failures += 1


def _describe(grants: Grants) -> dict:
    """Grants for ``essa status``: directories, and environment variable names (not values)."""
    return {
        "dirs": [f"{g.host}:{g.guest}:{'rw' if g.writable else 'ro'}" for g in grants.dirs],
        "env": sorted(key for key, _value in grants.env),
    }


def check_request(request: Message, max_message_bytes: int) -> str | None:
    """Why a call request cannot be run (one line), or ``None`` if it can."""
    if not isinstance(request, dict):
        return "not a call request"
    if "oversized" in request:  # the transport refused to read it (see essa.transport.zenoh)
        return f"the call request of {request['oversized']} bytes exceeds the executor's message size limit"
    for key in ("id", "reply_to", "module", "function", "namespace", "run"):
        if not isinstance(request.get(key), str):
            return f"malformed call request: {key!r} is missing or not a string"
    argv = request.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
        return "malformed call request: 'argv' is not a list of strings"
    if not isinstance(request.get("stdin", False), bool):
        return "malformed call request: 'stdin' is not a boolean"
    for key in ("args", "wasm"):
        value = request.get(key, b"")
        if not isinstance(value, (bytes, bytearray)):
            return f"malformed call request: {key!r} is not bytes"
        if len(value) > max_message_bytes:
            what = "arguments" if key == "args" else "module"
            return (
                f"the call's {what} of {len(value)} bytes exceed the message size limit "
                f"({format_bytes(max_message_bytes)}) of this executor"
            )
    return None


class RunOutput:
    """A guest's stdout/stderr, published to its run's output topic.

    Large writes go out in chunks of at most :attr:`chunk` bytes, so no output
    message is larger than that.
    """

    __slots__ = ("_transport", "_topic")

    chunk = 1 << 20

    def __init__(self, transport: Transport, run: str) -> None:
        self._transport = transport
        self._topic = topics.run_output(run)

    def write(self, stream: int, data: bytes) -> None:
        chunk = self.chunk
        if len(data) <= chunk:
            self._transport.publish(self._topic, {"stream": stream, "data": data})
            return
        view = memoryview(data)
        for start in range(0, len(data), chunk):
            self._transport.publish(self._topic, {"stream": stream, "data": bytes(view[start : start + chunk])})

    def warn(self, message: str) -> None:
        self.write(2, f"essa: {message}\n".encode())


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

    def start_call(self, name: str, args: bytes):
        req = self._request
        extra = {"argv": req["argv"]} if "argv" in req else {}  # remote calls see the run's arguments too
        return self._executor.caller.start(
            call_request(req["module"], name, args, req["namespace"], req["run"], **extra)
        )

    def get_state(self, key: str) -> bytes | None:
        return self._executor.store.get_bytes(self._prefix + key)

    def merge_state(self, key: str, value: bytes) -> None:
        self._executor.store.merge_bytes(self._prefix + key, value)

    def warn(self, message: str) -> None:
        self._output.warn(f"{self._request['function']}: {message}")
