"""``essa build``: run a project's build command (see :mod:`essa.api.project`), and check what it made."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from essa.api.project import Built, Project, open_project
from essa.util.units import format_bytes


def shown_path(path: Path) -> str:
    """``path`` relative to the current directory (``../hello.wasm`` from a project's subdirectory)."""
    return os.path.relpath(path)


def describe_build(project: Project, built: Built) -> str:
    return f"built {shown_path(built.path)} ({format_bytes(built.size)}) in {built.seconds:.1f} s"


@click.command()
def build() -> None:
    """Build the project: run the build command of its essa.toml (here or in a parent directory).

    The command runs in the project's directory, with $PYTHON set to the
    Python essa runs on (C projects build with its ziglang); then the output
    must be a Wasm module. A failed build exits with status 1, in one line
    after the command's own output.
    """
    project = open_project()
    click.echo(f"building {project.name}: {project.command or '(no command)'}"
               f"{'' if project.directory == Path.cwd() else f' in {project.directory}'}", err=True)
    click.echo(describe_build(project, project.build()))


def build_if_needed(project: Project, build: bool | None) -> Built | None:
    """Build ``project`` when asked (``build``), or, with ``None``, when its output is older than its sources.

    The command's output goes to stderr (stdout may be JSON); what was built is said there too.
    """
    if build is False or (build is None and not project.needs_build()):
        return None
    if project.command is None:
        return None  # built by other means: its output is what it is
    click.echo(f"building {project.name}: {project.command}", err=True)
    sys.stderr.flush()
    built = project.build(output=sys.stderr)
    click.echo(describe_build(project, built), err=True)
    return built


__all__ = ["build", "build_if_needed", "describe_build", "shown_path"]
