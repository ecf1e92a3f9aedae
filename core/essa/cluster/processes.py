"""Cluster mode: the scheduler and executor processes (``essa up`` is :mod:`essa.cluster.up`).

Each role opens a zenoh transport, starts its part, announces itself with a
liveliness token and runs until SIGINT or SIGTERM. An executor that is asked
to stop first stops taking calls, lets the ones it runs finish (up to
``drain_timeout``), then leaves, so no call of it is retried needlessly.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Mapping, Sequence

from essa.cluster import topics
from essa.cluster.authorize import Authorizer, ModuleIndex
from essa.cluster.calls import Caller
from essa.cluster.client import Client
from essa.cluster.control import ControlService
from essa.cluster.deployments import DeploymentRegistry
from essa.cluster.embedded import open_engine, open_store
from essa.cluster.executor import Executor
from essa.cluster.logbook import LogBook, LogBounds
from essa.cluster.programs import ProgramCache
from essa.cluster.scheduler import Scheduler
from essa.errors import EssaError
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.security import settings as security_settings
from essa.security.tls import TlsFiles
from essa.security.tokens import Verifier
from essa.state.cache import DEFAULT_CAPACITY, cached
from essa.transport.base import Transport, last_segment
from essa.transport.zenoh import DEFAULT_ENDPOINT, ZenohTransport
from essa.util.stopsignals import StopSignals
from essa.wasm.limits import Grants, Limits

log = logging.getLogger("essa.cluster")


def open_transport(
    listen: Sequence[str] = (),
    connect: Sequence[str] = (),
    config: str | None = None,
    scouting: bool = False,
    connect_timeout: float | None = None,
    max_message_bytes: int | None = None,
    tls: TlsFiles | None | bool = None,
    fail_fast: bool = False,
) -> Transport:
    """A zenoh peer with the given endpoints.

    With ``fail_fast`` (and ``connect_timeout``), an endpoint where nothing
    listens fails at once instead of after the timeout (see
    :class:`~essa.transport.zenoh.ZenohTransport`).

    :param max_message_bytes: the message size limit of the process; the
        transport reads no message larger than a module and arguments of that
        size together (see :class:`~essa.transport.zenoh.ZenohTransport`).
    :param tls: mutual TLS files; ``False``: plain TCP; default: this
        process's (``--tls-*`` or ``ESSA_TLS_*``, see
        :mod:`essa.security.settings`), if any.
    """
    cap = 2 * max_message_bytes + (1 << 20) if max_message_bytes else None
    tls = (None if tls is False else tls) if tls is not None else security_settings.tls_files()
    return ZenohTransport(
        {"listen": list(listen), "connect": list(connect), "config": config, "scouting": scouting,
         "connect_timeout": connect_timeout, "fail_fast": fail_fast, "max_message_bytes": cap,
         "tls": tls, "access": get_plugin_manager().access() if tls is not None else []}
    )


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    StopSignals().install().wait()


class RunningScheduler:
    """A scheduler serving on its own zenoh session (what ``essa scheduler`` runs); :meth:`stop` ends both."""

    def __init__(self, scheduler: Scheduler, transport: Transport) -> None:
        self.scheduler = scheduler
        self.transport = transport

    def describe(self) -> str:
        """One line: its id, where it listens, its placement policy."""
        return f"essa scheduler {self.scheduler.id}: {self.transport.describe()}; placement {self.scheduler.placement.name}"

    def stop(self) -> None:
        self.scheduler.stop()
        self.transport.close()


def start_scheduler(
    listen: Sequence[str] = (DEFAULT_ENDPOINT,),
    connect: Sequence[str] = (),
    config: str | None = None,
    scouting: bool = False,
    placement: str | None = None,
    max_message_bytes: int | None = None,
) -> RunningScheduler:
    """Open a zenoh session and serve a scheduler on it (this process's TLS files and token key apply).

    Call it as often as you like for several schedulers in one cluster (each
    with its own ``listen`` endpoint, ``connect``-ing to another's); they are
    all active, and a dead one's callers move to the others.

    :param max_message_bytes: the message size limit (default: :class:`Limits`'s).
    """
    transport = open_transport(listen, connect, config, scouting,
                               max_message_bytes=max_message_bytes or Limits().max_message_bytes)
    try:
        return RunningScheduler(serve_scheduler(transport, placement, security_settings.verifier()), transport)
    except BaseException:
        transport.close()
        raise


class RunningExecutor:
    """An executor serving on its own zenoh session (what ``essa executor`` runs); :meth:`stop` ends it."""

    def __init__(self, executor: Executor, caller: Caller, transport: Transport) -> None:
        self.executor = executor
        self.caller = caller
        self.transport = transport

    def describe(self) -> str:
        """One line: its id, engine, store and where it listens."""
        ex = self.executor
        return (f"essa executor {ex.id}: {ex.programs.engine.artifact_tag}, store {ex.store.describe()}, "
                f"{self.transport.describe()}")

    def stop(self) -> str:
        """Let the calls running finish (for a while), stop, close everything; one line of what it served."""
        ex = self.executor
        drained = ex.drain()
        ex.stop()
        self.caller.close()
        self.transport.close()
        ex.state.close()  # a cache closes the store behind it
        stats = ex.stats
        return (f"essa executor {ex.id}: served {stats.calls} calls and {stats.runs} runs "
                f"({stats.failures} failed){'' if drained else '; stopped before all calls finished'}")


def start_executor(
    executor_id: str,
    listen: Sequence[str] = ("tcp/127.0.0.1:0",),
    connect: Sequence[str] = (DEFAULT_ENDPOINT,),
    config: str | None = None,
    scouting: bool = False,
    engine: str | None = None,
    store: str | None = None,
    store_options: Mapping[str, str] | None = None,
    workers: int | None = None,
    limits: Limits | None = None,
    grants: Grants | None = None,
    log_bounds: LogBounds | None = None,
    cache_size: int | None = DEFAULT_CAPACITY,
) -> RunningExecutor:
    """Open a zenoh session and serve executor ``executor_id`` on it (see :func:`serve_executor`)."""
    limits = limits or Limits()
    transport = open_transport(listen, connect, config, scouting, max_message_bytes=limits.max_message_bytes)
    try:
        executor, caller = serve_executor(executor_id, transport, engine, store, store_options or {},
                                          workers or default_workers(), limits, grants, security_settings.verifier(),
                                          log_bounds, cache_size)
    except BaseException:
        transport.close()
        raise
    return RunningExecutor(executor, caller, transport)


def serve_scheduler(transport: Transport, placement: str | None = None, verifier: Verifier | None = None) -> Scheduler:
    """Start a scheduler on ``transport`` with the named placement policy.

    With ``verifier`` it places only calls whose token allows them (see
    :mod:`essa.cluster.authorize`).
    """
    policy = get_plugin_manager().placement_class(placement or DEFAULTS["placement"])()
    scheduler = Scheduler(transport, policy, authorizer=Authorizer(verifier) if verifier else None)
    scheduler.start()
    return scheduler


def serve_executor(
    executor_id: str,
    transport: Transport,
    engine: str | None,
    store: str | None,
    store_options: Mapping[str, str],
    workers: int,
    limits: Limits | None = None,
    grants: Grants | None = None,
    verifier: Verifier | None = None,
    log_bounds: LogBounds | None = None,
    cache_size: int | None = DEFAULT_CAPACITY,
) -> tuple[Executor, Caller]:
    """Start an executor on ``transport``; returns it and its caller.

    ``limits`` and ``grants`` are this executor's own: calls placed on it run
    under them, whatever the client that started the run asked for. With
    ``verifier`` it runs only calls, control requests and log queries whose
    token allows them (see :mod:`essa.cluster.authorize`). It keeps its
    calls' output within ``log_bounds`` and answers log queries
    (:mod:`essa.cluster.logbook`). Guests' state goes through a cache of
    ``cache_size`` bytes when the store pushes updates (see
    :mod:`essa.state.cache`; 0 turns it off).
    """
    engine_obj = open_engine(engine, limits, grants=grants)
    store_obj = open_store(store, store_options)
    caller = Caller(transport, f"executor-{executor_id}")
    programs = ProgramCache(engine_obj, store_obj)
    authorizer = Authorizer(verifier, ModuleIndex(DeploymentRegistry(store_obj).versions)) if verifier else None
    logbook = LogBook(executor_id, log_bounds)
    executor = Executor(executor_id, programs, store_obj, transport, caller, workers, authorizer=authorizer,
                        logbook=logbook, state=cached(store_obj, cache_size))
    executor.start()
    executor.also_close(ControlService(programs, engine_obj.limits.max_message_bytes, authorizer).serve(transport))
    executor.also_close(logbook.serve(transport, authorizer))
    return executor, caller


def connect_client(
    endpoints: Sequence[str], config: str | None = None, timeout: float = 5.0, max_message_bytes: int | None = None,
    tls: TlsFiles | None | bool = None, token: str | None = None, wait: bool = False,
) -> Client:
    """A client connected to a running cluster, or a one-line error naming the endpoint.

    ``tls`` as for :func:`open_transport`; ``token`` goes with every call.
    An endpoint where nothing listens fails at once, unless ``wait``: then
    the client keeps trying for ``timeout`` seconds (a cluster that starts).
    """
    transport = open_transport(connect=endpoints, config=config, connect_timeout=timeout, tls=tls,
                               fail_fast=not wait)
    client = Client(transport, max_message_bytes=max_message_bytes, token=token)
    deadline = time.monotonic() + timeout
    while not client.caller.sees_scheduler:
        if time.monotonic() > deadline:
            client.close()
            transport.close()
            raise EssaError(f"no essa scheduler answers at {', '.join(endpoints)}")
        time.sleep(0.02)
    _await_executors(transport, deadline)
    return client


def _await_executors(transport: Transport, deadline: float) -> None:
    """Wait, until ``deadline`` at most, to see the executors the scheduler knows.

    A client reaches the executors over links of its own, which zenoh opens
    after it learns of them from the scheduler (longer with TLS handshakes); an
    executor's liveliness token arrives over that link. A run sent before its
    executor's link is up would lose the output printed before it is.
    """
    answers = transport.query(f"{topics.STATUS}/scheduler/**", {}, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
    known = {e for a in answers if isinstance(a, dict) and isinstance(a.get("executors"), dict) for e in a["executors"]}
    seen: set[str] = set()
    watch = transport.watch_tokens(topics.LIVE_EXECUTORS, lambda key, alive: alive and seen.add(last_segment(key)))
    try:
        while not known <= seen and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watch.close()


def default_workers() -> int:
    return max(2, os.cpu_count() or 1)


__all__ = [
    "DEFAULT_ENDPOINT",
    "RunningExecutor",
    "RunningScheduler",
    "connect_client",
    "default_workers",
    "open_transport",
    "serve_executor",
    "serve_scheduler",
    "start_executor",
    "start_scheduler",
    "wait_for_signal",
]
