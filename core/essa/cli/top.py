"""``essa top``: a live view of a cluster in the terminal.

Every second it asks the cluster's scheduler and executors for their status
(:meth:`essa.api.Connection.status`, as ``essa status`` does) and shows each executor's calls
per second (from the change since the last frame), p50/p99 run time of its
recent calls, calls running and in flight, failures, cancellations and
modules loaded, then the busiest functions. ``q`` or Ctrl-C quits.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from typing import Any, Iterator

import click
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from essa import api
from essa.cli.options import cluster_options, open_cluster
from essa.cli.output import fitted_table, terminal_width

#: Rows of the busiest-functions table.
TOP_FUNCTIONS = 10


class Snapshot:
    """One status reading of a cluster, and the rates since the previous one."""

    def __init__(self, answers: list[dict], previous: "Snapshot | None", taken: float) -> None:
        self.taken = taken
        self.schedulers = [a for a in answers if a.get("role") == "scheduler"]
        self.executors = sorted((a for a in answers if a.get("role") == "executor"), key=lambda a: str(a.get("id")))
        elapsed = taken - previous.taken if previous else 0.0
        before = {e.get("id"): e for e in previous.executors} if previous else {}
        self.rates: dict[str, float] = {}
        self.function_rates: dict[str, float] = {}
        for executor in self.executors:
            old = before.get(executor.get("id"))
            served = _int(executor.get("calls")) + _int(executor.get("runs"))
            if old is not None and elapsed > 0:
                self.rates[executor["id"]] = max(0.0, (served - _int(old.get("calls")) - _int(old.get("runs"))) / elapsed)
                old_functions = old.get("by_function") or {}
                for name, count in (executor.get("by_function") or {}).items():
                    delta = _int(count) - _int(old_functions.get(name))
                    shown = name.removeprefix("__essa_wrapper__")
                    self.function_rates[shown] = self.function_rates.get(shown, 0.0) + max(0, delta) / elapsed

    def render(self, endpoint: str, width: int | None = None) -> Group:
        """The frame to show, its tables fitted to ``width`` characters (``None``: any width)."""
        in_flight = {k: v for s in self.schedulers for k, v in (s.get("executors") or {}).items()}
        head = Text(f"essa top: {endpoint}, {len(self.executors)} executors", style="bold")
        for s in self.schedulers:
            head.append(f"\nscheduler {s.get('id')}: calls {s.get('in_flight')} in flight, "
                        f"{s.get('unconfirmed', 0)} unconfirmed, {s.get('waiting')} waiting for an executor")
        headers = ("executor", "engine", "calls/s", "p50 ms", "p99 ms", "running", "in flight", "failed",
                   "cancelled", "modules")
        rows = []
        for e in self.executors:
            latency = e.get("latency_ms") or {}
            rate = self.rates.get(e.get("id"))
            rows.append((str(e.get("id")), str(e.get("engine")), "-" if rate is None else f"{rate:.1f}",
                         _ms(latency.get("p50")), _ms(latency.get("p99")), str(e.get("running", "-")),
                         str((in_flight.get(e.get("id")) or {}).get("in_flight", "-")), str(e.get("failures", "-")),
                         str(e.get("cancelled", "-")), str(len(e.get("modules") or ()))))
        table = fitted_table(headers, rows, width, title="executors", right=headers[2:])
        functions = sorted(self.function_rates.items(), key=lambda item: -item[1])[:TOP_FUNCTIONS]
        busiest = fitted_table(("function", "calls/s"), [(name, f"{rate:.1f}") for name, rate in functions], width,
                               title="busiest functions", right=("calls/s",))
        return Group(head, table, busiest, Text("q or Ctrl-C quits", style="dim"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.2f}"


def read_status(connection: api.Connection) -> list[dict]:
    """The status answers of every scheduler and executor that answers within a second."""
    return connection.status(timeout=1.0)


@contextlib.contextmanager
def keypresses() -> Iterator[callable]:
    """Read single keys from a terminal's stdin without waiting for Enter (a no-op elsewhere)."""
    if not sys.stdin.isatty():
        yield lambda: None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def key() -> str | None:
        if select.select([fd], [], [], 0)[0]:
            return os.read(fd, 1).decode(errors="replace")
        return None

    try:
        yield key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(connection: api.Connection, endpoint: str, interval: float = 1.0, once: bool = False) -> None:
    """Show the live view until ``q`` or Ctrl-C (or one frame, with ``once``)."""
    console = Console()
    previous = Snapshot(read_status(connection), None, time.monotonic())
    if once:
        time.sleep(interval)
        width = terminal_width(console)
        frame = Snapshot(read_status(connection), previous, time.monotonic()).render(endpoint, width)
        Console(width=width or 10_000).print(frame)
        return
    with keypresses() as key, Live(previous.render(endpoint, console.width), console=console, screen=False,
                                   auto_refresh=False) as live:
        next_frame = time.monotonic() + interval
        while True:
            pressed = key()
            if pressed in ("q", "Q"):
                return
            if time.monotonic() >= next_frame:
                previous = Snapshot(read_status(connection), previous, time.monotonic())
                live.update(previous.render(endpoint, console.width), refresh=True)
                next_frame = time.monotonic() + interval
            time.sleep(0.05)


@click.command()
@cluster_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between two frames.")
@click.option("--once", is_flag=True, help="Print one frame (after one interval) and exit.")
def top(connect, zenoh_config, interval, once) -> None:
    """A live view of a cluster: executors with calls/s, p50/p99, running, failures; the busiest functions.

    Press q or Ctrl-C to quit.
    """
    with open_cluster(connect, zenoh_config, timeout=10) as es:
        try:
            run(es, es.where, interval, once)
        except KeyboardInterrupt:
            pass



__all__ = ["Snapshot", "run", "top"]
