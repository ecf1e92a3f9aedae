"""``essa logs``: what a deployment's calls printed, as a cluster's executors keep it, through :mod:`essa.api`."""

from __future__ import annotations

import json
import time

import click

from essa.cli.options import chosen_target, connection_options, open_connection
from essa.cli.signals import catching_signals
from essa.errors import EssaError


@click.command()
@click.argument("deployment", metavar="NAME[@VERSION]")
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as calls write them, until Ctrl-C.")
@click.option("--call", "call_id", metavar="ID", help="Only the lines of this call (a line's call id, or the `call` "
              "of a failed call's error).")
@click.option("--since", metavar="WHEN", help="Only lines written since WHEN: how long ago (10m, 30s, 2h) or an "
              "RFC 3339 time.")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N lines (with --follow: then "
              "the new ones).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: time, deployment, version, "
              "function, call, stream, executor, text.")
@connection_options
@click.pass_obj
def logs(settings, deployment, follow, call_id, since, tail, as_json, connect, zenoh_config, timeout) -> None:
    """Print what the calls of a deployment printed (stdout and stderr), oldest first.

    Every executor of the cluster keeps the lines of the calls it ran, in
    memory and bounded (`essa executor --log-size`; the oldest go first):
    this asks them all and merges the lines by time. An executor that stops
    takes its lines with it. NAME@VERSION shows only that version's calls.

    Needs a cluster (--connect, --context, or the current context `essa up`
    made): an embedded runtime keeps its calls' lines in its own process
    (read them there: Connection.logs() in Python, GET /v1/logs/NAME of
    `essa serve`).
    """
    endpoints, context = chosen_target(connect, True)
    if not endpoints and not context:
        raise EssaError("essa logs reads a cluster's logs: give --connect ENDPOINT (or use a context: `essa "
                        "context`); an embedded "
                        "runtime keeps its calls' logs in its own process (read them there: Connection.logs(NAME) "
                        "in Python, or GET /v1/logs/NAME of `essa serve`)")
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        if not follow:
            for line in es.logs(deployment, since=since, call=call_id, tail=tail):
                _echo(line, as_json)
            return
        follower = es.follow_logs(deployment, since=since, call=call_id, tail=tail)
        lost = 0
        with catching_signals() as signals:  # Ctrl-C or SIGTERM ends following, quietly
            while signals.received is None:
                started = time.monotonic()
                for line in follower.poll():
                    _echo(line, as_json)
                if follower.lost > lost:
                    click.echo("essa: warning: lines were dropped (the executors' --log-size bounds) before they "
                               "could be read", err=True)
                    lost = follower.lost
                while signals.received is None and time.monotonic() - started < follower.interval:
                    time.sleep(0.05)


def _echo(line, as_json: bool) -> None:
    click.echo(json.dumps(line.as_dict(), ensure_ascii=False) if as_json else str(line))


__all__ = ["logs"]
