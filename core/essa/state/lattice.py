"""Lattice values: the state types of essa's key-value store.

A store never overwrites a value; a put *merges* the new value into the stored
one with :meth:`Lattice.merge`, so concurrent writers converge without
coordination. Every lattice is an immutable, value-compared object and
``merge`` is pure: it returns a (possibly identical) value and never mutates
either operand.

The five types a guest can see are, in the order of the guest ABI's
``LatticeValue`` enum (:data:`GUEST_TYPES`):

* :class:`LwwLattice` -- last writer wins, by timestamp;
* :class:`SetLattice` and :class:`OrderedSetLattice` -- grow-only sets of byte
  strings;
* :class:`SingleCausalLattice` and :class:`MultiCausalLattice` -- values
  versioned by a :class:`VectorClock`, keeping concurrent writes side by side.

:class:`MaxLattice`, :class:`BoolLattice` and :class:`MapLattice` are host-side
only (counters, flags, records); a guest never receives them.

The byte encoding lives in :mod:`essa.state.bincode`, with
:func:`~essa.state.bincode.merge_encoded`, the merge of encoded values that stores use.

Causal merge and its limits: the rules are those of Anna (pointwise-max the
clocks; a strictly dominated side is replaced; concurrent sides union their
values). Equal clocks with different values are treated as concurrent, which
keeps the merge commutative (Anna let the incoming value replace, so two
replicas exchanging such values swapped them instead of converging). Because a
single clock summarises a union of values, the causal merge is commutative and
idempotent but *not associative* in general: with clocks ``x1``, ``y1`` and
``x1y1``, merging the two concurrent values first keeps both of them, while
merging either with the dominating value first discards it. It is associative
whenever the clocks involved are pairwise comparable.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from essa.errors import LatticeTypeError

__all__ = [
    "Lattice",
    "LwwLattice",
    "SetLattice",
    "OrderedSetLattice",
    "SingleCausalLattice",
    "MultiCausalLattice",
    "MaxLattice",
    "BoolLattice",
    "MapLattice",
    "VectorClock",
    "GUEST_TYPES",
    "U64_MAX",
    "MIN_TIMESTAMP_NS",
    "MAX_TIMESTAMP_NS",
]

#: Largest value of a ``u64`` (vector clock counters, :class:`MaxLattice`).
U64_MAX = 2**64 - 1

#: 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z in nanoseconds since
#: the Unix epoch: the range an RFC 3339 text (four-digit year) can express.
MIN_TIMESTAMP_NS = -719_528 * 86_400 * 1_000_000_000
MAX_TIMESTAMP_NS = 2_932_897 * 86_400 * 1_000_000_000 - 1

_L = TypeVar("_L", bound="Lattice")


# -- helpers ------------------------------------------------------------------


def _new(cls: type[_L], **fields: Any) -> _L:
    """Build a lattice from fields already known to be valid (skips checks)."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def _as_bytes(value: object, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


#: Most elements the repr of a set lattice shows; a larger set ends with how many more it holds.
REPR_ITEMS = 20


def _set_repr(lattice: Lattice, values: frozenset[bytes]) -> str:
    """``SetLattice({b'a', b'b'})``: the elements in byte order, at most :data:`REPR_ITEMS` of them."""
    ordered = sorted(values)
    shown = ", ".join(repr(v) for v in ordered[:REPR_ITEMS])
    if len(ordered) > REPR_ITEMS:
        shown += f", ... {len(ordered) - REPR_ITEMS:,} more"
    return f"{type(lattice).__name__}({{{shown}}})" if ordered else f"{type(lattice).__name__}(set())"


def _byte_set(values: object, what: str) -> frozenset[bytes]:
    """Normalise ``values`` (any iterable of bytes-like objects) to a frozenset."""
    if isinstance(values, frozenset) and all(type(v) is bytes for v in values):
        return values
    if isinstance(values, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"{what} values must be an iterable of bytes, not a single {type(values).__name__}"
        )
    if not isinstance(values, Iterable):
        raise TypeError(f"{what} values must be an iterable of bytes, not {type(values).__name__}")
    return frozenset(_as_bytes(v, f"{what} member") for v in values)


