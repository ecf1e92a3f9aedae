"""The ``essa`` command line."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
from typing import Iterator

import click

from . import __version__
from .engine import DirGrant, Grants, Limits, parse_duration, parse_size
from .deployments import check_name
from .errors import EssaError
from .plugins import DEFAULTS, get_plugin_manager
from .security import settings as security_settings
from .security.settings import tls_options, token_key_option, token_option


def _parse_options(pairs: tuple[str, ...], flag: str = "--store-option") -> dict[str, str]:
    options = {}
    for pair in pairs:
        for item in pair.split(","):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
            options[key.strip()] = value.strip()
    return options


class Settings:
    """Global options, shared by every subcommand through the click context."""

    def __init__(self, engine: str, store: str, store_options: dict[str, str]) -> None:
        self.engine = engine
        self.store = store
        self.store_options = store_options


# -- limits and grants ----------------------------------------------------------------

_LIMIT_FLAGS = {
    "time_limit": "--time-limit",
    "memory_limit": "--memory-limit",
    "max_message_size": "--max-message-size",
    "output_limit": "--output-limit",
    "dirs": "--dir",
    "env": "--env",
}


def _size(value: str | None, flag: str, allow_none: bool = False) -> int | None:
    if value is None:
        return None
    if allow_none and value.strip().lower() in ("none", "unlimited"):
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def parse_dir_grant(spec: str) -> DirGrant:
    """``HOST[:GUEST][:ro|:rw]`` -> a :class:`DirGrant` (read-write unless ``:ro``)."""
    parts = spec.split(":")
    writable = True
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        writable = parts.pop() == "rw"
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise click.BadParameter(f"{spec!r} is not HOST[:GUEST][:ro]", param_hint="--dir")
    host = parts[0]
    guest = parts[1] if len(parts) == 2 and parts[1] else host
    if not os.path.isdir(host):
        raise click.BadParameter(f"{host!r} is not a directory", param_hint="--dir")
    return DirGrant(os.path.abspath(host), guest, writable)


def parse_env_grant(spec: str) -> tuple[str, str]:
    """``KEY=VALUE``, or ``KEY`` for this process's value of KEY."""
    key, sep, value = spec.partition("=")
    if not key or "\0" in spec:
        raise click.BadParameter(f"{spec!r} is not KEY=VALUE", param_hint="--env")
    if not sep:
        if key not in os.environ:
            raise click.BadParameter(f"{key} is not set here (give KEY=VALUE)", param_hint="--env")
        value = os.environ[key]
    return key, value


def limits_and_grants(time_limit, memory_limit, max_message_size, output_limit, dirs, env) -> tuple[Limits, Grants]:
    """The :class:`Limits` and :class:`Grants` the limit options ask for (defaults for the rest)."""
    defaults = Limits()
    if time_limit is None:
        seconds = defaults.time_limit
    elif time_limit.strip().lower() in ("none", "unlimited"):
        seconds = None
    else:
        try:
            seconds = parse_duration(time_limit)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--time-limit") from None
    output = defaults.max_output_bytes if output_limit is None else _size(output_limit, "--output-limit", True)
    limits = Limits(
        time_limit=seconds,
        max_memory_bytes=_size(memory_limit, "--memory-limit") or defaults.max_memory_bytes,
        max_message_bytes=_size(max_message_size, "--max-message-size") or defaults.max_message_bytes,
        max_output_bytes=output,
    )
    grants = Grants(tuple(parse_dir_grant(d) for d in dirs), tuple(parse_env_grant(e) for e in env))
    return limits, grants


def limit_arguments(limits: Limits, grants: Grants) -> list[str]:
    """Command-line flags that ask for ``limits`` and ``grants`` (for child processes)."""
    args = [
        "--time-limit", "none" if limits.time_limit is None else repr(limits.time_limit),
        "--memory-limit", str(limits.max_memory_bytes),
        "--max-message-size", str(limits.max_message_bytes),
        "--output-limit", "none" if limits.max_output_bytes is None else str(limits.max_output_bytes),
    ]
    for grant in grants.dirs:
        args += ["--dir", f"{grant.host}:{grant.guest}:{'rw' if grant.writable else 'ro'}"]
    for key, value in grants.env:
        args += ["--env", f"{key}={value}"]
    return args


