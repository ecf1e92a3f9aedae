"""Free TCP ports on loopback, for tests and benchmarks that start real processes (:mod:`essa.util.ports`)."""

from __future__ import annotations

from essa.util.ports import free_port

__all__ = ["free_port"]
