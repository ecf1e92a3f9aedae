"""essa's engine conformance suite, as a pytest plugin.

Every engine plugin runs the same tests: the whole guest ABI (every host
function, every error code, pointers outside guest memory), WASI output and
exit status, traps, remote-call fan-out, artifacts (also through the LMDB store
when ``essa-plugin-lmdb`` is installed), memory limits, threads, and the C test
function end to end. Run it against an engine with::

    pip install -e '.[conformance]' -e ../essa-plugin-myengine   # in a checkout of essa (not on PyPI)
    python -m essa.testing.conformance --engine myengine      # extra args go to pytest

which is short for::

    pytest -p essa.testing.conformance --pyargs essa.testing.conformance --essa-engine myengine

or, from a plugin's own test tree, a ``conftest.py`` with
``pytest_plugins = ["essa.testing.conformance"]`` and a test module with
``from essa.testing.conformance.test_abi import *`` (one per suite module).

The engine is ``--essa-engine NAME``, else ``$ESSA_TEST_ENGINE``, else
``wasmtime``; tests skip when it is not installed or not available here.
Modules are written in WAT and assembled with ``wasmtime.wat2wasm`` (the
``conformance`` extra), whatever engine runs them.

Fixtures this plugin provides:

``essa_engine``
    the name of the engine under test (session scope).
``essa_home``
    a fresh ``ESSA_HOME`` for one test (the suite's tests all use it).
"""

from __future__ import annotations

import os

import pytest

#: The suite's test modules, for ``--pyargs`` and for re-exporting.
SUITE = (
    "test_abi", "test_runtime", "test_engine", "test_limits", "test_sandbox", "test_wasi_io", "test_lifetimes",
    "test_cancel", "test_examples",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("essa", "essa engine conformance")
    group.addoption(
        "--essa-engine",
        default=os.environ.get("ESSA_TEST_ENGINE", "wasmtime"),
        help="engine the conformance and end-to-end tests run on (default: $ESSA_TEST_ENGINE, else wasmtime)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"essa engine under test: {config.getoption('--essa-engine')}"


@pytest.fixture(scope="session")
def essa_engine(request: pytest.FixtureRequest) -> str:
    """The engine under test; skips when its plugin is not installed or cannot run here."""
    from essa.errors import PluginNotFound
    from essa.plugins import get_plugin_manager

    name = request.config.getoption("--essa-engine")
    try:
        get_plugin_manager().engine_class(name)
    except PluginNotFound as exc:
        pytest.skip(str(exc))
    return name


@pytest.fixture
def essa_home(tmp_path, monkeypatch):
    """A fresh data directory, so no test sees another's state or artifacts."""
    home = tmp_path / "essa-home"
    monkeypatch.setenv("ESSA_HOME", str(home))
    return home
