"""What commands print beyond their own tables: JSON, errors (as a line or as JSON), traces, times for people."""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any, Callable, Sequence

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from essa.api import write_chrome_trace
from essa.errors import EssaError

#: Spaces between two columns of a table.
GAP = 2
#: A column of long values (not its header) may be folded down to this many characters.
NARROWEST = 8


def terminal_width(console: Console) -> int | None:
    """The width tables must fit: the terminal's (or ``$COLUMNS``); ``None`` when printing to a pipe or file."""
    return console.width if console.is_terminal or os.environ.get("COLUMNS") else None


def fitted_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None,
                 title: str | None = None, right: Sequence[str] = ()) -> RenderableType:
    """A table of ``rows`` no wider than ``width`` (``None``: any width), headers whole.

    Columns of long values fold their values first (never a header word);
    multi-word headers wrap between words. If even that does not fit, each
    row is printed as a block of ``header: value`` lines. ``right`` names
    the columns justified right (numbers).
    """
    natural = [max([len(h), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(headers)]
    longest_values = [max([0, *(len(str(r[i])) for r in rows)]) for i in range(len(headers))]
    least = [max([min(v, NARROWEST), *(len(word) for word in h.split())]) for v, h in zip(longest_values, headers)]
    widths = list(natural)
    gaps = GAP * (len(headers) - 1)
    if width is not None and sum(least) + gaps > width:
        return _records(headers, rows, title)
    while width is not None and sum(widths) + gaps > width:
        i = max(range(len(widths)), key=lambda k: widths[k] - least[k])
        widths[i] -= 1
    table = Table(title=title, title_justify="left", title_style="bold", box=None, header_style="bold underline",
                  pad_edge=False, padding=(0, GAP, 0, 0), collapse_padding=True)
    for header, column_width in zip(headers, widths):
        table.add_column(header, width=column_width, overflow="fold",
                         justify="right" if header in right else "left")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def _records(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None) -> RenderableType:
    """Rows as blocks of ``header: value`` lines, for a terminal too narrow for their table."""
    key = max(len(h) for h in headers) + 1
    lines = [title] if title else []
    for row in rows:
        lines += [f"{headers[0]} {row[0]}"] + [f"  {h + ':':<{key}} {v}" for h, v in zip(headers[1:], row[1:])]
    return Text("\n".join(lines))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
                right: Sequence[str] = ()) -> None:
    """Print :func:`fitted_table` to stdout, fitted to the terminal."""
    console = Console()
    width = terminal_width(console)
    table = fitted_table(headers, rows, width, title, right)
    Console(width=width or 10_000).print(table)


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



__all__ = ["ErrorFormat", "echo_error", "echo_json", "fitted_table", "json_option", "print_table", "terminal_width", "when",
           "write_trace"]