def _check_key(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be str, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {key!r} is not encodable as UTF-8") from None
    return key


def _check_u64(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{what} {value} is outside the u64 range 0..2**64-1")
    return int(value)


# -- immutable mappings -------------------------------------------------------


class _FrozenMap(Mapping):
    """An immutable str-keyed mapping, compared by value, iterated in key order.

    Keeping the keys sorted makes iteration (and so the encoding) deterministic.
    """

    __slots__ = ("_data", "_hash")

    _what: ClassVar[str] = "map"

    def __init__(self, entries: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        data: dict[str, Any] = {}
        for key, value in items:
            data[_check_key(key, f"{self._what} key")] = self._check_value(key, value)
        self._data = {key: data[key] for key in sorted(data)}
        self._hash: int | None = None

    @classmethod
    def _from_sorted(cls, data: dict[str, Any]) -> Any:
        """Wrap ``data`` (valid, keys in ascending order) without copying or checks."""
        obj = object.__new__(cls)
        obj._data = data
        obj._hash = None
        return obj

    @classmethod
    def _check_value(cls, key: str, value: Any) -> Any:
        return value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))


class VectorClock(_FrozenMap):
    """An immutable vector clock: node id (str) -> counter (u64).

    Built from a mapping or an iterable of ``(node, counter)`` pairs; compares
    by value (also equal to a plain ``dict`` with the same entries) and iterates
    in ascending node-id order, which is also the encoding order.

    An explicit zero entry is kept: ``{"a": 0}`` and ``{}`` are different clocks,
    as in the Rust original.
    """

    __slots__ = ()
    _what = "vector clock node id"

    @classmethod
    def _check_value(cls, key: str, value: Any) -> int:
        return _check_u64(value, f"vector clock counter of {key!r}")

    def merge(self, other: VectorClock) -> VectorClock:
        """Return the pointwise maximum of the two clocks."""
        mine, theirs = self._data, other._data
        if mine == theirs:
            return self
        merged = dict(mine)
        for node, counter in theirs.items():
            if merged.get(node, -1) < counter:
                merged[node] = counter
        return VectorClock._from_sorted({node: merged[node] for node in sorted(merged)})


def _as_clock(value: object, what: str) -> VectorClock:
    if isinstance(value, VectorClock):
        return value
    if isinstance(value, Mapping):
        return VectorClock(value)
    raise TypeError(f"{what} must be a VectorClock or a mapping, not {type(value).__name__}")


class _ClockMap(_FrozenMap):
    """The dependencies of a :class:`MultiCausalLattice`: key -> VectorClock."""

    __slots__ = ()
    _what = "dependency key"

    @classmethod
    def _check_value(cls, key: str, value: Any) -> VectorClock:
        return _as_clock(value, f"dependency {key!r}")

    def merge(self, other: _ClockMap) -> _ClockMap:
        """Union of keys, merging the clocks of common keys pointwise."""
        if self._data == other._data:
            return self
        merged = dict(self._data)
        for key, clock in other._data.items():
            mine = merged.get(key)
            merged[key] = clock if mine is None else mine.merge(clock)
        return _ClockMap._from_sorted({key: merged[key] for key in sorted(merged)})


class _LatticeMap(_FrozenMap):
    """The entries of a :class:`MapLattice`: key -> Lattice."""

    __slots__ = ()
    _what = "map lattice key"

    @classmethod
    def _check_value(cls, key: str, value: Any) -> Lattice:
        if not isinstance(value, Lattice):
            raise TypeError(f"map lattice entry {key!r} must be a Lattice, not {type(value).__name__}")
        return value


# -- lattices -----------------------------------------------------------------


class Lattice(ABC):
    """Base class of lattice values.

    Subclasses are frozen dataclasses; ``merge`` is their least upper bound
    (see the module docstring for the caveat on causal types).
    """

    __slots__ = ()

    #: Short type name used in messages ("Lww", "Set", ...).
    type_name: ClassVar[str]

    def merge(self, other: Lattice) -> Lattice:
        """Return the merge of ``self`` (the local value) and ``other`` (the incoming one).

        :raises essa.errors.LatticeTypeError: ``other`` is a different lattice type.
        """
        if type(other) is not type(self):
            if not isinstance(other, Lattice):
                raise TypeError(f"cannot merge {type(other).__name__} into a {self.type_name} lattice")
            raise LatticeTypeError(
                f"cannot merge a {other.type_name} lattice into a {self.type_name} lattice:"
                " lattice types differ"
            )
        return self._merge_same(other)

    @abstractmethod
    def _merge_same(self, other: Any) -> Lattice:
        """Merge ``other``, which has exactly the type of ``self``."""


@dataclass(frozen=True, slots=True)
class LwwLattice(Lattice):
    """Last writer wins: the value with the larger timestamp survives a merge.

    :param timestamp: integer nanoseconds since the Unix epoch, UTC, within
        years 0000..9999 (what the RFC 3339 encoding can express).
    :param value: the payload.

    Equal timestamps are broken by comparing the value bytes (the larger wins),
    so merges are deterministic in either order.
    """

    type_name: ClassVar[str] = "Lww"

    timestamp: int
    value: bytes

    def __post_init__(self) -> None:
        ts = self.timestamp
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise TypeError(f"LWW timestamp must be int nanoseconds, not {type(ts).__name__}")
        if not MIN_TIMESTAMP_NS <= ts <= MAX_TIMESTAMP_NS:
            raise ValueError(f"LWW timestamp {ts} ns is outside the years 0000..9999")
        object.__setattr__(self, "timestamp", int(ts))
        object.__setattr__(self, "value", _as_bytes(self.value, "LWW value"))

    @classmethod
    def now(cls, value: bytes) -> LwwLattice:
        """An LWW value stamped with the current time (``time.time_ns()``)."""
        return cls(time.time_ns(), value)

    def _merge_same(self, other: LwwLattice) -> LwwLattice:
        if (other.timestamp, other.value) > (self.timestamp, self.value):
            return other
        return self


@dataclass(frozen=True, slots=True)
class SetLattice(Lattice):
    """A grow-only set of byte strings; merge is union.

    ``values`` accepts any iterable of bytes-like objects.
    """

    type_name: ClassVar[str] = "Set"

    values: frozenset[bytes]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _byte_set(self.values, self.type_name))

    def _merge_same(self, other: SetLattice) -> SetLattice:
        if other.values <= self.values:
            return self
        return _new(type(self), values=self.values | other.values)

    def __repr__(self) -> str:
        return _set_repr(self, self.values)


