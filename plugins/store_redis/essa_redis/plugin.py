"""essa plugin hooks of essa-plugin-redis: the ``redis`` store."""

from __future__ import annotations

import essa

from .store import RedisStore


@essa.hookimpl
def essa_register_stores(register):
    register("redis", RedisStore)
