"""``essa certs`` and ``essa token``: a secure cluster's CA, certificates and access tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from essa.cli.output import json_option
from essa.errors import EssaError
from essa.security.certs import CERT_DAYS, LOCAL_HOSTS, ROLES
from essa.security.local import Material, default_directory
from essa.util.units import parse_duration


def _directory_option(fn):
    return click.option("--dir", "directory", metavar="DIR", type=click.Path(file_okay=False),
                        envvar="ESSA_SECURITY_DIR",
                        help="The cluster's security directory (env ESSA_SECURITY_DIR). "
                        "[default: security/ in essa's data directory]")(fn)


def _material(directory: str | None) -> Material:
    return Material(default_directory() if directory is None else Path(directory))


@click.group()
def certs() -> None:
    """A secure cluster's certificate authority and the certificates of its processes.

    `essa certs init` makes the CA and the token key pair; `essa certs issue
    ROLE NAME` a certificate for one process (a scheduler, an executor, a KVS
    or routing node, a client or an admin) signed by that CA. Give every
    process its certificate with --tls-ca/--tls-cert/--tls-key. `essa up
    --secure` does all of this for a local cluster.
    """


@certs.command(name="init")
@_directory_option
def certs_init(directory: str | None) -> None:
    """Make a CA and a token key pair in DIR (kept if they exist)."""
    material = _material(directory)
    made = material.init()
    for path in made:
        click.echo(f"created {path}")
    if not made:
        click.echo(f"{material.directory} already holds a CA and a token key pair")
    click.echo(f"schedulers and executors check tokens with: --token-key {material.verify_key}")


@certs.command(name="issue")
@click.argument("role", type=click.Choice(ROLES), metavar="ROLE")
@click.argument("name")
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="A host name or IP address the process is reached at (its peers check it); repeatable. "
              f"[default: {', '.join(LOCAL_HOSTS)}]")
@click.option("--days", type=click.IntRange(min=1), default=CERT_DAYS, show_default=True,
              help="Days the certificate is valid.")
@click.option("--out", metavar="PREFIX", type=click.Path(dir_okay=False),
              help="Write PREFIX.pem and PREFIX.key. [default: DIR/certs/NAME]")
@_directory_option
def certs_issue(role: str, name: str, hosts: tuple[str, ...], days: int, out: str | None,
                directory: str | None) -> None:
    """Issue a certificate for process NAME with ROLE (one of: scheduler, executor, kvs, routing, client, admin).

    The role decides what the process may do on the cluster: only executors
    may take calls and announce themselves as executors, only KVS nodes as
    KVS nodes, clients may send calls and control requests, admins may also
    talk to the store nodes.
    """
    from essa.security.certs import issue

    material = _material(directory)
    issued = issue(material.directory, role, name, out or material.cert_prefix(name), hosts or LOCAL_HOSTS, days)
    click.echo(f"issued the certificate of {name} (role {role}): {issued.cert} (key {issued.key})")
    click.echo(f"give the process:  --tls-ca {material.ca} --tls-cert {issued.cert} --tls-key {issued.key}")


@certs.command(name="show")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False), metavar="FILE")
def certs_show(certificate: str) -> None:
    """Show a certificate's role, name, issuer, hosts and expiry."""
    from essa.security.certs import describe

    info = describe(certificate)
    click.echo(f"role {info.role or '?'}, name {info.name or '?'}, issued by {info.issuer or '?'}, "
               f"valid until {info.not_after:%Y-%m-%d %H:%M:%S} UTC, hosts {', '.join(info.hosts) or 'none'}")


_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*d\s*$", re.IGNORECASE)


def parse_ttl(text: str) -> float:
    """``"1h"``, ``"30m"``, ``"7d"``, ``"3600"`` -> seconds."""
    days = _DAYS.match(text)
    if days:
        return float(days.group(1)) * 86400
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; or days, e.g. 7d", param_hint="--ttl") from None


@click.group()
def token() -> None:
    """Access tokens: what a client may do on a cluster that checks them.

    A token names deployments and namespaces (names or * patterns), whether
    it may write, and when it expires. Clients pass it with --token or
    ESSA_TOKEN (Python: essa.connect(..., token=...)); schedulers and
    executors started with --token-key check it before any work.
    """


@token.command(name="create")
@click.option("--deployment", "-d", "deployments", multiple=True, metavar="NAME",
              help="Allow calling, reading, deploying and writing the state of deployment NAME "
              "(or a pattern: 'wc-*', '*'); repeatable.")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
              help="Allow reading and writing namespace NS (or a pattern) and running modules in it "
              "(`essa run --namespace NS`; a run with a fresh namespace needs '*'); repeatable.")
@click.option("--read-only", is_flag=True, help="Allow reads only: no deploys, no state writes (guests' included).")
@click.option("--ttl", default="1h", show_default=True, metavar="DURATION",
              help="How long the token is valid: e.g. 30m, 12h, 7d.")
@click.option("--key", metavar="FILE", type=click.Path(dir_okay=False), envvar="ESSA_TOKEN_SIGNING_KEY",
              help="The cluster's token signing key (env ESSA_TOKEN_SIGNING_KEY). "
              "[default: DIR/token-signing.key]")
@_directory_option
def token_create(deployments, namespaces, read_only, ttl, key, directory) -> None:
    """Print a new token signed with the cluster's key.

    Example: export ESSA_TOKEN=$(essa token create --deployment wc --ttl 12h)
    """
    from essa.security.tokens import create

    seconds = parse_ttl(ttl)
    click.echo(create(key or _material(directory).signing_key, deployments, namespaces, read_only, seconds))


@token.command(name="show")
@click.argument("text", metavar="TOKEN", required=False)
@click.option("--token-key", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Also check the signature with this public key.")
@json_option("Print the claims as JSON.")
def token_show(text: str | None, token_key: str | None, as_json: bool) -> None:
    """Show what TOKEN (default: $ESSA_TOKEN) allows and until when."""
    from essa.security import settings
    from essa.security.tokens import TokenRefused, Verifier, inspect

    text = text or settings.token()
    if not text:
        raise EssaError("no token given (pass TOKEN or set ESSA_TOKEN)")
    grant = inspect(text)
    if token_key is not None:
        try:
            Verifier(token_key).verify(text)
        except TokenRefused as exc:
            raise EssaError(f"the token is not valid here: {exc}") from None
    if as_json:
        click.echo(json.dumps({"deployments": list(grant.deployments), "namespaces": list(grant.namespaces),
                               "read_only": grant.read_only, "issued": grant.issued, "expires": grant.expires},
                              indent=2))
    else:
        click.echo(grant.describe() + ("" if token_key is None else " (signature checked)"))


__all__ = ["certs", "parse_ttl", "token"]
