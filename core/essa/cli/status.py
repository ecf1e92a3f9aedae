"""``essa status``: a running cluster's scheduler and executors, through :mod:`essa.api`."""

from __future__ import annotations

import click

from essa.cli.options import cluster_options, open_cluster
from essa.cli.output import echo_json, json_option, print_table
from essa.util.units import format_bytes


@click.command()
@cluster_options
@json_option("Print the raw status as JSON.")
def status(connect, zenoh_config, as_json) -> None:
    """Show a running cluster: its scheduler and executors with their counters."""
    with open_cluster(connect, zenoh_config, timeout=3.0) as es:
        answers = es.status(complete_within=3.0)
    if as_json:
        echo_json(answers)
        return
    schedulers = [a for a in answers if a.get("role") == "scheduler"]
    executors = sorted((a for a in answers if a.get("role") == "executor"), key=lambda a: a["id"])
    for sched in schedulers:
        click.echo(f"scheduler {sched['id']}: placement {sched['placement']}\n"
                   f"  calls: {sched['in_flight']} in flight, {sched.get('unconfirmed', 0)} done but not confirmed "
                   f"by their callers, {sched['waiting']} waiting")
    in_flight = _in_flight(schedulers)
    rows = [(ex["id"], ex["engine"], str(ex["workers"]), str(ex["calls"]), str(ex["runs"]), str(ex["failures"]),
             str(ex.get("cancelled", "-")), str(ex.get("running", "-")),
             str(in_flight.get(ex["id"], "-")), str(len(ex["modules"])), _cache(ex.get("cache")))
            for ex in executors]
    headers = ("id", "engine", "workers", "calls", "runs", "failed", "cancelled", "running", "in flight", "modules",
               "cache")
    print_table(headers, rows, title="executors", right=headers[2:-1])


def _in_flight(schedulers: list[dict]) -> dict[str, int]:
    """Calls in flight per executor: each scheduler counts the calls it placed, so they add up."""
    total: dict[str, int] = {}
    for sched in schedulers:
        for executor, seen in sched["executors"].items():
            total[executor] = total.get(executor, 0) + seen["in_flight"]
    return total


def _cache(cache: object) -> str:
    """An executor's cache: entries, size, hit rate (``-`` without one)."""
    if not isinstance(cache, dict):
        return "-"
    reads = cache.get("hits", 0) + cache.get("misses", 0)
    hits = f", {100 * cache.get('hits', 0) / reads:.0f}% hits" if reads else ""
    return f"{cache.get('entries', 0)} keys, {format_bytes(cache.get('bytes', 0))}{hits}"


__all__ = ["status"]
