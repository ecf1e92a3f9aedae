"""The ``essa`` command: global options, the commands, and one-line errors.

Every command lives in a module of its own in this package and uses essa
through the public Python API (:mod:`essa.api`); the options they share are
in :mod:`essa.cli.options`. Plugins add commands with the
``essa_register_commands`` hook.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

import click

from essa import __version__
from essa.cli import (
    call,
    contexts,
    dags,
    deployments,
    dev,
    logs,
    new,
    plugins,
    processes,
    project,
    run,
    security,
    serve,
    state,
    status,
    top,
)
from essa.cli.options import Settings, parse_options
from essa.cli.output import ErrorFormat, echo_error
from essa.cli.signals import Interrupted
from essa.errors import EssaError, RunFailed, kind_of
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.security.tokens import NO_TOKEN


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
    ctx.obj = Settings(engine, store, parse_options(store_options))



for command in (
    run.run, processes.scheduler, processes.executor, processes.up, processes.down, status.status, top.top,
    plugins.plugins,
    deployments.deploy, deployments.list_deployments, deployments.remove, deployments.functions, call.call,
    deployments.rollback, deployments.tag, contexts.context, project.build, dev.dev,
    state.state, logs.logs, serve.serve, security.certs, security.token, new.new, dags.dag,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``essa`` console script."""
    status = _main(argv)
    # Leave without interpreter finalization: the engines' native runtimes
    # (wasmtime's tokio threads) may otherwise panic while Python tears down.
    # Every command has closed its stores and sessions by now.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)



def _usage_error(exc: click.UsageError, argv: list[str]) -> str:
    """The one line for a usage error: click's message, and where help is (or where a global option goes)."""
    command = exc.ctx.command_path if exc.ctx is not None else "essa"
    if isinstance(exc, click.NoSuchOption) and exc.ctx is not None and exc.ctx.command is not cli:
        option = next((p for p in cli.params if exc.option_name in p.opts), None)
        if isinstance(option, click.Option):
            takes_value = not (option.is_flag or option.count)
            for i in reversed(range(len(argv))):  # the misplaced one comes after the command
                token = argv[i]
                if token == exc.option_name or token.startswith(exc.option_name + "="):
                    moved = argv[i : i + (2 if takes_value and token == exc.option_name else 1)]
                    example = shlex.join(["essa", *moved, *argv[:i], *argv[i + len(moved):]])
                    break
            else:
                example = f"essa {exc.option_name}{' ...' if takes_value else ''} {command.split(' ', 1)[-1]} ..."
            return f"{exc.option_name} is a global option: give it before the command, as in `{example}`"
    message = " ".join(exc.format_message().split("\n")).strip().rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return f"{message} (see `{command} --help`)"


def _main(argv: list[str] | None) -> int:
    ErrorFormat.json = False
    errors = get_plugin_manager().add_commands(cli)
    for line in errors:
        click.echo(f"essa: warning: {line}", err=True)
    try:
        result = cli.main(args=argv, prog_name="essa", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RunFailed as exc:
        echo_error(str(exc), kind_of(exc))
        return exc.exit_status
    except EssaError as exc:
        advice = "; pass --token TOKEN, set ESSA_TOKEN or use a context with one" if str(exc).endswith(NO_TOKEN) else ""
        echo_error(f"{exc}{advice}", kind_of(exc))
        return 1
    except Interrupted as exc:
        if ErrorFormat.json:
            echo_error(f"{exc}: {exc.what} was cancelled", "interrupted")
        else:
            click.echo(f"essa: {exc}: {exc.what} was cancelled", err=True)
        return exc.status
    except click.exceptions.Abort:
        _interrupted()
        return 130
    except click.UsageError as exc:  # one line like every other error, not click's four
        echo_error(_usage_error(exc, sys.argv[1:] if argv is None else list(argv)), "usage")
        return exc.exit_code
    except click.ClickException as exc:
        echo_error(exc.format_message(), "error")
        return exc.exit_code
    except KeyboardInterrupt:
        _interrupted()
        return 130
    except BrokenPipeError:
        return 0



def _interrupted() -> None:
    if ErrorFormat.json:
        echo_error("interrupted", "interrupted")
    else:
        click.echo("essa: interrupted", err=True)


__all__ = ["cli", "main"]
