"""The store's link to Redis: one redis-py client (a server or a Redis Cluster), its scripts, its errors.

The client is opened at first use, not when the store is made, so a process
whose store is down still starts and runs calls that touch no state; every
operation that cannot reach Redis raises one :class:`~essa.errors.StoreError`
line starting ``state store unavailable:``. An operation keeps retrying what
Redis says will pass (a connection refused during a failover, ``MOVED``,
``TRYAGAIN``, ``CLUSTERDOWN``, ``LOADING``) until the ``timeout`` option has
passed, then fails.

Scripts are sent by their SHA-1 (``EVALSHA``); a server that does not know
one (``NOSCRIPT``: it restarted, or a replica was promoted) gets its source
once and the call is repeated. Merges are idempotent, so repeating one is
always safe.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import threading
import time
from typing import Any, Callable, Iterator

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from essa.plugin import (
    BoolLattice,
    LatticeTypeError,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
    StoreError,
)

from .options import Settings

#: Lattice type names by variant tag, for the merge script's type errors.
TYPE_NAMES = tuple(cls.type_name for cls in (LwwLattice, SetLattice, OrderedSetLattice, SingleCausalLattice,
                                              MultiCausalLattice, MaxLattice, BoolLattice, MapLattice))
_TYPE_ERROR = re.compile(r"ESSATYPE (\d+) (\d+)((?: [0-9a-f]*)*)")
_BAD_VALUE = re.compile(r"ESSABAD (\S+)")

#: What a call retries until its deadline: Redis will answer once a failover, a resharding or a load is over.
_TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.TryAgainError, rx.ClusterDownError, rx.AskError,
              rx.ReadOnlyError, rx.RedisClusterException)
_NOT_TRANSIENT = (rx.AuthenticationError, rx.AuthorizationError)


class Script:
    """A Lua script of this package, run by its SHA-1."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()


