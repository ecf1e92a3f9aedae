"""Shared fixtures: which engine the engine tests run on, and a fresh ESSA_HOME."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--essa-engine",
        default=os.environ.get("ESSA_TEST_ENGINE", "wasmtime"),
        help="engine the engine and end-to-end tests run on (default: wasmtime, or $ESSA_TEST_ENGINE)",
    )


@pytest.fixture(scope="session")
def engine_name(request) -> str:
    """The engine under test; skips when its plugin is not installed here."""
    from essa.errors import PluginNotFound
    from essa.plugins import get_plugin_manager

    name = request.config.getoption("--essa-engine")
    try:
        get_plugin_manager().engine_class(name)
    except PluginNotFound as exc:
        pytest.skip(str(exc))
    return name


@pytest.fixture(autouse=True)
def essa_home(tmp_path, monkeypatch):
    """Every test gets its own data directory, so no test sees another's state."""
    home = tmp_path / "essa-home"
    monkeypatch.setenv("ESSA_HOME", str(home))
    return home
