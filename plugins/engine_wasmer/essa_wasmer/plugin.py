"""Registers the wasmer engine with essa.

Imports on every Python: where wasmer has no native build (3.11+), the engine
registers as unavailable and ``essa plugins`` shows why.
"""

import essa

from .engine import WasmerEngine


@essa.hookimpl
def essa_register_engines(register):
    register("wasmer", WasmerEngine)
