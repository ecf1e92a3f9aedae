"""essa's built-in parts, registered through the same hooks as plugins."""

from __future__ import annotations

from essa import hookimpl
from essa.placement import Placement
from essa.state.memory import MemoryStore
from essa.transport.local import LocalTransport
from essa.transport.zenoh import ZenohTransport


@hookimpl
def essa_register_transports(register):
    register("local", LocalTransport)
    register("zenoh", ZenohTransport)


@hookimpl
def essa_register_stores(register):
    register("memory", MemoryStore)


@hookimpl
def essa_register_placements(register):
    register("least-loaded", Placement)
