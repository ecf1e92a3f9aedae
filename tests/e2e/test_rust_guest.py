"""The Rust guest SDK end to end: the Rust test function behaves like the C one.

examples/test-function-rust.wasm is built from examples/test-function-rust
(the SDK in guest/rust) by examples/build_rust.py; this runs it with the real
runtime, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/e2e as a package, or as a plain directory on sys.path
    from .test_cli import EXPECTED_TEST_FUNCTION_OUTPUT, essa
except ImportError:
    from test_cli import EXPECTED_TEST_FUNCTION_OUTPUT, essa

ROOT = Path(__file__).resolve().parents[2]
RUST_TEST_FUNCTION = ROOT / "examples" / "test-function-rust.wasm"


@pytest.fixture
def rust_test_function() -> str:
    if not RUST_TEST_FUNCTION.is_file():
        pytest.skip("examples/test-function-rust.wasm is missing; build it with python examples/build_rust.py")
    return str(RUST_TEST_FUNCTION)


def engine_args(request) -> list[str]:
    """``--engine NAME`` when the tests run on a chosen engine (``--essa-engine``)."""
    name = request.config.getoption("--essa-engine", default=None)
    return ["--engine", name] if name else []


def test_rust_test_function_prints_what_the_c_one_prints(request, rust_test_function):
    result = essa("--store", "memory", *engine_args(request), "run", rust_test_function)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
    assert "Traceback" not in result.stderr
