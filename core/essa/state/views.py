"""Lattice values as people read them (text) and as scripts exchange them (JSON).

``essa state get`` prints :func:`to_text`; ``--json`` prints :func:`to_json`,
which :func:`from_json` reads back (``essa state put --json``, the HTTP
trigger). Element bytes that are valid UTF-8 appear as strings, any others as
``{"base64": "..."}``. The JSON view of each type:

- ``{"type": "Lww", "timestamp": "2026-11-30T20:15:27.123Z", "value": V}``
- ``{"type": "Set" | "OrderedSet", "values": [V, ...]}`` (sorted by bytes)
- ``{"type": "SingleCausal", "clock": {"node": 3}, "values": [V, ...]}``
- ``{"type": "MultiCausal", "clock": {...}, "dependencies": {"key": {...}}, "values": [...]}``
- ``{"type": "Max", "value": 7}``, ``{"type": "Bool", "value": true}``
- ``{"type": "Map", "entries": {"name": <any of these>}}``
"""

from __future__ import annotations

import base64
import json
from typing import Any

from essa.errors import DecodeError
from essa.state.lattice import (
    BoolLattice,
    Lattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
)
from essa.state.timestamps import format_timestamp, parse_timestamp

#: Most elements :func:`to_text` shows of one set before it says how many more there are.
TEXT_ITEMS = 50


def _element(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def _elements(values: frozenset[bytes]) -> list[Any]:
    return [_element(v) for v in sorted(values)]


def to_json(value: Lattice) -> dict:
    """The JSON view of ``value`` (see the module documentation)."""
    if isinstance(value, LwwLattice):
        return {"type": "Lww", "timestamp": format_timestamp(value.timestamp), "value": _element(value.value)}
    if isinstance(value, (SetLattice, OrderedSetLattice)):
        return {"type": value.type_name, "values": _elements(value.values)}
    if isinstance(value, SingleCausalLattice):
        return {"type": "SingleCausal", "clock": dict(value.clock), "values": _elements(value.values)}
    if isinstance(value, MultiCausalLattice):
        return {"type": "MultiCausal", "clock": dict(value.clock),
                "dependencies": {k: dict(c) for k, c in value.dependencies.items()}, "values": _elements(value.values)}
    if isinstance(value, (MaxLattice, BoolLattice)):
        return {"type": value.type_name, "value": value.value}
    if isinstance(value, MapLattice):
        return {"type": "Map", "entries": {k: to_json(v) for k, v in value.entries.items()}}
    raise TypeError(f"not a lattice: {type(value).__name__}")


def _raw(item: Any, where: str) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, dict) and set(item) == {"base64"} and isinstance(item["base64"], str):
        try:
            return base64.b64decode(item["base64"], validate=True)
        except ValueError:
            raise DecodeError(f"{where}: not valid base64") from None
    raise DecodeError(f"{where}: an element is a string or {{\"base64\": ...}}")


def _raw_list(items: Any, where: str) -> list[bytes]:
    if not isinstance(items, list):
        raise DecodeError(f"{where}: 'values' must be a list")
    return [_raw(item, where) for item in items]


def from_json(data: Any, where: str = "the value") -> Lattice:
    """The lattice a JSON view describes; a one-line :class:`DecodeError` for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise DecodeError(f"{where}: a lattice is an object with a 'type' (Lww, Set, OrderedSet, ...)")
    kind = data["type"]
    try:
        if kind == "Lww":
            stamp = data.get("timestamp")
            timestamp = parse_timestamp(stamp) if isinstance(stamp, str) else None
            if timestamp is None:
                raise DecodeError(f"{where}: an Lww value needs an RFC 3339 'timestamp'")
            return LwwLattice(timestamp, _raw(data.get("value"), where))
        if kind in ("Set", "OrderedSet"):
            cls = SetLattice if kind == "Set" else OrderedSetLattice
            return cls(_raw_list(data.get("values"), where))
        if kind == "SingleCausal":
            return SingleCausalLattice(data.get("clock", {}), _raw_list(data.get("values"), where))
        if kind == "MultiCausal":
            return MultiCausalLattice(data.get("clock", {}), data.get("dependencies", {}),
                                      _raw_list(data.get("values"), where))
        if kind == "Max":
            return MaxLattice(data.get("value"))
        if kind == "Bool":
            return BoolLattice(data.get("value"))
        if kind == "Map":
            entries = data.get("entries")
            if not isinstance(entries, dict):
                raise DecodeError(f"{where}: a Map needs 'entries', an object")
            return MapLattice({k: from_json(v, f"{where}, entry {k!r}") for k, v in entries.items()})
    except DecodeError:
        raise  # already names where (a DecodeError is a ValueError: not prefixed twice)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{where}: {exc}") from None
    raise DecodeError(f"{where}: unknown lattice type {kind!r} (Lww, Set, OrderedSet, SingleCausal, "
                      "MultiCausal, Max, Bool, Map)")


def _shown(raw: bytes) -> str:
    """One element as a JSON string (quotes and control characters escaped), or hex if it is not UTF-8."""
    item = _element(raw)
    return json.dumps(item, ensure_ascii=False) if isinstance(item, str) else f"0x{raw.hex()}"


def _set_text(values: frozenset[bytes]) -> str:
    ordered = sorted(values)
    shown = ", ".join(_shown(v) for v in ordered[:TEXT_ITEMS])
    more = f", ... ({len(ordered) - TEXT_ITEMS} more)" if len(ordered) > TEXT_ITEMS else ""
    return "{" + shown + more + "}"


def to_text(value: Lattice) -> str:
    """``value`` in one line for people, e.g. ``Set {"four", "one"}`` (long sets are shortened)."""
    if isinstance(value, LwwLattice):
        return f"Lww {_shown(value.value)} (at {format_timestamp(value.timestamp)})"
    if isinstance(value, (SetLattice, OrderedSetLattice)):
        return f"{value.type_name} {_set_text(value.values)} ({len(value.values)} elements)"
    if isinstance(value, SingleCausalLattice):
        return f"SingleCausal {_set_text(value.values)} at {dict(value.clock)}"
    if isinstance(value, MultiCausalLattice):
        return f"MultiCausal {_set_text(value.values)} at {dict(value.clock)}, {len(value.dependencies)} dependencies"
    if isinstance(value, (MaxLattice, BoolLattice)):
        return f"{value.type_name} {value.value}"
    if isinstance(value, MapLattice):
        return "Map {" + ", ".join(f"{k!r}: {to_text(v)}" for k, v in value.entries.items()) + "}"
    raise TypeError(f"not a lattice: {type(value).__name__}")


__all__ = ["from_json", "to_json", "to_text"]
