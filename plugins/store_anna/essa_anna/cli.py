"""``essa anna ...``: run routing and KVS nodes, and talk to a cluster."""

from __future__ import annotations

import json
import logging

import click

from essa.plugin import (
    endpoint_options,
    metrics_option,
    parse_size,
    serve_metrics,
    split_endpoints,
    tls_options,
)

from . import protocol as P
from .errors import AnnaError

log = logging.getLogger("essa.anna")

def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map-size") from None


@click.group("anna")
def anna() -> None:
    """Anna-style distributed lattice KVS: routing and KVS nodes, and a client.

    Start a cluster with `essa anna routing` and several `essa anna kvs ID`,
    then use it with `--store anna --store-option routing=ENDPOINT`, or with
    `essa anna put|get|put-set|get-set|status`.
    """


def _limit_options(fn):
    """``--max-nodes`` and ``--max-workers``: the bounds of :class:`essa_anna.membership.Limits`."""
    fn = click.option("--max-workers", type=click.IntRange(1, P.MAX_NODES_LIMIT * P.MAX_WORKERS),
                      envvar="ESSA_ANNA_MAX_WORKERS", default=P.MAX_RING_WORKERS, show_default=True,
                      help="The most workers of all KVS nodes together this node puts in its ring; further "
                           "nodes are refused (env ESSA_ANNA_MAX_WORKERS; use the same value everywhere).")(fn)
    fn = click.option("--max-nodes", type=click.IntRange(1, P.MAX_NODES_LIMIT), envvar="ESSA_ANNA_MAX_NODES",
                      default=P.MAX_NODES, show_default=True,
                      help="The most KVS nodes this node puts in its ring; further nodes are refused "
                           "(env ESSA_ANNA_MAX_NODES; use the same value everywhere).")(fn)
    return fn


def _limits(max_nodes: int, max_workers: int):
    from .membership import Limits

    return Limits(max_nodes, max_workers)


@anna.command()
@click.option("--id", "routing_id", metavar="ID", help="This routing node's id. [default: random]")
@endpoint_options(listen_default=P.DEFAULT_ENDPOINT, connect_default=None)
@_limit_options
@metrics_option
def routing(routing_id, listen, connect, scouting, zenoh_config, max_nodes, max_workers, metrics_address) -> None:
    """Run a routing node: tells clients which KVS workers own their keys.

    KVS nodes and clients connect to its --listen endpoint.
    """
    from essa.plugin import open_transport, wait_for_signal

    serve_metrics(metrics_address)
    from .routing import RoutingNode

    try:
        node = RoutingNode(None, routing_id, _limits(max_nodes, max_workers))  # validate the id before opening zenoh
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from None
    transport = open_transport(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting)
    node.transport = transport
    try:
        node.start()
        click.echo(f"essa anna routing {node.id}: {transport.describe()}", err=True)
        wait_for_signal()
    finally:
        node.stop()
        transport.close()


@anna.command()
@click.argument("node_id", metavar="ID")
@endpoint_options(listen_default="tcp/127.0.0.1:0", connect_default=P.DEFAULT_ENDPOINT)
@click.option("--workers", type=click.IntRange(1, P.MAX_WORKERS), default=1, show_default=True,
              help="Worker threads, each owning a share of this node's keys (its local ring).")
@click.option("--global-replication", type=click.IntRange(1, P.MAX_REPLICATION), default=2, show_default=True,
              help="KVS nodes that hold each key. Start every node with the same value.")
@click.option("--local-replication", type=click.IntRange(1, P.MAX_WORKERS), default=1, show_default=True,
              help="Workers per owner node that hold each key.")
@click.option("--gossip-interval", type=click.FloatRange(min=0.001), default=0.2, show_default=True,
              help="Seconds between gossip rounds (changed keys sent to the other replicas).")
