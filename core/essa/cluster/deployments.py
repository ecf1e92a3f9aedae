"""Deployments: modules stored under a name, in versions, with a stable state namespace.

``essa deploy f.wasm --name wc`` stores the module (``modules/<sha256>/wasm``,
compiled once per engine) and records a new version of deployment ``wc``.
``wc`` means its latest version, ``wc@3`` pins version 3. A deployment's
state lives in the namespace named like it, so state survives calls, runs,
executor restarts and redeploys, and ``essa run --namespace wc`` shares it.

Everything is kept in the store, as lattices, so it works on every store and
merges like any other state:

``deployments``
    a ``Set`` of the names ever deployed;
``deployments/<name>``
    a ``Set`` of JSON records: one per deploy (version, module, size,
    functions, their signatures, time), rollback, tag, and removal of a
    version or of the whole deployment (:mod:`essa.cluster.versions` reads
    them).

Versions only go up and never change: a deploy of bytes other than those
the name means now adds a version, and the name means it; a deploy of the
same bytes adds nothing (``unchanged``). A **rollback** moves the name back
to an older version (``wc@2``) without copying it: the versions stay as they
were, the name means another one until the next deploy or rollback. A
**tag** (``wc@stable``) names one version until it is moved or removed. One
version can be removed (``essa rm wc@2``), except the one the name means; a
removed deployment is gone until it is deployed again (its versions continue
where they stopped).

Users name functions as they wrote them (``count_words``); the export
``__essa_wrapper__count_words`` is the guest ABI's detail, and only
:func:`export_name` and :func:`user_functions` know it.
"""

from __future__ import annotations

import difflib
import functools
import re
import time
import uuid
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from essa.cluster import versions
from essa.cluster.versions import History, check_tag, parse_ref
from essa.errors import EssaError, NotFound, SignatureError
from essa.state.lattice import SetLattice
from essa.state.signatures import SECTION, Signature, merge
from essa.state.store import Store
from essa.wasm.engine import CALLABLE_SIGNATURE, ModuleInfo

#: Exports of callable functions carry this prefix (the Rust SDK's and the C SDK's convention).
EXPORT_PREFIX = "__essa_wrapper__"

#: How many times a call is placed again when its executor dies, unless its deployment says otherwise.
DEFAULT_RETRIES = 3
#: Most retries a deployment may ask for.
MAX_RETRIES = 100


#: A deployment's consistency level when it names none (:data:`essa.cluster.consistency.DEFAULT`).
DEFAULT_CONSISTENCY = "default"
#: The consistency levels (:data:`essa.cluster.consistency.LEVELS`, which is this tuple).
CONSISTENCY_LEVELS = (DEFAULT_CONSISTENCY, "repeatable-read", "causal")


def check_consistency(level: object) -> str:
    """``level`` if it is a consistency level (:data:`CONSISTENCY_LEVELS`); else a one-line error."""
    if not isinstance(level, str) or level not in CONSISTENCY_LEVELS:
        raise EssaError(f"unknown consistency level {str(level)[:40]!r}: expected one of "
                        f"{', '.join(CONSISTENCY_LEVELS)}")
    return level


