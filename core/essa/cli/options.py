"""Options shared by the ``essa`` commands, and by plugins' commands (through :mod:`essa.plugin`).

Global options live in :class:`Settings`; per-call limits and WASI grants in
:func:`limit_options`; how much of calls' output a process keeps in
:func:`log_options`; where a process listens and connects in
:func:`endpoint_options`; how a client reaches essa in
:func:`connection_options`; this process's TLS files and tokens in
:func:`tls_options`, :func:`token_option` and :func:`token_key_option`, which
record their values in :mod:`essa.security.settings` (so every zenoh session
the process opens uses them).
"""

from __future__ import annotations

import os

import click

from essa import api
from essa.api import contexts
from essa.api.services import serve_metrics as _serve_metrics
from essa.errors import EssaError
from essa.security import settings as security_settings
from essa.security import tls as _tls
from essa.util.units import parse_duration, parse_size, spell_size
from essa.wasm.limits import DirGrant, Grants, Limits


def parse_options(pairs: tuple[str, ...], flag: str = "--store-option") -> dict[str, str]:
    """``KEY=VALUE`` pairs from repeated or comma-separated flags; a bad one is a usage error naming ``flag``."""
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


def global_arguments(settings: Settings, verbose: int = 0) -> list[str]:
    """The global options that ask for ``settings`` (for an ``essa`` child process)."""
    args = ["-v"] * verbose + ["--engine", settings.engine, "--store", settings.store]
    for key, value in settings.store_options.items():
        args += ["--store-option", f"{key}={value}"]
    return args


# -- limits and grants ----------------------------------------------------------------

_LIMIT_FLAGS = {
    "time_limit": "--time-limit",
    "memory_limit": "--memory-limit",
    "max_message_size": "--max-message-size",
    "output_limit": "--output-limit",
    "dirs": "--dir",
    "env": "--env",
}