def limit_options(fn):
    """Decorator adding the per-call limits and the WASI grants to a command."""
    options = [
        click.option("--time-limit", metavar="SECONDS", envvar="ESSA_TIME_LIMIT",
                     help="Wall time one call may run, e.g. 5, 0.5, 500ms, 2m, or none "
                     "(env ESSA_TIME_LIMIT). [default: 30]"),
        click.option("--memory-limit", metavar="SIZE", envvar="ESSA_MEMORY_LIMIT",
                     help="Linear memory of one call, e.g. 64M, 1G (env ESSA_MEMORY_LIMIT). [default: 256M]"),
        click.option("--max-message-size", metavar="SIZE", envvar="ESSA_MAX_MESSAGE_SIZE",
                     help="Largest arguments, result or lattice value of one call (env ESSA_MAX_MESSAGE_SIZE). "
                     "[default: 64M]"),
        click.option("--output-limit", metavar="SIZE", envvar="ESSA_OUTPUT_LIMIT",
                     help="Stdout + stderr bytes of one call, or none (env ESSA_OUTPUT_LIMIT). [default: 64M]"),
        click.option("--dir", "dirs", multiple=True, metavar="HOST[:GUEST][:ro]",
                     help="Let guests use the host directory HOST as GUEST (default: the same path), "
                     "read-write or read-only (:ro); repeatable. Default: no directory."),
        click.option("--env", multiple=True, metavar="KEY=VALUE",
                     help="Give guests the environment variable KEY (KEY alone: this process's value); "
                     "repeatable. Default: no environment."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _names(kind: str) -> str:
    registry = getattr(get_plugin_manager(), kind)
    return ", ".join(registry.names()) or "none installed"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine",
    envvar="ESSA_ENGINE",
    default=DEFAULTS["engine"],
    show_default=True,
    help="Wasm engine to run modules with (env ESSA_ENGINE). `essa plugins` lists the installed ones.",
)
@click.option(
    "--store",
    envvar="ESSA_STORE",
    default=DEFAULTS["store"],
    show_default=True,
    help="Key-value store for state and compiled modules (env ESSA_STORE).",
)
@click.option(
    "--store-option",
    "store_options",
    multiple=True,
    metavar="KEY=VALUE",
    envvar="ESSA_STORE_OPTIONS",
    help="A store setting, e.g. path=/data/essa for lmdb; repeatable, or comma-separated in ESSA_STORE_OPTIONS.",
)
@click.option("-v", "--verbose", count=True, help="Log what essa does (-vv for debug detail).")
@click.version_option(__version__, prog_name="essa")
@click.pass_context
def cli(ctx: click.Context, engine: str, store: str, store_options: tuple[str, ...], verbose: int) -> None:
    """essa runs WebAssembly functions that call each other and share lattice state.

    Quick start: `essa run examples/test-function.wasm` runs a module with an
    embedded scheduler, executors and store; nothing to start first.
    """
    if isinstance(store_options, str):  # from the environment variable
        store_options = (store_options,)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="essa: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Settings(engine, store, _parse_options(store_options))


def endpoint_options(listen_default: str | None, connect_default: str | None):
    """Decorator adding ``--listen``, ``--connect``, ``--scouting``, ``--zenoh-config`` and the TLS options.

    Public for plugins whose commands run cluster processes (``essa anna kvs``):
    the command receives ``listen``, ``connect``, ``scouting`` and
    ``zenoh_config``; pass ``listen``/``connect`` through :func:`split_endpoints`.
    ``--tls-ca``/``--tls-cert``/``--tls-key`` are not passed: every zenoh
    session the process opens uses them (:mod:`essa.security.settings`).
    """

    def decorate(fn):
        fn = tls_options(fn)
        fn = click.option(
            "--zenoh-config",
            envvar="ESSA_ZENOH_CONFIG",
            type=click.Path(exists=True, dir_okay=False),
            help="A zenoh JSON5 config file, applied before the flags (env ESSA_ZENOH_CONFIG).",
        )(fn)
        fn = click.option(
            "--scouting/--no-scouting",
            envvar="ESSA_ZENOH_SCOUTING",
            default=False,
            help="Find peers by multicast scouting (off by default; env ESSA_ZENOH_SCOUTING).",
        )(fn)
        fn = click.option(
            "--connect",
            multiple=True,
            metavar="ENDPOINT",
            envvar="ESSA_CONNECT",
            default=[connect_default] if connect_default else [],
            show_default=bool(connect_default),
            help="zenoh endpoint to connect to, e.g. tcp/10.0.0.5:7447; repeatable (env ESSA_CONNECT, space-separated).",
        )(fn)
        fn = click.option(
            "--listen",
            multiple=True,
            metavar="ENDPOINT",
            envvar="ESSA_LISTEN",
            default=[listen_default] if listen_default else [],
            show_default=bool(listen_default),
            help="zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447; repeatable (env ESSA_LISTEN, space-separated).",
        )(fn)
        return fn

    return decorate


@cli.command(context_settings={"allow_interspersed_args": False})
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
    "instead of in this process; repeatable (env ESSA_CONNECT).",
)
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

    Without --connect everything runs in this process (scheduler, executors,
    store). With --connect the module goes to a running cluster (see `essa up`,
    `essa scheduler`, `essa executor`). Either way the guest's stdout and
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
    from . import api
    from .programs import read_module

    settings: Settings = ctx.obj
    limits, grants = limits_and_grants(**limit_flags)
    wasm = read_module(module)  # fail on a bad file before starting anything
    if no_stdin and stdin_file is not None:
        raise click.UsageError("--stdin and --no-stdin exclude each other")
    if args[:1] == ("--",):  # `essa run f.wasm -- ARGS`: the separator is not an argument
        args = args[1:]
    argv = [module, *args]
    stdin = None if no_stdin else stdin_file or _own_stdin()
    if namespace is not None:
        check_name(namespace, "namespace")
    connect = tuple(e for item in connect for e in item.split())
    if connect:
        refuse_limits_with_connect(ctx)
        connection = api.connect(connect, timeout=timeout, zenoh_config=zenoh_config,
                                 max_message_bytes=limits.max_message_bytes)
    else:
        connection = api.connect(engine=settings.engine, store=settings.store, store_options=settings.store_options,
                                 executors=executors, limits=limits, grants=grants)
    with connection:
        logging.getLogger("essa").info("connected: %s", connection.where)
        status = _run_until_interrupted(connection, wasm, module, namespace, trace_file, argv, stdin)
    sys.exit(status)


