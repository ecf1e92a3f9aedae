"""``essa status``: a running cluster's scheduler and executors, through :mod:`essa.api`."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from essa import api
from essa.cli.options import split_endpoints, tls_options
from essa.cli.output import echo_json
from essa.util.units import format_bytes


@click.command()
@click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
              default=["tcp/127.0.0.1:7447"], show_default=True, help="The cluster's scheduler endpoint.")
@click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@tls_options
def status(connect, zenoh_config, as_json) -> None:
    """Show a running cluster: its scheduler and executors with their counters."""
    with api.connect(split_endpoints(connect), zenoh_config=zenoh_config, timeout=3.0) as es:
        answers = es.status(complete_within=3.0)
    if as_json:
        echo_json(answers)
        return
    schedulers = [a for a in answers if a.get("role") == "scheduler"]
    executors = sorted((a for a in answers if a.get("role") == "executor"), key=lambda a: a["id"])
    for sched in schedulers:
        click.echo(f"scheduler {sched['id']}: placement {sched['placement']}, "
                   f"{sched['in_flight']} calls in flight, {sched.get('unconfirmed', 0)} replies not confirmed by "
                   f"their callers yet, {sched['waiting']} waiting")
    table = Table(title="executors")
    for column in ("id", "engine", "workers", "calls", "runs", "failed", "cancelled", "running", "in flight", "modules",
                   "cache"):
        table.add_column(column)
    placed = {k: v for s in schedulers for k, v in s["executors"].items()}
    for ex in executors:
        table.add_row(ex["id"], ex["engine"], str(ex["workers"]), str(ex["calls"]), str(ex["runs"]),
                      str(ex["failures"]), str(ex.get("cancelled", "-")), str(ex.get("running", "-")),
                      str(placed.get(ex["id"], {}).get("in_flight", "-")), str(len(ex["modules"])),
                      _cache(ex.get("cache")))
    Console().print(table)


def _cache(cache: object) -> str:
    """An executor's cache: entries, size, hit rate (``-`` without one)."""
    if not isinstance(cache, dict):
        return "-"
    reads = cache.get("hits", 0) + cache.get("misses", 0)
    hits = f", {100 * cache.get('hits', 0) / reads:.0f}% hits" if reads else ""
    return f"{cache.get('entries', 0)} keys, {format_bytes(cache.get('bytes', 0))}{hits}"


__all__ = ["status"]
