"""``essa deploy``, ``essa ls``, ``essa rm`` and ``essa functions``: deployments, through :mod:`essa.api`."""

from __future__ import annotations

import click

from essa.api import CONSISTENCY_LEVELS, Deployed
from essa.api.connection import DEFAULT_RETRIES, MAX_RETRIES
from essa.api.project import find_project, load_project
from essa.cli.options import Settings, connection_options, open_connection
from essa.cli.output import echo_json, json_option, print_table, when
from essa.cli.project import build_if_needed
from essa.errors import EssaError
from essa.util.units import format_bytes


@click.command()
@click.argument("module", metavar="[FILE.wasm]", required=False, type=click.Path(dir_okay=False))
@click.option("--name", help="The deployment's name: a new version if it exists. [default: the project's name]")
@click.option("--signatures", metavar="FILE", type=click.Path(dir_okay=False),
              help="Signatures of the module's functions, in FILE's [functions.NAME] tables (an essa.toml; see "
              "docs/signatures.md): for a module built without the SDKs, or replacing the ones it declares. "
              "[default: in a project, its essa.toml's]")
@click.option("--build/--no-build", "build", default=None,
              help="In a project: build before deploying, or not. [default: when its output is missing or older "
              "than its sources]")
@click.option("--retries", type=click.IntRange(0, MAX_RETRIES), default=DEFAULT_RETRIES, show_default=True,
              help="How many times a call runs again when its executor dies (0: functions that must not repeat).")
@click.option("--consistency", type=click.Choice(CONSISTENCY_LEVELS), default="default", show_default=True,
              help="The consistency level of this version's calls that name none (`essa call --consistency`).")
@json_option("Print the new version as JSON.")
@connection_options
@click.pass_obj
def deploy(settings: Settings, module, name, signatures, build, retries, consistency, as_json, connect, zenoh_config,
           timeout) -> None:
    """Deploy FILE.wasm as NAME: store it, compile it, and record a new version.

    In a project (an essa.toml here or in a parent directory) both are
    optional: `essa deploy` builds the project if its output is older than
    its sources, and deploys the output under the project's name, with the
    signatures its essa.toml declares.

    Call its functions with `essa call NAME FUNCTION`; NAME is the version
    it means now (the latest, unless rolled back), NAME@3 a pinned one,
    NAME@TAG a tagged one. Deploying the bytes NAME means already adds no
    version (unchanged). Its state lives in the namespace NAME, kept across
    calls, runs, restarts and redeploys. The signatures of its functions
    come from the module (the SDKs write them) or --signatures. A call whose
    executor dies runs again elsewhere, up to --retries times.
    """
    if module is None or name is None:
        found = find_project()
        if found is None:
            raise EssaError("give FILE.wasm and --name NAME, or run `essa deploy` in a project (an essa.toml here "
                            "or in a parent directory; `essa new` makes one)" if module is None else
                            "give the deployment's name with --name NAME (in a project, its essa.toml names it)")
        project = load_project(found)
        name = name or project.name
        if module is None:
            build_if_needed(project, build)
            module = str(project.output_path)
            if signatures is None and project.functions:  # essa.toml's [functions] tables
                signatures = str(project.path)
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployed = es.deploy(module, name, signatures=signatures, retries=retries, consistency=consistency)
    if as_json:
        echo_json(deployed.as_dict())
    else:
        click.echo(describe_deployed(deployed, "deployed"))


def describe_deployed(deployed: Deployed, verb: str) -> str:
    """One line for a deploy or a rollback: the version, its module and functions, what changed."""
    if deployed.unchanged:
        return f"unchanged: {deployed.spec}"
    head = f"{verb} {deployed.spec}: module {deployed.module[:12]} ({format_bytes(deployed.size)})"
    if not deployed.functions:
        line = f"{head}, no functions (only _start)"
    else:
        typed = len(deployed.signatures)
        note = "" if not typed else " (with signatures)" if typed == len(deployed.functions) else \
            f" ({typed} with signatures)"
        line = f"{head}, functions: {', '.join(deployed.functions)}{note}"
    if deployed.retries != DEFAULT_RETRIES:
        line += f", retries {deployed.retries}"
    if deployed.consistency != "default":
        line += f", consistency {deployed.consistency}"
    if deployed.previous is not None:
        changes = deployed.changes.describe()
        line += f" ({changes} since {deployed.previous.spec})" if changes else ""
    return line