def check_retries(retries: object) -> int:
    """``retries`` if it is a retry limit (a whole number from 0 to :data:`MAX_RETRIES`); else a one-line error."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise EssaError(f"retries must be a whole number from 0 to {MAX_RETRIES}, not {retries!r}")
    return retries


#: Store key of the set of deployment names.
INDEX_KEY = "deployments"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(name: str, what: str = "deployment name") -> str:
    """``name`` if it can name a deployment or namespace; else a one-line :class:`EssaError`.

    1 to 63 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or digit
    (names appear in store keys, topics and URLs).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise EssaError(
            f"{name!r} is not a valid {what}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def export_name(function: str) -> str:
    """The Wasm export of the function a user calls ``function``."""
    return EXPORT_PREFIX + function


def display_name(export: str) -> str:
    """How messages name the function behind ``export``: as its user wrote it."""
    return export[len(EXPORT_PREFIX):] if export.startswith(EXPORT_PREFIX) and len(export) > len(EXPORT_PREFIX) else export


def user_functions(info: ModuleInfo) -> list[str]:
    """The callable functions of a module, as users name them, sorted."""
    return sorted(
        name[len(EXPORT_PREFIX):]
        for name, signature in info.functions.items()
        if name.startswith(EXPORT_PREFIX) and len(name) > len(EXPORT_PREFIX) and signature == CALLABLE_SIGNATURE
    )


def check_signatures(signatures: Iterable[Signature], functions: list[str], origin: str = SECTION) -> list[Signature]:
    """``signatures`` (sorted, each once) if each names one of ``functions``; else one line naming the stray one."""
    checked = merge(signatures, origin)
    for signature in checked:
        if signature.name not in functions:
            available = ", ".join(functions) or "none"
            raise SignatureError(f"{origin} declares {signature}, but the module has no function {signature.name!r} "
                                 f"(functions: {available})")
    return checked


def namespace_of(name: str) -> str:
    """The state namespace of deployment ``name``: its name."""
    return name


def record_key(name: str) -> str:
    """Store key of deployment ``name``'s records."""
    return f"{INDEX_KEY}/{name}"


def data_prefix(namespace: str) -> str:
    """The store key prefix of a namespace's state: a guest's key ``k`` is ``{namespace}/data/k``."""
    return f"{namespace}/data/"


@dataclass(frozen=True)
class Deployment:
    """One version of a deployment."""

    name: str
    version: int
    #: The module's content name (hex SHA-256).
    module: str
    #: The module's size in bytes.
    size: int
    #: Callable functions, as users name them.
    functions: tuple[str, ...]
    #: When this version was deployed (nanoseconds since the Unix epoch).
    created: int
    #: The tags naming this version (``NAME@TAG``), sorted.
    tags: tuple[str, ...] = ()
    #: Whether the bare name means this version now (false after a rollback past it, or for an older one).
    current: bool = True
    #: The deployment's newest version (``None``: not known).
    latest: int | None = None
    #: The signatures of the functions that have one, by name (the others take and give bytes).
    signatures: tuple[Signature, ...] = ()
    #: How many times a call of it is run again when its executor dies (0: never; see docs/architecture.md).
    retries: int = DEFAULT_RETRIES
    #: The consistency level of its calls unless a call names one (:mod:`essa.cluster.consistency`).
    consistency: str = DEFAULT_CONSISTENCY

    @functools.cached_property
    def _signature_of(self) -> dict[str, Signature]:
        return {s.name: s for s in self.signatures}

    def signature(self, function: str) -> Signature | None:
        """The signature of ``function``, or ``None`` if it has none (it takes and gives bytes)."""
        return self._signature_of.get(function)

    @property
    def namespace(self) -> str:
        """Where the deployment's state lives (the same for every version)."""
        return namespace_of(self.name)

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def interface(self) -> dict[str, Any]:
        """Each function, by name, with its :class:`Signature`: ``None`` for one without (it takes bytes).

        :class:`FunctionChanges` compares two versions' interfaces.
        """
        return {function: self.signature(function) for function in self.functions}

    def as_dict(self) -> dict:
        """The version as JSON: ``signatures`` is a list of the contract's objects (docs/signatures.md)."""
        return {"name": self.name, "version": self.version, "module": self.module, "size": self.size,
                "functions": list(self.functions), "created": self.created, "tags": list(self.tags),
                "current": self.current, "latest": self.latest, "namespace": self.namespace,
                "signatures": [s.as_dict() for s in self.signatures], "retries": self.retries,
                "consistency": self.consistency}

    @classmethod
    def from_dict(cls, data: dict) -> "Deployment":
        latest = data.get("latest")
        signatures = tuple(Signature.from_dict(s, "a deployment's signature") for s in data.get("signatures") or ())
        return cls(data["name"], int(data["version"]), data["module"], int(data["size"]),
                   tuple(data["functions"]), int(data["created"]), tuple(data.get("tags") or ()),
                   bool(data.get("current", True)), None if latest is None else int(latest), signatures,
                   int(data.get("retries", DEFAULT_RETRIES)), _consistency(data.get("consistency")))

    def check_function(self, function: str) -> str:
        """The export to call for ``function``; :class:`NotFound` with suggestions if there is none."""
        if function in self.functions:
            return export_name(function)
        close = difflib.get_close_matches(function, self.functions, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(self.functions) or "none"
        raise NotFound(f"deployment {self.spec} has no function {function!r}{hint} (functions: {available})")


@dataclass(frozen=True)
class FunctionChanges:
    """How the functions of one version differ from another's: added, removed, or with another signature."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: Functions in both whose signatures differ (only where both are known).
    changed: tuple[str, ...] = ()

    @classmethod
    def between(cls, before: Mapping[str, Any], after: Mapping[str, Any]) -> "FunctionChanges":
        """The changes from ``before`` to ``after``, two :meth:`Deployment.interface` mappings."""
        return cls(tuple(sorted(set(after) - set(before))), tuple(sorted(set(before) - set(after))),
                   tuple(sorted(f for f in set(before) & set(after) if before[f] != after[f])))

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        """``added: f; removed: g; changed: h``, or ``""`` when nothing changed."""
        parts = [f"{what}: {', '.join(names)}" for what, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if names]
        return "; ".join(parts)


@dataclass(frozen=True)
class Deployed(Deployment):
    """What a deploy or a rollback did: the version the name means now, and the one it meant before."""

    #: The version the name meant before (``None``: the first deploy).
    previous: Deployment | None = None
    #: Nothing changed: the name already meant this version (a deploy of the same bytes).
    unchanged: bool = False

    @property
    def changes(self) -> FunctionChanges:
        """How this version's functions differ from :attr:`previous`'s (all added for a first deploy)."""
        return FunctionChanges.between(self.previous.interface() if self.previous else {}, self.interface())

    def as_dict(self) -> dict:
        changes = self.changes
        return {**super().as_dict(), "previous": self.previous.as_dict() if self.previous else None,
                "unchanged": self.unchanged,
                "changes": {"added": list(changes.added), "removed": list(changes.removed),
                            "changed": list(changes.changed)}}

    @classmethod
    def from_dict(cls, data: dict) -> "Deployed":
        version = Deployment.from_dict(data)
        previous = data.get("previous")
        return cls(**{f.name: getattr(version, f.name) for f in fields(Deployment)},
                   previous=Deployment.from_dict(previous) if isinstance(previous, dict) else None,
                   unchanged=bool(data.get("unchanged")))

    @classmethod
    def of(cls, version: Deployment, previous: Deployment | None, unchanged: bool = False) -> "Deployed":
        return cls(**{f.name: getattr(version, f.name) for f in fields(Deployment)}, previous=previous,
                   unchanged=unchanged)


def parse_spec(spec: str) -> tuple[str, int | str | None]:
    """``"wc"`` -> ``("wc", None)``; ``"wc@3"`` -> ``("wc", 3)``; ``"wc@stable"`` -> ``("wc", "stable")``."""
    name, sep, ref = spec.partition("@")
    check_name(name)
    if not sep:
        return name, None
    return name, parse_ref(ref, name)


class DeploymentRegistry:
    """Deployments kept in ``store`` (see the module documentation)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, name: str, module: str, size: int, functions: list[str], deploy_id: str | None = None,
            created: int | None = None, signatures: Iterable[Signature] = (),
            retries: int = DEFAULT_RETRIES, consistency: str = DEFAULT_CONSISTENCY) -> Deployed:
        """Record a new version of ``name`` for ``module`` (already in the store), unless the name means it already.

        ``deploy_id`` makes a repeated request (a retry) record nothing new;
        ``signatures`` are those of some of ``functions`` (see :func:`check_signatures`);
        ``retries`` is the version's retry limit; ``consistency`` is the level
        of the version's calls that name none (see :mod:`essa.cluster.consistency`).
        """
        check_name(name)
        check_retries(retries)
        check_consistency(consistency)
        deploy_id = deploy_id or uuid.uuid4().hex
        history = self._history(name)
        for number, record in history.numbered.items():
            if record["id"] == deploy_id:
                return Deployed.of(self._version(history, number), None)
        record = {"kind": "deploy", "id": deploy_id, "module": module, "size": size, "functions": sorted(functions)}
        checked = check_signatures(signatures, record["functions"])
        if checked:  # records of untyped modules keep the shape older readers know
            record["signatures"] = [s.as_dict() for s in checked]
        if check_retries(retries) != DEFAULT_RETRIES:  # records without it (older ones too) mean the default
            record["retries"] = retries
        if check_consistency(consistency) != DEFAULT_CONSISTENCY:  # likewise
            record["consistency"] = consistency
        current = history.current()
        if current is not None and _content(history.numbered[current]) == _content(record):
            version = self._version(history, current)
            return Deployed.of(version, version, unchanged=True)
        record.update(version=history.next_number(), created=history.next_time(at=created))
        self._write(name, record)
        self.store.put(INDEX_KEY, SetLattice({name.encode()}))
        after = self._history(name)
        previous = self._version(after, current) if current is not None and current in after.alive() else None
        return Deployed.of(self._version(after, after.find(None)), previous)

    def resolve(self, name: str, version: int | str | None = None) -> Deployment:
        """What ``name@version`` means: a number, a tag, ``latest``, or ``None`` for the bare name.

        :raises NotFound: no such deployment, version or tag.
        """
        history = self._history(name)
        return self._version(history, history.find(version))

    def versions(self, name: str) -> list[Deployment]:
        """Every version of ``name`` that exists, oldest first; empty if it was never deployed or is removed."""
        history = self._history(name)
        return [self._version(history, number) for number in history.alive()]

    def names(self) -> list[str]:
        """Names of the deployments that exist (not removed), sorted."""
        index = self.store.get(INDEX_KEY)
        if not isinstance(index, SetLattice):
            return []
        names = sorted(value.decode("utf-8", "replace") for value in index.values)
        return [name for name in names if _NAME.fullmatch(name) and self._history(name).alive()]

    def rollback(self, name: str, to: int | str | None = None, at: int | None = None) -> Deployed:
        """Make the bare name mean version ``to`` (default: the one before the version it means now).

        ``at`` (nanoseconds; default: now) stamps the record, here and in :meth:`tag`, :meth:`untag` and
        :meth:`drop`: a request answered by several executors, stamped by its client, is recorded once.
        """
        history = self._history(name)
        current = history.find(None)
        if to is None:
            older = [n for n in history.alive() if n < current]
            if not older:
                raise EssaError(f"{name}@{current} is the oldest version of {name}: there is none before it "
                                "to roll back to")
            target = older[-1]
        else:
            target = history.find(to)
        before = self._version(history, current)
        if target == current:
            return Deployed.of(before, before, unchanged=True)
        self._write(name, {"kind": "current", "id": history.numbered[target]["id"], "time": history.next_time(at=at)})
        return Deployed.of(self.resolve(name), before)

    def tag(self, name: str, version: int | str | None, tag: str, at: int | None = None) -> Deployment:
        """Make ``name@tag`` mean version ``version`` (a number, a tag, or ``None`` for the bare name's)."""
        check_tag(tag)
        history = self._history(name)
        target = history.find(version)
        self._write(name, {"kind": "tag", "tag": tag, "id": history.numbered[target]["id"],
                           "time": history.next_time(tag, at)})
        return self.resolve(name, target)

    def untag(self, name: str, tag: str, at: int | None = None) -> Deployment:
        """Remove tag ``tag`` of ``name``; return the version it named."""
        history = self._history(name)
        target = history.find(check_tag(tag))
        self._write(name, {"kind": "tag", "tag": tag, "id": None, "time": history.next_time(tag, at)})
        return self._version(history, target)

    def drop(self, name: str, version: int | str, at: int | None = None) -> Deployment:
        """Remove one version of ``name`` (and its tags); return it as it was.

        Refused for the version the bare name means (roll back first, or
        remove the whole deployment), which also covers the only version.
        """
        history = self._history(name)
        target = history.find(version)
        if len(history.alive()) == 1:
            raise EssaError(f"{name}@{target} is the only version of {name}: `essa rm {name}` removes the "
                            "deployment")
        if target == history.find(None):
            raise EssaError(f"{name}@{target} is the version {name} means now: roll back first (`essa rollback "
                            f"{name}`), or remove the whole deployment (`essa rm {name}`)")
        dropped = self._version(history, target)
        self._write(name, {"kind": "drop", "id": history.numbered[target]["id"], "time": at or time.time_ns()})
        return dropped

    def remove(self, name: str) -> Deployment:
        """Remove deployment ``name`` (every version); return the version its name meant."""
        history = self._history(name)
        current = self._version(history, history.find(None))
        newest = max(r["created"] for r in history.numbered.values())
        self._write(name, {"kind": "remove", "time": max(time.time_ns(), newest + 1)})
        return current

    def _history(self, name: str) -> History:
        stored = self.store.get(record_key(check_name(name)))
        records = [versions.decode(raw) for raw in stored.values] if isinstance(stored, SetLattice) else []
        return History(name, [r for r in records if r is not None])

    def _write(self, name: str, record: dict) -> None:
        self.store.put(record_key(name), SetLattice({versions.encode(record)}))

    @staticmethod
    def _version(history: History, number: int) -> Deployment:
        record = history.numbered[number]
        return Deployment(history.name, number, record["module"], record["size"], tuple(record["functions"]),
                          record["created"], history.tags_of(number), number == history.current(),
                          history.latest(), _signatures(record.get("signatures")), _retries(record.get("retries")),
                          _consistency(record.get("consistency")))


def _content(record: dict) -> tuple:
    """What a deploy record says about its version: a deploy that changes any of it makes a new version."""
    return (record["module"], record["size"], tuple(record["functions"]), _signatures(record.get("signatures")),
            _retries(record.get("retries")), _consistency(record.get("consistency")))


def _signatures(stored: object) -> tuple[Signature, ...]:
    """The signatures of a deploy record; none if they do not read (the version stays, untyped)."""
    try:
        return tuple(Signature.from_dict(s) for s in stored) if isinstance(stored, list) else ()
    except SignatureError:
        return ()


def _retries(stored: object) -> int:
    """The retry limit of a deploy record; the default where it says none (or none that reads)."""
    if isinstance(stored, bool) or not isinstance(stored, int) or not 0 <= stored <= MAX_RETRIES:
        return DEFAULT_RETRIES
    return stored


def _consistency(stored: object) -> str:
    """The consistency level of a deploy record; the default where it says none (or none that reads)."""
    return stored if isinstance(stored, str) and stored in CONSISTENCY_LEVELS else DEFAULT_CONSISTENCY


__all__ = [
    "CONSISTENCY_LEVELS",
    "DEFAULT_CONSISTENCY",
    "DEFAULT_RETRIES",
    "MAX_RETRIES",
    "Deployed",
    "Deployment",
    "DeploymentRegistry",
    "FunctionChanges",
    "EXPORT_PREFIX",
    "check_consistency",
    "check_name",
    "check_retries",
    "check_signatures",
    "data_prefix",
    "display_name",
    "export_name",
    "namespace_of",
    "parse_spec",
    "user_functions",
]
