"""A cluster's certificate authority and the certificates of its processes.

Every process of a secure cluster holds a certificate signed by the
cluster's CA; zenoh's mutual TLS lets in only peers whose certificate that CA
signed. A certificate's common name is the *role* of its holder (see
:data:`ROLES`), which zenoh's access control reads to decide what the peer
may do (:mod:`essa.security.acl`); its organizational unit says the same,
for people, and its pseudonym names the process (``executor-0``).

Keys are ECDSA P-256 (small, fast handshakes, accepted by every TLS
implementation zenoh links against); private keys are written readable by
their owner only. Made with the ``cryptography`` package, imported here only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from essa.errors import EssaError

#: What a certificate's holder is. ``admin`` is a client that may also talk to
#: the store nodes directly (``essa anna get``); see :mod:`essa.security.acl`.
ROLES = ("scheduler", "executor", "kvs", "routing", "client", "admin")

#: Hosts a certificate names when none are given: this machine's loopback.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

CA_CERT = "ca.pem"
CA_KEY = "ca.key"

#: Days a CA and a process certificate are valid by default.
CA_DAYS = 3650
CERT_DAYS = 365


class CertificateError(EssaError):
    """A certificate or key cannot be made, read or used (one line)."""


@dataclass(frozen=True)
class Issued:
    """Where an issued certificate and its key were written."""

    cert: Path
    key: Path
    role: str
    name: str


def _x509():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (created so, never widened later)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pem_key(key) -> bytes:
    _x, _h, serialization, *_ = _x509()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(directory: str | os.PathLike, days: int = CA_DAYS, name: str = "essa cluster CA") -> Path:
    """Make a CA in ``directory`` (``ca.pem``, ``ca.key``); refuse to replace one.

    Returns the path of the CA certificate.
    """
    x509, hashes, serialization, ec, _eku, NameOID = _x509()
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise CertificateError(f"{directory} already holds a CA ({CA_CERT}); remove it first to make a new one "
                               "(every certificate it signed stops working)")
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "essa"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _load_ca(directory: Path):
    x509, _h, serialization, *_ = _x509()
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CertificateError(f"no CA in {directory}: {Path(exc.filename).name} is missing "
                               "(make one with `essa certs init`)") from None
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot read the CA in {directory}: {exc}") from None
    return cert, key


def _alt_names(hosts: Iterable[str]):
    x509 = _x509()[0]
    names = []
    for host in hosts:
        host = host.strip().strip("[]")
        if not host:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else a one-line :class:`CertificateError`."""
    if role not in ROLES:
        raise CertificateError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def issue(
    ca_directory: str | os.PathLike,
    role: str,
    name: str,
    out: str | os.PathLike,
    hosts: Iterable[str] = LOCAL_HOSTS,
    days: int = CERT_DAYS,
) -> Issued:
    """Issue a certificate for a process of ``role`` named ``name``, signed by the CA in ``ca_directory``.

    Writes ``OUT.pem`` (the certificate) and ``OUT.key`` (its private key,
    owner-only). ``hosts`` (names or IP addresses) are the subject
    alternative names the holder listens as: peers that connect to it check
    them. The certificate serves both ends of a link (server and client auth).
    """
    x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID = _x509()
    check_role(role)
    if not name or len(name) > 64:
        raise CertificateError(f"a certificate name is 1 to 64 characters, not {name!r}")
    ca_cert, ca_key = _load_ca(Path(ca_directory))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "essa"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.PSEUDONYM, name),
        x509.NameAttribute(NameOID.COMMON_NAME, role),
    ])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    alt = _alt_names(hosts)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out.with_name(out.name + ".pem"), out.with_name(out.name + ".key")
    _write_private(key_path, _pem_key(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path, key_path, role, name)


@dataclass(frozen=True)
class CertificateInfo:
    """What ``essa certs show`` tells about a certificate."""

    role: str
    name: str
    issuer: str
    not_after: datetime.datetime
    hosts: tuple[str, ...]


def describe(path: str | os.PathLike) -> CertificateInfo:
    """Role, name, issuer, expiry and hosts of the certificate at ``path``."""
    x509, _h, _s, _ec, _eku, NameOID = _x509()
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CertificateError(f"{path} is not a PEM certificate: {exc}") from None

    def first(name, oid) -> str:
        values = name.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple(str(v) for v in alt.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in alt.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        hosts = ()
    return CertificateInfo(first(cert.subject, NameOID.COMMON_NAME), first(cert.subject, NameOID.PSEUDONYM),
                           first(cert.issuer, NameOID.COMMON_NAME), cert.not_valid_after_utc, hosts)


__all__ = ["CA_CERT", "CA_KEY", "CertificateError", "CertificateInfo", "Issued", "LOCAL_HOSTS", "ROLES",
           "check_role", "create_ca", "describe", "issue"]
