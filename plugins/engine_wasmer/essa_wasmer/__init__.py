"""The wasmer engine for essa (``--engine wasmer``; Python 3.10 and older)."""

from .engine import WasmerEngine

__all__ = ["WasmerEngine"]
