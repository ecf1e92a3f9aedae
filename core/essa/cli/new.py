"""``essa new``: a ready-to-build C, Rust or TypeScript project."""

from __future__ import annotations

import shlex

import click

from essa.cli.scaffold import LANGUAGES, describe, new_project


@click.command("new")
@click.argument("language", type=click.Choice(list(LANGUAGES)), metavar="c|rust|ts")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, metavar="DIR",
              help="Where to create the project's directory NAME.")
@click.option("--sdk", metavar="PATH",
              help="Rust and TypeScript: the essa SDK to depend on (Rust: a directory with essa-api/, such "
              "as a checkout's guest/rust; TypeScript: a checkout's guest/assemblyscript). Default: the one "
              "installed with essa.")
def new(language: str, name: str, directory: str, sdk: str | None) -> None:
    """Write a ready-to-build project NAME: a C, Rust or TypeScript function with a main.

    The project has the source, essa's SDK (C: a copy of essa.h; Rust: a path
    dependency; TypeScript (AssemblyScript): an npm dependency by path), a
    build.sh with the flags that give small modules, an essa.toml (for `essa
    build`, `essa deploy`, `essa dev`) and a README. It never overwrites: an
    existing NAME is refused.
    """
    path = new_project(language, name, directory, sdk)
    click.echo(f"created {path}/: {', '.join(describe(path))}")
    click.echo(f"build and run it:  cd {shlex.quote(str(path))} && essa build && essa run {name}.wasm")
    click.echo(f"deploy it as {name}: essa deploy; rebuild and redeploy at every change: essa dev")
    if language == "c":
        click.echo("(essa build needs ziglang beside essa: pip install ziglang; its first build compiles "
                   "wasi-libc for a couple of minutes)")
    elif language == "rust":
        click.echo("(essa build needs Debian's Rust packages, listed in README.md; its first build "
                   "compiles the dependencies for a minute or two)")
    else:
        click.echo("(essa build needs Node.js 20 or newer with npm; its first build runs npm install, "
                   "which fetches AssemblyScript from the npm registry)")



__all__ = ["new"]
