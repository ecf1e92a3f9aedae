"""Contexts: named ways to reach essa (an endpoint, TLS files, a token), and which one is current.

``essa up`` writes one for the cluster it starts (``local``, or
``local-secure`` with ``--secure``) and makes it current; ``essa context
add`` writes others. While a context is current, :func:`essa.connect` with
no argument and every ``essa`` command without ``--connect`` use it, so a
secure cluster needs no ``ESSA_TLS_*`` or ``ESSA_TOKEN`` in each shell.

Which one applies, first match wins: ``--connect`` / an endpoint given to
:func:`essa.connect`; ``--context NAME`` / ``context=NAME``; the
``ESSA_CONNECT`` endpoints; ``ESSA_CONTEXT``; the current context; else
embedded (this machine's store, in the process). The context named
``embedded`` always exists and means exactly that: ``essa context use
embedded`` goes back to the default. A context's TLS files and token win
over ``ESSA_TLS_*`` and ``ESSA_TOKEN`` (a context without TLS files is plain
TCP; one without a token sends ``ESSA_TOKEN``'s); ``--tls-*`` and
``--token`` on the command line win over the context's.

Each context is a JSON file in ``contexts/`` of essa's data directory
(:func:`essa.util.paths.data_dir`), readable by its owner only (mode 0600,
as it may hold a token); ``contexts/current`` names the current one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from essa.errors import EssaError, NotFound
from essa.security.tls import TlsFiles
from essa.util.files import write_private
from essa.util.paths import data_dir

#: The context that means "embedded": this process, this machine's store.
EMBEDDED = "embedded"
#: The environment variable naming the context to use.
ENV = "ESSA_CONTEXT"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_context_name(name: str) -> str:
    """``name`` if it can name a context; else a one-line :class:`EssaError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise EssaError(f"{name!r} is not a valid context name: use 1-63 letters, digits, '_', '.' or '-', "
                        "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Context:
    """A named way to reach a cluster."""

    name: str
    #: The scheduler's endpoints (``tcp/HOST:PORT``, ``tls/HOST:PORT``).
    endpoints: tuple[str, ...]
    #: The CA, certificate and key files (paths), or ``None``: plain TCP.
    tls: tuple[str, str, str] | None = None
    #: The access token sent with every request, or ``None``.
    token: str | None = None
    #: Who wrote it and why, for ``essa context ls`` (``essa up``: the cluster it started).
    note: str = ""

    def tls_files(self) -> TlsFiles | None:
        """The context's TLS files, checked (a one-line error names a missing one), or ``None``."""
        if self.tls is None:
            return None
        try:
            return TlsFiles(*self.tls)
        except EssaError as exc:
            raise EssaError(f"context {self.name!r}: {exc}") from None

    def as_dict(self) -> dict:
        """What its file holds."""
        return {"name": self.name, "endpoints": list(self.endpoints),
                "tls": None if self.tls is None else dict(zip(("ca", "cert", "key"), self.tls)),
                "token": self.token, "note": self.note}

    @classmethod
    def from_dict(cls, data: object, where: str) -> "Context":
        """The context in ``data`` (read from ``where``); a one-line error if it is not one."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            endpoints = data["endpoints"]
            tls = data.get("tls")
            token, note = data.get("token"), data.get("note", "")
            if not (isinstance(endpoints, list) and endpoints and all(isinstance(e, str) for e in endpoints)):
                raise TypeError("'endpoints' is not a list of endpoints")
            if tls is not None and not (isinstance(tls, dict) and all(isinstance(tls.get(k), str)
                                                                      for k in ("ca", "cert", "key"))):
                raise TypeError("'tls' is not {ca, cert, key}")
            if not isinstance(token, (str, type(None))) or not isinstance(note, str):
                raise TypeError("'token' or 'note' is not text")
            return cls(check_context_name(data["name"]), tuple(endpoints),
                       None if tls is None else (tls["ca"], tls["cert"], tls["key"]), token, note)
        except (KeyError, TypeError, EssaError) as exc:
            raise EssaError(f"{where} is not a context ({exc}): remove it with `essa context rm`") from None


def directory() -> Path:
    """Where contexts are kept: ``contexts/`` in essa's data directory."""
    return data_dir() / "contexts"


def _path(name: str) -> Path:
    return directory() / f"{check_context_name(name)}.json"


def get(name: str) -> Context:
    """Context ``name``; :class:`~essa.errors.NotFound` (naming the others) if there is none."""
    if name == EMBEDDED:
        raise EssaError(f"{EMBEDDED!r} is the built-in context (this machine, no cluster): it has no endpoint")
    path = _path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(c.name for c in list_contexts()) or "none"
        raise NotFound(f"no context named {name!r} (contexts: {names}; `essa context add` makes one)") from None
    except OSError as exc:
        raise EssaError(f"cannot read context {name!r} ({path}): {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return Context.from_dict(data, str(path))


def list_contexts() -> list[Context]:
    """Every saved context, by name (a file that is not a context is left out)."""
    found = []
    for path in sorted(directory().glob("*.json")):
        try:
            found.append(get(path.stem))
        except EssaError:
            continue
    return found


def save(context: Context, make_current: bool = False) -> Path:
    """Write ``context`` (replacing one of the same name); with ``make_current``, make it the current one."""
    if context.name == EMBEDDED:
        raise EssaError(f"{EMBEDDED!r} is the built-in context: choose another name")
    path = _path(context.name)
    write_private(path, json.dumps(context.as_dict(), indent=2) + "\n")
    if make_current:
        use(context.name)
    return path


def remove(name: str) -> bool:
    """Remove context ``name`` (if it is current, embedded becomes current); ``False`` if there was none."""
    if name == EMBEDDED:
        raise EssaError(f"{EMBEDDED!r} is the built-in context: it cannot be removed")
    try:
        _path(name).unlink()
    except FileNotFoundError:
        return False
    if current_name() == name:
        use(EMBEDDED)
    return True


def current_name() -> str:
    """The current context's name (``embedded`` unless one was made current); ``ESSA_CONTEXT`` is not read here."""
    try:
        name = (directory() / "current").read_text(encoding="utf-8").strip()
    except OSError:
        return EMBEDDED
    return name if _NAME.fullmatch(name) else EMBEDDED


def use(name: str) -> None:
    """Make ``name`` the current context (``embedded``: none)."""
    if name != EMBEDDED:
        get(name)  # exists?
    write_private(directory() / "current", name + "\n")


def restore_current(name: str, previous: str) -> None:
    """If ``name`` is still current, make ``previous`` current again (``essa up``, when its cluster stops)."""
    if current_name() != name:
        return
    try:
        use(previous)
    except EssaError:  # previous was removed meanwhile
        use(EMBEDDED)


def chosen(name: str | None = None) -> Context | None:
    """The context to use: ``name``, else ``$ESSA_CONTEXT``, else the current one; ``None`` for embedded."""
    name = name or os.environ.get(ENV) or current_name()
    return None if name == EMBEDDED else get(name)


def describe_choice(context: Context) -> str:
    """The words an error adds when a context's cluster does not answer."""
    note = f", {context.note}" if context.note else ""
    return (f"context {context.name!r}{note}: is that cluster up? `essa context use {EMBEDDED}` runs on this "
            f"machine instead")


__all__ = ["EMBEDDED", "ENV", "Context", "check_context_name", "chosen", "current_name", "describe_choice",
           "directory", "get", "list_contexts", "remove", "restore_current", "save", "use"]
