"""AnnaStore: essa's store interface on an Anna cluster (``essa --store anna``).

Options (``--store-option KEY=VALUE``):

``routing``
    zenoh endpoint(s) of the cluster, space-separated: a routing node's
    ``--listen`` endpoint, or any peer of the cluster (default
    ``tcp/127.0.0.1:7450``).
``timeout``
    seconds one request may take, retries included (default 5).
``connect_timeout``
    seconds to keep trying to reach ``routing`` when the store opens
    (default: ``timeout``), for a cluster that may still be starting.
``ack``
    ``all`` (default): a put returns once every owner of the key has merged
    it; ``owner``: once the primary owner has (replicas catch up by gossip).
``zenoh_config``
    a zenoh JSON5 config file for the client's session.

``essa up --store anna`` also reads, to start the cluster (when ``routing`` is
not given): ``kvs_nodes`` (default 3), ``global_replication`` (default 2),
``local_replication`` (default 1), ``workers`` (per KVS node, default 1),
``path`` (durable mode: each node keeps its data in ``PATH/<node id>``).
"""

from __future__ import annotations

import socket
from typing import Mapping

from essa.plugin import ClusterServices, Store

from . import protocol as P
from .client import AnnaClient
from .errors import AnnaError

CLIENT_OPTIONS = ("ack", "connect_timeout", "routing", "timeout", "zenoh_config")
UP_OPTIONS = ("global_replication", "kvs_nodes", "local_replication", "path", "workers")


def _number(options: Mapping[str, str], key: str, default, kind=int, minimum=1):
    if key not in options:
        return default
    try:
        value = kind(str(options[key]).strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise AnnaError(f"invalid anna store option {key}={options[key]!r}: expected a number >= {minimum}")
    return value


class AnnaStore(Store):
    """A client of an Anna cluster, as an essa store."""

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        for key in self.options:
            if key in UP_OPTIONS:
                raise AnnaError(f"anna store option {key!r} is for `essa up --store anna` only; "
                                f"valid options here: {', '.join(CLIENT_OPTIONS)}")
            if key not in CLIENT_OPTIONS:
                raise AnnaError(f"unknown anna store option {key!r}; valid options: {', '.join(CLIENT_OPTIONS)}")
        endpoints = str(self.options.get("routing") or P.DEFAULT_ENDPOINT).split()
        timeout = _number(self.options, "timeout", 5.0, float, 0.1)
        connect_timeout = _number(self.options, "connect_timeout", timeout, float, 0.1)
        ack = str(self.options.get("ack", "all")).strip().lower()
        self.client = AnnaClient(endpoints, timeout=timeout, ack=ack, zenoh_config=self.options.get("zenoh_config"),
                                 connect_timeout=connect_timeout)

    def get_bytes(self, key: str) -> bytes | None:
        return self.client.get(key)

    def merge_bytes(self, key: str, value: bytes) -> None:
        self.client.put(key, value)

    #: A cache may serve a watched value this long: half the KVS nodes' lease, counted
    #: from before the watch was sent, so the node still pushes while the value is served.
    watch_lease = P.WATCH_LEASE / 2

    def watch_bytes(self, key: str) -> tuple[bytes | None, bool]:
        return self.client.watch(key)

    def merge_many(self, items: list[tuple[str, bytes]]) -> None:
        self.client.put_many(items)  # submitted together: one message per owner

    def on_updates(self, update, reset) -> None:
        self.client.on_updates(update, reset)

    def keys(self, prefix: str = "") -> list[str]:
        return self.client.keys(prefix)

    def delete(self, key: str) -> bool:
        return self.client.delete(key)

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        ack = "all replicas" if self.client.ack == P.ACK_ALL else "owner"
        return f"anna at {self.client.where} (puts acknowledged by {ack})"

    @classmethod
    def cluster_services(cls, options: Mapping[str, str], endpoint: str) -> ClusterServices:
        """1 routing node and ``kvs_nodes`` KVS nodes, all peers of the scheduler's endpoint."""
        options = dict(options)
        client = {k: v for k, v in options.items() if k in CLIENT_OPTIONS}
        if "routing" in options:  # an existing cluster: start nothing
            unused = sorted(set(options) & set(UP_OPTIONS))
            if unused:
                raise AnnaError(f"anna store options {', '.join(unused)} start a cluster; "
                                "they cannot be combined with routing=... (an existing cluster)")
            return ClusterServices(options=client)
        unknown = sorted(set(options) - set(CLIENT_OPTIONS) - set(UP_OPTIONS))
        if unknown:
            raise AnnaError(f"unknown anna store option {unknown[0]!r}; valid options: "
                            f"{', '.join(sorted(CLIENT_OPTIONS + UP_OPTIONS))}")
        nodes = _number(options, "kvs_nodes", 3)
        grep = _number(options, "global_replication", 2)
        lrep = _number(options, "local_replication", 1)
        workers = _number(options, "workers", 1)
        common = ["--connect", endpoint, "--listen", "tcp/127.0.0.1:0"]
        routing = _routing_endpoint(endpoint)
        commands = [["anna", "routing", "--id", "up", "--connect", endpoint, "--listen", routing]]
        for i in range(nodes):
            command = ["anna", "kvs", f"kvs-{i}", *common, "--workers", str(workers),
                       "--global-replication", str(grep), "--local-replication", str(lrep)]
            if options.get("path"):
                command += ["--path", f"{options['path']}/kvs-{i}"]
            commands.append(command)
        client["routing"] = endpoint
        return ClusterServices(commands=commands, options=client, endpoints={"anna routing": routing},
                               roles=["routing"] + ["kvs"] * nodes)


def _routing_endpoint(scheduler: str) -> str:
    """Where the routing node of ``essa up`` listens: anna's default endpoint beside essa's default
    scheduler endpoint (so ``essa anna status`` finds it with no flag), else a free port of the same host."""
    from essa.plugin import DEFAULT_ENDPOINT

    if scheduler == DEFAULT_ENDPOINT:
        return P.DEFAULT_ENDPOINT
    protocol, _, address = scheduler.partition("/")
    host = address.rpartition(":")[0] or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if host.startswith("[") else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        port = probe.getsockname()[1]
    return f"{protocol}/{host}:{port}"
