"""``essa context ls|use|show|add|rm``: named ways to reach essa (see :mod:`essa.api.contexts`)."""

from __future__ import annotations

import os

import click

from essa.api import TlsFiles, contexts
from essa.cli.options import complete_context, split_endpoints
from essa.cli.output import echo_json, print_table
from essa.errors import EssaError
from essa.security.tokens import inspect


def _token_text(token: str | None) -> str:
    """What a context's token allows and until when, never the token itself."""
    if not token:
        return "none"
    try:
        grant = inspect(token)
    except EssaError as exc:
        return f"unreadable ({exc})"
    return grant.describe()


def _where(context: contexts.Context) -> str:
    return ", ".join(context.endpoints)


@click.group(name="context")
def context() -> None:
    """Named ways to reach essa: an endpoint, TLS files and a token.

    While a context is current, every command without --connect (and
    Python's essa.connect()) uses it. `essa up` writes one for the cluster it
    starts (local, or local-secure) and makes it current until that cluster
    stops; `embedded` (this machine's store, in the process) is always there.
    --context NAME or ESSA_CONTEXT choose one for a command or a shell.
    """


@context.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the contexts as JSON (without their tokens).")
def context_ls(as_json: bool) -> None:
    """List the contexts; * marks the current one."""
    current = contexts.current_name()
    found = contexts.list_contexts()
    if as_json:
        echo_json([{**{k: v for k, v in c.as_dict().items() if k != "token"}, "token": c.token is not None,
                    "current": c.name == current} for c in found])
        return
    rows = [(("* " if current == contexts.EMBEDDED else "  ") + contexts.EMBEDDED, "this machine, in the process",
             "-", "-", "the default")]
    for c in found:
        rows.append((("* " if c.name == current else "  ") + c.name, _where(c), "yes" if c.tls else "no",
                     "yes" if c.token else "no", c.note))
    print_table(("name", "endpoint", "tls", "token", "note"), rows)


@context.command(name="use")
@click.argument("name", shell_complete=complete_context)
def context_use(name: str) -> None:
    """Make NAME the current context (`embedded`: this machine, no cluster)."""
    contexts.use(name)
    if name == contexts.EMBEDDED:
        click.echo("current context: embedded (commands run on this machine)")
    else:
        click.echo(f"current context: {name} ({_where(contexts.get(name))})")


@context.command(name="show")
@click.argument("name", required=False, shell_complete=complete_context)
@click.option("--json", "as_json", is_flag=True, help="Print the context as JSON (its token included).")
def context_show(name: str | None, as_json: bool) -> None:
    """Show context NAME (default: the current one, or ESSA_CONTEXT's): endpoint, TLS files, what its token allows."""
    name = name or os.environ.get(contexts.ENV) or contexts.current_name()
    if name == contexts.EMBEDDED:
        if as_json:
            echo_json({"name": name, "endpoints": [], "tls": None, "token": None, "note": "this machine"})
        else:
            click.echo("embedded: this machine's store, in the process (no endpoint, TLS or token)")
        return
    found = contexts.get(name)
    if as_json:
        echo_json(found.as_dict())
        return
    click.echo(f"{found.name}{' (current)' if found.name == contexts.current_name() else ''}")
    click.echo(f"  endpoint: {_where(found)}")
    if found.tls:
        for label, path in zip(("ca", "cert", "key"), found.tls):
            click.echo(f"  tls {label + ':':<5} {path}")
    else:
        click.echo("  tls:      none (plain TCP)")
    click.echo(f"  token:    {_token_text(found.token)}")
    if found.note:
        click.echo(f"  note:     {found.note}")


@context.command(name="add")
@click.argument("name")
@click.option("--connect", "endpoints", multiple=True, required=True, metavar="ENDPOINT",
              help="The cluster's scheduler endpoint, e.g. tls/10.0.0.5:7447; repeatable.")
@click.option("--tls-ca", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="The cluster's CA certificate (PEM).")
@click.option("--tls-cert", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="This client's certificate (PEM), signed by the cluster's CA.")
@click.option("--tls-key", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="This client's private key (PEM).")
@click.option("--token", metavar="TOKEN", help="The access token to send (from `essa token create`); kept in the "
              "context's file, readable by you only.")
@click.option("--use", "make_current", is_flag=True, help="Also make it the current context.")
def context_add(name: str, endpoints: tuple[str, ...], tls_ca: str | None, tls_cert: str | None,
                tls_key: str | None, token: str | None, make_current: bool) -> None:
    """Save context NAME (replacing one of that name): where a cluster is, and how to reach it.

    Example: essa context add prod --connect tls/10.0.0.5:7447 --tls-ca ca.pem
    --tls-cert alice.pem --tls-key alice.key --token "$TOKEN" --use
    """
    given = [f for f in (tls_ca, tls_cert, tls_key) if f]
    if given and len(given) != 3:
        raise EssaError("a context's TLS needs --tls-ca, --tls-cert and --tls-key together")
    tls = TlsFiles(tls_ca, tls_cert, tls_key) if given else None  # checks the files, and makes the paths absolute
    saved = contexts.Context(contexts.check_context_name(name), tuple(split_endpoints(endpoints)),
                             None if tls is None else (tls.ca, tls.cert, tls.key), token.strip() if token else None,
                             "added with essa context add")
    path = contexts.save(saved, make_current=make_current)
    click.echo(f"saved context {name} ({_where(saved)}) in {path}" + ("; it is current" if make_current else ""))


@context.command(name="rm")
@click.argument("name", shell_complete=complete_context)
def context_rm(name: str) -> None:
    """Remove context NAME (if it was current, embedded becomes current)."""
    was_current = contexts.current_name() == name
    if not contexts.remove(name):
        raise EssaError(f"no context named {name!r} (`essa context ls` lists them)")
    click.echo(f"removed context {name}" + ("; the current context is embedded" if was_current else ""))


__all__ = ["context"]