def size_value(value: str | None, flag: str, allow_none: bool = False) -> int | None:
    """The bytes of ``value`` given to ``flag`` (``none``/``unlimited`` -> ``None`` with ``allow_none``)."""
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
    output = defaults.max_output_bytes if output_limit is None else size_value(output_limit, "--output-limit", True)
    limits = Limits(
        time_limit=seconds,
        max_memory_bytes=size_value(memory_limit, "--memory-limit") or defaults.max_memory_bytes,
        max_message_bytes=size_value(max_message_size, "--max-message-size") or defaults.max_message_bytes,
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


# -- logs --------------------------------------------------------------------------------

_LOG_FLAGS = {"log_size": ("--log-size", "deployment"), "log_call_size": ("--log-call-size", "call"),
              "log_total": ("--log-total", "total")}


def log_options(fn):
    """Decorator adding ``--log-size``, ``--log-call-size`` and ``--log-total`` (see :class:`essa.api.LogBounds`)."""
    defaults = api.LogBounds()
    options = [
        click.option("--log-size", metavar="SIZE", envvar="ESSA_LOG_SIZE",
                     help="Output of calls kept per deployment, for `essa logs` (the oldest lines go first); 0 "
                     f"keeps none (env ESSA_LOG_SIZE). [default: {spell_size(defaults.deployment)}]"),
        click.option("--log-call-size", metavar="SIZE", envvar="ESSA_LOG_CALL_SIZE",
                     help="Output kept of one call (its oldest lines go first) (env ESSA_LOG_CALL_SIZE). "
                     f"[default: {spell_size(defaults.call)}]"),
        click.option("--log-total", metavar="SIZE", envvar="ESSA_LOG_TOTAL",
                     help="Output kept of all deployments together (the least recently written one's oldest "
                     f"lines go first) (env ESSA_LOG_TOTAL). [default: {spell_size(defaults.total)}]"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def log_bounds(log_size: str | None, log_call_size: str | None, log_total: str | None) -> "api.LogBounds":
    """The :class:`essa.api.LogBounds` the log options ask for (defaults for the rest; ``0`` or ``none``: keep none)."""
    values = {}
    for name, value in (("log_size", log_size), ("log_call_size", log_call_size), ("log_total", log_total)):
        flag, field = _LOG_FLAGS[name]
        if value is None:
            continue
        if value.strip().lower() in ("0", "none", "off"):
            values[field] = 0
        else:
            values[field] = size_value(value, flag)
    return api.LogBounds(**values)


def log_arguments(bounds: "api.LogBounds") -> list[str]:
    """Command-line flags that ask for ``bounds`` (for child processes)."""
    return ["--log-size", str(bounds.deployment), "--log-call-size", str(bounds.call), "--log-total", str(bounds.total)]


def refuse_limits_with_connect(ctx: click.Context, context: str | None = None) -> None:
    """Refuse, in one line, limit, grant and log flags for a cluster (executors apply their own, keep their own logs).

    :param context: the context that names the cluster (else it was --connect).
    """
    where = f"on the cluster of context {context} (--context embedded runs here)" if context else "with --connect"
    flags = {**_LIMIT_FLAGS, **{name: flag for name, (flag, _field) in _LOG_FLAGS.items()}}
    for name, flag in flags.items():
        if name != "max_message_size" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise EssaError(
                f"{flag} does not apply {where}: a cluster's executors apply their own limits and "
                f"grants and keep their own logs (give {flag} to `essa executor` or `essa up`)"
            )


def refuse_limits_on_a_cluster(ctx: click.Context, connect, use_current: bool = True) -> bool:
    """Whether the command goes to a cluster (:func:`chosen_target`); if so, refuse limit and grant flags."""
    endpoints, context = chosen_target(connect, use_current)
    if endpoints or context:
        refuse_limits_with_connect(ctx, context)
        return True
    return False


# -- processes and clients ------------------------------------------------------------

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


def split_endpoints(values: tuple[str, ...]) -> list[str]:
    """Endpoints from repeated flags or a space-separated environment variable."""
    return [e for item in values for e in item.split()]


def metrics_option(fn):
    """``--metrics HOST:PORT`` for long-running processes (public for plugins: ``essa anna kvs``)."""
    return click.option("--metrics", "metrics_address", metavar="HOST:PORT", envvar="ESSA_METRICS_ADDRESS",
                        help="Serve this process's Prometheus metrics at http://HOST:PORT/metrics "
                        "(env ESSA_METRICS_ADDRESS). Default: not served.")(fn)


def serve_metrics(address: str | None) -> None:
    """Serve the process's metrics at ``address`` if given, saying where on stderr."""
    if address:
        click.echo(f"essa: metrics at {_serve_metrics(address)}", err=True)


#: The context chosen with --context (or ESSA_CONTEXT), and where it came from (a click ParameterSource).
_context_choice: dict[str, object] = {}


def complete_context(_ctx, _param, incomplete: str) -> list[str]:
    """Shell completion of context names (``--context <TAB>``, ``essa context use <TAB>``)."""
    names = [contexts.EMBEDDED, *(c.name for c in contexts.list_contexts())]
    return [name for name in names if name.startswith(incomplete)]


def context_option(fn):
    """``--context NAME`` (env ESSA_CONTEXT): reach essa as context NAME says (see :mod:`essa.api.contexts`)."""

    def record(ctx, param, value):
        if value:
            _context_choice.update(name=value, source=ctx.get_parameter_source(param.name))
        return value

    return click.option("--context", metavar="NAME", envvar=contexts.ENV, expose_value=False, callback=record,
                        shell_complete=complete_context,
                        help="Use context NAME: its endpoint, TLS files and token (env ESSA_CONTEXT; `essa "
                        "context ls` lists them; `embedded`: this machine). [default: the current context]")(fn)


def connection_options(fn):
    """``--connect``, ``--context``, ``--zenoh-config``, ``--timeout``, the TLS options and ``--token``."""
    fn = tls_options(token_option(fn))
    fn = click.option("--timeout", type=float, default=10.0, show_default=True,
                      help="Seconds to wait for the cluster's scheduler with --connect.")(fn)
    fn = click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False),
                      help="A zenoh JSON5 config file for --connect (env ESSA_ZENOH_CONFIG).")(fn)
    fn = context_option(fn)
    fn = click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
                      help="Use the cluster whose scheduler listens at ENDPOINT (e.g. tcp/127.0.0.1:7447); "
                      "repeatable (env ESSA_CONNECT). [default: the current context's cluster, else this "
                      "machine's embedded store]")(fn)
    return fn


def chosen_target(connect, use_current: bool = True) -> tuple[list[str], str | None]:
    """Where a command goes: ``(endpoints, None)``, ``([], context name)``, or ``([], None)`` for embedded.

    First match wins: --connect, --context, ESSA_CONNECT, ESSA_CONTEXT, the current context (unless
    ``use_current`` is false), embedded.
    """
    ctx = click.get_current_context(silent=True)
    endpoints = split_endpoints(connect)
    command_line = click.core.ParameterSource.COMMANDLINE
    from_command_line = ctx is not None and ctx.get_parameter_source("connect") == command_line
    context = _context_choice.get("name")
    context_given = _context_choice.get("source") == command_line
    if endpoints and (from_command_line or not context_given):
        return endpoints, None
    name = str(context) if context else contexts.current_name() if use_current else contexts.EMBEDDED
    return [], None if name == contexts.EMBEDDED else name


