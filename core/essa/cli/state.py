"""``essa state ls|get|put|rm``: a deployment's or namespace's state, through :mod:`essa.api`."""

from __future__ import annotations

import json

import click

from essa.cli.options import Settings, connection_options, open_connection
from essa.cli.output import echo_json, json_option
from essa.errors import EssaError
from essa.state.keys import quoted, shown
from essa.state.lattice import LwwLattice, OrderedSetLattice, SetLattice
from essa.state.views import from_json, to_json, to_text

STATE_TYPES = {"lww": "Lww", "set": "Set", "ordered-set": "OrderedSet"}



def namespace_options(fn):
    """``--deployment NAME`` or ``--namespace NS``: whose state a command works on."""
    fn = click.option("--namespace", "-n", metavar="NS", help="A namespace (as given to `essa run --namespace`).")(fn)
    fn = click.option("--deployment", "-d", metavar="NAME", help="The state of deployment NAME.")(fn)
    return fn


def _namespace(es, deployment: str | None, namespace: str | None) -> str:
    """The namespace the options name (a deployment's is its name; it must exist)."""
    if (deployment is None) == (namespace is None):
        raise EssaError("name the state with --deployment NAME or --namespace NS (one of them)")
    if deployment is not None:
        return es.deployment(deployment).namespace
    return namespace


@click.group()
def state() -> None:
    """Read and write the state of a deployment or namespace: ls, get, put, rm.

    Keys are those guests use with essa_put_lattice; values are lattices,
    and `put` merges (a value of another lattice type is refused).
    """


@state.command(name="ls")
@click.argument("prefix", default="")
@namespace_options
@json_option("Print the keys as a JSON list.")
@connection_options
@click.pass_obj
def state_ls(settings: Settings, prefix, deployment, namespace, as_json, connect, zenoh_config, timeout) -> None:
    """List the keys (starting with PREFIX), one a line.

    A key that is empty, has a line break or another unprintable character,
    leading or trailing spaces, or starts with a double quote is printed as a
    JSON string ("two\\nlines"); --json prints a JSON list of the keys.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        keys = es.state(ns).keys(prefix)
    if as_json:
        echo_json(list(keys))
    else:
        for key in keys:
            click.echo(shown(key))
    if keys.unlisted:
        click.echo(f"essa: warning: {keys.unlisted} keys of namespace {ns} are not listed: "
                   f"{keys.why or 'the store cannot name them'}", err=True)


@state.command(name="get")
@click.argument("key")
@namespace_options
@json_option("Print the value's JSON view.")
@connection_options
@click.pass_obj
def state_get(settings: Settings, key, deployment, namespace, as_json, connect, zenoh_config, timeout) -> None:
    """Print the value stored under KEY."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        value = es.state(ns).get(key)
    if value is None:
        raise EssaError(f"no key {quoted(key)} in namespace {ns}")
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False) if as_json else to_text(value))


@state.command(name="put")
@click.argument("key")
@click.argument("values", nargs=-1, metavar="[VALUE]...")
@namespace_options
@click.option("--type", "kind", type=click.Choice(sorted(STATE_TYPES)), default="lww", show_default=True,
              help="The lattice to merge: lww (one VALUE, stamped now), set or ordered-set (the VALUEs).")
@click.option("--json", "as_json", metavar="JSON", help="Merge this JSON view of a lattice instead (see docs).")
@connection_options
@click.pass_obj
def state_put(settings: Settings, key, values, deployment, namespace, kind, as_json, connect, zenoh_config,
              timeout) -> None:
    """Merge a value into KEY: essa state put -d wc vocab --type set apple pear."""
    if as_json is not None:
        if values:
            raise EssaError("give either VALUEs or --json, not both")
        try:
            value = from_json(json.loads(as_json))
        except ValueError as exc:
            raise EssaError(f"--json: {exc}") from None
    elif kind == "lww":
        if len(values) != 1:
            raise EssaError(f"an lww value is one VALUE ({len(values)} given)")
        value = LwwLattice.now(values[0].encode())
    else:
        value = (SetLattice if kind == "set" else OrderedSetLattice)(v.encode() for v in values)
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        st = es.state(_namespace(es, deployment, namespace))
        st.merge(key, value)
        merged = st.get(key)
    click.echo(to_text(merged) if merged is not None else "merged")


@state.command(name="rm")
@click.argument("key")
@namespace_options
@connection_options
@click.pass_obj
def state_rm(settings: Settings, key, deployment, namespace, connect, zenoh_config, timeout) -> None:
    """Delete KEY and its value."""
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        ns = _namespace(es, deployment, namespace)
        if not es.state(ns).delete(key):
            raise EssaError(f"no key {quoted(key)} in namespace {ns}")
    click.echo(f"deleted {shown(key)} from namespace {ns}")


__all__ = ["state"]
