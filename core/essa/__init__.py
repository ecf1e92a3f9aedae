"""essa: stateful serverless WebAssembly functions.

For users, :func:`connect` is the way in (see :mod:`essa.api`)::

    import essa

    with essa.connect() as es:                  # or essa.connect("tcp/HOST:PORT")
        es.deploy("wc.wasm", name="wc")
        words = es.call("wc", "count_words", "a b c")      # 3: by the function's signature

Lattice types (:class:`SetLattice`, :class:`LwwLattice`, ...), errors
(:class:`EssaError`, :class:`NotFound`, :class:`CallError`,
:class:`ArgumentError`, ...) and :class:`Signature` are importable from here. For plugin authors the public surface is :data:`hookimpl` plus the
base classes in :mod:`essa.wasm.engine`, :mod:`essa.state.store` and
:mod:`essa.transport.base`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations (see :mod:`essa.hookspecs`).
hookimpl = pluggy.HookimplMarker("essa")

# Library users decide where essa's log goes; the CLI sends it to stderr.
logging.getLogger("essa").addHandler(logging.NullHandler())

#: Public names, imported on first use (``import essa`` stays light for plugins and the CLI).
_LAZY = {
    "connect": "api", "Connection": "api", "State": "api", "CallError": "api",
    "Deployment": "api", "Deployed": "api", "Function": "api", "Signature": "api", "LogLine": "api",
    "LogBounds": "api",
    "encode": "state.codec", "decode": "state.codec",
    "EssaError": "errors", "NotFound": "errors", "StoreError": "errors", "ModuleError": "errors", "RunFailed": "errors",
    "InvalidKey": "errors", "ArgumentError": "errors", "ResultError": "errors", "SignatureError": "errors",
    "Lattice": "state.lattice", "LwwLattice": "state.lattice", "SetLattice": "state.lattice",
    "OrderedSetLattice": "state.lattice", "SingleCausalLattice": "state.lattice",
    "MultiCausalLattice": "state.lattice", "MaxLattice": "state.lattice", "BoolLattice": "state.lattice",
    "MapLattice": "state.lattice", "VectorClock": "state.lattice",
    "TlsFiles": "security.tls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'essa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "hookimpl", *_LAZY]
