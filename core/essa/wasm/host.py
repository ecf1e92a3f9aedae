"""The guest ABI's eight ``host`` functions, implemented once for every engine.

An engine registers every entry of :data:`HOST_FUNCTIONS` as an
``(i32 * arity) -> i32`` import of the module :data:`essa.wasm.abi.IMPORT_MODULE`
(registering :attr:`HostFunction.call`); everything else - argument checks,
handles, error codes, state keys, limits - is here, so all engines behave
alike. Each function serves :func:`essa.wasm.invocation.current`.
:data:`METER_FUNCTIONS` serve modules instrumented by :mod:`essa.wasm.instrument`.
"""

from __future__ import annotations

import struct
from typing import Callable

from essa.errors import DecodeError, StoreError
from essa.state.keys import quoted
from essa.wasm.abi import EssaResult
from essa.wasm.invocation import Invocation, current, fault_guard

_U32 = struct.Struct("<I")
_MASK = 0xFFFFFFFF


# -- the eight host functions ---------------------------------------------------
# Each takes the raw i32 arguments (as Python ints, possibly negative: engines
# pass i32 as signed) and returns an EssaResult code.


def essa_get_args(buf_ptr: int, buf_len: int) -> int:
    """Copy the call's argument bytes into the guest's buffer."""
    inv = current()
    if (buf_len & _MASK) < len(inv.args):
        return EssaResult.BufferTooSmall
    inv._write("argument buffer", buf_ptr, inv.args)
    return EssaResult.Ok


def essa_set_result(ptr: int, length: int) -> int:
    """Set the bytes the function returns to its caller."""
    inv = current()
    length &= _MASK
    if length > inv.limits.max_message_bytes:
        why = f"a result of {length} bytes: {inv.limits.exceeded('message size')}"
        inv.host.warn(f"refused {why}")
        inv.refused_result = why
        return EssaResult.UnknownError
    inv.result = inv._read("result buffer", ptr, length)
    inv.refused_result = None
    return EssaResult.Ok


