"""Registers the wasmtime engine with essa."""

import essa

from .engine import WasmtimeEngine


@essa.hookimpl
def essa_register_engines(register):
    register("wasmtime", WasmtimeEngine)
