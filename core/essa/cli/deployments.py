"""``essa deploy``, ``essa ls``, ``essa rm`` and ``essa functions``: deployments, through :mod:`essa.api`."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from essa.cli.options import Settings, connection_options, open_connection
from essa.cli.output import echo_json, json_option, when
from essa.util.units import format_bytes


@click.command()
@click.argument("module", metavar="FILE.wasm", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The deployment's name: a new version if it exists.")
@click.option("--signatures", metavar="FILE", type=click.Path(dir_okay=False),
              help="Signatures of the module's functions, in FILE's [functions.NAME] tables (an essa.toml; see "
              "docs/signatures.md): for a module built without the SDKs, or replacing the ones it declares.")
@json_option("Print the new version as JSON.")
@connection_options
@click.pass_obj
def deploy(settings: Settings, module, name, signatures, as_json, connect, zenoh_config, timeout) -> None:
    """Deploy FILE.wasm as NAME: store it, compile it, and record a new version.

    Call its functions with `essa call NAME FUNCTION`; NAME is its latest
    version, NAME@3 a pinned one. Its state lives in the namespace NAME,
    kept across calls, runs, restarts and redeploys. The signatures of its
    functions come from the module (the SDKs write them) or --signatures.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployment = es.deploy(module, name, signatures=signatures)
    if as_json:
        echo_json(deployment.as_dict())
        return
    head = f"deployed {deployment.spec}: module {deployment.module[:12]} ({format_bytes(deployment.size)})"
    if not deployment.functions:
        click.echo(f"{head}, no functions (only _start)")
        return
    typed = len(deployment.signatures)
    note = "" if not typed else " (with signatures)" if typed == len(deployment.functions) else \
        f" ({typed} with signatures)"
    click.echo(f"{head}, functions: {', '.join(deployment.functions)}{note}")


@click.command(name="ls")
@json_option("Print the deployments as JSON (with their functions' signatures).")
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
@json_option("Print the functions as a JSON list of {name, params, result} (params and result null: no signature).")
@connection_options
@click.pass_obj
def functions(settings: Settings, deployment, as_json, connect, zenoh_config, timeout) -> None:
    """List the functions of a deployment with their signatures, as `essa call` names them.

    `count_words(text: string) -> u64` takes a string and gives a u64; a
    function shown by its name alone has no signature: it takes and gives
    raw bytes.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        found = es.deployment(deployment)
    signatures = [found.signature(name) for name in found.functions]
    if as_json:
        echo_json([s.as_dict() if s is not None else {"name": name, "params": None, "result": None}
                   for name, s in zip(found.functions, signatures)])
        return
    for name, signature in zip(found.functions, signatures):
        click.echo(name if signature is None else str(signature))


__all__ = ["deploy", "functions", "list_deployments", "remove"]
