"""The engine conformance suite ships with the core and loads without any engine."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import essa.testing.conformance as conformance

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_test_function_is_the_example():
    packaged = resources.files(conformance).joinpath("data", "test-function.wasm").read_bytes()
    example = (ROOT / "examples" / "test-function.wasm").read_bytes()
    assert packaged == example, "copy examples/test-function.wasm to core/essa/testing/conformance/data/"


def test_suite_modules_import_without_an_engine():
    import importlib

    for name in conformance.SUITE:
        importlib.import_module(f"essa.testing.conformance.{name}")


def test_runner_has_help():
    result = subprocess.run(
        [sys.executable, "-m", "essa.testing.conformance", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "--engine" in result.stdout
