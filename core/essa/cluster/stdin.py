"""A run's standard input, pulled from its client as the guest reads.

``essa run`` gives the module's ``_start`` its own standard input (or the file
of ``--stdin``); every other call reads an empty stdin. The bytes come from the
client, which may be in another process than the executor running the guest,
so stdin is pulled, chunk by chunk, as the guest reads:

- the executor's :class:`RemoteStdin` publishes a *want* (``{"want": N}``) on
  the run's ``stdin/want`` topic when a guest waits for bytes it has none of;
- the client's :class:`StdinServer` answers each want with one read of at most
  N bytes of its source (``{"data": ...}``), or ``{"eof": True}`` at its end.

So nothing is read from the user's terminal or pipe before the guest asks for
it, at most one chunk is in flight, and an interactive guest sees each line as
soon as it is typed. On a cluster that checks access tokens the answers carry
the run's token, and the executor takes stdin only from whoever holds it (a
peer that learnt the run's id cannot feed it, nor end it). Embedded runs use the same exchange over the in-process
transport.
"""

from __future__ import annotations

import hmac
import os
import threading
from typing import BinaryIO, Callable

from essa.cluster import topics
from essa.transport.base import Message, Subscription, Transport
from essa.wasm.stdin import CHUNK, Stdin


class RemoteStdin(Stdin):
    """The stdin of a run, pulled from the client that serves it (:class:`StdinServer`).

    :param token: the run's access token: if given, answers without it are ignored.
    """

    def __init__(self, transport: Transport, run: str, token: str | None = None) -> None:
        super().__init__()
        self._transport = transport
        self._token = token
        self._want_topic = topics.run_stdin_want(run)
        self._asked = False
        self._subscription: Subscription | None = transport.subscribe(topics.run_stdin(run), self._arrived)

    def _arrived(self, message: Message) -> None:
        if self._token is not None and not (
                isinstance(message, dict) and isinstance(message.get("token"), str)
                and hmac.compare_digest(message["token"], self._token)):
            return  # not from the client that started the run
        data = message.get("data") if isinstance(message, dict) else None
        with self._cond:
            self._asked = False
        if isinstance(data, (bytes, bytearray)) and data:
            self.feed(data)
        else:  # the end, or something that is not stdin: either way no more bytes come
            self.finish()

    def _asking(self) -> None:
        if self._asked or self._subscription is None:
            return
        self._asked = True
        try:
            self._transport.publish(self._want_topic, {"want": CHUNK})
        except Exception:  # the transport is closing: the input ends here
            self._ended = True

    def close(self) -> None:
        super().close()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()


class StdinServer:
    """Serves a run's stdin from ``source`` to the executor that runs it.

    ``source`` is a binary file (read with one ``os.read`` per want when it has
    a descriptor, so interactive input is passed on line by line), or bytes.
    One background thread reads; it blocks only while the guest waits.
    """

    def __init__(self, transport: Transport, run: str, source: BinaryIO | bytes, token: str | None = None) -> None:
        self._transport = transport
        self._topic = topics.run_stdin(run)
        self._proof = {} if token is None else {"token": token}  # the run's token: see RemoteStdin
        self._read = _reader(source)
        self._wanted = 0
        self._done = False
        self._cond = threading.Condition()
        self._subscription = transport.subscribe(topics.run_stdin_want(run), self._want)
        self._thread = threading.Thread(target=self._serve, name=f"essa-stdin-{run[:8]}", daemon=True)
        self._thread.start()

    def _want(self, message: Message) -> None:
        want = message.get("want") if isinstance(message, dict) else None
        if isinstance(want, int) and want > 0:
            with self._cond:
                self._wanted = min(want, CHUNK)
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._done:
                    self._cond.wait()
                if self._done:
                    return
                size, self._wanted = self._wanted, 0
            try:
                data = self._read(size)
            except (OSError, ValueError):
                data = b""  # an unreadable source ends the input
            try:
                self._transport.publish(self._topic, {"data": data, **self._proof} if data else
                                        {"eof": True, **self._proof})
            except Exception:
                return  # the transport is gone: so is the run
            if not data:
                return

    def close(self) -> None:
        """Stop serving (a read the guest asked for may still finish, unanswered)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._subscription.close()


def _reader(source: BinaryIO | bytes) -> Callable[[int], bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(bytes(source))
        offset = 0

        def read_bytes(size: int) -> bytes:
            nonlocal offset
            chunk = view[offset : offset + size].tobytes()
            offset += len(chunk)
            return chunk

        return read_bytes
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):
        read1 = getattr(source, "read1", None) or source.read
        return lambda size: read1(size)
    return lambda size: os.read(fd, size)


__all__ = ["CHUNK", "RemoteStdin", "Stdin", "StdinServer"]
