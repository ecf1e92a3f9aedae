"""This process's security settings, from its command line or its environment.

One process has one identity: the TLS files of its zenoh sessions (every
session it opens, the anna store's included), the token it sends with its
requests, and the key its scheduler or executor checks tokens with. The
command-line options below record them for the process; without them the
environment variables apply (so the Python API and child processes see the
same settings as the ``essa`` command):

=================  ====================  ==========================================
option             environment           used by
=================  ====================  ==========================================
``--tls-ca``       ``ESSA_TLS_CA``       every process of a cluster (with cert, key)
``--tls-cert``     ``ESSA_TLS_CERT``
``--tls-key``      ``ESSA_TLS_KEY``
``--token``        ``ESSA_TOKEN``        clients: sent with every request
``--token-key``    ``ESSA_TOKEN_KEY``    schedulers, executors: check tokens with it
=================  ====================  ==========================================

The ``essa`` command's options (:mod:`essa.cli.options`) :func:`record` their
values here as click parses them.
"""

from __future__ import annotations

import os
import threading

from essa.security import tls as _tls
from essa.security.tls import TlsFiles
from essa.security.tokens import Verifier

_given: dict[str, str] = {}
_verifiers: dict[str, object] = {}
_lock = threading.Lock()


def record(name: str, value: str) -> None:
    """Record a setting given on the command line: ``tls_ca``, ``tls_cert``, ``tls_key``, ``token``, ``token_key``."""
    _given[name] = value


def _value(name: str, env: str, given_only: bool = False) -> str | None:
    return _given.get(name) or (None if given_only else os.environ.get(env)) or None


def tls_files(given_only: bool = False) -> TlsFiles | None:
    """This process's TLS files, or ``None`` (plain TCP).

    :param given_only: only files given on the command line (:func:`record`), not the environment's
        (a context's files win over the environment's, not over the command line's).
    :raises essa.security.tls.TlsError: some but not all three are given, or one cannot be read.
    """
    values = {name: _value(f"tls_{name}", env, given_only) for name, env in _tls.ENV.items()}
    if not any(values.values()):
        return None
    missing = [_tls.FLAGS[name] for name, value in values.items() if not value]
    if missing:
        raise _tls.TlsError("TLS needs --tls-ca, --tls-cert and --tls-key together (or ESSA_TLS_CA, ESSA_TLS_CERT "
                            f"and ESSA_TLS_KEY); missing: {', '.join(missing)}")
    return TlsFiles(**values)


def token(given_only: bool = False) -> str | None:
    """The token this process sends with its requests, or ``None`` (``given_only``: as for :func:`tls_files`)."""
    value = _value("token", "ESSA_TOKEN", given_only)
    return value.strip() if value else None


def verifier():
    """The :class:`~essa.security.tokens.Verifier` of this process's token key, or ``None`` (no checks)."""
    path = _value("token_key", "ESSA_TOKEN_KEY")
    if path is None:
        return None
    with _lock:
        if path not in _verifiers:
            _verifiers[path] = Verifier(path)
        return _verifiers[path]


__all__ = ["record", "tls_files", "token", "verifier"]
