"""The ``essa`` command line."""

from __future__ import annotations

import logging
import os
import sys

import click

from . import __version__
from .errors import EssaError
from .plugins import DEFAULTS, get_plugin_manager


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        for item in pair.split(","):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--store-option")
            options[key.strip()] = value.strip()
    return options


class Settings:
    """Global options, shared by every subcommand through the click context."""

    def __init__(self, engine: str, store: str, store_options: dict[str, str]) -> None:
        self.engine = engine
        self.store = store
        self.store_options = store_options


def _names(kind: str) -> str:
    registry = getattr(get_plugin_manager(), kind)
    return ", ".join(registry.names()) or "none installed"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine",
    envvar="ESSA_ENGINE",
    default=DEFAULTS["engine"],
    show_default=True,
    help="Wasm engine to run modules with (env ESSA_ENGINE). `essa plugins` lists the installed ones.",
)
@click.option(
    "--store",
    envvar="ESSA_STORE",
    default=DEFAULTS["store"],
    show_default=True,
    help="Key-value store for state and compiled modules (env ESSA_STORE).",
)
@click.option(
    "--store-option",
    "store_options",
    multiple=True,
    metavar="KEY=VALUE",
    envvar="ESSA_STORE_OPTIONS",
    help="A store setting, e.g. path=/data/essa for lmdb; repeatable, or comma-separated in ESSA_STORE_OPTIONS.",
)
@click.option("-v", "--verbose", count=True, help="Log what essa does (-vv for debug detail).")
@click.version_option(__version__, prog_name="essa")
@click.pass_context
def cli(ctx: click.Context, engine: str, store: str, store_options: tuple[str, ...], verbose: int) -> None:
    """essa runs WebAssembly functions that call each other and share lattice state.

    Quick start: `essa run examples/test-function.wasm` runs a module with an
    embedded scheduler, executors and store; nothing to start first.
    """
    if isinstance(store_options, str):  # from the environment variable
        store_options = (store_options,)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="essa: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Settings(engine, store, _parse_options(store_options))


@cli.command()
@click.argument("module", metavar="FILE.wasm")
@click.option(
    "--namespace",
    metavar="NAME",
    help="State namespace: runs that name the same namespace share their keys. Default: a fresh one per run.",
)
@click.option(
    "--executors",
    type=click.IntRange(min=1),
    help="Executors of the embedded runtime. [default: one per core, at least 2]",
)
@click.pass_obj
def run(settings: Settings, module: str, namespace: str | None, executors: int | None) -> None:
    """Run a module's main function (`_start`) and its remote calls.

    The guest's stdout and stderr appear here; essa exits with the module's
    exit status, or 1 with a message if it traps.
    """
    from .programs import read_module
    from .runtime import EmbeddedRuntime

    wasm = read_module(module)  # fail on a bad file before starting anything
    with EmbeddedRuntime(settings.engine, settings.store, settings.store_options, executors) as runtime:
        logging.getLogger("essa").info("embedded runtime: %s engine, store %s", settings.engine, runtime.store.describe())
        status = runtime.client.run(runtime.client.publish(wasm, module), namespace=namespace)
    sys.exit(status)


@cli.command()
def plugins() -> None:
    """List installed plugins, their versions and what each provides."""
    from rich.console import Console
    from rich.table import Table

    manager = get_plugin_manager()
    table = Table(title="essa plugins")
    for column in ("plugin", "distribution", "version", "provides", "status"):
        table.add_column(column)
    for info in manager.plugins:
        status = "[red]broken[/red]: " + info.error if info.error else "ok"
        if not info.error and any("unavailable" in p for p in info.provides):
            status = "[yellow]unavailable[/yellow]"
        table.add_row(info.name, info.distribution, info.version, "\n".join(info.provides) or "-", status)
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``essa`` console script."""
    from .client import RunFailed

    errors = get_plugin_manager().add_commands(cli)
    for line in errors:
        click.echo(f"essa: warning: {line}", err=True)
    try:
        cli.main(args=argv, prog_name="essa", standalone_mode=False)
    except RunFailed as exc:
        click.echo(f"essa: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    except EssaError as exc:
        click.echo(f"essa: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("essa: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("essa: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
