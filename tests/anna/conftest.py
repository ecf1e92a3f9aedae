"""Fixtures of the Anna tests (skipped unless essa-plugin-anna and zenoh are installed)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("essa_anna") and importlib.util.find_spec("zenoh"):

    @pytest.fixture
    def anna(tmp_path):
        """A routing node and three KVS nodes (replication 2), stopped after the test."""
        from .helpers import AnnaCluster

        cluster = AnnaCluster(tmp_path / "logs")
        yield cluster
        cluster.stop()