def open_connection(settings: Settings, connect, zenoh_config, timeout, max_message_bytes=None, wait=False,
                    use_current=True, **embedded):
    """A :class:`essa.api.Connection` where :func:`chosen_target` says, embedded with the global options.

    ``max_message_bytes`` is the cluster client's message size limit (embedded: ``embedded["limits"]`` holds it);
    ``wait``: a cluster's endpoint where nothing listens yet is tried for ``timeout`` seconds (services);
    ``use_current``: false to go embedded unless told otherwise (``essa dev``).
    """
    endpoints, context = chosen_target(connect, use_current)
    if endpoints:
        return api.connect(endpoints, timeout=timeout, zenoh_config=zenoh_config, max_message_bytes=max_message_bytes,
                           wait=wait)
    if context:
        return api.connect(context=context, timeout=timeout, zenoh_config=zenoh_config,
                           max_message_bytes=max_message_bytes, tls=security_settings.tls_files(given_only=True),
                           token=security_settings.token(given_only=True), wait=wait)
    return api.connect(context=contexts.EMBEDDED, engine=settings.engine, store=settings.store,
                       store_options=settings.store_options, **embedded)


#: Where ``essa up`` and ``essa scheduler`` listen by default: what ``essa status`` and ``essa top`` ask
#: when neither --connect nor a context names a cluster.
LOCAL_CLUSTER = "tcp/127.0.0.1:7447"


def cluster_options(fn):
    """``--connect``, ``--context``, ``--zenoh-config`` and the TLS options, for commands that watch a cluster."""
    fn = tls_options(fn)
    fn = click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False),
                      help="A zenoh JSON5 config file (env ESSA_ZENOH_CONFIG).")(fn)
    fn = context_option(fn)
    return click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
                        help="The cluster's scheduler endpoint; repeatable (env ESSA_CONNECT). [default: the "
                        f"current context's cluster, else {LOCAL_CLUSTER}]")(fn)


def open_cluster(connect, zenoh_config, timeout: float):
    """A connection to a running cluster: as :func:`chosen_target` says, else the one at :data:`LOCAL_CLUSTER`."""
    endpoints, context = chosen_target(connect)
    if context:
        return api.connect(context=context, timeout=timeout, zenoh_config=zenoh_config,
                           tls=security_settings.tls_files(given_only=True))
    return api.connect(endpoints or [LOCAL_CLUSTER], timeout=timeout, zenoh_config=zenoh_config)


# -- this process's identity -----------------------------------------------------------

def tls_options(fn):
    """``--tls-ca``, ``--tls-cert``, ``--tls-key`` for a command that opens zenoh sessions."""
    help_texts = {
        "ca": "The cluster's CA certificate (PEM): only peers it signed are let in (env ESSA_TLS_CA).",
        "cert": "This process's certificate (PEM), signed by the cluster's CA; its role decides what this "
                "process may do (env ESSA_TLS_CERT).",
        "key": "This process's private key (PEM) (env ESSA_TLS_KEY).",
    }
    for name in ("key", "cert", "ca"):
        fn = click.option(_tls.FLAGS[name], metavar="FILE", envvar=_tls.ENV[name], expose_value=False,
                          type=click.Path(exists=True, dir_okay=False), callback=_record(f"tls_{name}"),
                          help=help_texts[name])(fn)
    return fn


def token_option(fn):
    """``--token`` for a command that sends requests to a cluster."""
    return click.option("--token", metavar="TOKEN", envvar="ESSA_TOKEN", expose_value=False,
                        callback=_record("token"),
                        help="The access token sent with every request (env ESSA_TOKEN); a cluster that checks "
                        "tokens refuses requests its token does not allow. See `essa token create`.")(fn)


def token_key_option(fn):
    """``--token-key`` for the processes that check tokens (scheduler, executor)."""
    return click.option("--token-key", metavar="FILE", envvar="ESSA_TOKEN_KEY", expose_value=False,
                        type=click.Path(exists=True, dir_okay=False), callback=_record("token_key"),
                        help="Check every request's access token with this public key (PEM, made by "
                        "`essa certs init`); refuse requests without a valid one (env ESSA_TOKEN_KEY). "
                        "Default: no token checks.")(fn)


def _record(name: str):
    def callback(ctx, param, value):
        # Values from the environment are read there when needed; recorded are the command line's,
        # which win over a context's (a context's win over the environment's).
        if value and ctx.get_parameter_source(param.name) != click.core.ParameterSource.ENVIRONMENT:
            security_settings.record(name, value)
        return value

    return callback


__all__ = [
    "LOCAL_CLUSTER", "Settings", "chosen_target", "cluster_options", "complete_context", "connection_options",
    "context_option", "endpoint_options", "global_arguments", "limit_arguments", "limit_options", "limits_and_grants",
    "log_arguments", "log_bounds", "log_options", "metrics_option", "open_cluster", "open_connection",
    "parse_options", "refuse_limits_on_a_cluster", "refuse_limits_with_connect", "serve_metrics", "size_value",
    "split_endpoints", "tls_options", "token_key_option", "token_option",
]
