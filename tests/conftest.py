"""Shared fixtures: the engine under test (from the conformance plugin) and a fresh ESSA_HOME.

``essa.testing.conformance`` adds ``--essa-engine`` (default: $ESSA_TEST_ENGINE,
else wasmtime) and the ``essa_engine`` fixture; tests/engine runs its suite.
"""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import HealthCheck, settings

# No test depends on wall-clock speed: hypothesis' per-example deadline and its
# too-slow health check would fail on a machine whose cores are busy elsewhere.
settings.register_profile("essa", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("essa")

pytest_plugins = ["essa.testing.conformance"]


def pytest_report_header(config) -> str:
    """Name the WASI corpus's oracle: one wasmtime, pinned in constraints/test.txt."""
    if importlib.util.find_spec("wasmtime") is None:
        return "WASI oracle: wasmtime is not installed (tests/wasi is skipped)"
    from importlib.metadata import version

    return f"WASI oracle: wasmtime {version('wasmtime')} (wasmtime-py's own WASI; tests/wasi)"


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


# -- Redis servers (essa-plugin-redis), shared by tests/store, tests/redis_store and tests/e2e -----------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real ``redis-server`` on a free loopback port, for the whole session (tests use key prefixes of
    their own). Skipped unless essa-plugin-redis and redis-server are installed."""
    pytest.importorskip("essa_redis")
    from redis_store.servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real Redis Cluster, 3 masters and 3 replicas on loopback, for the whole session."""
    pytest.importorskip("essa_redis")
    from redis_store.servers import RedisClusterProcesses

    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()
