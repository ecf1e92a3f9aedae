"""Guest output cut into lines: what the log book keeps, and what ``essa serve -v`` logs.

A guest writes its stdout and stderr in pieces of any size (a C ``printf``
may write one line in two pieces, or ten lines in one). :class:`LineBuffer`
keeps the unfinished line of each stream and hands out whole ones; a line
longer than :data:`MAX_LINE` bytes comes out in pieces of that size, so
nothing a guest writes can make a buffer grow without bound.
:class:`OutputLines` is an ``output=`` callback (see
:meth:`essa.api.Connection.call_async`) that does the same with the output
messages a caller receives.
"""

from __future__ import annotations

from typing import Callable

from essa.transport.base import Message

#: Longest line handed out whole (bytes); a longer one comes out in pieces of this size.
MAX_LINE = 4096

#: Stream numbers as lines name them.
STREAMS = {1: "stdout", 2: "stderr"}


def line_text(raw: bytes) -> str:
    """A line as text: UTF-8 (other bytes replaced), without the carriage return of a CRLF."""
    text = raw.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\r") else text


class LineBuffer:
    """The unfinished line of each stream; :meth:`feed` returns the lines a write finished."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[int, bytes] = {}

    def feed(self, stream: int, data: bytes) -> list[bytes]:
        """The lines ``data`` ends (without their line breaks), and full pieces of an overlong one."""
        begun = self._pending.pop(stream, None)
        if begun is not None:
            data = begun + data
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(data) > MAX_LINE and any(len(line) > MAX_LINE for line in lines):
            lines = [line[i:i + MAX_LINE] or b"" for line in lines for i in range(0, max(1, len(line)), MAX_LINE)]
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if rest:
            self._pending[stream] = rest
        return lines

    def pending(self, stream: int) -> bytes:
        """The unfinished line of ``stream`` (empty if none)."""
        return self._pending.get(stream, b"")

    def rest(self) -> list[tuple[int, bytes]]:
        """The unfinished lines, by stream (stdout first), and forget them: the writer is done."""
        rest, self._pending = sorted(self._pending.items()), {}
        return rest


class OutputLines:
    """An ``output=`` callback that hands on whole lines: ``callback(stream, text)``, ``stream`` ``"stdout"`` or ``"stderr"``.

    :meth:`flush` hands on the unfinished lines once the call has ended.
    """

    def __init__(self, callback: Callable[[str, str], None]) -> None:
        self._callback = callback
        self._buffer = LineBuffer()

    def __call__(self, message: Message) -> None:
        stream, data = message.get("stream"), message.get("data")
        if stream not in STREAMS or not isinstance(data, (bytes, bytearray)):
            return
        for line in self._buffer.feed(stream, bytes(data)):
            self._callback(STREAMS[stream], line_text(line))

    def flush(self) -> None:
        for stream, line in self._buffer.rest():
            self._callback(STREAMS[stream], line_text(line))


__all__ = ["MAX_LINE", "STREAMS", "LineBuffer", "OutputLines", "line_text"]