def essa_call(name_ptr: int, name_len: int, args_ptr: int, args_len: int, handle_ptr: int) -> int:
    """Start a remote call of export ``name`` and write its u32 handle."""
    inv = current()
    name = inv._read_text("function name", name_ptr, name_len)
    if name is None:
        return EssaResult.NoSuchFunction
    if (args_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(
            f"refused call of {quoted(name)} with {args_len & _MASK} bytes of arguments: "
            f"{inv.limits.exceeded('message size')}"
        )
        return EssaResult.UnknownError
    args = inv._read("argument buffer", args_ptr, args_len)
    status = inv.host.function_status(name)
    if status != EssaResult.Ok:
        return status
    handle = inv._next_handle
    # Check the handle slot before starting anything, so a bad pointer starts no call.
    inv._write("result handle pointer", handle_ptr, _U32.pack(handle))
    inv._handles[handle] = inv.host.start_call(name, args)
    inv._next_handle = handle + 1
    return EssaResult.Ok


def essa_get_result_len(handle: int, len_ptr: int) -> int:
    """Wait for a call's result and write its length."""
    inv = current()
    outcome = inv._outcome(handle)
    if outcome is None:
        return EssaResult.NotFound
    if outcome.code != EssaResult.Ok:
        return outcome.code
    inv._write("length pointer", len_ptr, _U32.pack(len(outcome.value)))
    return EssaResult.Ok


def essa_get_result(handle: int, val_ptr: int, capacity: int, len_ptr: int) -> int:
    """Wait for a call's result, copy it out and forget the handle."""
    inv = current()
    outcome = inv._outcome(handle)
    if outcome is None:
        return EssaResult.NotFound
    if outcome.code != EssaResult.Ok:
        return outcome.code
    value = outcome.value
    if (capacity & _MASK) < len(value):
        return EssaResult.BufferTooSmall
    inv._write("value buffer", val_ptr, value)
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    del inv._waited[handle & _MASK]
    return EssaResult.Ok


def essa_put_lattice(key_ptr: int, key_len: int, val_ptr: int, val_len: int) -> int:
    """Merge a bincode-encoded ``LatticeValue`` into the guest's key."""
    inv = current()
    key = _read_key(inv, key_ptr, key_len)
    if key is None:
        return EssaResult.UnknownError
    if (val_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(
            f"refused put of key {quoted(key)}: a value of {val_len & _MASK} bytes: {inv.limits.exceeded('message size')}"
        )
        return EssaResult.UnknownError
    value = inv._read("value buffer", val_ptr, val_len)
    if not _is_guest_lattice(value):
        inv.host.warn(f"refused put of key {quoted(key)}: not a guest LatticeValue (variant tag must be 0..4)")
        return EssaResult.UnknownError
    try:
        inv.host.merge_state(key, value)
    except (DecodeError, StoreError) as exc:
        inv.host.warn(f"refused put of key {quoted(key)}: {exc}")
        return EssaResult.UnknownError
    return EssaResult.Ok


def essa_get_lattice_len(key_ptr: int, key_len: int, len_ptr: int) -> int:
    """Write the length of the encoded value stored under the guest's key."""
    inv = current()
    value, code = _get_state(inv, key_ptr, key_len)
    if value is None:
        return code
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    return EssaResult.Ok


def essa_get_lattice_data(key_ptr: int, key_len: int, val_ptr: int, capacity: int, len_ptr: int) -> int:
    """Copy the encoded value stored under the guest's key, and its length."""
    inv = current()
    value, code = _get_state(inv, key_ptr, key_len)
    if value is None:
        return code
    if (capacity & _MASK) < len(value):
        return EssaResult.BufferTooSmall
    inv._write("value buffer", val_ptr, value)
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    return EssaResult.Ok


def _read_key(inv: Invocation, key_ptr: int, key_len: int) -> str | None:
    """The guest's state key: UTF-8 text of at most the message size limit, else ``None`` (warned once)."""
    if (key_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(f"refused a state key of {key_len & _MASK} bytes: {inv.limits.exceeded('message size')}")
        return None
    return inv._read_text("a state key", key_ptr, key_len)


def _get_state(inv: Invocation, key_ptr: int, key_len: int) -> tuple[bytes | None, int]:
    key = _read_key(inv, key_ptr, key_len)
    if key is None:
        return None, EssaResult.UnknownError
    try:
        value = inv.host.get_state(key)
    except StoreError as exc:
        inv.host.warn(f"reading key {quoted(key)} failed: {exc}")
        return None, EssaResult.UnknownError
    if value is None:
        return None, EssaResult.NotFound
    return value, EssaResult.Ok


def _is_guest_lattice(value: bytes) -> bool:
    # Tags 5.. are host-side lattices a guest cannot name; the store decodes the rest.
    return len(value) >= 4 and _U32.unpack_from(value)[0] <= 4


class HostFunction:
    """One ``host`` import: its name, parameter count and implementation.

    Engines register :attr:`call`: ``impl`` under :func:`fault_guard`, which
    turns a :class:`~essa.wasm.invocation.GuestFault` or an unexpected error
    into a trap of the calling guest, recording the reason in
    :attr:`Invocation.fault` (the engine's own trap message is generic).
    """

    __slots__ = ("name", "arity", "impl", "call")

    def __init__(self, impl: Callable[..., int]) -> None:
        self.impl = impl
        self.name = impl.__name__
        self.arity = impl.__code__.co_argcount
        self.call = fault_guard(self.name, impl)

    def __repr__(self) -> str:
        return f"HostFunction({self.name}, arity={self.arity})"


#: Every host function of the ABI, in the order of docs/abi.md.
HOST_FUNCTIONS: tuple[HostFunction, ...] = tuple(
    HostFunction(f)
    for f in (
        essa_get_args,
        essa_set_result,
        essa_call,
        essa_get_result_len,
        essa_get_result,
        essa_put_lattice,
        essa_get_lattice_len,
        essa_get_lattice_data,
    )
)

# -- for modules instrumented by essa.wasm.instrument ---------------------------------------

#: Fuel :func:`refuel` hands out: about this many Wasm instructions run between
#: two deadline checks (a few milliseconds).
FUEL = 1 << 22


def refuel() -> int:
    """``essa_meter.refuel``: check the call's deadline and cancellation, then give more fuel."""
    inv = current()
    inv.check()
    return FUEL


def grow_refused(pages: int, current_pages: int) -> None:
    """``essa_meter.grow_refused``: remember a ``memory.grow`` refused by the memory limit.

    A refusal within the limit (the module's own maximum) is the module's
    business and not recorded.
    """
    inv = current()
    pages &= _MASK
    if ((current_pages & _MASK) + pages) * 65536 > inv.limits.max_memory_bytes:
        inv.memory_refused = pages or 1


#: The host functions of :mod:`essa.wasm.instrument`'s import module: name ->
#: (implementation, param types, result types). Like :data:`HOST_FUNCTIONS`,
#: they trap the guest only (a :class:`GuestLimit` when the time is up).
METER_FUNCTIONS: dict[str, tuple[Callable[..., int | None], tuple[str, ...], tuple[str, ...]]] = {
    "refuel": (refuel, (), ("i32",)),
    "grow_refused": (grow_refused, ("i32", "i32"), ()),
}


__all__ = ["FUEL", "HOST_FUNCTIONS", "METER_FUNCTIONS", "HostFunction", "grow_refused", "refuel"]
