"""Embedded essa: scheduler, executors and client in one process.

Nothing to start first: ``essa run f.wasm`` builds an :class:`EmbeddedRuntime`
with the chosen engine and store, the in-process transport, one scheduler, a
few executors that share one cache of compiled modules, and the control
service (deployments and state, :mod:`essa.cluster.control`). Library users get one
through :func:`essa.connect`.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Mapping, Sequence

from essa.cluster.calls import Caller
from essa.cluster.client import Client
from essa.cluster.control import ControlService
from essa.cluster.executor import Executor
from essa.cluster.logbook import LogBook, LogBounds
from essa.cluster.programs import ProgramCache, read_module
from essa.cluster.scheduler import Scheduler
from essa.plugins import DEFAULTS, PluginManager, get_plugin_manager
from essa.state.cache import cached, capacity_from_environment
from essa.state.store import Store
from essa.transport.base import Transport
from essa.wasm.engine import Engine
from essa.wasm.limits import Grants, Limits


def open_engine(
    name: str | None = None,
    limits: Limits | None = None,
    plugins: PluginManager | None = None,
    grants: Grants | None = None,
) -> Engine:
    """Create the engine called ``name`` (default: ``$ESSA_ENGINE``, else wasmtime) with its limits and grants."""
    plugins = plugins or get_plugin_manager()
    cls = plugins.engine_class(name or os.environ.get("ESSA_ENGINE") or DEFAULTS["engine"])
    return cls(limits, grants) if grants else cls(limits)


def open_store(
    name: str | None = None, options: Mapping[str, str] | None = None, plugins: PluginManager | None = None
) -> Store:
    """Open the store called ``name`` (default: ``$ESSA_STORE``, else lmdb) with its options."""
    plugins = plugins or get_plugin_manager()
    return plugins.store_class(default_store(name))(options or {})


def default_store(name: str | None = None) -> str:
    """``name``, else ``$ESSA_STORE``, else lmdb."""
    return name or os.environ.get("ESSA_STORE") or DEFAULTS["store"]


def default_executors() -> int:
    """Executors in an embedded runtime: one per core, at least two."""
    return max(2, os.cpu_count() or 1)


class EmbeddedRuntime:
    """A whole essa deployment inside this process.

    :param engine: engine name (``--engine``).
    :param store: store name (``--store``), or an already open :class:`Store`.
    :param store_options: the store's ``--store-option`` settings.
    :param executors: how many executors to run.
    :param limits: the limits of every call (default: :class:`Limits` defaults).
    :param grants: what guests may reach of this host (default: nothing).
    :param logs: how much of deployments' calls' output to keep (:mod:`essa.cluster.logbook`);
        the runtime's log book answers log queries, from this process only.
    :param cache_size: bytes of the executors' shared cache of lattice values, when the
        store pushes updates (see :mod:`essa.state.cache`); 0 turns it off; default
        ``$ESSA_CACHE_SIZE``, else 64 MiB.
    """

    def __init__(
        self,
        engine: str | None = None,
        store: str | Store | None = None,
        store_options: Mapping[str, str] | None = None,
        executors: int | None = None,
        limits: Limits | None = None,
        grants: Grants | None = None,
        logs: LogBounds | None = None,
        cache_size: int | None = None,
    ) -> None:
        plugins = get_plugin_manager()
        self._owns_store = not isinstance(store, Store)
        if self._owns_store:
            plugins.store_class(default_store(store))  # name a missing store before a missing engine
        self.engine = open_engine(engine, limits, plugins, grants)
        self.store = open_store(store, store_options, plugins) if self._owns_store else store  # type: ignore[arg-type]
        try:
            self.state = cached(self.store, capacity_from_environment() if cache_size is None else cache_size)
            self.transport: Transport = plugins.transport_class("local")()
            self.programs = ProgramCache(self.engine, self.store)
            self.scheduler = Scheduler(self.transport)
            self.scheduler.start()
            self.caller = Caller(self.transport, "embedded")
            self.logbook = LogBook("embedded", logs)
            self._logs = self.logbook.serve(self.transport)
            self.executors = [
                Executor(str(i), self.programs, self.store, self.transport, self.caller, logbook=self.logbook,
                         state=self.state)
                for i in range(executors or default_executors())
            ]
            for executor in self.executors:
                executor.start()
            self.client = Client(self.transport, self.store, self.caller, self.engine.limits.max_message_bytes)
            self._control = ControlService(self.programs, self.engine.limits.max_message_bytes).serve(self.transport)
        except BaseException:
            self.close()
            raise

    def run_file(self, path: str, namespace: str | None = None, args: Sequence[str] = (),
                 stdin: BinaryIO | bytes | None = None) -> int:
        """Run the module at ``path`` with ``argv`` ``[path, *args]`` and ``stdin``; return its exit status."""
        wasm = read_module(path)
        return self.client.run(self.client.publish(wasm, path), namespace=namespace, argv=[path, *args], stdin=stdin)

    def close(self) -> None:
        if getattr(self, "_control", None):
            self._control.close()
        if getattr(self, "_logs", None):
            self._logs.close()
        if getattr(self, "scheduler", None):
            self.scheduler.stop()
        for executor in getattr(self, "executors", ()):
            executor.stop()
        if getattr(self, "caller", None):
            self.caller.close()
        if self._owns_store and getattr(self, "store", None):
            getattr(self, "state", self.store).close()  # a cache closes the store behind it

    def __enter__(self) -> "EmbeddedRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
