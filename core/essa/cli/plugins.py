"""``essa plugins``: what is installed, and what each plugin provides."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from essa.cli.output import echo_json, json_option
from essa.plugins import get_plugin_manager


@click.command()
@json_option("Print the plugins as JSON: name, distribution, version, provides, error, unavailable.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their versions and what each provides."""
    manager = get_plugin_manager()
    if as_json:
        echo_json([{"name": info.name, "distribution": info.distribution, "version": info.version,
                    "provides": list(info.provides), "error": info.error or None,
                    "unavailable": list(info.unavailable)} for info in manager.plugins])
        return
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



__all__ = ["plugins"]
