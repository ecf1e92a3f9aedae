"""Helpers shared by the conformance tests."""

from __future__ import annotations

from essa.wasm.abi import CallOutcome, EssaResult
from essa.wasm.invocation import Invocation


class Output:
    """Collects guest output and essa's warnings, as ``output=`` of a client run or call.

    ``chunks`` keeps every write in order as ``(stream, bytes)``.
    """

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def __call__(self, message) -> None:
        self.chunks.append((message["stream"], message["data"]))

    def stream(self, number: int) -> bytes:
        return b"".join(data for stream, data in self.chunks if stream == number)

    @property
    def streams(self) -> dict[int, bytes]:
        return {1: self.stream(1), 2: self.stream(2)}

    @property
    def stdout(self) -> str:
        return self.stream(1).decode()

    @property
    def stderr(self) -> str:
        return self.stream(2).decode()


class _Failed:
    def wait(self, timeout: float | None = None) -> CallOutcome:
        return CallOutcome(EssaResult.UnknownError, message="no remote calls in engine-level tests")


class StandaloneHost:
    """An :class:`essa.wasm.abi.Host` without a runtime, for driving an engine directly."""

    def __init__(self) -> None:
        self.state: dict[str, bytes] = {}
        self.warnings: list[str] = []

    def function_status(self, name: str) -> EssaResult:
        return EssaResult.NoSuchFunction

    def start_call(self, name: str, args: bytes) -> _Failed:
        return _Failed()

    def get_state(self, key: str) -> bytes | None:
        return self.state.get(key)

    def merge_state(self, key: str, value: bytes) -> None:
        self.state[key] = value

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class StreamOutput:
    """An :class:`essa.wasm.abi.Output` that keeps writes in order."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def write(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, bytes(data)))


def invocation(args: bytes = b"") -> Invocation:
    """A fresh invocation with a standalone host and an output that keeps writes."""
    return Invocation(args, StandaloneHost(), StreamOutput())
