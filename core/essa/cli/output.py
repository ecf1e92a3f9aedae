"""What commands print beyond their own tables: JSON, traces, sizes and times for people."""

from __future__ import annotations

import datetime
import json
from typing import Any

import click

from essa.api import write_chrome_trace
from essa.errors import EssaError


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (sorted keys, text as it is)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


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



__all__ = ["echo_json", "when", "write_trace"]
