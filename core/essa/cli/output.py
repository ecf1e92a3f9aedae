"""What commands print beyond their own tables: JSON, errors (as a line or as JSON), traces, times for people."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any, Callable

import click

from essa.api import write_chrome_trace
from essa.errors import EssaError


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (sorted keys, text as it is)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


class ErrorFormat:
    """How this process reports its error: one line, or JSON once a command was given ``--json``."""

    json = False


def json_option(help: str) -> Callable:
    """The ``--json`` flag of a command: print JSON, and report an error as JSON on stderr too.

    An error is then ``{"error": LINE, "kind": KIND}`` (LINE is the line
    printed without ``--json``, KIND as :func:`essa.errors.kind_of` names it),
    with the same exit status.
    """

    def remember(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ErrorFormat.json = ErrorFormat.json or bool(value)
        return value

    return click.option("--json", "as_json", is_flag=True, callback=remember,
                        help=f"{help} Errors too: {{\"error\": ..., \"kind\": ...}} on stderr.")


def echo_error(line: str, kind: str) -> None:
    """Report the command's error on stderr: ``essa: error: LINE``, or its JSON after ``--json``."""
    if ErrorFormat.json:
        click.echo(json.dumps({"error": line, "kind": kind}, ensure_ascii=False), err=True)
    else:
        click.echo(f"essa: error: {line}", err=True)
    sys.stderr.flush()


def when(ns: int) -> str:
    """Nanoseconds since the epoch as local ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def write_trace(spans: list, path: str) -> None:
    """Write ``spans`` to ``path`` as Chrome trace JSON, saying so on stderr."""
    try:
        calls = write_chrome_trace(spans, path)
    except OSError as exc:
        raise EssaError(f"cannot write the trace to {path}: {exc.strerror}") from None
    click.echo(f"essa: wrote a trace of {calls} calls to {path}", err=True)



__all__ = ["ErrorFormat", "echo_error", "echo_json", "json_option", "when", "write_trace"]
