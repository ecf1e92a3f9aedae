"""essa-plugin-anna: an Anna-style distributed lattice key-value store over zenoh.

Roles: routing nodes (:mod:`essa_anna.routing`), KVS nodes (:mod:`essa_anna.kvs`)
and clients (:class:`AnnaClient`; :class:`AnnaStore` is the essa store
``--store anna``). See the plugin's README for the design.
"""

from __future__ import annotations

from .client import AnnaClient
from .errors import AnnaError, AnnaTimeout, AnnaUnavailable
from .store import AnnaStore

__version__ = "0.1.0"

__all__ = ["AnnaClient", "AnnaError", "AnnaStore", "AnnaTimeout", "AnnaUnavailable", "__version__"]
