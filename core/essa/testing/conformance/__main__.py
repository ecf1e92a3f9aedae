"""``python -m essa.testing.conformance --engine NAME [PYTEST ARGS]``: run the suite."""

from __future__ import annotations

import argparse
import sys

import pytest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m essa.testing.conformance",
        description="Run essa's engine conformance suite against an installed engine.",
        epilog="Other arguments go to pytest, e.g. -x, -q, -k NAME.",
    )
    parser.add_argument("--engine", help="engine name (default: $ESSA_TEST_ENGINE, else wasmtime)")
    args, rest = parser.parse_known_args(argv)
    pytest_args = ["--pyargs", "essa.testing.conformance", *rest]
    if args.engine:
        pytest_args += ["--essa-engine", args.engine]
    # Same as `pytest -p essa.testing.conformance ...`; the plugin is passed as
    # the module `python -m` already imported (so pytest does not import it again).
    from essa.testing import conformance

    return int(pytest.main(pytest_args, plugins=[conformance]))


if __name__ == "__main__":
    sys.exit(main())