MERGE = Script("merge.lua")
READ = Script("read.lua")


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class Backend:
    """A redis-py client for :class:`Settings`, opened at first use and safe for many threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._client: redis.Redis | redis.RedisCluster | None = None
        self._closed = False
        #: Whether the servers are a Redis Cluster (``None`` until the first connection).
        self.is_cluster: bool | None = None if settings.cluster == "auto" else settings.cluster == "on"

    # -- opening ---------------------------------------------------------------------------

    def connection_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments of one connection (to any server of the store)."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "username": s.username,
            "password": s.password,
            "socket_timeout": s.timeout,
            "socket_connect_timeout": s.connect_timeout,
            "client_name": "essa",
            "protocol": 2,  # RESP2: the replies (and the watch's pub/sub messages) every redis-py version parses alike
            "retry": Retry(NoBackoff(), 0),  # the store retries, within its deadline
        }
        if s.tls:
            kwargs.update(ssl=True, ssl_ca_certs=s.tls_ca, ssl_certfile=s.tls_cert, ssl_keyfile=s.tls_key,
                          ssl_cert_reqs="required" if s.tls_verify else "none", ssl_check_hostname=s.tls_verify)
        return kwargs

    def connection(self, address: tuple[str, int | None, str | None], db: int = 0) -> redis.Connection:
        """A connection of its own (not the client's pool) to the server at ``(host, port, unix_path)``."""
        kwargs = self.connection_kwargs()
        tls = kwargs.pop("ssl", False)
        host, port, path = address
        plain = {k: v for k, v in kwargs.items() if not k.startswith("ssl")}
        if path:
            return redis.UnixDomainSocketConnection(path=path, db=db, **plain)
        if tls:
            return redis.SSLConnection(host=host, port=port, db=db, **kwargs)
        return redis.Connection(host=host, port=port, db=db, **plain)

    def _open(self) -> redis.Redis | redis.RedisCluster:
        s = self.settings
        kwargs = self.connection_kwargs()
        first = s.servers[0]
        if first.path:
            plain = {k: v for k, v in kwargs.items() if not k.startswith("ssl")}
            return redis.Redis(unix_socket_path=first.path, db=s.db, **plain)
        if self.is_cluster is None:
            if len(s.servers) > 1:
                self.is_cluster = True
            else:
                probe = redis.Redis(host=first.host, port=first.port, **kwargs)
                try:
                    self.is_cluster = probe.info("cluster").get("cluster_enabled") == 1
                finally:
                    probe.close()
        if not self.is_cluster:
            return redis.Redis(host=first.host, port=first.port, db=s.db, **kwargs)
        nodes = [redis.cluster.ClusterNode(server.host, server.port) for server in s.servers]
        return redis.RedisCluster(startup_nodes=nodes, require_full_coverage=False,
                                  retry=Retry(NoBackoff(), 0), **{k: v for k, v in kwargs.items() if k != "retry"})

    def client(self) -> redis.Redis | redis.RedisCluster:
        """The redis-py client, opened now if it is not yet (raises the store's one-line errors)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise StoreError(f"the redis store at {self.settings.where} is closed")
            if self._client is None:
                self._client = self._open()
            return self._client

    def close(self) -> None:
        """Close every connection; later operations are refused."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- running ---------------------------------------------------------------------------

    def run(self, what: str, operation: Callable[[Any], Any]) -> Any:
        """``operation(client)``, retried on transient failures until the deadline; errors in one line.

        :param what: what the operation does, for messages (``"put of key 'k'"``).
        """
        deadline = time.monotonic() + self.settings.timeout
        pause = 0.02
        while True:
            try:
                return operation(self.client())
            except StoreError:
                raise
            except _NOT_TRANSIENT as exc:
                raise self.unavailable(exc) from None
            except _TRANSIENT as exc:
                if isinstance(exc, rx.MovedError) and not self.is_cluster:
                    raise StoreError(f"redis at {self.settings.where} is a Redis Cluster node (it answered MOVED): "
                                     "use --store-option cluster=auto (or on)") from None
                if self._closed or time.monotonic() + pause > deadline:
                    raise self.unavailable(exc, what) from None
                self.refresh()
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            except rx.RedisError as exc:
                raise self.refused(exc, what) from None
            except OSError as exc:  # certificate files, unix sockets, ...
                raise self.unavailable(exc) from None

    def refresh(self) -> None:
        """After a failure a new attempt may fix: forget a cluster's slot map (it is read again)."""
        client = self._client
        if isinstance(client, redis.RedisCluster):
            try:
                client.nodes_manager.initialize()
            except (rx.RedisError, rx.RedisClusterException, OSError):
                pass  # the next attempt fails and says why

    def unavailable(self, exc: BaseException, what: str = "") -> StoreError:
        """The one line for a Redis that cannot be reached or refuses to serve."""
        where = f"redis at {self.settings.where}"
        if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
            return StoreError(f"state store unavailable: {where} refused the credentials ({one_line(exc)}); "
                              "check the username and password options")
        if isinstance(exc, rx.TimeoutError):
            return StoreError(f"state store unavailable: {where} did not answer {what or 'a request'} within "
                              f"{self.settings.timeout:g} s")
        return StoreError(f"state store unavailable: {where}: {one_line(exc)}")

    def refused(self, exc: rx.RedisError, what: str) -> StoreError:
        """The one line for an error reply."""
        text = one_line(exc)
        where = f"redis at {self.settings.where}"
        if isinstance(exc, rx.OutOfMemoryError) or text.startswith("OOM"):
            return StoreError(f"state store unavailable: {where} is full (maxmemory reached and its policy "
                              f"evicts nothing): {what} refused; free memory or raise maxmemory")
        if isinstance(exc, rx.NoPermissionError) or text.startswith("NOPERM"):
            return StoreError(f"state store unavailable: {where}: the user may not run {what}: {text}")
        found = _TYPE_ERROR.search(text)
        if found:
            stored, incoming = (TYPE_NAMES[int(t)] if int(t) < len(TYPE_NAMES) else f"tag {t}"
                                for t in found.group(1, 2))
            message = f"cannot merge a {incoming} lattice into a {stored} lattice: lattice types differ"
            for key in reversed(found.group(3).split()):
                message = f"map key {bytes.fromhex(key).decode('utf-8', 'replace')!r}: {message}"
            return LatticeTypeError(message)
        bad = _BAD_VALUE.search(text)
        if bad:
            return StoreError(f"{what}: the Redis key does not hold an essa value (it is a {bad.group(1)}); "
                              "another program writes under the store's prefix")
        return StoreError(f"state store unavailable: {where}: {what} failed: {text}")

    # -- scripts ---------------------------------------------------------------------------

    def evalsha(self, client: Any, script: Script, rkey: bytes, args: list) -> Any:
        """Run ``script`` on ``rkey`` through ``client`` (a server's or the cluster's), loading it if needed."""
        try:
            return client.evalsha(script.sha, 1, rkey, *args)
        except rx.NoScriptError:
            client.script_load(script.source)
            return client.evalsha(script.sha, 1, rkey, *args)

    def merge_many(self, client: Any, items: list[tuple[bytes, list]], wait_replicas: int = 0) -> int | None:
        """The merge script for every ``(rkey, args)`` in one pipeline: one round trip (per master of a cluster).

        With ``wait_replicas`` (one server only), ``WAIT`` ends the same pipeline; returns the replicas that
        have every merge. Raises the first error reply; the other merges may have been applied.
        """
        for _attempt in range(3):
            pipe = client.pipeline(transaction=False)
            for rkey, args in items:
                pipe.evalsha(MERGE.sha, 1, rkey, *args)
            if wait_replicas:
                pipe.execute_command("WAIT", wait_replicas, int(self.settings.wait_timeout * 1000))
            replies = pipe.execute(raise_on_error=False)
            if any(isinstance(reply, rx.NoScriptError) for reply in replies):
                client.script_load(MERGE.source)  # merges are idempotent: sending them all again is safe
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return int(replies[-1]) if wait_replicas else None
        raise rx.NoScriptError("the server kept forgetting the merge script")

    def merge_and_wait(self, client: Any, rkey: bytes, args: list) -> int:
        """The merge script and ``WAIT`` on one connection to the key's master; the replicas that have it."""
        s = self.settings
        node_client, asking = client, False
        if isinstance(client, redis.RedisCluster):
            node_client = client.get_redis_connection(client.get_node_from_key(rkey))
        for _attempt in range(16):
            pipe = node_client.pipeline(transaction=False)
            if asking:
                pipe.execute_command("ASKING")
            pipe.execute_command("EVALSHA", MERGE.sha, 1, rkey, *args)
            pipe.execute_command("WAIT", s.wait_replicas, int(s.wait_timeout * 1000))
            replies = pipe.execute(raise_on_error=False)[1 if asking else 0:]
            merged, replicas = replies
            if isinstance(merged, rx.NoScriptError):
                node_client.script_load(MERGE.source)
                continue
            if isinstance(merged, rx.MovedError):
                client.nodes_manager.initialize()
                node_client, asking = client.get_redis_connection(client.get_node_from_key(rkey)), False
                continue
            if isinstance(merged, rx.AskError):  # the slot is moving: this key is already on its new node
                node = client.get_node(host=merged.host, port=merged.port)
                if node is None:
                    client.nodes_manager.initialize()
                    node = client.get_node(host=merged.host, port=merged.port)
                if node is None:
                    raise merged
                node_client, asking = client.get_redis_connection(node), True
                continue
            if isinstance(merged, Exception):
                raise merged
            if isinstance(replicas, Exception):
                raise replicas
            return int(replicas)
        raise rx.TryAgainError("the key's slot kept moving")

    def scan(self, pattern: str) -> Iterator[bytes]:
        """Every key matching ``pattern``, on every master (a key may come twice)."""
        return self.client().scan_iter(match=pattern, count=1000)

    def masters(self) -> list[tuple[str, int | None, str | None]]:
        """``(host, port, unix_path)`` of every master (one server: itself)."""
        client = self.client()
        if isinstance(client, redis.RedisCluster):
            return [(node.host, node.port, None) for node in client.get_primaries()]
        server = self.settings.servers[0]
        return [(server.host, server.port, server.path)]


__all__ = ["Backend", "MERGE", "READ", "Script", "TYPE_NAMES", "one_line"]
