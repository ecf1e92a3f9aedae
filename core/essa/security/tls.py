"""Mutual TLS for a process's zenoh session, and the warnings of a process without it.

A process gets its TLS files from ``--tls-ca``, ``--tls-cert`` and
``--tls-key`` (every cluster command has them) or from ``ESSA_TLS_CA``,
``ESSA_TLS_CERT`` and ``ESSA_TLS_KEY`` (see :mod:`essa.security.settings`);
the Python API also takes them as ``tls=TlsFiles(...)``. With
them its zenoh session:

- speaks only TLS (``transport/link/protocols: ["tls"]``); a ``tcp/HOST:PORT``
  endpoint it is given is used as ``tls/HOST:PORT``;
- accepts and opens links only with peers whose certificate the CA signed
  (``enable_mtls``), checking that a peer's certificate names the host it
  was reached at (zenoh's ``verify_name_on_connect``), and closes a link when
  the peer's certificate expires;
- runs zenoh's access control with essa's role rules (:mod:`essa.security.acl`).

Without them a process that listens on a non-loopback address says, once,
that anyone who can reach it is a full member of the cluster.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Iterable, Sequence

from essa.errors import EssaError
from essa.security import acl
from essa.security.certs import describe

log = logging.getLogger("essa.security")

#: Environment variables of the TLS files, by field.
ENV = {"ca": "ESSA_TLS_CA", "cert": "ESSA_TLS_CERT", "key": "ESSA_TLS_KEY"}
FLAGS = {"ca": "--tls-ca", "cert": "--tls-cert", "key": "--tls-key"}


class TlsError(EssaError):
    """TLS settings that cannot be used (one line)."""


@dataclass(frozen=True)
class TlsFiles:
    """The cluster's CA certificate, and this process's certificate and private key (PEM files)."""

    ca: str
    cert: str
    key: str

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise TlsError(f"cannot read {FLAGS[name]} {path}: {exc.strerror}") from None
            object.__setattr__(self, name, os.path.abspath(path))

    @property
    def role(self) -> str:
        """The role the certificate names (its common name)."""
        return describe(self.cert).role or "?"


def secure_endpoints(endpoints: Sequence[str]) -> list[str]:
    """``endpoints`` for a TLS session: ``tcp/`` ones become ``tls/``; others must be ``tls/`` already."""
    result = []
    for endpoint in endpoints:
        protocol, sep, address = endpoint.partition("/")
        if protocol == "tcp" and sep:
            result.append(f"tls/{address}")
        elif protocol == "tls" and sep:
            result.append(endpoint)
        else:
            raise TlsError(f"endpoint {endpoint!r} cannot carry TLS: use tls/HOST:PORT")
    return result


def apply(config, files: TlsFiles, access: Iterable[tuple[str, dict[str, list[str]]]] = ()) -> None:
    """Configure a zenoh ``config`` for mutual TLS with ``files`` and essa's access control.

    :param access: ``(role, keys)`` pairs of access beyond the core's (what
        plugins grant, see :meth:`essa.plugins.PluginManager.access`).
    """

    tls = {
        "root_ca_certificate": files.ca,
        "listen_certificate": files.cert,
        "listen_private_key": files.key,
        "connect_certificate": files.cert,
        "connect_private_key": files.key,
        "enable_mtls": True,
        "verify_name_on_connect": True,
        "close_link_on_expiration": True,
    }
    config.insert_json5("transport/link/tls", json.dumps(tls))
    config.insert_json5("transport/link/protocols", '["tls"]')
    rules = acl.access_control(acl.profiles(access))
    config.insert_json5("access_control", json.dumps(rules))


# -- plain TCP -------------------------------------------------------------------------


def _host(endpoint: str) -> str:
    address = endpoint.partition("/")[2].split("?", 1)[0].split("#", 1)[0]
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip("[]")


def is_loopback(endpoint: str) -> bool:
    """Whether ``endpoint`` (``tcp/HOST:PORT``) is on this machine's loopback only."""
    host = _host(endpoint)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_warned: set[str] = set()


def warn_if_exposed(listen: Sequence[str]) -> None:
    """Warn, once per endpoint, about listening without TLS beyond this machine."""
    for endpoint in listen:
        protocol = endpoint.partition("/")[0]
        if protocol in ("tls", "unixsock-stream", "unixpipe") or is_loopback(endpoint) or endpoint in _warned:
            continue
        _warned.add(endpoint)
        log.warning("listening on %s without TLS: anyone who can reach it can run code on this cluster and "
                    "read or change its state (give --tls-ca, --tls-cert and --tls-key; see \"Securing a cluster\" "
                    "in essa's README)", endpoint)


# -- why a connection failed -------------------------------------------------------------


def diagnose(endpoint: str, files: TlsFiles | None, timeout: float = 3.0) -> str | None:
    """Why ``endpoint`` refused this process, if a TLS handshake tells; ``None`` if it does not.

    zenoh reports every failed connection as "unable to connect"; a direct
    handshake with the same files tells a refused certificate from a peer
    that does not listen or does not speak TLS.
    """
    import ssl

    protocol, _, address = endpoint.partition("/")
    if protocol not in ("tls", "tcp") or ":" not in address:
        return None
    host, port = _host(endpoint), address.rpartition(":")[2].split("?", 1)[0].split("#", 1)[0]
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError):
        return None  # nothing listens: the caller's message says so
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if files is None:  # only: does it speak TLS at all?
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context.load_verify_locations(files.ca)
            context.load_cert_chain(files.cert, files.key)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            return f"this process's TLS files cannot be used: {exc}"
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (ssl.SSLError, OSError, ValueError):
        sock.close()
        return None
    with tls:
        tls.settimeout(timeout)
        try:
            tls.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            if "mismatch" in str(exc).lower() or "hostname" in str(exc).lower():
                return f"its certificate does not name {host} (issue it with `essa certs issue ... --host {host}`)"
            return "its certificate is not signed by the CA in --tls-ca (a different cluster?)"
        except (ssl.SSLError, OSError) as exc:
            reason = str(getattr(exc, "reason", "") or exc).lower()
            if files is not None and ("wrong_version" in reason or "record_layer" in reason
                                      or "packet_length" in reason or "eof" in reason):
                return "it does not speak TLS (was it started without --tls-*?)"
            return None
        if files is None:
            return "it speaks TLS: give --tls-ca, --tls-cert and --tls-key (or ESSA_TLS_*) and use tls/HOST:PORT"
        try:
            tls.recv(1)  # TLS 1.3: a server refuses the client's certificate after the handshake
        except ssl.SSLError as exc:
            reason = str(exc.reason or exc).lower()
            if "alert" in reason or "certificate" in reason:
                return "it refused this process's certificate (is it signed by the cluster's CA?)"
        except OSError:
            pass
    return None

__all__ = ["ENV", "TlsError", "TlsFiles", "apply", "diagnose", "is_loopback", "secure_endpoints", "warn_if_exposed"]
