"""The redis store's options (``--store-option KEY=VALUE``), checked once into :class:`Settings`.

Keys are written with ``_`` (``wait_replicas``); ``-`` is accepted too
(``wait-replicas``). Unknown keys and bad values are refused in one line that
names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlsplit

from essa.plugin import StoreError

DEFAULT_URL = "redis://127.0.0.1:6379"
DEFAULT_PREFIX = "essa:"
DEFAULT_TIMEOUT = 5.0

#: Every option, with what it sets (``essa plugins`` and the README list them).
OPTIONS: dict[str, str] = {
    "url": f"the server: redis://[USER:PASSWORD@]HOST:PORT[/DB], rediss://... (TLS) or unix:///PATH; "
           f"several, space-separated, are seeds of one Redis Cluster (default {DEFAULT_URL})",
    "cluster": "auto (default: ask the server), on (Redis Cluster) or off (one server)",
    "username": "ACL user (default: the URL's, else 'default')",
    "password": "password of that user (default: the URL's)",
    "db": "database number of a single server (default: the URL's, else 0; a cluster has only 0)",
    "prefix": f"prefix of every Redis key the store writes (default {DEFAULT_PREFIX!r})",
    "tls": "on or off (default: on for rediss:// URLs)",
    "tls_ca": "CA certificates (PEM) that sign the server's certificate (default: the system's)",
    "tls_cert": "client certificate (PEM), for servers that ask for one",
    "tls_key": "the client certificate's private key (PEM)",
    "tls_verify": "on (default): check the server's certificate and host name; off: do not",
    "timeout": f"seconds one request may take, and the most a call retries for (default {DEFAULT_TIMEOUT:g})",
    "connect_timeout": "seconds to open a connection (default: timeout)",
    "wait_replicas": "replicas that must have a put before it is acknowledged (WAIT N; default 0)",
    "wait_timeout": "seconds a put waits for those replicas (default: timeout)",
}

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class Server:
    """One server (or cluster seed) of the ``url`` option."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket

    def __str__(self) -> str:
        return self.path or (f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}")


@dataclass(frozen=True)
class Settings:
    """The store's checked options."""

    servers: tuple[Server, ...] = (Server(),)
    cluster: str = "auto"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    prefix: str = DEFAULT_PREFIX
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_TIMEOUT
    wait_replicas: int = 0
    wait_timeout: float = DEFAULT_TIMEOUT

    @property
    def where(self) -> str:
        """Where the servers are, for messages (never with the password)."""
        return " ".join(str(s) for s in self.servers)


def normalise(options: Mapping[str, str]) -> dict[str, str]:
    """Options with ``-`` in their keys spelt ``_``; unknown keys refused, naming the valid ones."""
    out = {}
    for raw, value in options.items():
        key = str(raw).strip().replace("-", "_")
        if key not in OPTIONS:
            raise StoreError(f"unknown redis store option {raw!r}; valid options: {', '.join(OPTIONS)}")
        out[key] = str(value)
    return out


def _bad(key: str, value: str, expected: str) -> StoreError:
    return StoreError(f"invalid redis store option {key}={value!r}: expected {expected}")


def _switch(options: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in options:
        return default
    word = options[key].strip().lower()
    if word not in _ON | _OFF:
        raise _bad(key, options[key], "on or off")
    return word in _ON


def _seconds(options: Mapping[str, str], key: str, default: float) -> float:
    if key not in options:
        return default
    try:
        value = float(options[key])
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 86400:
        raise _bad(key, options[key], "seconds between 0.01 and 86400")
    return value


def _whole(options: Mapping[str, str], key: str, default: int, high: int) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key].strip())
    except ValueError:
        value = -1
    if not 0 <= value <= high:
        raise _bad(key, options[key], f"a whole number from 0 to {high}")
    return value