@click.command(name="ls")
@click.argument("name", required=False)
@json_option("Print the deployments (or versions) as JSON (with their functions' signatures).")
@connection_options
@click.pass_obj
def list_deployments(settings: Settings, name, as_json, connect, zenoh_config, timeout) -> None:
    """List deployments: name, the version it means, tags, functions, size, when deployed.

    With NAME: every version of deployment NAME, with its tags; `*` marks the
    version NAME means.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployments = es.versions(name) if name else es.deployments()
    if as_json:
        echo_json([d.as_dict() for d in deployments])
        return
    if not deployments:
        click.echo("no deployments (deploy one with `essa deploy FILE.wasm --name NAME`)")
        return
    if name:
        rows = [(f"{d.version}{' *' if d.current else ''}", ", ".join(d.tags), ", ".join(d.functions),
                 format_bytes(d.size), when(d.created), d.module[:12]) for d in deployments]
        print_table(("version", "tags", "functions", "size", "deployed", "module"), rows)
        return
    rows = [(d.name, f"{d.version}" + (f" (latest {d.latest})" if d.latest not in (None, d.version) else ""),
             ", ".join(d.tags), ", ".join(d.functions), format_bytes(d.size), when(d.created)) for d in deployments]
    print_table(("name", "version", "tags", "functions", "size", "deployed"), rows)


@click.command(name="rm")
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--purge", is_flag=True, help="Also delete the deployment's state (every key of its namespace).")
@connection_options
@click.pass_obj
def remove(settings: Settings, name, purge, connect, zenoh_config, timeout) -> None:
    """Remove deployment NAME (every version; its state stays unless --purge), or one version, NAME@2.

    The version NAME means now cannot be removed alone: roll back first
    (`essa rollback NAME`), or remove the deployment. A removed version's
    tags go with it; the other versions keep their numbers.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        if "@" in name:
            if purge:
                es.remove(name, purge=True)  # refused, in one line
            dropped = es.remove_version(name)
            plural = "s" if len(dropped.tags) > 1 else ""
            click.echo(f"removed {dropped.spec}" + (f" and its tag{plural} {', '.join(dropped.tags)}" if dropped.tags
                                                    else ""))
            return
        versions = len(es.versions(name))
        purged = es.remove(name, purge=purge)
    what = f"{versions} version{'s' if versions != 1 else ''}"
    if purge:
        click.echo(f"removed {name} ({what}) and {purged} keys of its state")
    else:
        click.echo(f"removed {name} ({what}); its state stays in namespace {name} (`essa rm --purge` deletes it)")


@click.command()
@click.argument("name")
@click.option("--to", "to", metavar="VERSION|TAG", help="The version NAME means from now on. "
              "[default: the one before the version it means now]")
@json_option("Print the version NAME now means as JSON.")
@connection_options
@click.pass_obj
def rollback(settings: Settings, name, to, as_json, connect, zenoh_config, timeout) -> None:
    """Make NAME mean an older version (or, with --to, any version) again.

    Nothing is copied or deleted: NAME points at that version until the
    next deploy (which makes a new version, and NAME means it) or rollback.
    `essa rollback NAME` twice goes back two versions; `--to N` goes
    anywhere, forward too. `essa ls NAME` marks the version NAME means.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        deployed = es.rollback(name, to)
    if as_json:
        echo_json(deployed.as_dict())
    elif deployed.unchanged:
        click.echo(f"unchanged: {name} means {deployed.spec} already")
    else:
        click.echo(describe_deployed(deployed, f"rolled back {name} to"))


@click.command()
@click.argument("spec", metavar="NAME[@VERSION]")
@click.argument("tag")
@click.option("--rm", "remove_tag", is_flag=True, help="Remove TAG from deployment NAME instead.")
@connection_options
@click.pass_obj
def tag(settings: Settings, spec, tag, remove_tag, connect, zenoh_config, timeout) -> None:
    """Tag a version: `essa tag wc@3 stable`, then `essa call wc@stable ...`.

    NAME alone tags the version NAME means now. Tagging again moves the tag;
    --rm removes it (`essa tag --rm wc stable`). A tag is a letter, then
    letters, digits, '_', '.' or '-'; `latest` is taken (NAME@latest is the
    newest version).
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        if remove_tag:
            if "@" in spec:
                raise EssaError(f"--rm removes a tag from a deployment: give its name, as in `essa tag --rm "
                                f"{spec.partition('@')[0]} {tag}`")
            untagged = es.untag(spec, tag)
            click.echo(f"removed tag {tag} (it named {untagged.spec})")
            return
        tagged = es.tag(spec, tag)
    click.echo(f"tagged {tagged.spec} {tag}: {tagged.name}@{tag} means it")


@click.command()
@click.argument("deployment", metavar="NAME[@VERSION|@TAG]")
@json_option("Print the functions as a JSON list of {name, params, result} (params and result null: no signature).")
@connection_options
@click.pass_obj
def functions(settings: Settings, deployment, as_json, connect, zenoh_config, timeout) -> None:
    """List the functions of a deployment with their signatures, as `essa call` names them.

    `count_words(text: string) -> u64` takes a string and gives a u64; a
    function shown by its name alone has no signature: it takes and gives
    raw bytes.
    """
    with open_connection(settings, connect, zenoh_config, timeout) as es:
        found = es.deployment(deployment)
    signatures = [found.signature(name) for name in found.functions]
    if as_json:
        echo_json([s.as_dict() if s is not None else {"name": name, "params": None, "result": None}
                   for name, s in zip(found.functions, signatures)])
        return
    for name, signature in zip(found.functions, signatures):
        click.echo(name if signature is None else str(signature))


__all__ = ["deploy", "describe_deployed", "functions", "list_deployments", "remove", "rollback", "tag"]
