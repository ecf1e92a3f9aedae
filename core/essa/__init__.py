"""essa: stateful serverless WebAssembly functions.

The public surface for plugin authors is :data:`hookimpl` plus the base classes
in :mod:`essa.engine`, :mod:`essa.store` and :mod:`essa.transport.base`.
"""

from __future__ import annotations

import logging

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations (see :mod:`essa.hookspecs`).
hookimpl = pluggy.HookimplMarker("essa")

# Library users decide where essa's log goes; the CLI sends it to stderr.
logging.getLogger("essa").addHandler(logging.NullHandler())

__all__ = ["__version__", "hookimpl"]
