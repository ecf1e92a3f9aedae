"""``essa serve``: run a trigger (HTTP by default) on an embedded runtime or a cluster.

The trigger comes from the ``triggers`` registry (plugins register them with
``essa_register_triggers``); see :mod:`essa.api.trigger` for its life cycle. This
command opens the connection, builds the trigger, runs it until SIGINT or
SIGTERM (the first stops it gracefully, a second at once), then closes the
connection and exits 0.
"""

from __future__ import annotations

import click

from essa.api.trigger import TriggerConfig
from essa.cli.options import (
    Settings,
    connection_options,
    limit_options,
    limits_and_grants,
    log_bounds,
    log_options,
    open_connection,
    parse_options,
    refuse_limits_on_a_cluster,
)
from essa.cli.signals import SignalStop
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.util.memory import tune_collector, tune_heap


class _ServeCommand(click.Command):
    """``essa serve``, whose help ends with the ``--trigger-option`` keys of every installed trigger."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        options = get_plugin_manager().trigger_options()
        if options:
            with formatter.section("Trigger options (--trigger-option KEY=VALUE)"):
                formatter.write_dl([(f"{trigger}: {key}", text) for trigger, key, text in options])


@click.command(cls=_ServeCommand)
@click.option("--trigger", "trigger_name", metavar="NAME", envvar="ESSA_TRIGGER", default=DEFAULTS["trigger"], show_default=True,
              help="The trigger to run (env ESSA_TRIGGER); `essa plugins` lists the installed ones.")
@click.option("--listen", metavar="ADDRESS",
              help="Where the trigger listens; for http HOST:PORT. [default: the trigger's, 127.0.0.1:8080 for http]")
@connection_options
@click.option("--executors", type=click.IntRange(min=1),
              help="Executors of the embedded runtime. [default: one per core, at least 2]")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds requests in flight may take to finish after SIGTERM or Ctrl-C; then they are cancelled.")
@click.option("--trigger-option", "trigger_options", multiple=True, metavar="KEY=VALUE",
              help="A setting of the trigger (listed below, and by `essa plugins`); repeatable, or "
                   "comma-separated.")
@limit_options
@log_options
@click.pass_context
def serve(ctx: click.Context, trigger_name: str, listen: str | None, connect: tuple[str, ...],
          zenoh_config: str | None, timeout: float, executors: int | None, shutdown_timeout: float,
          trigger_options: tuple[str, ...], log_size, log_call_size, log_total, **limit_flags) -> None:
    """Take outside events (HTTP requests by default) and turn them into calls.

    Without --connect (or a current context: `essa context`) it serves an
    embedded runtime in this process (this machine's store, the limits and
    grants given here); with --connect a running cluster (see `essa up
    --http`), whose executors apply their own limits. Prints where it listens once ready; SIGTERM or Ctrl-C stops it
    after the requests in flight are answered (a second one at once).

    The http trigger (essa-plugin-http): POST /v1/functions/NAME/FUNCTION
    (body: the arguments, answer: the result), GET|PUT /v1/state/NAME/KEY,
    GET /v1/logs/NAME (what the calls printed; ?follow=1 streams),
    GET /v1/deployments, /healthz, /metrics. With -v it logs one line per
    request, and every line the calls print.
    """
    tune_heap()
    settings: Settings = ctx.obj
    trigger_class = get_plugin_manager().trigger_class(trigger_name)  # before starting anything
    limits, grants = limits_and_grants(**limit_flags)
    config = TriggerConfig(listen=listen or trigger_class.default_listen, max_message_bytes=limits.max_message_bytes,
                           shutdown_timeout=shutdown_timeout, options=parse_options(trigger_options, "--trigger-option"))
    bounds = log_bounds(log_size, log_call_size, log_total)
    refuse_limits_on_a_cluster(ctx, connect)
    # Signals are caught until the connection is closed too: a second Ctrl-C must not kill it halfway.
    # A server may start with its cluster (essa up --http): it waits up to --timeout for it to listen.
    with SignalStop() as signals, open_connection(settings, connect, zenoh_config, timeout, wait=True,
                                                  max_message_bytes=limits.max_message_bytes, executors=executors,
                                                  limits=limits, grants=grants, logs=bounds) as connection:
        trigger = trigger_class(connection, config)
        signals.forward_to(trigger.stop)

        def ready(address: str) -> None:
            tune_collector()  # started: what exists now is frozen out of collection (essa.util.memory)
            click.echo(f"essa serve: {trigger_name} trigger at {address}, calls go to {connection.where}", err=True)

        trigger.serve(ready)
    click.echo(f"essa serve: {trigger_name} trigger stopped", err=True)



__all__ = ["serve"]
