"""``essa scheduler``, ``essa executor`` and ``essa up``: essa's processes, through :mod:`essa.api.services`."""

from __future__ import annotations

import logging
import sys

import click

from essa.api import services
from essa.cli.options import (
    Settings,
    endpoint_options,
    limit_arguments,
    limit_options,
    limits_and_grants,
    metrics_option,
    serve_metrics,
    size_value,
    split_endpoints,
    token_key_option,
)
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.security.tls import secure_endpoints


@click.command()
@endpoint_options(listen_default="tcp/127.0.0.1:7447", connect_default=None)
@click.option("--placement", default="least-loaded", show_default=True,
              help="Placement policy; plugins may add more (`essa plugins`).")
@click.option("--max-message-size", metavar="SIZE", envvar="ESSA_MAX_MESSAGE_SIZE",
              help="Refuse call requests whose arguments and module exceed twice this size "
              "(env ESSA_MAX_MESSAGE_SIZE). [default: 64M]")
@metrics_option
@token_key_option
def scheduler(listen, connect, scouting, zenoh_config, placement, max_message_size, metrics_address) -> None:
    """Run a scheduler: places calls on the executors it sees.

    Executors and clients connect to its --listen endpoint.
    """
    serve_metrics(metrics_address)
    running = services.start_scheduler(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting,
                                       placement, size_value(max_message_size, "--max-message-size"))
    click.echo(running.describe(), err=True)
    try:
        services.wait_for_signal()
    finally:
        running.stop()


@click.command()
@click.argument("executor_id", metavar="ID")
@endpoint_options(listen_default="tcp/127.0.0.1:0", connect_default="tcp/127.0.0.1:7447")
@click.option("--workers", type=click.IntRange(min=1), help="Threads running calls. [default: one per core, at least 2]")
@click.option("--cache-size", metavar="SIZE", envvar="ESSA_CACHE_SIZE",
              help="Bytes of lattice values kept in this executor's cache when the store pushes updates "
              "(anna), e.g. 64M; 0 turns the cache off (env ESSA_CACHE_SIZE). [default: 64M]")
@limit_options
@metrics_option
@token_key_option
@click.pass_obj
def executor(settings: Settings, executor_id, listen, connect, scouting, zenoh_config, workers, cache_size,
             metrics_address, **limit_flags) -> None:
    """Run executor ID: runs the calls the scheduler places on it.

    ID must be unique in the cluster. Executors of one host share the store
    (LMDB by default), so a module compiled by one is loaded by the others.
    Every call placed here runs under this executor's limits and grants,
    whoever started it. With a store that pushes updates (anna), guests read
    state from a local cache the store keeps fresh; writes still go to the
    store before a guest goes on.
    """
    limits, grants = limits_and_grants(**limit_flags)
    serve_metrics(metrics_address)
    running = services.start_executor(executor_id, split_endpoints(listen), split_endpoints(connect), zenoh_config,
                                      scouting, settings.engine, settings.store, settings.store_options, workers,
                                      limits, grants, _cache_size(cache_size))
    click.echo(running.describe(), err=True)
    try:
        services.wait_for_signal()
    finally:
        click.echo(running.stop(), err=True)


@click.command()
@click.option("--executors", type=click.IntRange(min=1), default=2, show_default=True,
              help="Executor processes to start.")
@click.option("--listen", default="tcp/127.0.0.1:7447", show_default=True, metavar="ENDPOINT",
              help="Where the scheduler listens (with --secure, tcp/ is used as tls/).")
@click.option("--http", metavar="HOST:PORT",
              help="Also answer HTTP there: an `essa serve` process for the cluster (needs essa-plugin-http).")
@click.option("--secure", is_flag=True,
              help="Mutual TLS between all processes, each with its own certificate, and access tokens checked "
              "by the scheduler and executors (CA and keys made in the security directory if missing).")
@click.option("--security-dir", metavar="DIR", type=click.Path(file_okay=False), envvar="ESSA_SECURITY_DIR",
              help="With --secure: where the CA, token keys and certificates are (env ESSA_SECURITY_DIR). "
              "[default: security/ in essa's data directory]")
@click.option("--cache-size", metavar="SIZE", envvar="ESSA_CACHE_SIZE",
              help="Each executor's cache of lattice values with a store that pushes updates (anna); 0: off "
              "(env ESSA_CACHE_SIZE). [default: 64M]")
@limit_options
@click.pass_obj
def up(settings: Settings, executors: int, listen: str, http: str | None, secure: bool, security_dir: str | None,
       cache_size: str | None, **limit_flags) -> None:
    """Start a local cluster: a scheduler and N executors, as separate processes.

    Prints how to connect, and stops them all on Ctrl-C or SIGTERM. The
    limits and grants given here go to every executor. With --secure it also
    prints which certificate files a client passes, and how to make a token.
    """
    limits, grants = limits_and_grants(**limit_flags)
    get_plugin_manager().engine_class(settings.engine).check_grants(grants)  # before starting anything
    if http:
        get_plugin_manager().trigger_class(DEFAULTS["trigger"])  # installed? (else: names the package)
    if secure:
        listen = secure_endpoints([listen])[0]
    verbose = logging.getLogger().level <= logging.INFO
    executor_args = limit_arguments(limits, grants)
    if cache_size is not None:
        executor_args += ["--cache-size", str(_cache_size(cache_size))]
    sys.exit(services.run_cluster(executors, listen, settings.engine, settings.store, settings.store_options, int(verbose),
                         executor_args=executor_args,
                         scheduler_args=["--max-message-size", str(limits.max_message_bytes)], http=http,
                         secure=secure, security_dir=security_dir))


def _cache_size(text: str | None) -> int:
    """``--cache-size`` in bytes (default 64M; 0: off)."""
    if text is None:
        return services.DEFAULT_CACHE_SIZE
    if text.strip() == "0":
        return 0
    return size_value(text, "--cache-size")


__all__ = ["executor", "scheduler", "up"]
