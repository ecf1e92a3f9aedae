"""Access tokens: what a client may touch, signed with the cluster's Ed25519 key.

A token names the deployments and namespaces its holder may use, whether it
may write, and when it expires::

    essa1.<payload>.<signature>

``payload`` is base64url (no padding) of a JSON object ``{"v": 1, "d":
[deployment patterns], "n": [namespace patterns], "ro": read-only, "iat":
issued, "exp": expires (Unix seconds), "kid": key id, "jti": random id}``;
``signature`` is the Ed25519 signature of ``essa1.<payload>`` by the
cluster's private key. Patterns are names, or ``*`` globs (``team-*``, ``*``).

Ed25519 rather than HMAC: the processes that check tokens (schedulers,
executors) hold only the *public* key, so a compromised executor cannot mint
tokens; only whoever holds the private key (``essa token create``) can.
A verified token is cached by its text, so a process verifies each token's
signature once; later checks cost a dictionary lookup and a clock read.

What a grant allows is decided in :mod:`essa.cluster.authorize`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from essa.errors import EssaError
from essa.security.certs import _write_private, _write_public

PREFIX = "essa1"
#: Longest token text a process looks at (longer ones are refused unread).
MAX_TOKEN = 8192
#: Why a request without a token is refused. Clients add how they send one: the ``essa`` command
#: (--token, ESSA_TOKEN, a context), the HTTP trigger (the Authorization header).
NO_TOKEN = "no token was given (this cluster requires one)"
#: Most patterns a token may name.
MAX_PATTERNS = 256

PRIVATE_KEY = "token-signing.key"
PUBLIC_KEY = "token-verify.pem"

_PATTERN = re.compile(r"[A-Za-z0-9_.*-]{1,63}")


class TokenError(EssaError):
    """A token cannot be made, or a key cannot be read (one line)."""


class TokenRefused(EssaError):
    """A token is missing, malformed, forged, expired or not for this cluster; the message says which."""


@dataclass(frozen=True)
class Grant:
    """What a verified token allows (see :mod:`essa.cluster.authorize`)."""

    deployments: tuple[str, ...]
    namespaces: tuple[str, ...]
    read_only: bool
    issued: int
    expires: int
    id: str

    def covers_deployment(self, name: str) -> bool:
        """Whether ``name`` matches one of the token's deployment patterns."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.deployments)

    def covers_namespace(self, namespace: str) -> bool:
        """Whether ``namespace`` matches one of the token's namespace patterns."""
        return any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces)

    def describe(self) -> str:
        """One line for people: what the token allows, until when."""
        parts = []
        if self.deployments:
            parts.append("deployments " + ", ".join(self.deployments))
        if self.namespaces:
            parts.append("namespaces " + ", ".join(self.namespaces))
        access = "read-only" if self.read_only else "read-write"
        return f"{access} access to {' and '.join(parts) or 'nothing'}, until {format_time(self.expires)}"


