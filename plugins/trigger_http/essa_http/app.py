"""The HTTP routes: each a thin user of the public API (:class:`essa.api.Connection`).

A call starts on the event loop when its deployment was resolved a moment
ago (the API's ``acall`` and ``adeployment`` know; nothing then waits);
otherwise, and for the API's other blocking parts (state and deployment
requests wait for an answer), on a thread pool, so one slow request never
holds up the others. A call's body becomes its arguments by its
Content-Type and the function's signature (:mod:`essa_http.arguments`). Every
error is answered with a status and ``{"error": LINE, "kind": KIND}`` (see
:mod:`essa_http.errors`); nothing a client sends can make a route raise.

At most ``max-requests`` requests are served at once (:class:`RequestSlots`);
a request counts once its body has arrived, so clients still sending theirs
(slowly, perhaps) never keep others from being served.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import json
import logging
import re
import threading
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import unquote_to_bytes

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, Router

from essa.plugin import (
    CONSISTENCY_LEVELS,
    Connection,
    DecodeError,
    EssaError,
    Lattice,
    OutputLines,
    describe,
    format_bytes,
    from_json,
    quoted,
    to_json,
)

from .arguments import BINCODE, answer_json, arguments, media_type
from .errors import HttpError, from_essa_error
from .logs import LogRoute
from .metrics import HttpMetrics, Instrumented, exposition, problems

#: The Content-Type of a result when the request had none.
OCTET_STREAM = "application/octet-stream"
#: Seconds ``/healthz`` waits for essa to answer before it says 503.
HEALTH_TIMEOUT = 5.0
#: Distinct access tokens whose connection views are kept (least recently used dropped first).
TOKEN_VIEWS = 256
#: Methods whose requests carry a body that the routes read (before the request counts as served).
BODY_METHODS = frozenset({"POST", "PUT"})
#: The status noted (metrics, access log) for a request whose client left before it was answered (nginx's).
CLIENT_GONE = 499
#: The header of a call's answer that names the call (its log lines carry it: ``GET /v1/logs/NAME?call=ID``).
CALL_HEADER = "essa-call"
#: What calls print, one log line per line at INFO (``essa serve -v``).
output_log = logging.getLogger("essa.http.output")

#: A route's handler: the request and its body (empty unless the method is one of :data:`BODY_METHODS`).
Handler = Callable[[Request, bytes], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False).encode(), status, media_type="application/json")


def error_response(error: HttpError, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if error.close:
        headers["connection"] = "close"
    return Response(error.body(), error.status, headers=headers, media_type="application/json")


class RequestSlots:
    """The requests being served at once: at most ``limit`` (the ``max-requests`` option); more are answered 503.

    Used on the event loop only (no lock).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.serving = 0

    def refuse_if_full(self, close: bool = False) -> None:
        """Raise the 503 answer if ``limit`` requests are being served (``close``: the body was not read)."""
        if self.serving >= self.limit:
            problems.warning("max-requests", "max-requests (%d) being served: answered 503", self.limit)
            raise HttpError(503, f"the server is busy: it serves at most {self.limit} requests at once "
                            "(max-requests); try again", "busy", close=close)

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        """Count one request as served for the block (or raise the 503 answer)."""
        self.refuse_if_full()
        self.serving += 1
        try:
            yield
        finally:
            self.serving -= 1