def refuse_limits_with_connect(ctx: click.Context) -> None:
    """Refuse, in one line, limit and grant flags given with --connect (executors apply their own)."""
    for name, flag in _LIMIT_FLAGS.items():
        if name != "max_message_size" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise EssaError(
                f"{flag} does not apply with --connect: a cluster's executors apply their own limits and "
                f"grants (give {flag} to `essa executor` or `essa up`)"
            )


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while a command waited for ``what``; ``status`` is the exit status (128 + signal)."""

    def __init__(self, signum: int, what: str = "the run") -> None:
        self.signal = signal.Signals(signum).name
        self.status = 128 + signum
        self.what = what
        super().__init__(f"interrupted ({self.signal})")


class Signals:
    """The first SIGINT or SIGTERM received while :func:`catching_signals` is active, or ``None``."""

    received: int | None = None


@contextlib.contextmanager
def catching_signals() -> Iterator[Signals]:
    """Record SIGINT and SIGTERM instead of acting on them; a second one interrupts at once.

    The handler only records the signal (it takes no lock, so it cannot
    deadlock whatever the main thread holds); the waiting code checks
    :attr:`Signals.received` between short waits.
    """
    signals = Signals()

    def record(signum: int, _frame) -> None:
        if signals.received is not None:
            raise KeyboardInterrupt  # a second signal while we clean up
        signals.received = signum

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_until_interrupted(connection, wasm: bytes, origin: str, namespace: str | None,
                           trace_file: str | None = None, argv: list[str] | None = None, stdin=None) -> int:
    """Run a module and return its exit status; on SIGINT/SIGTERM, cancel the run and raise :class:`Interrupted`.

    With ``trace_file``, the run's calls are written there as Chrome trace JSON (also when it failed).
    ``argv`` and ``stdin`` are the module's (see :meth:`essa.client.Client.start_run`).
    """
    with catching_signals() as signals:
        handle = connection.start_run(wasm, namespace, origin=origin, trace=trace_file is not None, argv=argv,
                                      stdin=stdin)
        logging.getLogger("essa").info("run %s of %s in namespace %s", handle.run, origin, namespace or handle.run)
        try:
            return wait_unless_interrupted(handle, signals)
        finally:
            if trace_file is not None and handle.done():
                write_trace(handle.spans(), trace_file)


def wait_unless_interrupted(future, signals: Signals):
    """``future.result()``; on a signal recorded in ``signals``, cancel the future and raise :class:`Interrupted`."""
    import concurrent.futures

    while signals.received is None:
        try:
            return future.result(timeout=0.1)
        except concurrent.futures.TimeoutError:
            pass
    from .client import CallHandle

    interrupted = Interrupted(signals.received, "the run" if isinstance(future, CallHandle) else "the call")
    if isinstance(future, CallHandle):
        future.cancel(f"interrupted by {interrupted.signal} at the client")
    else:
        future.cancel()
    raise interrupted


def write_trace(spans: list, path: str) -> None:
    """Write ``spans`` to ``path`` as Chrome trace JSON, saying so on stderr."""
    from .tracing import write_chrome_trace

    try:
        calls = write_chrome_trace(spans, path)
    except OSError as exc:
        raise EssaError(f"cannot write the trace to {path}: {exc.strerror}") from None
    click.echo(f"essa: wrote a trace of {calls} calls to {path}", err=True)


def metrics_option(fn):
    """``--metrics HOST:PORT`` for long-running processes (public for plugins: ``essa anna kvs``)."""
    return click.option("--metrics", "metrics_address", metavar="HOST:PORT", envvar="ESSA_METRICS_ADDRESS",
                        help="Serve this process's Prometheus metrics at http://HOST:PORT/metrics "
                        "(env ESSA_METRICS_ADDRESS). Default: not served.")(fn)


def serve_metrics(address: str | None) -> None:
    """Serve the process's metrics at ``address`` if given, saying where on stderr."""
    if address:
        from .metrics import serve

        click.echo(f"essa: metrics at {serve(address)}", err=True)


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


