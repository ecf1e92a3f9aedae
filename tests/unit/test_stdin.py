"""essa.stdin: a run's stdin pulled from the client as the guest reads it."""

from __future__ import annotations

import io
import threading
import time

from essa.cluster import topics
from essa.cluster.calls import check_request
from essa.cluster.stdin import RemoteStdin, StdinServer
from essa.transport.local import LocalTransport
from essa.wasm.stdin import CHUNK, Stdin


def test_reads_take_what_is_buffered_then_see_the_end():
    stdin = Stdin()
    stdin.feed(b"hello ")
    stdin.feed(b"world")
    assert stdin.read(3) == b"hel"
    assert stdin.read(100) == b"lo "
    assert not stdin.at_end()
    stdin.finish()
    assert stdin.read(100) == b"world"
    assert stdin.at_end() and stdin.read(100) == b""


def test_a_read_waits_until_its_deadline_or_the_end():
    stdin = Stdin()
    assert stdin.read(10, deadline=time.monotonic() + 0.05) is None
    assert not stdin.wait(time.monotonic() + 0.05)
    stdin.feed(b"read")
    assert stdin.read(10) == b"read"
    threading.Timer(0.05, stdin.close).start()
    assert stdin.read(10) == b""  # no deadline: closing ends the wait, as the end of input
    stdin.feed(b"too late")
    assert stdin.at_end() and stdin.read(10) == b""


class Recording(io.BytesIO):
    """A source that records how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read1(self, size: int = -1) -> bytes:
        self.asked.append(size)
        return super().read1(min(size, 5))  # a pipe gives what it has: here 5 bytes at most

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor")


def test_the_client_reads_only_what_the_guest_asks_for():
    transport = LocalTransport()
    source = Recording(b"0123456789abc")
    server = StdinServer(transport, "run1", source)
    remote = RemoteStdin(transport, "run1")
    try:
        time.sleep(0.05)
        assert source.asked == [], "nothing is read before the guest asks"
        assert remote.read(100, time.monotonic() + 30) == b"01234"
        assert source.asked == [CHUNK]
        assert b"".join(iter(lambda: remote.read(100, time.monotonic() + 30), b"")) == b"56789abc"
        assert remote.at_end()
    finally:
        remote.close()
        server.close()


def test_bad_messages_neither_stop_the_server_nor_hang_the_guest():
    transport = LocalTransport()
    server = StdinServer(transport, "run2", b"payload")
    remote = RemoteStdin(transport, "run2")
    try:
        for junk in ({"want": "lots"}, {"want": -1}, {}, ["not", "a", "dict"]):
            transport.publish(topics.run_stdin_want("run2"), junk)  # type: ignore[arg-type]
        assert remote.read(100, time.monotonic() + 30) == b"payload"
        transport.publish(topics.run_stdin("run2"), {"data": 42})  # not bytes: the input ends there
        assert remote.read(100, time.monotonic() + 30) == b""
    finally:
        remote.close()
        server.close()


def test_requests_with_malformed_arguments_or_stdin_are_refused():
    base = {"id": "1", "reply_to": "essa/inbox/r", "module": "m", "function": "_start", "namespace": "n", "run": "x",
            "args": b""}
    assert check_request({**base, "argv": ["a.wasm", "x"], "stdin": True}, "executor", 1 << 20) is None
    assert "argv" in check_request({**base, "argv": "a.wasm"}, "executor", 1 << 20)
    assert "argv" in check_request({**base, "argv": ["a", 3]}, "executor", 1 << 20)
    assert "argv" in check_request({**base, "argv": ["a\0b"]}, "executor", 1 << 20)
    assert "stdin" in check_request({**base, "stdin": "yes"}, "executor", 1 << 20)