@dataclass(frozen=True, slots=True)
class OrderedSetLattice(Lattice):
    """Like :class:`SetLattice`, but encoded in ascending byte order.

    ``values`` accepts any iterable of bytes-like objects; use ``sorted(values)``
    for the order.
    """

    type_name: ClassVar[str] = "OrderedSet"

    values: frozenset[bytes]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _byte_set(self.values, self.type_name))

    def _merge_same(self, other: OrderedSetLattice) -> OrderedSetLattice:
        if other.values <= self.values:
            return self
        return _new(type(self), values=self.values | other.values)

    def __repr__(self) -> str:
        return _set_repr(self, self.values)


def _relation(local: VectorClock, incoming: VectorClock) -> tuple[VectorClock, str]:
    """Merge two clocks and say which side the merge is: local, incoming or both."""
    merged = local.merge(incoming)
    if local == incoming:
        return merged, "concurrent"  # same version: treated as concurrent, see module doc
    if merged == incoming:
        return merged, "incoming"
    if merged == local:
        return merged, "local"
    return merged, "concurrent"


@dataclass(frozen=True, slots=True)
class SingleCausalLattice(Lattice):
    """A set of values versioned by one vector clock.

    Merge: the pointwise maximum of the clocks; a side whose clock is strictly
    dominated is dropped; otherwise (concurrent or equal clocks) the values are
    unioned.

    :param clock: a :class:`VectorClock` or any mapping str -> int.
    :param values: any iterable of bytes-like objects.
    """

    type_name: ClassVar[str] = "SingleCausal"

    clock: VectorClock
    values: frozenset[bytes]

    def __post_init__(self) -> None:
        object.__setattr__(self, "clock", _as_clock(self.clock, "SingleCausal clock"))
        object.__setattr__(self, "values", _byte_set(self.values, self.type_name))

    def _merge_same(self, other: SingleCausalLattice) -> SingleCausalLattice:
        clock, winner = _relation(self.clock, other.clock)
        if winner == "incoming":
            return other
        if winner == "local":
            return self
        if self.clock == other.clock and other.values <= self.values:
            return self
        return _new(SingleCausalLattice, clock=clock, values=self.values | other.values)


