"""Shared fixtures: the engine under test (from the conformance plugin) and a fresh ESSA_HOME.

``essa.testing.conformance`` adds ``--essa-engine`` (default: $ESSA_TEST_ENGINE,
else wasmtime) and the ``essa_engine`` fixture; tests/engine runs its suite.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# No test depends on wall-clock speed: hypothesis' per-example deadline and its
# too-slow health check would fail on a machine whose cores are busy elsewhere.
settings.register_profile("essa", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("essa")

pytest_plugins = ["essa.testing.conformance"]


@pytest.fixture(scope="session")
def engine_name(essa_engine) -> str:
    """The engine under test; skips when its plugin is not installed here."""
    return essa_engine


@pytest.fixture(autouse=True)
def engine_for_commands(request, monkeypatch):
    """`essa` processes a test starts use the engine under test unless told otherwise (--engine)."""
    monkeypatch.setenv("ESSA_ENGINE", request.config.getoption("--essa-engine"))


@pytest.fixture(autouse=True)
def essa_home(tmp_path, monkeypatch):
    """Every test gets its own data directory, so no test sees another's state."""
    home = tmp_path / "essa-home"
    monkeypatch.setenv("ESSA_HOME", str(home))
    return home