def split_endpoints(values: tuple[str, ...]) -> list[str]:
    """Endpoints from repeated flags or a space-separated environment variable."""
    return [e for item in values for e in item.split()]


@cli.command()
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
    from .cluster import open_transport, serve_scheduler, wait_for_signal

    serve_metrics(metrics_address)
    limit = _size(max_message_size, "--max-message-size") or Limits().max_message_bytes
    transport = open_transport(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting,
                               max_message_bytes=limit)
    sched = serve_scheduler(transport, placement, security_settings.verifier())
    click.echo(f"essa scheduler {sched.id}: {transport.describe()}; placement {sched.placement.name}", err=True)
    try:
        wait_for_signal()
    finally:
        sched.stop()
        transport.close()


@cli.command()
@click.argument("executor_id", metavar="ID")
@endpoint_options(listen_default="tcp/127.0.0.1:0", connect_default="tcp/127.0.0.1:7447")
@click.option("--workers", type=click.IntRange(min=1), help="Threads running calls. [default: one per core, at least 2]")
@limit_options
@metrics_option
@token_key_option
@click.pass_obj
def executor(settings: Settings, executor_id, listen, connect, scouting, zenoh_config, workers, metrics_address,
             **limit_flags) -> None:
    """Run executor ID: runs the calls the scheduler places on it.

    ID must be unique in the cluster. Executors of one host share the store
    (LMDB by default), so a module compiled by one is loaded by the others.
    Every call placed here runs under this executor's limits and grants,
    whoever started it.
    """
    from .cluster import default_workers, open_transport, serve_executor, wait_for_signal

    limits, grants = limits_and_grants(**limit_flags)
    serve_metrics(metrics_address)
    transport = open_transport(split_endpoints(listen), split_endpoints(connect), zenoh_config, scouting,
                               max_message_bytes=limits.max_message_bytes)
    try:
        ex, caller = serve_executor(executor_id, transport, settings.engine, settings.store,
                                    settings.store_options, workers or default_workers(), limits, grants,
                                    security_settings.verifier())
    except BaseException:
        transport.close()
        raise
    click.echo(f"essa executor {executor_id}: {ex.programs.engine.artifact_tag}, store {ex.store.describe()}, "
               f"{transport.describe()}", err=True)
    try:
        wait_for_signal()
    finally:
        drained = ex.drain()
        ex.stop()
        caller.close()
        transport.close()
        ex.store.close()
        stats = ex.stats
        click.echo(f"essa executor {executor_id}: served {stats.calls} calls and {stats.runs} runs "
                   f"({stats.failures} failed){'' if drained else '; stopped before all calls finished'}", err=True)


