"""The ``any_store`` fixture: every store essa has, so one test checks the store contract on each."""

from __future__ import annotations

import itertools
import uuid

import pytest

#: Every store the contract tests run on; a param skips where its plugin (or server) is missing.
STORES = ["memory", "lmdb", "redis", "redis-cluster"]

_prefixes = itertools.count()


def open_store(name: str, request, tmp_path):
    """A fresh, empty store ``name`` (Redis: a key prefix of its own on the session's servers)."""
    if name == "memory":
        from essa.state.memory import MemoryStore

        return MemoryStore()
    if name == "lmdb":
        pytest.importorskip("essa_lmdb")
        from essa_lmdb import LmdbStore

        return LmdbStore({"path": str(tmp_path / f"lmdb-{next(_prefixes)}")})
    pytest.importorskip("essa_redis")
    from essa_redis import RedisStore

    servers = request.getfixturevalue("redis_server" if name == "redis" else "redis_cluster")
    return RedisStore({"url": servers.url, "prefix": f"t{uuid.uuid4().hex[:12]}:", "timeout": "30"})


@pytest.fixture(params=STORES)
def any_store(request, tmp_path):
    """Each of :data:`STORES` in turn, empty, closed after the test."""
    store = open_store(request.param, request, tmp_path)
    yield store
    store.close()