def _parse_url(text: str) -> tuple[Server, dict[str, object]]:
    """One URL: its server and what it says about credentials, TLS and the database."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _bad("url", text, f"a redis:// URL ({exc})") from None
    said: dict[str, object] = {}
    if parts.scheme == "unix":
        if not parts.path:
            raise _bad("url", text, "unix:///PATH/TO/SOCKET")
        server = Server(path=parts.path)
    elif parts.scheme in ("redis", "rediss", "valkey", "valkeys"):
        if not parts.hostname:
            raise _bad("url", text, "redis://HOST:PORT")
        server = Server(parts.hostname, port or 6379)
        if parts.scheme in ("rediss", "valkeys"):
            said["tls"] = True
        db = parts.path.strip("/")
        if db:
            if not db.isdigit():
                raise _bad("url", text, "a database number after the port (redis://HOST:PORT/0)")
            said["db"] = int(db)
    else:
        raise _bad("url", text, "redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH")
    if parts.username:
        said["username"] = unquote(parts.username)
    if parts.password is not None:
        said["password"] = unquote(parts.password)
    for item in filter(None, parts.query.split("&")):
        name, _, value = item.partition("=")
        if name == "db" and value.isdigit():
            said["db"] = int(value)
    return server, said


def parse(options: Mapping[str, str]) -> Settings:
    """Check ``options`` (already :func:`normalise`-d or not) into :class:`Settings`.

    :raises essa.errors.StoreError: an unknown option or a bad value, in one line.
    """
    options = normalise(options)
    urls = options.get("url", DEFAULT_URL).split()
    if not urls:
        raise _bad("url", options.get("url", ""), "a redis:// URL")
    servers = []
    said: dict[str, object] = {}
    for url in urls:
        server, facts = _parse_url(url)
        servers.append(server)
        for name, value in facts.items():
            said.setdefault(name, value)
    cluster = options.get("cluster", "auto").strip().lower()
    if cluster in _ON:
        cluster = "on"
    elif cluster in _OFF:
        cluster = "off"
    elif cluster != "auto":
        raise _bad("cluster", options["cluster"], "auto, on or off")
    if any(s.path for s in servers) and (len(servers) > 1 or cluster == "on"):
        raise _bad("url", options["url"], "one unix:// socket, not a cluster")
    db = _whole(options, "db", int(said.get("db", 0)), 1 << 20)  # type: ignore[arg-type]
    if db and (len(servers) > 1 or cluster == "on"):
        raise StoreError(f"redis store option db={db}: a Redis Cluster has only database 0")
    timeout = _seconds(options, "timeout", DEFAULT_TIMEOUT)
    prefix = options.get("prefix", DEFAULT_PREFIX)
    tls = _switch(options, "tls", bool(said.get("tls", False)))
    for name in ("tls_ca", "tls_cert", "tls_key"):
        if name in options and not options[name].strip():
            raise _bad(name, options[name], "a file")
    if ("tls_cert" in options) != ("tls_key" in options):
        raise StoreError("redis store options tls_cert and tls_key go together: give both or neither")
    return Settings(
        servers=tuple(servers),
        cluster=cluster,
        username=options.get("username", said.get("username")),  # type: ignore[arg-type]
        password=options.get("password", said.get("password")),  # type: ignore[arg-type]
        db=db,
        prefix=prefix,
        tls=tls or any(name in options for name in ("tls_ca", "tls_cert")),
        tls_ca=options.get("tls_ca"),
        tls_cert=options.get("tls_cert"),
        tls_key=options.get("tls_key"),
        tls_verify=_switch(options, "tls_verify", True),
        timeout=timeout,
        connect_timeout=_seconds(options, "connect_timeout", timeout),
        wait_replicas=_whole(options, "wait_replicas", 0, 1000),
        wait_timeout=_seconds(options, "wait_timeout", timeout),
    )


__all__ = ["DEFAULT_PREFIX", "DEFAULT_URL", "OPTIONS", "Server", "Settings", "normalise", "parse"]
