"""essa plugin hooks of essa-plugin-lmdb."""

from __future__ import annotations

import essa

from .store import LmdbStore


@essa.hookimpl
def essa_register_stores(register):
    register("lmdb", LmdbStore)
