"""Cluster mode: the scheduler and executor processes, and ``essa up``.

Each role opens a zenoh transport, starts its part, announces itself with a
liveliness token and runs until SIGINT or SIGTERM. An executor that is asked
to stop first stops taking calls, lets the ones it runs finish (up to
``drain_timeout``), then leaves, so no call of it is retried needlessly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Mapping, Sequence

from .calls import Caller
from .client import Client
from .control import ControlService
from .errors import EssaError
from .engine import Grants, Limits
from .executor import Executor
from .plugins import DEFAULTS, get_plugin_manager
from .programs import ProgramCache
from .runtime import open_engine, open_store
from .scheduler import Scheduler
from .transport.base import Transport
from .transport.zenoh import DEFAULT_ENDPOINT, ZenohTransport

log = logging.getLogger("essa.cluster")


def open_transport(
    listen: Sequence[str] = (),
    connect: Sequence[str] = (),
    config: str | None = None,
    scouting: bool = False,
    connect_timeout: float | None = None,
    max_message_bytes: int | None = None,
) -> Transport:
    """A zenoh peer with the given endpoints.

    :param max_message_bytes: the message size limit of the process; the
        transport reads no message larger than a module and arguments of that
        size together (see :class:`~essa.transport.zenoh.ZenohTransport`).
    """
    cap = 2 * max_message_bytes + (1 << 20) if max_message_bytes else None
    return ZenohTransport(
        {"listen": list(listen), "connect": list(connect), "config": config, "scouting": scouting,
         "connect_timeout": connect_timeout, "max_message_bytes": cap}
    )


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def serve_scheduler(transport: Transport, placement: str | None = None) -> Scheduler:
    """Start a scheduler on ``transport`` with the named placement policy."""
    policy = get_plugin_manager().placement_class(placement or DEFAULTS["placement"])()
    scheduler = Scheduler(transport, policy)
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
) -> tuple[Executor, Caller]:
    """Start an executor on ``transport``; returns it and its caller.

    ``limits`` and ``grants`` are this executor's own: calls placed on it run
    under them, whatever the client that started the run asked for.
    """
    engine_obj = open_engine(engine, limits, grants=grants)
    store_obj = open_store(store, store_options)
    caller = Caller(transport, f"executor-{executor_id}")
    programs = ProgramCache(engine_obj, store_obj)
    executor = Executor(executor_id, programs, store_obj, transport, caller, workers)
    executor.start()
    executor.also_close(ControlService(programs, engine_obj.limits.max_message_bytes).serve(transport))
    return executor, caller


def connect_client(
    endpoints: Sequence[str], config: str | None = None, timeout: float = 5.0, max_message_bytes: int | None = None
) -> Client:
    """A client connected to a running cluster, or a one-line error naming the endpoint."""
    transport = open_transport(connect=endpoints, config=config, connect_timeout=timeout)
    client = Client(transport, max_message_bytes=max_message_bytes)
    deadline = time.monotonic() + timeout
    while not client.caller.sees_scheduler:
        if time.monotonic() > deadline:
            client.close()
            transport.close()
            raise EssaError(f"no essa scheduler answers at {', '.join(endpoints)}")
        time.sleep(0.02)
    return client


def cluster_status(endpoints: Sequence[str], config: str | None = None, timeout: float = 3.0) -> list[dict]:
    """The status answers of a cluster's scheduler and of every executor it knows."""
    from . import topics

    client = connect_client(endpoints, config, timeout)
    transport = client.transport
    try:
        deadline = time.monotonic() + timeout
        while True:
            answers = transport.query(f"{topics.STATUS}/**", {}, timeout=1.0)
            known = {e for a in answers if a.get("role") == "scheduler" for e in a["executors"]}
            seen = {a["id"] for a in answers if a.get("role") == "executor"}
            # Peers learn of each other by gossip: give late ones a moment.
            if known <= seen or time.monotonic() > deadline:
                return answers
            time.sleep(0.1)
    finally:
        client.close()
        transport.close()


def up(
    executors: int,
    listen: str,
    engine: str | None,
    store: str | None,
    store_options: Mapping[str, str],
    verbose: int = 0,
    executor_args: Sequence[str] = (),
    scheduler_args: Sequence[str] = (),
) -> int:
    """Run a scheduler and ``executors`` executor processes until interrupted.

    ``executor_args`` and ``scheduler_args`` are extra flags for those
    commands (limits and grants, see :func:`essa.cli.limit_arguments`).
    Returns a non-zero status if a process died on its own.
    """
    essa = [sys.executable, "-m", "essa"] + ["-v"] * verbose
    services = get_plugin_manager().store_class(store or DEFAULTS["store"]).cluster_services(store_options, listen)
    base = list(essa)
    if engine:
        base += ["--engine", engine]
    if store:
        base += ["--store", store]
    for key, value in services.options.items():
        base += ["--store-option", f"{key}={value}"]
    children: list[tuple[str, subprocess.Popen]] = []
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        children.append(("scheduler", subprocess.Popen([*essa, "scheduler", "--listen", listen, *scheduler_args])))
        for command in services.commands:
            children.append((" ".join(command[:2]), subprocess.Popen([*essa, *command])))
        for i in range(executors):
            command = [*base, "executor", str(i), "--connect", listen, *executor_args]
            children.append((f"executor {i}", subprocess.Popen(command)))
        print(f"essa cluster up: {executors} executors", flush=True)
        for name, where in {"scheduler": listen, **services.endpoints}.items():
            print(f"  {name:<14} {where}", flush=True)
        print(f"run a module with:  essa run --connect {listen} FILE.wasm", flush=True)
        print(f"deploy one with:    essa deploy --connect {listen} FILE.wasm --name NAME", flush=True)
        print("stop with Ctrl-C", flush=True)
        while not stopping.wait(0.5):
            for name, child in children:
                if child.poll() is not None:
                    print(f"essa: error: {name} exited with status {child.returncode}; stopping", file=sys.stderr)
                    return 1
        return 0
    finally:
        for _name, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def default_workers() -> int:
    return max(2, os.cpu_count() or 1)


__all__ = [
    "DEFAULT_ENDPOINT",
    "cluster_status",
    "connect_client",
    "default_workers",
    "open_transport",
    "serve_executor",
    "serve_scheduler",
    "up",
    "wait_for_signal",
]
