"""The Anna wire protocol over zenoh: topics, liveliness keys, message kinds, codes.

Every message is a msgpack-encoded dict with a kind ``t``; values travel as
the bincode bytes of :mod:`essa.state.bincode`. All data-path messages are one-way
publications: a request names the topic to answer on (``reply``, an anna inbox: see
:mod:`essa_anna.inbound`), so a batch
of requests costs one message each way, and a node never blocks a thread
waiting for another node.

Topics
    ``anna/kvs/<node>/<worker>``   a worker's inbox: requests, replication, acks
    ``anna/routing/<id>``          a routing node's inbox: key address requests
    ``anna/client/<id>``           a client's inbox: answers
    ``anna/status/kvs/<node>``, ``anna/status/routing/<id>``   status queries
    ``anna/ping/kvs/<node>``, ``anna/ping/routing/<id>``   pings: ``{"tokens": [...]}``,
                                   the liveliness tokens the node holds now (see
                                   :mod:`essa_anna.membership`: a token counts once
                                   its node lists it)

Liveliness tokens
    ``anna/live/kvs/<node>/<incarnation>/<workers>/<global rep>/<local rep>``
                                   (the incarnation is new each time the node starts)
    ``anna/live/leaving/<node>``   a node handing its keys off before it stops
    ``anna/live/routing/<id>``

Message kinds (``t``)
    ``req``      client -> worker: ``ops`` = [[rid, op, key, value, ack]]
                 (op ``g`` get, ``p`` put, ``w`` watch: a get that also has the
                 key's primary owner push the key's changes to ``reply`` for
                 :data:`WATCH_LEASE` seconds; ack ``a`` all replicas, ``o`` owner)
    ``resp``     worker -> client: ``r`` = [[rid, code, payload]]
    ``addr``     client -> routing: ``keys``; routing -> client: ``owners``
    ``repl``     worker -> worker: ``kv`` = [[key, value]], ``id``; answered by ``ack``
    ``gossip``   worker -> worker: ``kv`` (timer gossip, no answer)
    ``fetch``    anyone -> worker: ``keys``, ``id``; answered by ``fetched``: ``kv``
    ``upd``      worker -> watching client: ``kv`` = [[key, value or None (deleted)]],
                 the merged values of watched keys that changed
"""

from __future__ import annotations

import re

from .errors import Malformed
from .ring import NodeInfo

ROOT = "anna"
LIVE_KVS = f"{ROOT}/live/kvs"
LIVE_LEAVING = f"{ROOT}/live/leaving"
LIVE_ROUTING = f"{ROOT}/live/routing"
STATUS = f"{ROOT}/status"
PING = f"{ROOT}/ping"

#: The default zenoh endpoint of a routing node (and of the cluster for clients).
DEFAULT_ENDPOINT = "tcp/127.0.0.1:7450"

# answer codes
OK = 0
NOT_FOUND = 1
WRONG_OWNER = 2
TYPE_MISMATCH = 3
BAD_VALUE = 4
TIMEOUT = 5
ERROR = 6
#: A watch answered with the value but not taken (the worker's index of watchers is full).
UNWATCHED = 7

#: Seconds a watch (op ``w``) lasts on the KVS node; a client renews it by watching again.
WATCH_LEASE = 30.0

#: Bounds on what a liveliness token may announce; a token outside them is ignored.
MAX_WORKERS = 64
MAX_REPLICATION = 16
#: The default most KVS nodes of a ring (``--max-nodes``); tokens of further nodes are refused.
MAX_NODES = 256
#: The default most workers of all the KVS nodes of a ring together (``--max-workers``).
MAX_RING_WORKERS = 4096
#: The largest ``--max-nodes`` allowed.
MAX_NODES_LIMIT = 4096
#: A client sends at most this many operations in one request message.
MAX_OPS_PER_MESSAGE = 4096

GET = "g"
PUT = "p"
WATCH = "w"
ACK_ALL = "a"
ACK_OWNER = "o"

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_id(node_id: str, what: str = "node id") -> str:
    if not _ID.match(node_id or ""):
        raise ValueError(f"invalid {what} {node_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return node_id


def valid_id(text: str) -> bool:
    return bool(_ID.match(text))


#: Queries of every KVS node: the keys it holds (``{"prefix": P}``), deleting a key (``{"key": K}``).
KEYS = f"{ROOT}/keys"
DROP = f"{ROOT}/drop"


def worker_topic(node: str, worker: int) -> str:
    return f"{ROOT}/kvs/{node}/{worker}"


def routing_topic(routing_id: str) -> str:
    return f"{ROOT}/routing/{routing_id}"


def client_topic(client_id: str) -> str:
    return f"{ROOT}/client/{client_id}"


def ping_topic(role: str, node: str) -> str:
    """Where node ``node`` of ``role`` (``kvs`` or ``routing``) answers pings."""
    return f"{PING}/{role}/{node}"


def kvs_status_topic(node: str) -> str:
    return f"{STATUS}/kvs/{node}"


def routing_status_topic(routing_id: str) -> str:
    return f"{STATUS}/routing/{routing_id}"


def kvs_token(info: NodeInfo) -> str:
    return f"{LIVE_KVS}/{info.id}/{info.incarnation}/{info.workers}/{info.global_replication}/{info.local_replication}"


def parse_kvs_token(key: str) -> NodeInfo:
    """The node a KVS liveliness key announces.

    :raises Malformed: the key is not ``anna/live/kvs/<id>/<incarnation>/<workers>/<R>/<L>``
        with a valid id and incarnation, 1..:data:`MAX_WORKERS` workers,
        1..:data:`MAX_REPLICATION` for ``R`` and 1..:data:`MAX_WORKERS` for ``L``.
    """
    parts = key.split("/")
    if len(parts) != 8 or "/".join(parts[:3]) != LIVE_KVS:
        raise Malformed(f"liveliness token {key[:120]!r} is not {LIVE_KVS}/ID/INCARNATION/WORKERS/R/L")
    node, incarnation, *numbers = parts[3:]
    if not _ID.match(node) or not _ID.match(incarnation):
        raise Malformed(f"liveliness token {key[:120]!r}: invalid node id or incarnation")
    bounds = (("workers", MAX_WORKERS), ("global replication", MAX_REPLICATION),
              ("local replication", MAX_WORKERS))
    values = []
    for text, (what, most) in zip(numbers, bounds):
        if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= most:
            raise Malformed(f"KVS node {node} announces {what} {text[:20]!r}: expected 1..{most}")
        values.append(int(text))
    return NodeInfo(node, incarnation, *values)
