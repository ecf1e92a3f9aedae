"""``GET /v1/logs/{deployment}``: what a deployment's calls printed, as JSON lines, a JSON array, or followed.

Query parameters (all optional): ``since`` (how long ago, ``10m``, or an
RFC 3339 time), ``call`` (a call id: the ``essa-call`` header of a call's
answer, or the ``call`` of an error body), ``tail`` (the last N lines),
``follow`` (``1``/``true``: keep the answer open and send each new line as
it is written), ``format`` (``jsonl``, the default, or ``json``: one array;
``Accept: application/json`` asks for it too; a followed answer is always
JSON lines). Each line is :meth:`essa.plugin.LogLine.as_dict`.

A followed answer asks the connection for new lines every
:data:`FOLLOW_INTERVAL` seconds, and ends when the client goes away or the
server stops (at its next poll). At most :data:`MAX_FOLLOWERS` are served
at once; more are answered 503 ``busy``.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from essa.plugin import Connection, EssaError, LogLine

from .errors import HttpError, from_essa_error
from .metrics import problems

#: Seconds between two polls of a followed answer.
FOLLOW_INTERVAL = 0.5
#: Followed answers served at once.
MAX_FOLLOWERS = 100
JSON_LINES = "application/x-ndjson"


def _line(line: LogLine) -> bytes:
    return json.dumps(line.as_dict(), ensure_ascii=False).encode() + b"\n"


class LogRoute:
    """The route's handler (see the module documentation).

    :param blocking: runs a blocking function on the trigger's pool (awaitable).
    :param stopping: whether the server is stopping (followed answers end).
    """

    def __init__(self, blocking: Callable, stopping: Callable[[], bool]) -> None:
        self._blocking = blocking
        self._stopping = stopping
        self.followers = 0

    async def answer(self, connection: Connection, request: Request) -> Response:
        deployment = request.path_params["deployment"]
        params = request.query_params
        tail = params.get("tail")
        if tail is not None and not (tail.isdigit() and len(tail) < 10):
            raise HttpError(400, f"tail={tail[:40]!r}: give a whole number of lines", "invalid")
        follow = params.get("follow", "").lower()
        if follow not in ("", "0", "1", "true", "false", "yes", "no"):
            raise HttpError(400, f"follow={follow[:40]!r}: give 1 or 0", "invalid")
        form = params.get("format") or ("json" if "application/json" in request.headers.get("accept", "") else "jsonl")
        if form not in ("json", "jsonl"):
            raise HttpError(400, f"format={form[:40]!r}: give json or jsonl", "invalid")
        options = {"since": params.get("since"), "call": params.get("call"),
                   "tail": None if tail is None else int(tail)}
        if follow in ("1", "true", "yes"):
            return await self._follow(connection, deployment, options)
        lines = await self._blocking(lambda: connection.logs(deployment, **options))
        if form == "json":
            return Response(json.dumps([line.as_dict() for line in lines], ensure_ascii=False).encode(),
                            media_type="application/json")
        return Response(b"".join(_line(line) for line in lines), media_type=JSON_LINES)

    async def _follow(self, connection: Connection, deployment: str, options: dict) -> Response:
        if self.followers >= MAX_FOLLOWERS:
            raise HttpError(503, f"the server follows {MAX_FOLLOWERS} logs at once already; try again", "busy")
        follower = await self._blocking(lambda: connection.follow_logs(deployment, interval=FOLLOW_INTERVAL,
                                                                       **options))
        return StreamingResponse(self._lines(follower), media_type=JSON_LINES)

    async def _lines(self, follower) -> AsyncIterator[bytes]:
        self.followers += 1  # here, not before: an answer never sent never runs this, nor the finally
        try:
            while not self._stopping():
                try:
                    lines = await self._blocking(follower.poll)
                except EssaError as exc:  # the cluster went away, a refusal: say so, and end
                    error = from_essa_error(exc)
                    yield json.dumps({"error": error.message, "kind": error.kind}, ensure_ascii=False).encode() + b"\n"
                    return
                except Exception as exc:  # a bug: one line in the log, the answer ends
                    problems.warning("logs", "following logs failed: %s", exc, exc_info=exc)
                    return
                if lines:
                    yield b"".join(_line(line) for line in lines)
                await asyncio.sleep(follower.interval)
        finally:
            follower.close()
            self.followers -= 1


__all__ = ["FOLLOW_INTERVAL", "JSON_LINES", "MAX_FOLLOWERS", "LogRoute"]
