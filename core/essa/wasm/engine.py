"""The engine interface: what a Wasm runtime plugin provides.

An engine compiles modules, turns compiled modules into bytes and back
(artifacts, so that a module is compiled once per engine version), and runs
exports with essa's host functions linked in. It adapts only memory access and
calling: the host functions themselves live once, in :mod:`essa.abi`, and an
engine registers each :data:`essa.abi.HOST_FUNCTIONS` entry under the ``host``
import module as an ``(i32, ...) -> i32`` function.

The flow, for an executor::

    engine = WasmtimeEngine(limits, grants)
    compiled = engine.compile(wasm_bytes)        # or engine.deserialize(artifact)
    artifact = engine.serialize(compiled)        # kept in the store
    program = engine.prepare(compiled)           # link once per module
    program.run(invocation, "__essa_wrapper__f", len(args))
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from essa.errors import EssaError

if TYPE_CHECKING:  # pragma: no cover
    from essa.wasm.abi import Invocation

#: A Wasm value type, as text: ``"i32"``, ``"i64"``, ``"f32"``, ``"f64"``, ...
ValType = str

#: The type every callable essa function has: one i32 (the argument length),
#: no results.
CALLABLE_SIGNATURE = (("i32",), ())

#: The default function of a WASI command module.
START = "_start"


MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every call an engine runs.

    Exceeding one ends that call only: the engine raises
    :class:`essa.errors.LimitExceeded` (a :class:`~essa.errors.GuestTrap`)
    whose message names the limit, e.g. ``time limit exceeded (5 s)``.

    :param time_limit: seconds of wall time one call may run (host calls and
        waits included), or ``None`` for no limit.
    :param max_memory_bytes: cap on one instance's linear memory; growing past
        it fails inside the guest (``memory.grow`` returns -1), and a call that
        then fails is reported as ``memory limit exceeded``.
    :param max_message_bytes: cap on the bytes of one call's arguments, of its
        result, and of one lattice value a guest puts; larger ones are refused
        with ``UnknownError`` and a one-line warning.
    :param max_output_bytes: cap on the stdout + stderr bytes of one call, or
        ``None`` for no limit.
    """

    time_limit: float | None = 30.0
    max_memory_bytes: int = 256 * MiB
    max_message_bytes: int = 64 * MiB
    max_output_bytes: int | None = 64 * MiB

    def __post_init__(self) -> None:
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError("the time limit must be positive (or None for no limit)")
        for name in ("max_memory_bytes", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_output_bytes is not None and self.max_output_bytes < 0:
            raise ValueError("max_output_bytes must not be negative")

    def exceeded(self, limit: str) -> str:
        """The one-line message for exceeding ``limit`` ("time", "memory", "output", "message size")."""
        value = {
            "time": self.time_limit,
            "memory": self.max_memory_bytes,
            "output": self.max_output_bytes,
            "message size": self.max_message_bytes,
        }[limit]
        shown = format_seconds(value) if limit == "time" else format_bytes(value)
        return f"{limit} limit exceeded ({shown})"


def format_bytes(n: int | None) -> str:
    """``67108864`` -> ``"64 MiB"``; exact multiples of KiB/MiB/GiB are shown as such."""
    if n is None:
        return "no limit"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def format_seconds(seconds: float | None) -> str:
    """``5.0`` -> ``"5 s"``, ``0.5`` -> ``"0.5 s"``."""
    if seconds is None:
        return "no limit"
    return f"{seconds:g} s"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"64M"``, ``"64MiB"``, ``"1g"``, ``"65536"`` -> bytes (K, M, G, T are powers of 1024).

    :raises ValueError: with a message saying what is accepted.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 65536, 64K, 256M, 1G)")
    number, unit = float(match.group(1)), match.group(2).lower()
    value = int(number * (1 << (10 * " kmgt".index(unit or " "))))
    if value < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return value