class Routes:
    """The trigger's routes over ``connection``.

    :param max_body: the largest request body read (the message size limit);
        a larger one is refused with 413 before it is read whole.
    :param pool: threads for the API's blocking parts.
    :param max_requests: requests served at once (see :class:`RequestSlots`).
    """

    def __init__(self, connection: Connection, max_body: int, metrics: HttpMetrics,
                 pool: concurrent.futures.ThreadPoolExecutor, max_requests: int = 1000) -> None:
        self.connection = connection
        self.max_body = max_body
        self.metrics = metrics
        self.pool = pool
        self.slots = RequestSlots(max_requests)
        self._health: asyncio.Future | None = None
        self._views: collections.OrderedDict[str, Connection] = collections.OrderedDict()
        self._views_lock = threading.Lock()
        #: Set when the server stops: followed log answers end.
        self.stopping = False
        self._logs = LogRoute(self._blocking, lambda: self.stopping)

    def app(self) -> Instrumented:
        """The ASGI application: the routes, instrumented (see :mod:`essa_http.metrics`)."""
        calls = self._route(CALL_ROUTE, POST=self.call)
        router = Router([
            calls,
            self._route("/v1/dags/{name}", POST=self.call_dag),
            self._route("/v1/state/{deployment}/{key:path}", GET=self.get_state, PUT=self.put_state),
            self._route("/v1/deployments", GET=self.deployments),
            self._route("/v1/logs/{deployment}", GET=self.logs),
            self._route("/v1/deployments/{name}", GET=self.versions),
            self._route("/healthz", GET=self.healthz),
            self._route("/metrics", GET=self.prometheus),
        ], redirect_slashes=False, default=self._no_route)
        return Instrumented(_CallsFirst(router, calls.app), self.metrics)

    def _route(self, path: str, **handlers: Handler) -> Route:
        """A route whose methods are ``handlers`` (405 for any other)."""
        route = Route(path, _Endpoint(path, handlers, self))
        # A state key may hold line breaks: starlette's "." stops at one (a key with one inside found no
        # route) and its "$" matched before a final one (dropped from the key). Match them as any character.
        route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
        return route

    async def serve(self, request: Request, handler: Handler) -> Response:
        """``handler``'s answer to ``request``, which counts as served once its body (if any) has arrived."""
        body = b""
        if request.method in BODY_METHODS:
            self.slots.refuse_if_full(close=True)  # before reading a body that would not be served
            body = await self._body(request)
        with self.slots.taken():
            return await handler(request, body)

    async def _no_route(self, scope, receive, send) -> None:
        error = HttpError(404, f"no route {scope['method']} {scope['path'][:200]} (routes: POST /v1/functions/NAME/"
                          "FUNCTION, POST /v1/dags/NAME, GET|PUT /v1/state/NAME/KEY, GET /v1/deployments[/NAME], "
                          "GET /v1/logs/NAME, /healthz, /metrics)", "not-found")
        await error_response(error)(scope, receive, send)

    def _connection(self, request: Request) -> Connection:
        """The connection a request is served with: with ``Authorization: Bearer TOKEN``, one sending that token.

        A cluster that checks tokens (see "Securing a cluster" in the README)
        then allows or refuses the request by its own token, not the
        server's; the embedded runtime checks none.
        """
        header = request.headers.get("authorization")
        if header is None:
            return self.connection
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 4096:
            raise HttpError(401, "the Authorization header is not 'Bearer TOKEN' (a token from `essa token create`)",
                            "refused")
        with self._views_lock:
            view = self._views.get(token)
            if view is None:
                view = self._views[token] = self.connection.with_token(token)
                if len(self._views) > TOKEN_VIEWS:
                    self._views.popitem(last=False)
            else:
                self._views.move_to_end(token)
            return view

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _body(self, request: Request) -> bytes:
        """The request's body, or 413 as soon as it is known to exceed :attr:`max_body`.

        Read from the ASGI messages themselves (starlette's stream costs more than the call it carries).
        """
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HttpError(400, f"Content-Length {length[:40]!r} is not a number", "invalid", close=True)
            if int(length) > self.max_body:
                raise HttpError(413, f"the request's {int(length)} bytes exceed the message size limit "
                                f"({format_bytes(self.max_body)})", "message-size", close=True)
        chunks, size = [], 0
        receive = request.receive
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if not message.get("more_body", False) and not chunks:
                if len(chunk) > self.max_body:
                    raise self._too_large()
                return chunk
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> HttpError:
        return HttpError(413, f"the request's body exceeds the message size limit ({format_bytes(self.max_body)})",
                         "message-size", close=True)

    # -- routes ------------------------------------------------------------------------

    async def call(self, request: Request, body: bytes) -> Response:
        """``POST /v1/functions/{deployment}/{function}[?consistency=LEVEL]``: body = arguments, answer = result.

        The body and answer are as in :mod:`.arguments`. The answer's ``essa-call`` header names the call (its log lines carry
        it). With ``essa serve -v`` each line the call prints is logged
        (``essa.http.output``). Cancelling the request (a forced shutdown)
        cancels the call.
        """
        consistency = _consistency(request)
        connection = self._connection(request)
        function = request.path_params["function"]
        deployment = await connection.adeployment(request.path_params["deployment"])
        deployment.check_function(function)
        signature = deployment.signature(function)
        content_type = request.headers.get("content-type")
        output = _OutputLog(deployment.name, function) if output_log.isEnabledFor(logging.INFO) else None
        started = output.started if output is not None else None
        try:
            if signature is None:
                answer = await connection.acall_result(deployment.spec, function, body, output=output, started=started,
                                                       consistency=consistency)
                # Functions cannot set a content type (a result is bytes), so the request's passes through.
                return Response(answer.value, headers={"content-type": content_type or OCTET_STREAM,
                                                       CALL_HEADER: answer.call})
            media = media_type(content_type)
            args, kwargs = arguments(signature, media, body)
            # deployment.spec: the version whose signature read the body
            answer = await connection.acall_result(deployment.spec, function, *args, output=output, started=started,
                                                  consistency=consistency, **kwargs)
        finally:
            if output is not None:
                output.flush()
        if media == BINCODE:
            return Response(answer.value, media_type=BINCODE, headers={CALL_HEADER: answer.call})
        return Response(answer_json(signature, answer.value), media_type="application/json",
                        headers={CALL_HEADER: answer.call})

    async def call_dag(self, request: Request, body: bytes) -> Response:
        """``POST /v1/dags/{name}[?consistency=LEVEL]``: body = the DAG call's argument bytes, answer = its sink's result.

        Cancelling the request (a forced shutdown) cancels the DAG call.
        """
        consistency = _consistency(request)
        loop = asyncio.get_running_loop()
        start = loop.run_in_executor(self.pool, functools.partial(
            self._connection(request).call_dag_async, request.path_params["name"], body, consistency=consistency))
        try:
            future = await asyncio.shield(start)
        except asyncio.CancelledError:  # the request was cancelled (a forced shutdown): so is the call
            start.add_done_callback(_cancel_started_call)
            raise
        # Cancelling this task (a forced shutdown) cancels the wrapped future, hence the call.
        result = await asyncio.wrap_future(future)
        # Functions cannot set a content type (a result is bytes), so the request's passes through.
        return Response(result, headers={"content-type": request.headers.get("content-type") or OCTET_STREAM})

    async def get_state(self, request: Request, _body: bytes) -> Response:
        """``GET /v1/state/{deployment}/{key}``: the JSON view of the value, 404 if there is none."""
        value = await self._blocking(self._read, self._connection(request), request.path_params["deployment"],
                                     _state_key(request))
        return json_response(to_json(value))

    async def put_state(self, request: Request, body: bytes) -> Response:
        """``PUT /v1/state/{deployment}/{key}``: merge the JSON view in the body; answer the merged value."""
        try:
            value = from_json(json.loads(body), "the body")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"the body is not JSON: {exc}", "invalid") from None
        except DecodeError as exc:
            raise HttpError(400, str(exc), "invalid") from None
        merged = await self._blocking(self._merge, self._connection(request), request.path_params["deployment"],
                                      _state_key(request), value)
        return json_response(to_json(merged))

    async def logs(self, request: Request, _body: bytes) -> Response:
        """``GET /v1/logs/{deployment}``: what its calls printed (see :mod:`essa_http.logs`)."""
        return await self._logs.answer(self._connection(request), request)

    async def deployments(self, request: Request, _body: bytes) -> Response:
        """``GET /v1/deployments``: the version each name means, with its tags, as ``essa ls --json`` prints them."""
        found = await self._blocking(self._connection(request).deployments)
        return json_response([d.as_dict() for d in found])

    async def versions(self, request: Request, _body: bytes) -> Response:
        """``GET /v1/deployments/{name}``: every version of one, with its tags, as ``essa ls NAME --json`` prints them."""
        found = await self._blocking(self._connection(request).versions, request.path_params["name"])
        return json_response([d.as_dict() for d in found])

    async def healthz(self, request: Request, _body: bytes) -> Response:
        """``GET /healthz``: 200 when essa answers (lists its deployments) within :data:`HEALTH_TIMEOUT`, else 503.

        Concurrent probes share one check, so a hung cluster cannot pile up threads.
        """
        if self._health is None or self._health.done():
            self._health = asyncio.get_running_loop().run_in_executor(self.pool, self.connection.deployments)
        try:
            found = await asyncio.wait_for(asyncio.shield(self._health), HEALTH_TIMEOUT)
        except asyncio.TimeoutError:
            raise HttpError(503, f"essa did not answer within {HEALTH_TIMEOUT:g} s ({self.connection.where})",
                            "unavailable") from None
        except EssaError as exc:
            if getattr(exc, "kind", None) == "refused":  # a secure cluster answered this server (it has no token)
                return json_response({"ok": True, "where": self.connection.where, "deployments": None})
            raise HttpError(503, str(exc), from_essa_error(exc).kind) from None
        return json_response({"ok": True, "where": self.connection.where, "deployments": len(found)})

    async def prometheus(self, request: Request, _body: bytes) -> Response:
        """``GET /metrics``: Prometheus text (see :func:`essa_http.metrics.exposition`)."""
        body = await run_in_threadpool(exposition, self.metrics, self.connection)  # asks the cluster: blocks
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- the API's blocking parts (on the pool) -------------------------------------------

    def _read(self, connection: Connection, deployment: str, key: str) -> Lattice:
        namespace = connection.deployment(deployment).namespace
        try:
            value = connection.state(namespace).get(key)
        except DecodeError as exc:
            raise HttpError(500, f"the stored value of {quoted(key)} cannot be read: {exc}", "store") from None
        if value is None:
            raise HttpError(404, f"no key {quoted(key)} in namespace {namespace}", "not-found")
        return value

    def _merge(self, connection: Connection, deployment: str, key: str, value: Lattice) -> Lattice:
        state = connection.state(connection.deployment(deployment).namespace)
        state.merge(key, value)
        return state.get(key) or value


