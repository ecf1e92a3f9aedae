"""``essa scheduler``, ``essa executor`` and ``essa up``: essa's processes, through :mod:`essa.api.services`."""

from __future__ import annotations

import logging
import sys

import click

from essa.api import services
from essa.api.contexts import check_context_name
from essa.cli.options import (
    LOCAL_CLUSTER,
    Settings,
    endpoint_options,
    global_arguments,
    limit_arguments,
    limit_options,
    limits_and_grants,
    log_arguments,
    log_bounds,
    log_options,
    metrics_option,
    parse_options,
    serve_metrics,
    size_value,
    split_endpoints,
    token_key_option,
)
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.security.tls import secure_endpoints
from essa.util.memory import tune_collector, tune_heap


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

    Executors and clients connect to its --listen endpoint. A cluster may run
    any number of schedulers, all active: start each further one with
    --connect to another's endpoint, and connect executors and clients to
    several. When one dies, its callers' pending calls go to another.
    """
    tune_heap()
    serve_metrics(metrics_address)
    running = services.start_scheduler(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting,
                                       placement, size_value(max_message_size, "--max-message-size"))
    tune_collector()
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
              "(anna, redis), e.g. 64M; 0 turns the cache off (env ESSA_CACHE_SIZE). [default: 64M]")
@limit_options
@log_options
@metrics_option
@token_key_option
@click.pass_obj
def executor(settings: Settings, executor_id, listen, connect, scouting, zenoh_config, workers, cache_size,
             metrics_address, log_size, log_call_size, log_total, **limit_flags) -> None:
    """Run executor ID: runs the calls the scheduler places on it.

    ID must be unique in the cluster. Executors of one host share the store
    (LMDB by default), so a module compiled by one is loaded by the others.
    Every call placed here runs under this executor's limits and grants,
    whoever started it. What deployments' calls print is kept here, in
    memory (--log-size ...), for `essa logs`. With a store that pushes
    updates (anna), guests read state from a local cache the store keeps
    fresh; writes still go to the store before a guest goes on.
    """
    tune_heap()
    limits, grants = limits_and_grants(**limit_flags)
    bounds = log_bounds(log_size, log_call_size, log_total)
    serve_metrics(metrics_address)
    running = services.start_executor(executor_id, split_endpoints(listen), split_endpoints(connect), zenoh_config,
                                      scouting, settings.engine, settings.store, settings.store_options, workers,
                                      limits, grants, bounds, _cache_size(cache_size))
    tune_collector()
    click.echo(running.describe(), err=True)
    try:
        services.wait_for_signal()
    finally:
        click.echo(running.stop(), err=True)


@click.command()
@click.option("--executors", type=click.IntRange(min=1), default=2, show_default=True,
              help="Executor processes to start.")
@click.option("--schedulers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scheduler processes to start: the first listens at --listen, the others at free ports of "
              "its host, and every executor connects to all of them.")
@click.option("--max-restarts", type=click.IntRange(min=0), default=services.MAX_RESTARTS, show_default=True,
              metavar="N", help="A process that dies is restarted, with backoff; one that dies N+1 times in a row, each "
              "soon after its start, is given up on (reported; the others run on).")
@click.option("--listen", default=LOCAL_CLUSTER, show_default=True, metavar="ENDPOINT",
              help="Where the scheduler listens (with --secure, tcp/ is used as tls/).")
@click.option("--http", metavar="HOST:PORT",
              help="Also answer HTTP there: an `essa serve` process for the cluster (needs essa-plugin-http).")
@click.option("--http-option", "http_options", multiple=True, metavar="KEY=VALUE",
              help="A setting of that HTTP server, as `essa serve --trigger-option` takes it (its keys: `essa "
              "serve --help`), e.g. max-requests=200; repeatable, or comma-separated.")
@click.option("--secure", is_flag=True,
              help="Mutual TLS between all processes, each with its own certificate, and access tokens checked "
              "by the scheduler and executors (CA and keys made in the security directory if missing).")
@click.option("--security-dir", metavar="DIR", type=click.Path(file_okay=False), envvar="ESSA_SECURITY_DIR",
              help="With --secure: where the CA, token keys and certificates are (env ESSA_SECURITY_DIR). "
              "[default: security/ in essa's data directory]")
@click.option("--metrics", is_flag=True,
              help="Each process serves its Prometheus metrics on a free port of its own (printed).")
@click.option("--detach", is_flag=True,
              help="Run the cluster in the background: return once it is ready (its output goes to a log "
              "file); `essa down` stops it.")
@click.option("--name", metavar="NAME",
              help="The cluster's name, and its context's. [default: local, or local-secure with --secure]")
@click.option("--no-context", "no_context", is_flag=True,
              help="Write no context for the cluster and leave the current one as it is.")
@click.option("--cache-size", metavar="SIZE", envvar="ESSA_CACHE_SIZE",
              help="Each executor's cache of lattice values with a store that pushes updates (anna; redis on one "
              "server); 0: off "
              "(env ESSA_CACHE_SIZE). [default: 64M]")
@limit_options
@log_options
@click.pass_obj
def up(settings: Settings, executors: int, schedulers: int, max_restarts: int, listen: str, http: str | None,
       http_options: tuple[str, ...], secure: bool, security_dir: str | None, metrics: bool, detach: bool,
       name: str | None, no_context: bool, cache_size: str | None, log_size, log_call_size, log_total,
       **limit_flags) -> None:
    """Start a local cluster: a scheduler and N executors, as separate processes.

    Once every process is ready, prints where they are and how to connect,
    writes the context NAME (endpoint, and with --secure a client
    certificate and a token) and makes it current, so `essa ls`, `essa run`
    and essa.connect() use the cluster with no --connect; when the cluster
    stops, the context that was current before is again. Stops them all on
    Ctrl-C or SIGTERM (or `essa down`). While it runs, a process that dies
    (scheduler, executor, store node, HTTP server) is restarted with backoff,
    a line each time; one that keeps dying is given up on and the others run
    on. The limits, grants, log bounds and cache size given here go to every executor.
    With --detach it runs in the background.
    """
    tune_heap()
    limits, grants = limits_and_grants(**limit_flags)
    bounds = log_bounds(log_size, log_call_size, log_total)
    get_plugin_manager().engine_class(settings.engine).check_grants(grants)  # before starting anything
    server_options = _http_options(http, http_options)
    name = check_context_name(name) if name else ("local-secure" if secure else "local")
    verbose = logging.getLogger().level <= logging.INFO
    executor_args = limit_arguments(limits, grants) + log_arguments(bounds)
    if cache_size is not None:
        executor_args += ["--cache-size", str(_cache_size(cache_size))]
    if detach:
        argv = [*global_arguments(settings, int(verbose)), "up", "--executors", str(executors),
                "--schedulers", str(schedulers), "--max-restarts", str(max_restarts), "--listen", listen,
                "--name", name, *(["--http", http] if http else []),
                *(arg for key, value in server_options.items() for arg in ("--http-option", f"{key}={value}")),
                *(["--secure"] if secure else []),
                *(["--security-dir", security_dir] if security_dir else []), *(["--metrics"] if metrics else []),
                *(["--no-context"] if no_context else []), *executor_args]
        info, printed = services.start_cluster_in_background(argv, name)
        click.echo(printed, nl=False)
        click.echo(f"essa up: running in the background (pid {info.pid}); its log: {info.log}")
        return
    if secure:
        listen = secure_endpoints([listen])[0]
    sys.exit(services.run_cluster(executors, listen, settings.engine, settings.store, settings.store_options,
                                  int(verbose), executor_args=executor_args,
                                  scheduler_args=["--max-message-size", str(limits.max_message_bytes)], http=http,
                                  http_options=server_options,
                                  secure=secure, security_dir=security_dir, name=name, metrics=metrics,
                                  context=not no_context, schedulers=schedulers, max_restarts=max_restarts))


def _http_options(http: str | None, pairs: tuple[str, ...]) -> dict[str, str]:
    """``--http-option`` pairs, their keys checked against the http trigger's (which must be installed with --http)."""
    options = parse_options(pairs, "--http-option")
    if options and not http:
        raise click.UsageError("--http-option needs --http (the HTTP server it sets up)")
    if http:
        known = get_plugin_manager().trigger_class(DEFAULTS["trigger"]).option_help  # installed? (else: names it)
        for key in options:
            if key not in known:
                raise click.BadParameter(f"the http trigger has no option {key!r} (options: {', '.join(known)})",
                                         param_hint="--http-option")
    return options


def _cache_size(text: str | None) -> int:
    """``--cache-size`` in bytes (default 64M; 0: off)."""
    if text is None:
        return services.DEFAULT_CACHE_SIZE
    if text.strip() == "0":
        return 0
    return size_value(text, "--cache-size")


@click.command()
@click.argument("name", required=False)
def down(name: str | None) -> None:
    """Stop a cluster started by `essa up` (--detach, or in another terminal): every process of it.

    NAME is needed only when several run. Its context stops being current.
    """
    info = services.stop_cluster(name)
    click.echo(f"stopped cluster {info.name}: {', '.join(p.name for p in info.processes)} (essa up, pid {info.pid})")


__all__ = ["down", "executor", "scheduler", "up"]
