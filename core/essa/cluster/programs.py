"""Compiled modules: compile once per engine version, reuse everywhere.

A module is named by the SHA-256 of its bytes. :class:`ProgramCache` finds a
runnable :class:`~essa.wasm.engine.Program` for a module name by looking, in order,
in memory, for the engine's artifact in the store, and for the module's bytes
in the store (then compiling, and storing the artifact for the next process).
It keeps at most :data:`MAX_PROGRAMS` programs in memory: a long-running
executor that sees ever new modules (every redeploy of a changed function is
one) drops the least recently used, and loads it again from its stored
artifact if a call needs it later.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time

from essa.cluster import metrics
from essa.errors import ModuleError
from essa.state.lattice import LwwLattice
from essa.state.store import Store
from essa.wasm.engine import Engine, Program

log = logging.getLogger("essa.cluster.programs")

WASM_MAGIC = b"\0asm"
#: Programs a :class:`ProgramCache` keeps in memory at most (the least recently used go first).
MAX_PROGRAMS = 64


def module_name(wasm: bytes) -> str:
    """The content name of a module: the hex SHA-256 of its bytes."""
    return hashlib.sha256(wasm).hexdigest()


def wasm_key(module: str) -> str:
    """Store key of a module's Wasm bytes."""
    return f"modules/{module}/wasm"


def artifact_key(module: str, engine: Engine) -> str:
    """Store key of a module's compiled artifact for one engine version."""
    return f"modules/{module}/artifact/{engine.artifact_tag}"


def check_wasm(wasm: bytes, origin: str) -> None:
    """Refuse bytes that cannot be a Wasm module, naming ``origin``."""
    if not wasm.startswith(WASM_MAGIC):
        raise ModuleError(f"{origin} is not a WebAssembly module (no \\0asm header)")


def read_module(path: str) -> bytes:
    """Read a module file, with a one-line error for a missing or non-Wasm file."""
    try:
        with open(path, "rb") as f:
            wasm = f.read()
    except FileNotFoundError:
        raise ModuleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModuleError(f"{path}: is a directory, not a Wasm module") from None
    except OSError as exc:
        raise ModuleError(f"{path}: cannot read: {exc.strerror}") from None
    check_wasm(wasm, path)
    return wasm


def publish_module(store: Store, wasm: bytes, origin: str = "the module") -> str:
    """Put a module's bytes into the store (once) and return its name."""
    check_wasm(wasm, origin)
    name = module_name(wasm)
    key = wasm_key(name)
    if store.get_bytes(key) is None:
        store.put(key, LwwLattice(0, wasm))
    return name


class ProgramCache:
    """Runnable programs by module name, for one engine and store (at most ``max_programs`` in memory)."""

    def __init__(self, engine: Engine, store: Store, max_programs: int = MAX_PROGRAMS) -> None:
        self.engine = engine
        self.store = store
        self.max_programs = max(1, max_programs)
        self._programs: dict[str, Program] = {}
        #: module -> when it was last used (a tick of ``_ticks``): the least recent is dropped first
        self._used: dict[str, int] = {}
        self._ticks = itertools.count()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        #: How each module in memory was obtained: "compiled" or "artifact" (for tests and -v).
        self.sources: dict[str, str] = {}

    def loaded(self, module: str) -> bool:
        """Whether ``module`` is loaded here (so it is in the store too)."""
        return module in self._programs

    def get(self, module: str) -> Program:
        """The program of ``module``; raises :class:`ModuleError` if unusable.

        A program dropped from memory while a call still runs it stays usable
        by that call (the call holds it).
        """
        program = self._programs.get(module)
        if program is not None:
            self._used[module] = next(self._ticks)
            return program
        with self._lock:
            lock = self._locks.setdefault(module, threading.Lock())
        with lock:  # one loader per module; the others wait for it
            program = self._programs.get(module)
            if program is None:
                program = self._load(module)
                with self._lock:
                    self._programs[module] = program
                    self._used[module] = next(self._ticks)
                    self._drop_beyond_bound()
        return program

    def _drop_beyond_bound(self) -> None:  # self._lock held
        while len(self._programs) > self.max_programs:
            oldest = min(self._programs, key=lambda m: self._used.get(m, -1))
            del self._programs[oldest]
            self.sources.pop(oldest, None)
            self._locks.pop(oldest, None)
            log.info("module %s: dropped from memory (%d modules loaded at most)", oldest[:12], self.max_programs)
        for module in [m for m in self._used if m not in self._programs]:  # dropped, or touched while dropped
            del self._used[module]

    def _load(self, module: str) -> Program:
        short = module[:12]
        key = artifact_key(module, self.engine)
        started = time.perf_counter()
        artifact = self.store.get(key)
        if isinstance(artifact, LwwLattice):
            try:
                compiled = self.engine.deserialize(artifact.value)
            except ModuleError as exc:
                log.warning("module %s: stored %s artifact unusable (%s); compiling", short, self.engine.name, exc)
            else:
                program = self.engine.prepare(compiled)
                log.info(
                    "module %s: loaded %s artifact from the store in %.1f ms",
                    short, self.engine.artifact_tag, (time.perf_counter() - started) * 1e3,
                )
                self.sources[module] = "artifact"
                metrics.module_loaded("artifact", time.perf_counter() - started)
                return program
        stored = self.store.get(wasm_key(module))
        if not isinstance(stored, LwwLattice):
            raise ModuleError(f"module {short} is not in the store")
        compiled = self.engine.compile(stored.value)
        program = self.engine.prepare(compiled)
        self.store.put(key, LwwLattice.now(self.engine.serialize(compiled)))
        log.info(
            "module %s: compiled with %s in %.1f ms; artifact stored",
            short, self.engine.artifact_tag, (time.perf_counter() - started) * 1e3,
        )
        self.sources[module] = "compiled"
        metrics.module_loaded("compiled", time.perf_counter() - started)
        return program