def parse_duration(text: str) -> float:
    """``"5"``, ``"0.5"``, ``"500ms"``, ``"2m"`` -> seconds.

    :raises ValueError: with a message saying what is accepted.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 5, 0.5, 500ms, 2m)")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[(match.group(2) or "s").lower()]
    if not value > 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return value


@dataclass(frozen=True)
class DirGrant:
    """A host directory a guest may use, preopened as ``guest`` (e.g. ``/data``)."""

    host: str
    guest: str
    writable: bool = False


@dataclass(frozen=True)
class Grants:
    """What a guest may reach of the host beyond stdio, clocks and randomness.

    Nothing by default: no preopened directory, no environment variable, no
    socket. Only whoever runs the executor grants more (``--dir``, ``--env``).
    """

    dirs: tuple[DirGrant, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dirs or self.env)


@dataclass(frozen=True)
class ModuleInfo:
    """Engine-neutral facts about a module's exports."""

    #: Exported functions: name -> (param types, result types).
    functions: dict[str, tuple[tuple[ValType, ...], tuple[ValType, ...]]] = field(default_factory=dict)

    def callable_status(self, name: str) -> str:
        """``"ok"``, ``"missing"`` or ``"bad-signature"`` for a remote call of ``name``."""
        sig = self.functions.get(name)
        if sig is None:
            return "missing"
        return "ok" if sig == CALLABLE_SIGNATURE else "bad-signature"

    @property
    def has_start(self) -> bool:
        return START in self.functions


C = TypeVar("C")


class Program(ABC):
    """A compiled module linked with the host functions, ready to run."""

    #: Facts about the module's exports.
    info: ModuleInfo

    @abstractmethod
    def run(self, invocation: "Invocation", export: str, arg: int | None = None) -> None:
        """Instantiate the module and call ``export`` for ``invocation``.

        ``arg`` is the single i32 argument of a callable function, or ``None``
        for ``_start``. The instance's memory is attached to the invocation
        (``invocation.memory``) before the export runs, and the invocation is
        active (:meth:`essa.abi.Invocation.active`) while it runs. Guest
        stdout/stderr go to ``invocation.output``.

        :raises essa.errors.GuestTrap: the guest trapped; the message says why
            (including the reason a host function gave, if one made it trap).
            :meth:`essa.abi.Invocation.failure` builds it, so a call that
            exceeded a limit raises :class:`essa.errors.LimitExceeded`.
        :raises essa.errors.GuestExit: the guest called ``proc_exit`` with a
            non-zero status (status 0 returns normally).
        """


class Engine(ABC, Generic[C]):
    """Base class of engine plugins. ``C`` is the engine's compiled-module type."""

    #: The name users pass to ``--engine``; set by the registering plugin.
    name: ClassVar[str] = ""

    #: What of :class:`Grants` this engine can give guests: ``"dirs"``, ``"env"``.
    #: A grant it cannot honour is refused when the engine is created, never ignored.
    supported_grants: ClassVar[frozenset[str]] = frozenset()

    #: What the engine's WASI gives guests, one short phrase each (``essa plugins`` lists them),
    #: e.g. ``"argv"``, ``"stdin"``.
    wasi_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, limits: Limits | None = None, grants: Grants | None = None) -> None:
        self.limits = limits or Limits()
        self.grants = grants or Grants()
        self.check_grants(self.grants)

    @classmethod
    def check_grants(cls, grants: Grants) -> None:
        """Refuse, in one line, grants this engine cannot honour."""
        for kind, wanted in (("dirs", grants.dirs), ("env", grants.env)):
            if wanted and kind not in cls.supported_grants:
                what = "directories" if kind == "dirs" else "environment variables"
                raise EssaError(f"engine {cls.name!r} cannot grant {what} to guests (--{kind[:3]})")

    @classmethod
    def grant_names(cls) -> list[str]:
        """The grants this engine supports, as the flags that ask for them."""
        names = {"dirs": "--dir", "env": "--env"}
        return [names.get(g, g) for g in sorted(cls.supported_grants)]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this engine cannot run in this Python, or ``None`` if it can.

        ``essa plugins`` shows the reason, and ``--engine NAME`` fails with it.
        """
        return None

    @property
    @abstractmethod
    def version(self) -> str:
        """The engine's version; artifacts are only loaded by the same version."""

    @abstractmethod
    def compile(self, wasm: bytes) -> C:
        """Validate and compile a module.

        :raises essa.errors.ModuleError: the bytes are not a valid Wasm module.
        """

    @abstractmethod
    def serialize(self, compiled: C) -> bytes:
        """The compiled module as an artifact for :meth:`deserialize`."""

    @abstractmethod
    def deserialize(self, artifact: bytes) -> C:
        """Load an artifact made by :meth:`serialize` of the same engine version.

        :raises essa.errors.ModuleError: the artifact is unusable.
        """

    @abstractmethod
    def prepare(self, compiled: C) -> Program:
        """Link ``compiled`` with WASI and the essa host functions."""

    @property
    def artifact_tag(self) -> str:
        """The part of an artifact's key naming this engine and version."""
        return f"{self.name}-{self.version}"