@click.option("--replication-timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="Seconds a put waits for the other replicas before it fails with a timeout.")
@click.option("--path", type=click.Path(file_okay=False), metavar="DIR",
              help="Durable mode: keep this node's data in an LMDB store in DIR and recover it on restart.")
@click.option("--sync/--no-sync", default=True, show_default=True,
              help="Durable mode: flush every batch to disk before acknowledging it.")
@click.option("--map-size", default="4G", show_default=True, help="Durable mode: the LMDB map size.")
@click.option("--leave-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGTERM, seconds to hand keys off to the other nodes before stopping.")
@click.option("--push-delay", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Hold each push to the executors' caches this long (fault injection: a slow link to the "
              "caches, for tests of the consistency levels).")
@_limit_options
@metrics_option
def kvs(node_id, listen, connect, scouting, zenoh_config, workers, global_replication, local_replication,
        gossip_interval, replication_timeout, path, sync, map_size, leave_timeout, push_delay, max_nodes, max_workers,
        metrics_address) -> None:
    """Run KVS node ID: stores its share of the keys, replicates and gossips them.

    IDs must be unique in a cluster (reuse the ID to restart a durable node).
    On SIGTERM the node hands its keys off to the other nodes, then stops.
    """
    from essa.plugin import open_transport, wait_for_signal

    from .kvs import KvsNode
    from .storage import LmdbBackend

    try:
        P.check_id(node_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from None
    serve_metrics(metrics_address)
    size = _size(map_size)
    backend = LmdbBackend(path, sync, size) if path else None
    try:
        transport = open_transport(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting)
    except BaseException:
        if backend is not None:
            backend.close()
        raise
    node = KvsNode(node_id, transport, workers, global_replication, local_replication, gossip_interval,
                   replication_timeout, backend, limits=_limits(max_nodes, max_workers), push_delay=push_delay)
    try:
        node.start()
        where = f"durable in {backend.path}" if backend else "in memory"
        click.echo(f"essa anna kvs {node_id}: {workers} workers, replication {global_replication}/"
                   f"{local_replication}, data {where}; {transport.describe()}", err=True)
        wait_for_signal()
        handed = node.leave(leave_timeout)
        click.echo(f"essa anna kvs {node_id}: left the cluster"
                   + ("" if handed else "; not every key was handed off in time"), err=True)
    finally:
        node.stop()
        transport.close()


# -- client commands ------------------------------------------------------------------


def _client_options(fn):
    fn = tls_options(fn)
    fn = click.option("--timeout", type=float, default=5.0, show_default=True,
                      help="Seconds a request may take.")(fn)
    fn = click.option("--connect-timeout", type=float, default=None,
                      help="Seconds to keep trying to reach --connect (a cluster that is still starting). "
                           "[default: --timeout]")(fn)
    fn = click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False),
                      help="A zenoh JSON5 config file (env ESSA_ZENOH_CONFIG).")(fn)
    fn = click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_ANNA_CONNECT",
                      default=[P.DEFAULT_ENDPOINT], show_default=True,
                      help="zenoh endpoint of the anna cluster (env ESSA_ANNA_CONNECT).")(fn)
    return fn


def _client(connect, zenoh_config, timeout, connect_timeout):
    from essa.plugin import tls_files

    from .client import AnnaClient

    tls = tls_files()
    if tls is not None and tls.role not in ("admin", "executor"):
        raise AnnaError(f"on a secure cluster the store nodes answer admins only, and this certificate's role is "
                        f"{tls.role} (issue an admin one with `essa certs issue admin NAME`)")

    return AnnaClient(split_endpoints(connect), timeout=timeout, zenoh_config=zenoh_config,
                      connect_timeout=connect_timeout)


def format_value(data: bytes) -> str:
    """A lattice value as `essa anna get` prints it."""
    from essa.plugin import LwwLattice, OrderedSetLattice, SetLattice, decode_lattice

    value = decode_lattice(data)
    if isinstance(value, LwwLattice):
        return _text(value.value, quote=False)
    if isinstance(value, (SetLattice, OrderedSetLattice)):
        return "{" + ", ".join(_text(m, quote=True) for m in sorted(value.values)) + "}"
    return repr(value)