def _consistency(request: Request) -> str | None:
    """The request's ``?consistency=LEVEL``, or ``None``; 400 for an unknown level."""
    consistency = request.query_params.get("consistency")
    if consistency is not None and consistency not in CONSISTENCY_LEVELS:
        raise HttpError(400, f"unknown consistency level {consistency[:40]!r}: expected one of "
                             f"{', '.join(CONSISTENCY_LEVELS)}", "invalid")
    return consistency


def _state_key(request: Request) -> str:
    """The state key a ``/v1/state/{deployment}/{key}`` URL names; 400 if its bytes are not UTF-8.

    The server decodes percent-escapes leniently (bytes that are not UTF-8
    become U+FFFD), which would name another key; state keys are UTF-8 text
    (:mod:`essa.state.keys`), so such a URL is refused instead.
    """
    raw = request.scope.get("raw_path")
    if raw is not None:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "the URL's state key is not UTF-8 text (it percent-escapes bytes that are not "
                            "UTF-8); state keys are UTF-8", "invalid") from None
    return request.path_params["key"]


#: The route of calls; :class:`_CallsFirst` matches it without the router.
CALL_ROUTE = "/v1/functions/{deployment}/{function}"
_CALL_PREFIX = "/v1/functions/"


class _CallsFirst:
    """Sends requests for :data:`CALL_ROUTE` straight to its endpoint and the others through the router.

    Calls are most of the traffic; matching them takes a string split
    instead of the router's walk over the routes' patterns. What the
    router would match, and only that: two non-empty path segments.
    """

    def __init__(self, router: Router, calls: Any) -> None:
        self.router = router
        self.calls = calls

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(_CALL_PREFIX):
            deployment, sep, function = path[len(_CALL_PREFIX):].partition("/")
            if sep and deployment and function and "/" not in function:
                scope["path_params"] = {"deployment": deployment, "function": function}
                await self.calls(scope, receive, send)
                return
        await self.router(scope, receive, send)


