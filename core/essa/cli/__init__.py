"""The ``essa`` command, built on the public Python API (:mod:`essa.api`)."""

from essa.cli.main import cli, main

__all__ = ["cli", "main"]
