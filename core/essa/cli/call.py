"""``essa call``: call a deployed function, through :mod:`essa.api`."""

from __future__ import annotations

import base64
import sys
from typing import Any

import click

from essa.api import CONSISTENCY_LEVELS, ConsoleOutput
from essa.cli.options import (
    connection_options,
    limit_options,
    limits_and_grants,
    open_connection,
    refuse_limits_with_connect,
    split_endpoints,
)
from essa.cli.output import echo_json, write_trace
from essa.cli.signals import catching_signals, wait_unless_interrupted
from essa.errors import EssaError
from essa.state import codec


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
@click.option("--consistency", type=click.Choice(CONSISTENCY_LEVELS), default="default", show_default=True,
              help="What the call's (and its remote calls') state reads see: repeatable-read, one version of a "
              "key for the whole call tree; causal, every write that precedes them (README: \"Executor caches "
              "and consistency levels\").")
@click.option("--key", "keys", multiple=True, metavar="KEY",
              help="A state key the call will touch (repeatable): the scheduler prefers an executor that caches it.")
@connection_options
@limit_options
@click.pass_context
def call(ctx: click.Context, deployment, function, args, arg_types, result_type, as_json, trace_file, consistency,
         keys, connect, zenoh_config, timeout, **limit_flags) -> None:
    """Call FUNCTION of a deployment and print its result.

    An ARG is text, @FILE (the file's contents) or - (stdin). Without
    --args the one ARG's bytes are the call's arguments; with --args each ARG
    is encoded as its type. The result's bytes go to stdout as they are,
    unless --result decodes them. The function's own output (prints) goes to
    stderr. Example: essa call wc count_words --args string @book.txt --result u64
    """
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
            future = es.call_async(deployment, function, payload, output=output, trace=trace_file is not None,
                                   consistency=consistency, keys=keys)
            try:
                result = wait_unless_interrupted(future, signals)
            finally:
                if trace_file is not None and future.done() and not future.cancelled():
                    write_trace(future.spans(), trace_file)
    value = codec.decode(result_kind, result) if result_kind else result
    if as_json:
        echo_json({"deployment": spec, "function": function, "result": _json_value(value)})
    elif result_kind is None or isinstance(value, bytes):
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    elif isinstance(value, list):
        for item in value:
            click.echo(item)
    else:
        click.echo(value)


__all__ = ["call"]