class _Endpoint:
    """The ASGI application of one route: dispatches by method; every error becomes an error answer."""

    def __init__(self, path: str, handlers: dict[str, Handler], routes: Routes) -> None:
        self.path = path.replace(":path}", "}")
        self.handlers = handlers
        self.allowed = ", ".join(handlers)
        self.routes = routes

    async def __call__(self, scope, receive, send) -> None:
        scope["essa.route"] = self.path  # the metrics' route label
        response = await self.answer(Request(scope, receive))
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        handler = self.handlers.get(request.method)
        try:
            if handler is None:
                error = HttpError(405, f"{request.method} is not allowed here (allowed: {self.allowed})", "invalid")
                return error_response(error, {"allow": self.allowed})
            return await self.routes.serve(request, handler)
        except HttpError as exc:
            return error_response(exc)
        except EssaError as exc:
            error = from_essa_error(exc)
            if error.status == 403 and "authorization" not in request.headers:
                error.message += "; send a token (from `essa token create`) as the header Authorization: Bearer TOKEN"
            return error_response(error)
        except ClientDisconnect:  # the client left, or was closed for sending its body too slowly
            timed_out = request.scope.get("essa.closed") == "body-timeout"
            return Response(status_code=408 if timed_out else CLIENT_GONE)  # noted; the connection is gone
        except asyncio.CancelledError:
            # The server stops and waits no longer (the shutdown timeout passed, or a second
            # signal): the call is cancelled too. Tell the client instead of dropping it.
            return error_response(HttpError(503, "the server is stopping: the request was cancelled", "cancelled",
                                            close=True))
        except Exception as exc:  # a bug: one line in the log, a 500 for the client
            problems.warning(f"route {self.path}", "error answering %s %s: %s", request.method, self.path,
                             describe(exc), exc_info=exc)
            return error_response(HttpError(500, f"internal error: {describe(exc)}", "error"))


class _OutputLog(OutputLines):
    """A call's output, one ``essa.http.output`` log line per line it prints (``essa serve -v``)."""

    def __init__(self, deployment: str, function: str) -> None:
        super().__init__(self._log)
        self.where = f"{deployment[:80]} {function[:80]}"
        #: The call's id, once it is known.
        self.call = "-"

    def started(self, call: str) -> None:
        self.call = call

    def _log(self, stream: str, text: str) -> None:
        output_log.info("output %s call %s %s: %s", self.where, self.call, stream, text)


def _cancel_started_call(start: asyncio.Future) -> None:
    if not start.cancelled() and start.exception() is None:
        start.result().cancel()


__all__ = ["BODY_METHODS", "CALL_HEADER", "CLIENT_GONE", "HEALTH_TIMEOUT", "OCTET_STREAM", "TOKEN_VIEWS", "RequestSlots",
           "Routes"]
