"""The ``essa`` commands of the service: deploy, ls, rm, functions, call, state.

Each is a thin user of the public Python API (:mod:`essa.api`): it connects
(embedded by default, a cluster with ``--connect``), does one thing, prints
the result for people or, with ``--json``, for scripts, and reports errors
in one line (the API's exception messages).
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from typing import Any

import click

from essa.cli.main import Settings, catching_signals, limit_options, limits_and_grants, refuse_limits_with_connect, split_endpoints, wait_unless_interrupted, write_trace
from essa.errors import EssaError
from essa.state.keys import quoted, shown
from essa.security.settings import tls_options, token_option

STATE_TYPES = {"lww": "Lww", "set": "Set", "ordered-set": "OrderedSet"}


def connection_options(fn):
    """``--connect``, ``--zenoh-config``, ``--timeout``, the TLS options and ``--token`` for commands that talk to essa."""
    fn = tls_options(token_option(fn))
    fn = click.option("--timeout", type=float, default=10.0, show_default=True,
                      help="Seconds to wait for the cluster's scheduler with --connect.")(fn)
    fn = click.option("--zenoh-config", envvar="ESSA_ZENOH_CONFIG", type=click.Path(exists=True, dir_okay=False),
                      help="A zenoh JSON5 config file for --connect (env ESSA_ZENOH_CONFIG).")(fn)
    fn = click.option("--connect", multiple=True, metavar="ENDPOINT", envvar="ESSA_CONNECT",
                      help="Use the cluster whose scheduler listens at ENDPOINT (e.g. tcp/127.0.0.1:7447) "
                      "instead of this machine's embedded store; repeatable (env ESSA_CONNECT).")(fn)
    return fn


def open_connection(settings: Settings, connect, zenoh_config, timeout, max_message_bytes=None, **embedded):
    """A :class:`essa.api.Connection`: to the cluster at ``connect``, else embedded with the global options.

    ``max_message_bytes`` is the cluster client's message size limit (embedded: ``embedded["limits"]`` holds it).
    """
    from essa.api import connection as api

    endpoints = split_endpoints(connect)
    if endpoints:
        return api.connect(endpoints, timeout=timeout, zenoh_config=zenoh_config, max_message_bytes=max_message_bytes)
    return api.connect(engine=settings.engine, store=settings.store, store_options=settings.store_options, **embedded)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def _size(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


# -- deployments ----------------------------------------------------------------------


@click.command()
@click.argument("module", metavar="FILE.wasm", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The deployment's name: a new version if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@connection_options
@click.pass_obj
def deploy(settings: Settings, module, name, as_json, connect, zenoh_config, timeout) -> None:
    """Deploy FILE.wasm as NAME: store it, compile it, and record a new version.

    Call its functions with `essa call NAME FUNCTION`; NAME is its latest
    version, NAME@3 a pinned one. Its state lives in the namespace NAME,
    kept across calls, runs, restarts and redeploys.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployment = es.deploy(module, name)
    if as_json:
        _echo_json(deployment.as_dict())
        return
    functions = ", ".join(deployment.functions) or "none"
    click.echo(f"deployed {deployment.spec}: module {deployment.module[:12]} ({_size(deployment.size)}), "
               f"functions: {functions}")


@click.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the deployments as JSON.")
@connection_options
@click.pass_obj
def list_deployments(settings: Settings, as_json, connect, zenoh_config, timeout) -> None:
    """List deployments: name, latest version, functions, size, when deployed."""
    from rich.console import Console
    from rich.table import Table

    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployments = es.deployments()
    if as_json:
        _echo_json([d.as_dict() for d in deployments])
        return
    if not deployments:
        click.echo("no deployments (deploy one with `essa deploy FILE.wasm --name NAME`)")
        return
    table = Table()
    for column in ("name", "version", "functions", "size", "deployed"):
        table.add_column(column, overflow="fold")
    for d in deployments:
        table.add_row(d.name, str(d.version), ", ".join(d.functions), _size(d.size), _when(d.created))
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
        _echo_json(names)
    else:
        for name in names:
            click.echo(name)


