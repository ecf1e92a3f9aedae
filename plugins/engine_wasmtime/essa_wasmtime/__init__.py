"""The wasmtime engine for essa (``--engine wasmtime``, the default)."""

from .engine import WasmtimeEngine

__all__ = ["WasmtimeEngine"]