def format_time(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_pattern(pattern: str, what: str = "deployment") -> str:
    """``pattern`` if it is a name or a ``*`` glob of names, else a one-line :class:`TokenError`."""
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise TokenError(f"{pattern!r} is not a {what} name or pattern: use letters, digits, '_', '.', '-' "
                         "and '*' (any characters), 1 to 63 of them")
    return pattern


# -- keys ---------------------------------------------------------------------------


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def create_keys(directory: str | os.PathLike) -> tuple[Path, Path]:
    """Make the cluster's token key pair in ``directory``; refuse to replace one.

    Returns the paths of the private (signing) key and of the public
    (verifying) key that schedulers and executors are given.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(directory)
    private, public = directory / PRIVATE_KEY, directory / PUBLIC_KEY
    if private.exists() or public.exists():
        raise TokenError(f"{directory} already holds a token key ({PRIVATE_KEY}); remove it first to make a new one "
                         "(every token it signed stops working)")
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _write_public(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _read_key(path: str | os.PathLike, private: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    kind = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TokenError(f"cannot read the token {kind} key {path}: {exc.strerror}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise TokenError(f"{path} is not a PEM {kind} key: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise TokenError(f"{path} is not an Ed25519 {kind} key (make the pair with `essa certs init`)")
    return key


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- tokens -------------------------------------------------------------------------


def create(
    private_key: str | os.PathLike,
    deployments: Iterable[str] = (),
    namespaces: Iterable[str] = (),
    read_only: bool = False,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    """A token signed with the key at ``private_key``, valid for ``ttl`` seconds from ``now``."""
    deployments = [check_pattern(d, "deployment") for d in deployments]
    namespaces = [check_pattern(n, "namespace") for n in namespaces]
    if not deployments and not namespaces:
        raise TokenError("a token must name at least one deployment or namespace (--deployment, --namespace)")
    if len(deployments) + len(namespaces) > MAX_PATTERNS:
        raise TokenError(f"a token names at most {MAX_PATTERNS} deployments and namespaces")
    key = _read_key(private_key, private=True)
    issued = int(time.time() if now is None else now)
    payload = {
        "v": 1, "d": deployments, "n": namespaces, "ro": bool(read_only),
        "iat": issued, "exp": issued + max(1, int(ttl)), "kid": _key_id(_raw_public(key.public_key())),
        "jti": os.urandom(8).hex(),
    }
    signed = f"{PREFIX}.{_b64(json.dumps(payload, separators=(',', ':'), sort_keys=True).encode())}"
    return f"{signed}.{_b64(key.sign(signed.encode('ascii')))}"


def _parse(payload: dict) -> Grant:
    def patterns(field: str) -> tuple[str, ...]:
        values = payload.get(field, [])
        if not isinstance(values, list) or len(values) > MAX_PATTERNS or not all(
                isinstance(v, str) and _PATTERN.fullmatch(v) for v in values):
            raise ValueError(f"field {field!r}")
        return tuple(values)

    numbers = [payload.get(k) for k in ("iat", "exp")]
    if payload.get("v") != 1 or not all(type(n) is int for n in numbers) or not isinstance(payload.get("ro"), bool):
        raise ValueError("version, times or read-only flag")
    return Grant(patterns("d"), patterns("n"), payload["ro"], numbers[0], numbers[1], str(payload.get("jti", ""))[:32])


class Verifier:
    """Checks tokens against the cluster's public key (a file, as made by :func:`create_keys`)."""

    #: Verified tokens remembered (text -> grant); the cache is emptied when full.
    cache_size = 4096

    def __init__(self, public_key: str | os.PathLike) -> None:
        self.path = str(public_key)
        self._key = _read_key(public_key, private=False)
        self.key_id = _key_id(_raw_public(self._key))
        self._verified: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def verify(self, token: object, now: float | None = None) -> Grant:
        """The grant of ``token``; :class:`TokenRefused` says why there is none."""
        if token is None or token == "":
            raise TokenRefused(NO_TOKEN)
        if not isinstance(token, str) or len(token) > MAX_TOKEN:
            raise TokenRefused("the token is malformed")
        grant = self._verified.get(token)
        if grant is None:
            grant = self._check_signature(token)
            with self._lock:
                if len(self._verified) >= self.cache_size:
                    self._verified.clear()
                self._verified[token] = grant
        if (time.time() if now is None else now) >= grant.expires:
            raise TokenRefused(f"the token expired at {format_time(grant.expires)}")
        return grant

    def _check_signature(self, token: str) -> Grant:
        from cryptography.exceptions import InvalidSignature

        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenRefused("the token is malformed (not an essa token)")
        try:
            payload = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            raise TokenRefused("the token is malformed") from None
        if not isinstance(payload, dict):
            raise TokenRefused("the token is malformed")
        if payload.get("kid") != self.key_id:
            raise TokenRefused("the token was not issued by this cluster (it was signed with another key)")
        try:
            self._key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except (InvalidSignature, ValueError):
            raise TokenRefused("the token's signature does not match its contents (it was altered)") from None
        try:
            return _parse(payload)
        except ValueError as exc:
            raise TokenRefused(f"the token is malformed ({exc})") from None


def inspect(token: str) -> Grant:
    """The claims of ``token`` *without* checking its signature (for ``essa token show``)."""
    parts = token.strip().split(".")
    try:
        if len(parts) != 3 or parts[0] != PREFIX:
            raise ValueError("not an essa token")
        payload = json.loads(_unb64(parts[1]))
        if not isinstance(payload, dict):
            raise ValueError("not an essa token")
        return _parse(payload)
    except (ValueError, binascii.Error) as exc:
        raise TokenError(f"not a valid essa token: {exc}") from None


__all__ = ["Grant", "NO_TOKEN", "PRIVATE_KEY", "PUBLIC_KEY", "TokenError", "TokenRefused", "Verifier", "create", "create_keys",
           "format_time", "inspect"]
