"""essa-plugin-redis: essa's lattice state in Redis or Valkey, merged on the server.

The store is registered under the name ``redis`` (``essa --store redis
--store-option url=redis://HOST:PORT``) through the ``essa`` entry point
group; see :mod:`essa_redis.store` and the plugin's README.
"""

from __future__ import annotations

from .store import RedisStore
from .watch import Watch

__version__ = "0.1.0"

__all__ = ["RedisStore", "Watch", "__version__"]
