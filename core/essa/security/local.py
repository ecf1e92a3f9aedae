"""The security material of a cluster kept in one directory (``essa up --secure``, ``essa certs``).

::

    DIR/ca.pem, ca.key                   the cluster's certificate authority
    DIR/token-signing.key                signs access tokens (essa token create)
    DIR/token-verify.pem                 checks them (schedulers, executors: --token-key)
    DIR/certs/NAME.pem, NAME.key         the certificate of process NAME

The default directory is ``security/`` in essa's data directory
(:func:`essa.util.paths.data_dir`). Private keys are readable by their owner only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from essa.security import certs, tokens
from essa.security.tls import TlsFiles
from essa.util.paths import data_dir


def default_directory() -> Path:
    """``$ESSA_HOME/security`` (or the platform's data directory's)."""
    return data_dir() / "security"


@dataclass(frozen=True)
class Material:
    """A cluster's security directory."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / certs.CA_CERT

    @property
    def signing_key(self) -> Path:
        return self.directory / tokens.PRIVATE_KEY

    @property
    def verify_key(self) -> Path:
        return self.directory / tokens.PUBLIC_KEY

    def cert_prefix(self, name: str) -> Path:
        return self.directory / "certs" / name

    def files(self, name: str) -> TlsFiles:
        """The TLS files of process ``name`` (issued before)."""
        prefix = self.cert_prefix(name)
        return TlsFiles(str(self.ca), str(prefix.with_name(prefix.name + ".pem")),
                        str(prefix.with_name(prefix.name + ".key")))

    def init(self) -> list[Path]:
        """Make the CA and the token key pair where missing; return what was made."""
        made = []
        if not self.ca.exists():
            made.append(certs.create_ca(self.directory))
        if not self.signing_key.exists():
            made.extend(tokens.create_keys(self.directory))
        return made

    def issue(self, name: str, role: str, hosts: Iterable[str] = certs.LOCAL_HOSTS,
              days: int = certs.CERT_DAYS) -> certs.Issued:
        """Issue (or issue anew) the certificate of process ``name`` with ``role``."""
        return certs.issue(self.directory, role, name, self.cert_prefix(name), hosts, days)

    def environment(self, name: str, verify_tokens: bool = False) -> dict[str, str]:
        """The ``ESSA_TLS_*`` (and, to check tokens, ``ESSA_TOKEN_KEY``) variables of process ``name``."""
        files = self.files(name)
        env = {"ESSA_TLS_CA": files.ca, "ESSA_TLS_CERT": files.cert, "ESSA_TLS_KEY": files.key}
        if verify_tokens:
            env["ESSA_TOKEN_KEY"] = str(self.verify_key)
        return env


def prepare_local(directory: str | os.PathLike | None, processes: dict[str, str]) -> Material:
    """The material of a local secure cluster: CA and token keys (kept), and a fresh certificate per process.

    :param processes: process name -> role; ``client`` and ``admin`` certificates
        for the cluster's users are always issued too.
    """
    material = Material(Path(directory) if directory else default_directory())
    material.init()
    for name, role in {**processes, "client": "client", "admin": "admin"}.items():
        material.issue(name, role)
    return material


__all__ = ["Material", "default_directory", "prepare_local"]