def _text(raw: bytes, quote: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)
    return json.dumps(text, ensure_ascii=False) if quote else text


@anna.command()
@click.argument("key")
@click.argument("value")
@_client_options
def put(key, value, connect, zenoh_config, timeout, connect_timeout) -> None:
    """Put VALUE under KEY as a last-writer-wins value (stamped now)."""
    from essa.plugin import LwwLattice

    with _client(connect, zenoh_config, timeout, connect_timeout) as client:
        client.put(key, _encode(LwwLattice.now(value.encode("utf-8"))))


@anna.command("put-set")
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
@_client_options
def put_set(key, values, connect, zenoh_config, timeout, connect_timeout) -> None:
    """Add VALUES to the set under KEY."""
    from essa.plugin import SetLattice

    with _client(connect, zenoh_config, timeout, connect_timeout) as client:
        client.put(key, _encode(SetLattice(v.encode("utf-8") for v in values)))


def _encode(value) -> bytes:
    from essa.plugin import encode_lattice

    return encode_lattice(value)


@anna.command()
@click.argument("key")
@_client_options
def get(key, connect, zenoh_config, timeout, connect_timeout) -> None:
    """Print the value under KEY."""
    with _client(connect, zenoh_config, timeout, connect_timeout) as client:
        data = client.get(key)
    if data is None:
        raise AnnaError(f"key {key!r} does not exist")
    click.echo(format_value(data))


@anna.command("get-set")
@click.argument("key")
@_client_options
def get_set(key, connect, zenoh_config, timeout, connect_timeout) -> None:
    """Print the set under KEY."""
    from essa.plugin import OrderedSetLattice, SetLattice, decode_lattice

    with _client(connect, zenoh_config, timeout, connect_timeout) as client:
        data = client.get(key)
    if data is None:
        raise AnnaError(f"key {key!r} does not exist")
    value = decode_lattice(data)
    if not isinstance(value, (SetLattice, OrderedSetLattice)):
        raise AnnaError(f"key {key!r} holds a {value.type_name} value, not a Set")
    click.echo(format_value(data))


@anna.command()
@_client_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(connect, zenoh_config, timeout, connect_timeout, as_json) -> None:
    """Show the cluster: routing nodes, and every KVS node with keys, bytes, ops/s and latency."""
    import time

    with _client(connect, zenoh_config, timeout, connect_timeout) as client:
        try:
            client.wait_for_nodes(0, timeout=timeout)
        except AnnaError:
            if not client.membership.kvs:
                raise
        time.sleep(0.2)  # let peers discovered by gossip connect
        answers = client.status(timeout=min(timeout, 2.0))
    answers.sort(key=lambda a: (a.get("role"), a.get("id")))
    if as_json:
        click.echo(json.dumps(answers, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    for r in (a for a in answers if a.get("role") == "routing"):
        click.echo(f"routing {r['id']}: {len(r['kvs_nodes'])} KVS nodes, replication "
                   f"{r['global_replication']}/{r['local_replication']}, {r['requests']} address requests")
    table = Table(title="anna KVS nodes")
    for column in ("id", "workers", "keys", "bytes", "gets", "puts", "ops/s", "p50 ms", "p99 ms", "data"):
        table.add_column(column)
    for n in (a for a in answers if a.get("role") == "kvs"):
        table.add_row(n["id"], str(n["workers"]), str(n["keys"]), str(n["bytes"]), str(n["gets"]), str(n["puts"]),
                      str(n["ops_per_s"]), str(n["p50_ms"] if n["p50_ms"] is not None else "-"),
                      str(n["p99_ms"] if n["p99_ms"] is not None else "-"), n["durable"] or "memory")
    Console().print(table)
