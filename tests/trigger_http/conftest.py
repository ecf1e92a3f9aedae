"""Fixtures of the HTTP trigger's tests: real `essa serve` processes answering real HTTP clients.

The tests skip unless essa-plugin-http is installed (the `py311-http` tox environment).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def engine(essa_engine, monkeypatch):
    """Every `essa` process of these tests runs the engine under test (skipped if it is not installed)."""
    monkeypatch.setenv("ESSA_ENGINE", essa_engine)
    return essa_engine


@pytest.fixture
def wasm(tmp_path):
    """The test module (see :data:`helpers.MODULE`) as a file."""
    from .helpers import MODULE

    path = tmp_path / "memo.wasm"
    path.write_bytes(MODULE)
    return path


@pytest.fixture
def servers():
    """Start `essa serve` processes with ``servers.start(*args)``; every one is stopped after the test."""
    from .helpers import Servers

    started = Servers()
    yield started
    started.stop_all()
