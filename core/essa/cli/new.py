"""``essa new``: a ready-to-build C or Rust project."""

from __future__ import annotations

import shlex

import click

from essa.cli.scaffold import describe, new_project


@click.command("new")
@click.argument("language", type=click.Choice(["c", "rust"]), metavar="c|rust")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, metavar="DIR",
              help="Where to create the project's directory NAME.")
@click.option("--sdk", metavar="PATH",
              help="Rust only: the essa Rust SDK to depend on (a directory with essa-api/, such as a "
              "checkout's guest/rust). Default: the one installed with essa.")
def new(language: str, name: str, directory: str, sdk: str | None) -> None:
    """Write a ready-to-build project NAME: a C or Rust function with a main.

    The project has the source, essa's SDK (C: a copy of essa.h; Rust: a path
    dependency), a build.sh with the flags that give small modules, an
    essa.toml (for `essa build`, `essa deploy`, `essa dev`) and a README. It
    never overwrites: an existing NAME is refused.
    """
    path = new_project(language, name, directory, sdk)
    click.echo(f"created {path}/: {', '.join(describe(path))}")
    click.echo(f"build and run it:  cd {shlex.quote(str(path))} && essa build && essa run {name}.wasm")
    click.echo(f"deploy it as {name}: essa deploy; rebuild and redeploy at every change: essa dev")
    if language == "c":
        click.echo("(essa build needs ziglang beside essa: pip install ziglang; its first build compiles "
                   "wasi-libc for a couple of minutes)")
    else:
        click.echo("(essa build needs Debian's Rust packages, listed in README.md; its first build "
                   "compiles the dependencies for a minute or two)")



__all__ = ["new"]
