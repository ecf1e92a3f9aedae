"""essa's built-in parts, registered through the same hooks as plugins."""

from __future__ import annotations

from . import hookimpl
from .memory_store import MemoryStore
from .transport.local import LocalTransport


@hookimpl
def essa_register_transports(register):
    register("local", LocalTransport)


@hookimpl
def essa_register_stores(register):
    register("memory", MemoryStore)