@dataclass(frozen=True, slots=True)
class MultiCausalLattice(Lattice):
    """A causal value that also records the versions of the keys it depends on.

    Merge: like :class:`SingleCausalLattice`; when neither side strictly
    dominates, the dependencies are merged key by key (pointwise maximum).

    :param clock: a :class:`VectorClock` or any mapping str -> int.
    :param dependencies: mapping key -> clock (a VectorClock or a mapping).
    :param values: any iterable of bytes-like objects.
    """

    type_name: ClassVar[str] = "MultiCausal"

    clock: VectorClock
    dependencies: Mapping[str, VectorClock]
    values: frozenset[bytes]

    def __post_init__(self) -> None:
        object.__setattr__(self, "clock", _as_clock(self.clock, "MultiCausal clock"))
        deps = self.dependencies
        if not isinstance(deps, _ClockMap):
            if not isinstance(deps, (Mapping, Iterable)) or isinstance(deps, (str, bytes)):
                raise TypeError(f"MultiCausal dependencies must be a mapping, not {type(deps).__name__}")
            deps = _ClockMap(deps)
        object.__setattr__(self, "dependencies", deps)
        object.__setattr__(self, "values", _byte_set(self.values, self.type_name))

    def _merge_same(self, other: MultiCausalLattice) -> MultiCausalLattice:
        clock, winner = _relation(self.clock, other.clock)
        if winner == "incoming":
            return other
        if winner == "local":
            return self
        return _new(
            MultiCausalLattice,
            clock=clock,
            dependencies=self.dependencies.merge(other.dependencies),  # type: ignore[attr-defined]
            values=self.values | other.values,
        )


@dataclass(frozen=True, slots=True)
class MaxLattice(Lattice):
    """An unsigned 64-bit counter that keeps the maximum (host-side only)."""

    type_name: ClassVar[str] = "Max"

    value: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _check_u64(self.value, "Max value"))

    def _merge_same(self, other: MaxLattice) -> MaxLattice:
        return other if other.value > self.value else self


@dataclass(frozen=True, slots=True)
class BoolLattice(Lattice):
    """A flag that, once true, stays true: merge is logical or (host-side only)."""

    type_name: ClassVar[str] = "Bool"

    value: bool

    def __post_init__(self) -> None:
        if not isinstance(self.value, bool):
            raise TypeError(f"Bool value must be a bool, not {type(self.value).__name__}")

    def _merge_same(self, other: BoolLattice) -> BoolLattice:
        return other if other.value and not self.value else self


@dataclass(frozen=True, slots=True)
class MapLattice(Lattice):
    """A record of lattices: merge takes the union of keys and merges common keys.

    Host-side only. A key holding different lattice types on the two sides
    makes the merge raise :class:`~essa.errors.LatticeTypeError` naming the key.

    :param entries: mapping (or iterable of pairs) str -> Lattice.
    """

    type_name: ClassVar[str] = "Map"

    entries: Mapping[str, Lattice]

    def __post_init__(self) -> None:
        entries = self.entries
        if not isinstance(entries, _LatticeMap):
            if isinstance(entries, (str, bytes)) or not isinstance(entries, (Mapping, Iterable)):
                raise TypeError(f"Map entries must be a mapping, not {type(entries).__name__}")
            entries = _LatticeMap(entries)
        object.__setattr__(self, "entries", entries)

    def _merge_same(self, other: MapLattice) -> MapLattice:
        theirs = other.entries
        if not theirs:
            return self
        merged = dict(self.entries)
        for key, value in theirs.items():
            mine = merged.get(key)
            if mine is None:
                merged[key] = value
                continue
            try:
                merged[key] = mine.merge(value)
            except LatticeTypeError as exc:
                raise LatticeTypeError(f"map key {key!r}: {exc}") from exc
        return _new(MapLattice, entries=_LatticeMap._from_sorted({k: merged[k] for k in sorted(merged)}))


#: The lattice types of the guest ABI's ``LatticeValue`` enum, in variant order.
GUEST_TYPES: tuple[type[Lattice], ...] = (
    LwwLattice,
    SetLattice,
    OrderedSetLattice,
    SingleCausalLattice,
    MultiCausalLattice,
)
