"""``essa run``: run a module's main function, embedded or on a cluster, through :mod:`essa.api`."""

from __future__ import annotations

import logging
import sys

import click

from essa import api
from essa.cli.options import (
    Settings,
    context_option,
    limit_options,
    limits_and_grants,
    open_connection,
    refuse_limits_on_a_cluster,
    tls_options,
    token_option,
)
from essa.cli.output import write_trace
from essa.cli.signals import catching_signals, wait_unless_interrupted


@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("module", metavar="FILE.wasm")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[--] [ARGS]...")
@click.option("--stdin", "stdin_file", type=click.File("rb"), metavar="FILE",
              help="Give the module's _start FILE as stdin instead of this command's own stdin.")
@click.option("--no-stdin", is_flag=True, help="Give the module's _start an empty stdin.")
@click.option(
    "--namespace",
    metavar="NAME",
    help="State namespace: runs that name the same namespace share their keys. Default: a fresh one per run.",
)
@click.option(
    "--executors",
    type=click.IntRange(min=1),
    help="Executors of the embedded runtime. [default: one per core, at least 2]",
)
@click.option(
    "--connect",
    multiple=True,
    metavar="ENDPOINT",
    envvar="ESSA_CONNECT",
    help="Run on the cluster whose scheduler listens at ENDPOINT (e.g. tcp/127.0.0.1:7447) "
    "instead of in this process; repeatable (env ESSA_CONNECT). [default: the current context's cluster, "
    "else in this process]",
)
@context_option
@click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False),
              help="A zenoh JSON5 config file for --connect (env ESSA_ZENOH_CONFIG).")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the cluster's scheduler with --connect.")
@click.option("--trace", "trace_file", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Write the run's tree of remote calls to FILE as Chrome trace-event JSON "
              "(open it in https://ui.perfetto.dev or chrome://tracing).")
@limit_options
@tls_options
@token_option
@click.pass_context
def run(ctx: click.Context, module: str, args: tuple[str, ...], stdin_file, no_stdin: bool, namespace: str | None,
        executors: int | None, connect: tuple[str, ...], zenoh_config: str | None, timeout: float,
        trace_file: str | None,
        **limit_flags) -> None:
    """Run a module's main function (`_start`) and its remote calls.

    Without --connect (or a current context: `essa context`) everything runs
    in this process (scheduler, executors, store). With --connect the module
    goes to a running cluster (see `essa up`, `essa scheduler`, `essa
    executor`). Either way the guest's stdout and
    stderr appear here, and essa exits with the module's exit status, or 1
    with a message if it traps or exceeds a limit.

    The module's arguments are FILE.wasm as given, then ARGS (everything after
    FILE.wasm, but for a first `--`; options of `essa run` go before it). Its stdin is this
    command's stdin, read only as the module reads it (streamed to the
    executor with --connect); --stdin FILE or --no-stdin change that. Remote
    calls see the same arguments and an empty stdin.

    Every call runs under limits (time, memory, message size, output) and
    sees no directory and no environment variable unless granted with --dir
    and --env. With --connect, the cluster's executors apply their own limits
    and grants (set when they start); only --max-message-size applies here.
    """
    settings: Settings = ctx.obj
    limits, grants = limits_and_grants(**limit_flags)
    wasm = api.read_module(module)  # fail on a bad file before starting anything
    if no_stdin and stdin_file is not None:
        raise click.UsageError("--stdin and --no-stdin exclude each other")
    if args[:1] == ("--",):  # `essa run f.wasm -- ARGS`: the separator is not an argument
        args = args[1:]
    argv = [module, *args]
    stdin = None if no_stdin else stdin_file or _own_stdin()
    if namespace is not None:
        api.check_name(namespace, "namespace")
    refuse_limits_on_a_cluster(ctx, connect)
    with open_connection(settings, connect, zenoh_config, timeout, max_message_bytes=limits.max_message_bytes,
                         executors=executors, limits=limits, grants=grants) as connection:
        logging.getLogger("essa").info("connected: %s", connection.where)
        status = _run_until_interrupted(connection, wasm, module, namespace, trace_file, argv, stdin)
    sys.exit(status)


def _run_until_interrupted(connection, wasm: bytes, origin: str, namespace: str | None,
                           trace_file: str | None = None, argv: list[str] | None = None, stdin=None) -> int:
    """Run a module and return its exit status; on SIGINT/SIGTERM, cancel the run and raise :class:`Interrupted`.

    With ``trace_file``, the run's calls are written there as Chrome trace JSON (also when it failed).
    ``argv`` and ``stdin`` are the module's (see :meth:`essa.api.Connection.start_run`).
    """
    with catching_signals() as signals:
        handle = connection.start_run(wasm, namespace, origin=origin, trace=trace_file is not None, argv=argv,
                                      stdin=stdin)
        logging.getLogger("essa").info("run %s of %s in namespace %s", handle.id, origin, namespace or handle.id)
        try:
            return wait_unless_interrupted(handle, signals)
        finally:
            if trace_file is not None and handle.done():
                write_trace(handle.spans(), trace_file)


def _own_stdin():
    """This process's stdin as a binary file, or ``None`` when it has none (closed, or started without one)."""
    stream = getattr(sys.stdin, "buffer", None)
    try:
        if stream is None or stream.closed:
            return None
        stream.fileno()
    except (OSError, ValueError):
        return None
    return stream



__all__ = ["run"]