# -- calls ----------------------------------------------------------------------------


def _read_arg(arg: str, as_text: bool) -> Any:
    """An argument as given: ``-`` is stdin, ``@PATH`` a file's contents, anything else itself."""
    if arg == "-":
        data = sys.stdin.buffer.read()
    elif arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as f:
                data = f.read()
        except OSError as exc:
            raise EssaError(f"{arg[1:]}: cannot read: {exc.strerror}") from None
    else:
        return arg if as_text else arg.encode()
    if not as_text:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EssaError(f"{'stdin' if arg == '-' else arg[1:]}: not UTF-8 text") from None


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    return value


@click.command()
@click.argument("deployment", metavar="NAME[@VERSION]")
@click.argument("function")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--args", "arg_types", metavar="TYPES",
              help="Encode the ARGs with bincode as these comma-separated types, as functions written with "
              "#[essa_wrap] take them: string, bytes, strings (a,b,c), u8..u64, i8..i64, bool, f32, f64. "
              "Without it, the one ARG is passed as raw bytes.")
@click.option("--result", "result_type", metavar="TYPE",
              help="Decode the result as TYPE (same types) and print it. Default: write the raw bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print deployment, function and result as JSON.")
@click.option("--trace", "trace_file", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Write the call's tree of remote calls to FILE as Chrome trace-event JSON.")
@connection_options
@limit_options
@click.pass_context
def call(ctx: click.Context, deployment, function, args, arg_types, result_type, as_json, trace_file, connect,
         zenoh_config, timeout, **limit_flags) -> None:
    """Call FUNCTION of a deployment and print its result.

    An ARG is text, @FILE (the file's contents) or - (stdin). Without
    --args the one ARG's bytes are the call's arguments; with --args each ARG
    is encoded as its type. The result's bytes go to stdout as they are,
    unless --result decodes them. The function's own output (prints) goes to
    stderr. Example: essa call wc count_words --args string @book.txt --result u64
    """
    from essa.state import codec
    from essa.cluster.client import ConsoleOutput

    types = codec.parse_types(arg_types) if arg_types else None
    result_kind = codec.parse_types(result_type)[0] if result_type else None
    if types is None:
        if len(args) > 1:
            raise EssaError(f"{len(args)} ARGs given: pass them with --args TYPES (or one ARG of raw bytes)")
        payload = _read_arg(args[0], as_text=False) if args else b""
    else:
        values = [_read_arg(a, as_text=t != "bytes") for a, t in zip(args, types)] if len(args) == len(types) else args
        payload = codec.encode(types, values)
    embedded = {}
    if split_endpoints(connect):
        refuse_limits_with_connect(ctx)
    else:
        limits, grants = limits_and_grants(**limit_flags)
        embedded = {"limits": limits, "grants": grants}
    output = ConsoleOutput(sys.stderr.buffer, sys.stderr.buffer)
    with open_connection(ctx.obj, connect, zenoh_config, timeout, **embedded) as es:
        spec = es.deployment(deployment).spec
        with catching_signals() as signals:
            future = es.call_async(deployment, function, payload, output=output, trace=trace_file is not None)
            try:
                result = wait_unless_interrupted(future, signals)
            finally:
                if trace_file is not None and future.done() and not future.cancelled():
                    write_trace(future.spans(), trace_file)
    value = codec.decode(result_kind, result) if result_kind else result
    if as_json:
        _echo_json({"deployment": spec, "function": function, "result": _json_value(value)})
    elif result_kind is None or isinstance(value, bytes):
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    elif isinstance(value, list):
        for item in value:
            click.echo(item)
    else:
        click.echo(value)


# -- state ----------------------------------------------------------------------------


def namespace_options(fn):
    fn = click.option("--namespace", "-n", metavar="NS", help="A namespace (as given to `essa run --namespace`).")(fn)
    fn = click.option("--deployment", "-d", metavar="NAME", help="The state of deployment NAME.")(fn)
    return fn


def _namespace(es, deployment: str | None, namespace: str | None) -> str:
    """The namespace the options name (a deployment's is its name; it must exist)."""
    if (deployment is None) == (namespace is None):
        raise EssaError("name the state with --deployment NAME or --namespace NS (one of them)")
    if deployment is not None:
        return es.deployment(deployment).namespace
    return namespace


@click.group()
def state() -> None:
    """Read and write the state of a deployment or namespace: ls, get, put, rm.

    Keys are those guests use with essa_put_lattice; values are lattices,
    and `put` merges (a value of another lattice type is refused).
    """


@state.command(name="ls")
@click.argument("prefix", default="")
@namespace_options
@click.option("--json", "as_json", is_flag=True, help="Print the keys as a JSON list.")
@connection_options
@click.pass_obj
def state_ls(settings: Settings, prefix, deployment, namespace, as_json, connect, zenoh_config, timeout) -> None:
    """List the keys (starting with PREFIX), one a line.

    A key that is empty, has a line break or another unprintable character,
    leading or trailing spaces, or starts with a double quote is printed as a
    JSON string ("two\\nlines"); --json prints a JSON list of the keys.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        keys = es.state(ns).keys(prefix)
    if as_json:
        _echo_json(list(keys))
    else:
        for key in keys:
            click.echo(shown(key))
    if keys.unlisted:
        click.echo(f"essa: warning: {keys.unlisted} keys of namespace {ns} are not listed: "
                   f"{keys.why or 'the store cannot name them'}", err=True)


@state.command(name="get")
@click.argument("key")
@namespace_options
@click.option("--json", "as_json", is_flag=True, help="Print the value's JSON view.")
@connection_options
@click.pass_obj
def state_get(settings: Settings, key, deployment, namespace, as_json, connect, zenoh_config, timeout) -> None:
    """Print the value stored under KEY."""
    from essa.state.views import to_json, to_text

    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        value = es.state(ns).get(key)
    if value is None:
        raise EssaError(f"no key {quoted(key)} in namespace {ns}")
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False) if as_json else to_text(value))


@state.command(name="put")
@click.argument("key")
@click.argument("values", nargs=-1, metavar="[VALUE]...")
@namespace_options
@click.option("--type", "kind", type=click.Choice(sorted(STATE_TYPES)), default="lww", show_default=True,
              help="The lattice to merge: lww (one VALUE, stamped now), set or ordered-set (the VALUEs).")
@click.option("--json", "as_json", metavar="JSON", help="Merge this JSON view of a lattice instead (see docs).")
@connection_options
@click.pass_obj
def state_put(settings: Settings, key, values, deployment, namespace, kind, as_json, connect, zenoh_config,
              timeout) -> None:
    """Merge a value into KEY: essa state put -d wc vocab --type set apple pear."""
    from essa.state.lattice import LwwLattice, OrderedSetLattice, SetLattice
    from essa.state.views import from_json, to_text

    if as_json is not None:
        if values:
            raise EssaError("give either VALUEs or --json, not both")
        try:
            value = from_json(json.loads(as_json))
        except ValueError as exc:
            raise EssaError(f"--json: {exc}") from None
    elif kind == "lww":
        if len(values) != 1:
            raise EssaError(f"an lww value is one VALUE ({len(values)} given)")
        value = LwwLattice.now(values[0].encode())
    else:
        value = (SetLattice if kind == "set" else OrderedSetLattice)(v.encode() for v in values)
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        st = es.state(_namespace(es, deployment, namespace))
        st.merge(key, value)
        merged = st.get(key)
    click.echo(to_text(merged) if merged is not None else "merged")


@state.command(name="rm")
@click.argument("key")
@namespace_options
@connection_options
@click.pass_obj
def state_rm(settings: Settings, key, deployment, namespace, connect, zenoh_config, timeout) -> None:
    """Delete KEY and its value."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        if not es.state(ns).delete(key):
            raise EssaError(f"no key {quoted(key)} in namespace {ns}")
    click.echo(f"deleted {shown(key)} from namespace {ns}")


def add_service_commands(group: click.Group) -> None:
    """Add the service commands to the ``essa`` command group."""
    for command in (deploy, list_deployments, remove, functions, call, state):
        group.add_command(command)


__all__ = ["add_service_commands", "open_connection"]