@cli.command()
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
@limit_options
@click.pass_obj
def up(settings: Settings, executors: int, listen: str, http: str | None, secure: bool, security_dir: str | None,
       **limit_flags) -> None:
    """Start a local cluster: a scheduler and N executors, as separate processes.

    Prints how to connect, and stops them all on Ctrl-C or SIGTERM. The
    limits and grants given here go to every executor. With --secure it also
    prints which certificate files a client passes, and how to make a token.
    """
    from .cluster import up as run_cluster
    from .security.tls import secure_endpoints

    limits, grants = limits_and_grants(**limit_flags)
    get_plugin_manager().engine_class(settings.engine).check_grants(grants)  # before starting anything
    if http:
        get_plugin_manager().trigger_class(DEFAULTS["trigger"])  # installed? (else: names the package)
    if secure:
        listen = secure_endpoints([listen])[0]
    verbose = logging.getLogger().level <= logging.INFO
    sys.exit(run_cluster(executors, listen, settings.engine, settings.store, settings.store_options, int(verbose),
                         executor_args=limit_arguments(limits, grants),
                         scheduler_args=["--max-message-size", str(limits.max_message_bytes)], http=http,
                         secure=secure, security_dir=security_dir))


@cli.command()
@click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
              default=["tcp/127.0.0.1:7447"], show_default=True, help="The cluster's scheduler endpoint.")
@click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@tls_options
def status(connect, zenoh_config, as_json) -> None:
    """Show a running cluster: its scheduler and executors with their counters."""
    import json

    from rich.console import Console
    from rich.table import Table

    from .cluster import cluster_status

    answers = cluster_status(split_endpoints(connect), zenoh_config)
    if as_json:
        click.echo(json.dumps(answers, indent=2, sort_keys=True))
        return
    schedulers = [a for a in answers if a.get("role") == "scheduler"]
    executors = sorted((a for a in answers if a.get("role") == "executor"), key=lambda a: a["id"])
    for sched in schedulers:
        click.echo(f"scheduler {sched['id']}: placement {sched['placement']}, "
                   f"{sched['in_flight']} calls in flight, {sched.get('unconfirmed', 0)} replies not confirmed by "
                   f"their callers yet, {sched['waiting']} waiting")
    table = Table(title="executors")
    for column in ("id", "engine", "workers", "calls", "runs", "failed", "cancelled", "running", "in flight", "modules"):
        table.add_column(column)
    placed = {k: v for s in schedulers for k, v in s["executors"].items()}
    for ex in executors:
        table.add_row(ex["id"], ex["engine"], str(ex["workers"]), str(ex["calls"]), str(ex["runs"]),
                      str(ex["failures"]), str(ex.get("cancelled", "-")), str(ex.get("running", "-")),
                      str(placed.get(ex["id"], {}).get("in_flight", "-")), str(len(ex["modules"])))
    Console().print(table)


@cli.command()
@click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
              default=["tcp/127.0.0.1:7447"], show_default=True, help="The cluster's scheduler endpoint.")
@click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between two frames.")
@click.option("--once", is_flag=True, help="Print one frame (after one interval) and exit.")
@tls_options
def top(connect, zenoh_config, interval, once) -> None:
    """A live view of a cluster: executors with calls/s, p50/p99, running, failures; the busiest functions.

    Press q or Ctrl-C to quit.
    """
    from . import top as live_view
    from .cluster import connect_client

    endpoints = split_endpoints(connect)
    client = connect_client(endpoints, zenoh_config, timeout=10)
    try:
        live_view.run(client.transport, ", ".join(endpoints), interval, once)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        client.transport.close()


@cli.command()
def plugins() -> None:
    """List installed plugins, their versions and what each provides."""
    from rich.console import Console
    from rich.table import Table

    manager = get_plugin_manager()
    table = Table(title="essa plugins")
    for column in ("plugin", "distribution", "version", "provides", "status"):
        table.add_column(column, overflow="fold")
    for info in manager.plugins:
        if info.error:
            status = f"[red]broken[/red]: {info.error}"
        elif info.unavailable:
            status = "[yellow]unavailable[/yellow]: " + "; ".join(info.unavailable)
        else:
            status = "ok"
        table.add_row(info.name, info.distribution, info.version, "\n".join(info.provides) or "-", status)
    console = Console()
    console.print(table)
    if manager.engine_support:
        engines = Table(title="engines: what guests can be given")
        for column in ("engine", "grants", "WASI"):
            engines.add_column(column, overflow="fold")
        for name, cls in sorted(manager.engine_support.items()):
            grants = "\n".join(getattr(cls, "grant_names", lambda: [])()) or "none"
            engines.add_row(name, grants, "\n".join(getattr(cls, "wasi_features", ())) or "-")
        console.print(engines)
    options = manager.trigger_options()
    if options:
        triggers = Table(title="triggers: essa serve --trigger-option KEY=VALUE")
        for column in ("trigger", "key", "meaning"):
            triggers.add_column(column, overflow="fold")
        for row in options:
            triggers.add_row(*row)
        console.print(triggers)


