"""``essa dag create|ls|rm|call``: DAGs of deployed functions, through :mod:`essa.api`."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from essa.api import CONSISTENCY_LEVELS, ConsoleOutput
from essa.cli.call import echo_result, encode_args
from essa.cli.options import Settings, connection_options, open_connection
from essa.cli.output import echo_json, when
from essa.cli.signals import catching_signals, wait_unless_interrupted
from essa.errors import EssaError
from essa.state import codec


def _edge(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise EssaError(f"--edge {text!r} is not FROM:TO (as in wc.split:wc.count)")
    return a, b


@click.group()
def dag() -> None:
    """Compose deployed functions into DAGs and call them: create, ls, rm, call.

    A DAG's stages are DEPLOYMENT.FUNCTION (wc.split; wc@2.split pins a
    version), joined by edges FROM:TO. It needs exactly one stage without
    downstream stages (the sink): its result is the DAG's result. Sources get
    the call's arguments; every other stage gets its upstream stages'
    results, concatenated in the order of its edges. Each stage's result
    goes straight to the executor of the next: one call, no round trip per
    stage.
    """


@dag.command(name="create")
@click.argument("name")
@click.argument("stages", nargs=-1, required=True, metavar="DEPLOYMENT.FUNCTION...")
@click.option("--edge", "-e", "edges", multiple=True, metavar="FROM:TO",
              help="An edge from one stage to another; repeatable. Default: the stages in a chain, in order.")
@click.option("--json", "as_json", is_flag=True, help="Print the DAG as JSON.")
@connection_options
@click.pass_obj
def create(settings: Settings, name, stages, edges, as_json, connect, zenoh_config, timeout) -> None:
    """Register DAG NAME (replacing one of that name).

    Example: essa dag create pipeline wc.split wc.count wc.total (a chain);
    essa dag create fan t.split t.a t.b t.join -e t.split:t.a -e t.split:t.b -e t.a:t.join -e t.b:t.join
    """
    pairs = [_edge(e) for e in edges] if edges else list(zip(stages, stages[1:]))
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        created = es.register_dag(name, stages, pairs)
    if as_json:
        echo_json(created.as_dict())
        return
    click.echo(f"created DAG {created.name}: {len(created.functions)} stages, {len(created.edges)} edges, "
               f"sink {created.sink}")


@dag.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the DAGs as JSON.")
@connection_options
@click.pass_obj
def list_dags(settings: Settings, as_json, connect, zenoh_config, timeout) -> None:
    """List DAGs: name, stages, edges, sink, when created."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        dags = es.dags()
    if as_json:
        echo_json([d.as_dict() for d in dags])
        return
    if not dags:
        click.echo("no DAGs (create one with `essa dag create NAME DEPLOYMENT.FUNCTION...`)")
        return
    table = Table()
    for column in ("name", "stages", "edges", "sink", "created"):
        table.add_column(column, overflow="fold")
    for d in dags:
        table.add_row(d.name, ", ".join(d.functions), ", ".join(f"{a}:{b}" for a, b in d.edges), d.sink,
                      when(d.created))
    Console().print(table)


@dag.command(name="rm")
@click.argument("name")
@connection_options
@click.pass_obj
def remove(settings: Settings, name, connect, zenoh_config, timeout) -> None:
    """Remove DAG NAME (its deployments stay)."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        es.remove_dag(name)
    click.echo(f"removed DAG {name}")


@dag.command(name="call")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--args", "arg_types", metavar="TYPES",
              help="Encode the ARGs with bincode as these comma-separated types (as `essa call --args`).")
@click.option("--result", "result_type", metavar="TYPE", help="Decode the result as TYPE and print it.")
@click.option("--json", "as_json", is_flag=True, help="Print the DAG's name and result as JSON.")
@click.option("--consistency", type=click.Choice(CONSISTENCY_LEVELS),
              help="What every stage's (and its remote calls') state reads see: repeatable-read, one version of a "
              "key for the whole DAG call, on every executor; causal, every write that precedes them, the earlier "
              "stages' included (README: \"Executor caches and consistency levels\"). "
              "[default: each stage's deployment's]")
@connection_options
@click.pass_obj
def call(settings: Settings, name, args, arg_types, result_type, as_json, consistency, connect, zenoh_config,
         timeout) -> None:
    """Call DAG NAME and print the sink's result.

    ARGs as for `essa call`: text, @FILE or - (stdin), raw bytes unless
    --args gives their types. Example: essa dag call pipeline @book.txt --result u64
    """
    if result_type:
        codec.parse_types(result_type)  # a bad type fails before the call
    payload = encode_args(args, arg_types)
    output = ConsoleOutput(sys.stderr.buffer, sys.stderr.buffer)
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        with catching_signals() as signals:
            result = wait_unless_interrupted(es.call_dag_async(name, payload, output=output, consistency=consistency), signals)
    echo_result(result, result_type, as_json, dag=name)


__all__ = ["dag"]
