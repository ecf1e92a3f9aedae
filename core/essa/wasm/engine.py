"""The engine interface: what a Wasm runtime plugin provides.

An engine compiles modules, turns compiled modules into bytes and back
(artifacts, so that a module is compiled once per engine version), and runs
exports with essa's host functions linked in. It adapts only memory access and
calling: the host functions themselves live once, in :mod:`essa.wasm.abi`, and an
engine registers each :data:`essa.wasm.host.HOST_FUNCTIONS` entry under the ``host``
import module as an ``(i32, ...) -> i32`` function.

The flow, for an executor::

    engine = WasmtimeEngine(limits, grants)
    compiled = engine.compile(wasm_bytes)        # or engine.deserialize(artifact)
    artifact = engine.serialize(compiled)        # kept in the store
    program = engine.prepare(compiled)           # link once per module
    program.run(invocation, "__essa_wrapper__f", len(args))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from essa.errors import EssaError
from essa.wasm.invocation import Invocation
from essa.wasm.limits import Grants, Limits

#: A Wasm value type, as text: ``"i32"``, ``"i64"``, ``"f32"``, ``"f64"``, ...
ValType = str

#: The type every callable essa function has: one i32 (the argument length),
#: no results.
CALLABLE_SIGNATURE = (("i32",), ())

#: The default function of a WASI command module.
START = "_start"


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
        active (:meth:`essa.wasm.invocation.Invocation.active`) while it runs. Guest
        stdout/stderr go to ``invocation.output``.

        :raises essa.errors.GuestTrap: the guest trapped; the message says why
            (including the reason a host function gave, if one made it trap).
            :meth:`essa.wasm.invocation.Invocation.failure` builds it, so a call that
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
