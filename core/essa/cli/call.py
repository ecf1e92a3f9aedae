"""``essa call``: call a deployed function, through :mod:`essa.api`."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import click

from essa.api import CONSISTENCY_LEVELS, ConsoleOutput, Signature
from essa.cli.options import (
    connection_options,
    limit_options,
    limits_and_grants,
    open_connection,
    refuse_limits_on_a_cluster,
)
from essa.cli.output import echo_json, json_option, write_trace
from essa.cli.signals import catching_signals, wait_unless_interrupted
from essa.errors import ArgumentError, EssaError
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


def _typed_args(signature: Signature, args: tuple[str, ...]) -> bytes:
    """The argument bytes of ARGs given to a function with a signature (``@FILE`` and ``-`` read first)."""
    texts = [_read_arg(a, as_text=False) if a == "-" or a.startswith("@") else a for a in args]
    return signature.encode_texts(texts)


def _json_value(value: Any) -> Any:
    """A result of a call without a signature or --result, for JSON: bytes as ``{"base64": ...}``."""
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def _show(value: Any) -> None:
    """A decoded result for people: text as it is, numbers and bools as JSON spells them, the rest as JSON."""
    if isinstance(value, str):
        click.echo(value)
    elif isinstance(value, (bytes, bytearray)):
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        click.echo(json.dumps(value, ensure_ascii=False))


def encode_args(args: tuple[str, ...], arg_types: str | None) -> bytes:
    """A call's argument bytes from its ARGs: the one ARG's bytes, or each ARG encoded as ``arg_types``."""
    types = codec.parse_types(arg_types) if arg_types else None
    if types is None:
        if len(args) > 1:
            raise EssaError(f"{len(args)} ARGs given: pass them with --args TYPES (or one ARG of raw bytes)")
        return _read_arg(args[0], as_text=False) if args else b""
    values = [_read_arg(a, as_text=t != "bytes") for a, t in zip(args, types)] if len(args) == len(types) else args
    return codec.encode(types, values)


def echo_result(result: bytes, result_type: str | None, as_json: bool, **fields: Any) -> None:
    """Print a call's result: raw bytes, decoded as ``result_type``, or JSON with ``fields``."""
    result_kind = codec.parse_types(result_type)[0] if result_type else None
    value = codec.decode(result_kind, result) if result_kind else result
    if as_json:
        echo_json({**fields, "result": _json_value(value)})
    elif result_kind is None or isinstance(value, bytes):
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    elif isinstance(value, list):
        for item in value:
            click.echo(item)
    else:
        click.echo(value)


@click.command()
@click.argument("deployment", metavar="NAME[@VERSION]")
@click.argument("function")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--args", "arg_types", metavar="TYPES",
              help="For a function without a signature: encode the ARGs with bincode as these comma-separated "
              "types, as #[essa_wrap] takes them: string, bytes, strings (a,b,c), u8..u64, i8..i64, bool, f32, f64, "
              "list<T>, ... Without it (and without a signature), the one ARG is passed as raw bytes.")
@click.option("--result", "result_type", metavar="TYPE",
              help="Decode the result as TYPE (same types) and print it, instead of the signature's result type; "
              "without either, the raw bytes are written.")
@json_option("Print {deployment, function, result} as JSON (bytes as {\"base64\": ...}).")
@click.option("--trace", "trace_file", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Write the call's tree of remote calls to FILE as Chrome trace-event JSON.")
@click.option("--consistency", type=click.Choice(CONSISTENCY_LEVELS),
              help="What the call's (and its remote calls') state reads see: repeatable-read, one version of a "
              "key for the whole call tree; causal, every write that precedes them (README: \"Executor caches "
              "and consistency levels\"). [default: the deployment's, else default]")
@click.option("--key", "keys", multiple=True, metavar="KEY",
              help="A state key the call will touch (repeatable): the scheduler prefers an executor that caches it.")
@connection_options
@limit_options
@click.pass_context
def call(ctx: click.Context, deployment, function, args, arg_types, result_type, as_json, trace_file, consistency,
         keys, connect, zenoh_config, timeout, **limit_flags) -> None:
    """Call FUNCTION of a deployment and print its result.

    A function with a signature (`essa functions NAME` shows them) takes one
    ARG per parameter: a string as it is, a number or bool as spelled, bytes
    as the text's UTF-8, lists, tuples, maps and options as JSON; its result
    is printed as text (a string) or JSON. An ARG is also @FILE (the file's
    contents) or - (stdin). Example: essa call wc count_words @book.txt

    A function without one takes the one ARG's bytes as its arguments and
    writes its result's bytes to stdout, unless --args and --result encode and
    decode them. The function's own output (prints) goes to stderr.
    """
    types = codec.parse_types(arg_types) if arg_types else None
    result_kind = codec.parse_types(result_type)[0] if result_type else None
    embedded = {}
    if not refuse_limits_on_a_cluster(ctx, connect):
        limits, grants = limits_and_grants(**limit_flags)
        embedded = {"limits": limits, "grants": grants}
    output = ConsoleOutput(sys.stderr.buffer, sys.stderr.buffer)
    with open_connection(ctx.obj, connect, zenoh_config, timeout, **embedded) as es:
        target = es.deployment(deployment)
        target.check_function(function)
        signature = None if types is not None else target.signature(function)
        if signature is not None:
            payload = _typed_args(signature, args)
        elif types is None:
            if len(args) > 1:
                raise ArgumentError(f"{function} has no signature, so it takes one ARG of raw bytes, not "
                                    f"{len(args)} (or pass --args TYPES to encode them)")
            payload = _read_arg(args[0], as_text=False) if args else b""
        else:
            values = [_read_arg(a, as_text=t != "bytes") for a, t in zip(args, types)] if len(args) == len(types) else args
            payload = codec.encode(types, values)
        with catching_signals() as signals:
            # Pinned to the version resolved above: the signature that encoded the ARGs is that version's.
            future = es.call_async(target.spec, function, payload, output=output, trace=trace_file is not None,
                                   consistency=consistency, keys=keys)
            try:
                result = wait_unless_interrupted(future, signals)
            finally:
                if trace_file is not None and future.done() and not future.cancelled():
                    write_trace(future.spans(), trace_file)
    if result_kind is not None:
        value = codec.decode(result_kind, result)
    elif signature is not None:
        value = signature.decode_result(result)
    else:
        value = result
    if as_json:
        if signature is not None and result_kind is None:
            value = signature.result_json(value)
        echo_json({"deployment": target.spec, "function": function, "result": _json_value(value)})
    elif result_kind is None and signature is None:
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    elif result_type is not None and result_type.strip() == "strings":  # one per line, as before
        for item in value:
            click.echo(item)
    else:
        _show(value)


__all__ = ["call", "echo_result", "encode_args"]