# The service commands (deploy, ls, rm, functions, call, state) use the helpers above.
from .service_commands import add_service_commands  # noqa: E402

add_service_commands(cli)

# `essa serve` runs a trigger from the plugins' registry.
from .serve_command import serve  # noqa: E402

cli.add_command(serve)

# `essa certs` and `essa token`: the material of a secure cluster.
from .security.commands import add_security_commands  # noqa: E402

add_security_commands(cli)


@cli.command("new")
@click.argument("language", type=click.Choice(["c", "rust"]), metavar="c|rust")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, metavar="DIR",
              help="Where to create the project's directory NAME.")
@click.option("--sdk", metavar="PATH",
              help="Rust only: the essa Rust SDK to depend on (a directory with essa-api/, such as a "
              "checkout's guest/rust). Default: the one installed with essa.")
def new(language: str, name: str, directory: str, sdk: str | None) -> None:
    """Write a ready-to-build project NAME: a C or Rust function with a main.

    The project has the source, essa's SDK (C: a copy of essa.h; Rust: a path
    dependency), a build.sh with the flags that give small modules, and a
    README. It never overwrites: an existing NAME is refused.
    """
    from .scaffold import describe, new_project

    path = new_project(language, name, directory, sdk)
    click.echo(f"created {path}/: {', '.join(describe(path))}")
    click.echo(f"build and run it:  cd {shlex.quote(str(path))} && ./build.sh && essa run {name}.wasm")
    if language == "c":
        click.echo("(build.sh needs ziglang: pip install ziglang; its first build compiles wasi-libc "
                   "for a couple of minutes)")
    else:
        click.echo("(build.sh needs Debian's Rust packages, listed in README.md; its first build "
                   "compiles the dependencies for a minute or two)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``essa`` console script."""
    status = _main(argv)
    # Leave without interpreter finalization: the engines' native runtimes
    # (wasmtime's tokio threads) may otherwise panic while Python tears down.
    # Every command has closed its stores and sessions by now.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _usage_error(exc: click.UsageError, argv: list[str]) -> str:
    """The one line for a usage error: click's message, and where help is (or where a global option goes)."""
    command = exc.ctx.command_path if exc.ctx is not None else "essa"
    if isinstance(exc, click.NoSuchOption) and exc.ctx is not None and exc.ctx.command is not cli:
        option = next((p for p in cli.params if exc.option_name in p.opts), None)
        if isinstance(option, click.Option):
            takes_value = not (option.is_flag or option.count)
            for i in reversed(range(len(argv))):  # the misplaced one comes after the command
                token = argv[i]
                if token == exc.option_name or token.startswith(exc.option_name + "="):
                    moved = argv[i : i + (2 if takes_value and token == exc.option_name else 1)]
                    example = shlex.join(["essa", *moved, *argv[:i], *argv[i + len(moved):]])
                    break
            else:
                example = f"essa {exc.option_name}{' ...' if takes_value else ''} {command.split(' ', 1)[-1]} ..."
            return f"{exc.option_name} is a global option: give it before the command, as in `{example}`"
    message = " ".join(exc.format_message().split("\n")).strip().rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return f"{message} (see `{command} --help`)"


def _main(argv: list[str] | None) -> int:
    from .client import RunFailed

    errors = get_plugin_manager().add_commands(cli)
    for line in errors:
        click.echo(f"essa: warning: {line}", err=True)
    try:
        result = cli.main(args=argv, prog_name="essa", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RunFailed as exc:
        click.echo(f"essa: error: {exc}", err=True)
        return exc.exit_status
    except EssaError as exc:
        click.echo(f"essa: error: {exc}", err=True)
        return 1
    except Interrupted as exc:
        click.echo(f"essa: {exc}: {exc.what} was cancelled", err=True)
        return exc.status
    except click.exceptions.Abort:
        click.echo("essa: interrupted", err=True)
        return 130
    except click.UsageError as exc:  # one line like every other error, not click's four
        click.echo(f"essa: error: {_usage_error(exc, sys.argv[1:] if argv is None else list(argv))}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"essa: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("essa: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    main()
