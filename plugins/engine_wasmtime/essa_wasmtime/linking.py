"""What the engine and its two bindings (:mod:`essa_wasmtime.capi`, :mod:`essa_wasmtime.public`) share.

The engine links modules and runs calls through a binding; a binding needs
from the engine only what :class:`LinkedModule` and :class:`CallSettings`
describe, and defines each :class:`HostImport` in a linker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import wasmtime


@dataclass(frozen=True)
class HostImport:
    """A function the host provides to guests: where it is imported from, its type, its implementation."""

    module: str
    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    impl: Callable[..., int | None]
    #: Whether ``impl`` takes the calling instance's ``wasmtime.Caller`` first.
    caller: bool = False

    @property
    def type(self) -> wasmtime.FuncType:
        valtypes = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
        return wasmtime.FuncType([valtypes[p] for p in self.params], [valtypes[r] for r in self.results])


class LinkedModule(Protocol):
    """A module linked with WASI and the host functions, in one wasmtime engine."""

    engine: wasmtime.Engine
    pre: wasmtime.InstancePre
    #: ``pre``'s native address (the capi binding instantiates through it).
    pre_address: int
    #: The module that reaches wasmtime's own poll_oneoff (see :mod:`essa_wasmtime.wasi`).
    wasi_adapter: wasmtime.Module


class CallSettings(Protocol):
    """What every call of one program gets: its memory cap and its WASI context."""

    max_memory_bytes: int
    #: Whether calls get more than stdio, clocks and randomness.
    has_grants: bool

    def wasi_config(self) -> wasmtime.WasiConfig: ...


__all__ = ["CallSettings", "HostImport", "LinkedModule"]
