"""Consistent hashing: who owns a key.

Every node, routing node and client computes ownership the same way from the
same membership, so they agree without talking:

* a **global ring** of KVS nodes: each node appears :data:`VIRTUAL_NODES`
  times, at the hashes of ``"<node id>#<i>"``;
* inside each node a **local ring** of its workers, built the same way from
  ``"worker#<w>#<i>"`` (it depends only on the node's worker count).

A key's owners are the first ``global_replication`` distinct nodes clockwise
from the key's hash on the global ring, and on each of them the first
``local_replication`` distinct workers clockwise on its local ring. The hash is
BLAKE2b with an 8-byte digest (:func:`hash64`): stable across processes,
machines and Python versions (Python's ``hash`` is salted per process).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import Iterable, Mapping

#: Virtual entries per node (and per worker) on a ring; Anna uses 3000.
VIRTUAL_NODES = 3000

#: An owner: (node id, worker index).
Owner = tuple[str, int]


def hash64(data: str | bytes) -> int:
    """The stable 64-bit hash every party uses (BLAKE2b, 8-byte digest, little endian)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


class _HashRing:
    """A sorted ring of virtual entries with precomputed successor lists, kept compact.

    Positions are an ``array('Q')``; each entry points (``array('I')``) into a
    table of the distinct successor tuples, which consecutive entries mostly
    share. For 256 nodes at 3000 virtual entries and ``want=2`` that is about
    13 MiB where a list of positions and one tuple per entry took 80 MiB.
    """

    __slots__ = ("positions", "index", "table", "members")

    def __init__(self, members: Iterable, label, want: int, vnodes: int) -> None:
        self.members = tuple(sorted(set(members)))
        if len(self.members) > 0xFFFF:
            raise ValueError(f"a ring holds at most {0xFFFF} members, not {len(self.members)}")
        # Sorted by (position, member): member indexes follow the members' order.
        keys = sorted((hash64(label(m, i)) << 16) | k for k, m in enumerate(self.members) for i in range(vnodes))
        self.positions = array("Q", [key >> 16 for key in keys])
        owners = [key & 0xFFFF for key in keys]
        del keys
        want = min(want, len(self.members))
        table: dict[tuple, int] = {}
        index = array("I", bytes(4 * len(owners)))
        if owners:
            # The last entry's successors by walking round the ring; each earlier entry's from the next one's.
            found: list[int] = []
            j = len(owners) - 1
            while len(found) < want:
                if owners[j] not in found:
                    found.append(owners[j])
                j = (j + 1) % len(owners)
            successors = tuple(found)
            intern = table.setdefault
            for i in range(len(owners) - 1, -1, -1):
                m = owners[i]
                if successors[0] != m:
                    rest = tuple(x for x in successors if x != m) if m in successors else successors
                    successors = (m,) + rest[:want - 1]
                index[i] = intern(successors, len(table))
        self.index = index
        self.table = [tuple(self.members[k] for k in successors) for successors in table]

    def lookup(self, h: int) -> tuple:
        positions = self.positions
        if not positions:
            return ()
        i = bisect_right(positions, h)
        if i == len(positions):
            i = 0
        return self.table[self.index[i]]


@lru_cache(maxsize=16)  # (workers, local replication) pairs: few in a cluster; bounded whatever peers announce
def _local_ring(workers: int, local_replication: int, vnodes: int) -> _HashRing:
    return _HashRing(range(workers), lambda w, i: f"worker#{w}#{i}", local_replication, vnodes)


@dataclass(frozen=True)
class NodeInfo:
    """A KVS node as its liveliness token announces it."""

    id: str
    incarnation: str
    workers: int
    global_replication: int
    local_replication: int


class Ring:
    """The global ring of KVS nodes plus their local rings; immutable.

    :param nodes: node id -> number of workers.
    :param global_replication: distinct nodes per key (capped by the node count).
    :param local_replication: distinct workers per key on each owner node
        (capped by that node's worker count).
    """

    def __init__(self, nodes: Mapping[str, int], global_replication: int = 1, local_replication: int = 1,
                 vnodes: int = VIRTUAL_NODES) -> None:
        if global_replication < 1 or local_replication < 1:
            raise ValueError("replication factors must be at least 1")
        self.nodes = dict(sorted(nodes.items()))
        self.global_replication = global_replication
        self.local_replication = local_replication
        self.vnodes = vnodes
        self._global = _HashRing(self.nodes, lambda n, i: f"{n}#{i}", global_replication, vnodes)
        self._locals = {n: _local_ring(w, local_replication, vnodes) for n, w in self.nodes.items()}

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def owners(self, key: str) -> tuple[Owner, ...]:
        """The (node, worker) pairs that own ``key``; the first is its primary."""
        h = hash64(key)
        locals_ = self._locals
        return tuple((node, w) for node in self._global.lookup(h) for w in locals_[node].lookup(h))

    def owner_nodes(self, key: str) -> tuple[str, ...]:
        return self._global.lookup(hash64(key))

    def same_as(self, other: "Ring | None") -> bool:
        return (other is not None and self.nodes == other.nodes
                and self.global_replication == other.global_replication
                and self.local_replication == other.local_replication)

    def describe(self) -> dict:
        return {"nodes": dict(self.nodes), "global_replication": self.global_replication,
                "local_replication": self.local_replication}

    @classmethod
    def from_members(cls, members: Iterable[NodeInfo], vnodes: int = VIRTUAL_NODES) -> "Ring":
        """The ring of the given live nodes; replication factors are the largest any node announces."""
        members = list(members)
        grep = max((m.global_replication for m in members), default=1)
        lrep = max((m.local_replication for m in members), default=1)
        return cls({m.id: m.workers for m in members}, grep, lrep, vnodes)
