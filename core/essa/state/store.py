"""The store: essa's lattice key-value state.

A store maps string keys to lattice values and *merges* on every put instead of
overwriting, so concurrent writers converge. Values are kept in the byte
encoding of :mod:`essa.state.bincode` (the guest ABI's contract encoding), which lets
the ABI hand stored bytes to a guest without re-encoding them.

Keys are text: a ``str`` that is UTF-8 text, never empty (see :mod:`essa.state.keys`).
Every store keeps any such key exactly, whatever its length (up to the
message size limit) and characters, and refuses any other with
:class:`~essa.errors.InvalidKey` (:func:`essa.state.keys.encode_key` does the check).

A store plugin subclasses :class:`Store` and implements three methods:
:meth:`Store.get_bytes`, :meth:`Store.merge_bytes` and :meth:`Store.close`;
:meth:`Store.keys` and :meth:`Store.delete` (``essa state ls``/``rm``, and
``essa rm --purge``) are optional.
:meth:`Store.merge_bytes` must apply :func:`essa.state.bincode.merge_encoded`
atomically (no lost update when several processes merge into one key) and must
not return before the merged value is durable (or, for a replicated store,
replicated as configured): a returned put is an acknowledged write.

A store that can publish changes also implements :meth:`Store.watch_bytes` and
:meth:`Store.on_updates` and sets :attr:`Store.watch_lease`: executors then
keep a local cache of lattice values that the store keeps fresh by pushing
updates (:mod:`essa.state.cache`). The store keeps, per key, which clients
watch it (Anna's key -> caches index, Redis's tracking table), for at least
:attr:`Store.watch_lease` seconds after each :meth:`Store.watch_bytes`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Mapping

from essa.errors import StoreError
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.lattice import Lattice


@dataclass
class ClusterServices:
    """What ``essa up`` must start for a store, before the executors.

    :param commands: ``essa`` subcommands to run as processes, each an argv
        list without the leading ``essa`` (e.g. ``["anna", "kvs", ...]``).
    :param options: the store options executors (and ``essa run``) then use.
    :param endpoints: what ``essa up`` prints: a service's name -> where it listens.
    :param roles: the certificate role of each command's process (one of
        :data:`essa.security.certs.ROLES`), for ``essa up --secure``.
    """

    commands: list[list[str]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)


class Store(ABC):
    """Base class of store plugins.

    :param options: store-specific settings given by the user as
        ``--store-option KEY=VALUE`` (or ``ESSA_STORE_OPTIONS``); each store
        documents the keys it accepts and rejects unknown ones.
    """

    #: The name users pass to ``--store``; set by the registering plugin.
    name: ClassVar[str] = ""

    #: The ``--store-option`` keys the store takes, each with what it sets (``essa plugins`` lists them).
    option_help: ClassVar[Mapping[str, str]] = {}

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """Return the encoded lattice stored under ``key``, or ``None``."""

    @abstractmethod
    def merge_bytes(self, key: str, value: bytes) -> None:
        """Merge the encoded lattice ``value`` into ``key``.

        :raises essa.errors.DecodeError: ``value`` is not a valid encoding.
        :raises essa.errors.LatticeTypeError: the stored value has another
            lattice type; the stored value is left unchanged.
        :raises essa.errors.StoreError: the write could not be made durable.
        """

    @abstractmethod
    def close(self) -> None:
        """Release files, sockets and threads held by the store."""

    def describe(self) -> str:
        """One line telling a user where this store keeps its data."""
        return self.name

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted (``essa state ls``), each exactly as it was put.

        A store that finds keys it cannot name (records of an older format)
        leaves them out and returns an :class:`essa.state.keys.KeyList` that says how
        many and why; it never fails the whole listing for them.
        Optional for store plugins: the default refuses in one line.

        :raises essa.errors.StoreError: the store cannot list its keys.
        """
        raise StoreError(f"the {self.name} store cannot list its keys")

    def delete(self, key: str) -> bool:
        """Remove ``key`` and its value; return whether it existed (``essa state rm``).

        Deleting is not a lattice operation: a writer that merges into the key
        afterwards starts it anew. Optional for store plugins: the default
        refuses in one line.

        :raises essa.errors.StoreError: the store cannot delete keys.
        """
        raise StoreError(f"the {self.name} store cannot delete keys")

    @classmethod
    def cluster_services(cls, options: Mapping[str, str], endpoint: str) -> ClusterServices:
        """The processes ``essa up`` starts for this store (none by default).

        :param options: the user's ``--store-option`` settings.
        :param endpoint: the zenoh endpoint the cluster's scheduler listens on.
        """
        return ClusterServices(options=dict(options))

    # -- pushed updates (optional: for executor-local caches) -------------------

    #: Seconds a :meth:`watch_bytes` keeps pushes coming, counted from before it
    #: was sent; ``None``: this store cannot push updates (no cache is kept).
    watch_lease: ClassVar[float | None] = None

    def watch_bytes(self, key: str) -> tuple[bytes | None, bool]:
        """Read ``key`` and have its later changes pushed to :meth:`on_updates`' callback.

        Returns the value (or ``None``) and whether the watch was taken: a
        store whose index of watchers is full reads without watching, and the
        caller must not cache that value. Every change committed after the
        value read is pushed (the whole merged value, or ``None`` once the key
        is deleted) until the lease ends; pushes may repeat or come in any
        order (they are lattice values: the receiver merges them).
        """
        return self.get_bytes(key), False

    def merge_many(self, items: list[tuple[str, bytes]]) -> None:
        """Merge every ``(key, value)`` of ``items`` (:meth:`merge_bytes` each; a store may send them together).

        Returns once every one is acknowledged; raises the first failure (the others may have been stored).
        """
        for key, value in items:
            self.merge_bytes(key, value)

    def on_updates(self, update: Callable[[str, bytes | None], None], reset: Callable[[], None]) -> None:
        """Deliver pushed values to ``update(key, value)``; call ``reset()`` when pushes may have been lost
        (a node of the store went away or joined: every watch must be taken again).

        ``update(key, None)`` says the key was deleted, or changed without the store sending the value
        (an invalidation, as Redis sends): either way the receiver forgets what it holds of the key."""

    # -- typed convenience API, in terms of the byte API ---------------------

    def get(self, key: str) -> Lattice | None:
        """Return the lattice stored under ``key``, or ``None``."""
        data = self.get_bytes(key)
        return None if data is None else decode_lattice(data)

    def put(self, key: str, value: Lattice) -> None:
        """Merge ``value`` into ``key`` (see :meth:`merge_bytes`)."""
        self.merge_bytes(key, encode_lattice(value))

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
