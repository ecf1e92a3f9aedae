"""``essa deploy``, ``essa ls``, ``essa rm`` and ``essa functions``: deployments, through :mod:`essa.api`."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from essa.api import CONSISTENCY_LEVELS
from essa.cli.options import Settings, connection_options, open_connection
from essa.cli.output import echo_json, when
from essa.util.units import format_bytes


@click.command()
@click.argument("module", metavar="FILE.wasm", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The deployment's name: a new version if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.option("--consistency", type=click.Choice(CONSISTENCY_LEVELS), default="default", show_default=True,
              help="The consistency level of this version's calls that name none (`essa call --consistency`).")
@connection_options
@click.pass_obj
def deploy(settings: Settings, module, name, as_json, consistency, connect, zenoh_config, timeout) -> None:
    """Deploy FILE.wasm as NAME: store it, compile it, and record a new version.

    Call its functions with `essa call NAME FUNCTION`; NAME is its latest
    version, NAME@3 a pinned one. Its state lives in the namespace NAME,
    kept across calls, runs, restarts and redeploys.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployment = es.deploy(module, name, consistency=consistency)
    if as_json:
        echo_json(deployment.as_dict())
        return
    functions = ", ".join(deployment.functions) or "none"
    click.echo(f"deployed {deployment.spec}: module {deployment.module[:12]} ({format_bytes(deployment.size)}), "
               f"functions: {functions}"
               + (f"; consistency {deployment.consistency}" if deployment.consistency != "default" else ""))


@click.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the deployments as JSON.")
@connection_options
@click.pass_obj
def list_deployments(settings: Settings, as_json, connect, zenoh_config, timeout) -> None:
    """List deployments: name, latest version, functions, size, when deployed."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployments = es.deployments()
    if as_json:
        echo_json([d.as_dict() for d in deployments])
        return
    if not deployments:
        click.echo("no deployments (deploy one with `essa deploy FILE.wasm --name NAME`)")
        return
    table = Table()
    for column in ("name", "version", "functions", "size", "deployed"):
        table.add_column(column, overflow="fold")
    for d in deployments:
        table.add_row(d.name, str(d.version), ", ".join(d.functions), format_bytes(d.size), when(d.created))
    Console().print(table)


@click.command(name="rm")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the deployment's state (every key of its namespace).")
@connection_options
@click.pass_obj
def remove(settings: Settings, name, purge, connect, zenoh_config, timeout) -> None:
    """Remove deployment NAME (every version). Its state stays unless --purge."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        versions = len(es.versions(name))
        purged = es.remove(name, purge=purge)
    what = f"{versions} version{'s' if versions != 1 else ''}"
    if purge:
        click.echo(f"removed {name} ({what}) and {purged} keys of its state")
    else:
        click.echo(f"removed {name} ({what}); its state stays in namespace {name} (`essa rm --purge` deletes it)")


@click.command()
@click.argument("deployment", metavar="NAME[@VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the functions as a JSON list.")
@connection_options
@click.pass_obj
def functions(settings: Settings, deployment, as_json, connect, zenoh_config, timeout) -> None:
    """List the functions of a deployment, as `essa call` names them."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        names = es.functions(deployment)
    if as_json:
        echo_json(names)
    else:
        for name in names:
            click.echo(name)


__all__ = ["deploy", "functions", "list_deployments", "remove"]
