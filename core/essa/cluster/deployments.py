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
    functions, time) and one per removal (time).

Versions are numbered at deploy time (one more than the highest so far).
Two deploys of one name at the same moment may pick the same number; readers
then order them by number, time and module and number them anew, so every
reader agrees. A deployment removed after its latest deploy is gone until it
is deployed again (its versions continue where they stopped).

Users name functions as they wrote them (``count_words``); the export
``__essa_wrapper__count_words`` is the guest ABI's detail, and only
:func:`export_name` and :func:`user_functions` know it.
"""

from __future__ import annotations

import difflib
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass

from essa.errors import EssaError, NotFound
from essa.state.lattice import SetLattice
from essa.state.store import Store
from essa.wasm.engine import CALLABLE_SIGNATURE, ModuleInfo

#: Exports of callable functions carry this prefix (the Rust SDK's and the C SDK's convention).
EXPORT_PREFIX = "__essa_wrapper__"

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
    #: The consistency level of its calls unless a call names one (:mod:`essa.cluster.consistency`).
    consistency: str = "default"

    @property
    def namespace(self) -> str:
        """Where the deployment's state lives (the same for every version)."""
        return namespace_of(self.name)

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict:
        return {**asdict(self), "functions": list(self.functions), "namespace": self.namespace}

    @classmethod
    def from_dict(cls, data: dict) -> "Deployment":
        return cls(data["name"], int(data["version"]), data["module"], int(data["size"]),
                   tuple(data["functions"]), int(data["created"]), data.get("consistency") or "default")

    def check_function(self, function: str) -> str:
        """The export to call for ``function``; :class:`NotFound` with suggestions if there is none."""
        if function in self.functions:
            return export_name(function)
        close = difflib.get_close_matches(function, self.functions, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(self.functions) or "none"
        raise NotFound(f"deployment {self.spec} has no function {function!r}{hint} (functions: {available})")


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"wc"`` -> ``("wc", None)``; ``"wc@3"`` -> ``("wc", 3)``."""
    name, sep, version = spec.partition("@")
    check_name(name)
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise EssaError(f"{spec!r}: a version is a positive number, as in {name}@3")
    return name, int(version)


class DeploymentRegistry:
    """Deployments kept in ``store`` (see the module documentation)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, name: str, module: str, size: int, functions: list[str], deploy_id: str | None = None,
            created: int | None = None, consistency: str = "default") -> Deployment:
        """Record a new version of ``name`` for ``module`` (already in the store); return it.

        ``deploy_id`` makes a repeated request (a retry) record nothing new;
        ``consistency`` is the level of the version's calls that name none.
        """
        check_name(name)
        deploy_id = deploy_id or uuid.uuid4().hex
        created = created or time.time_ns()
        deploys, _removed = self._records(name)
        for record in deploys:
            if record.get("id") == deploy_id:
                return self.resolve(name, record["version"])
        version = max((r["version"] for r in deploys), default=0) + 1
        record = {"kind": "deploy", "id": deploy_id, "version": version, "module": module, "size": size,
                  "functions": sorted(functions), "created": created}
        if consistency != "default":
            record["consistency"] = consistency
        self.store.put(record_key(name), SetLattice({_encode(record)}))
        self.store.put(INDEX_KEY, SetLattice({name.encode()}))
        return self.resolve(name)

    def resolve(self, name: str, version: int | None = None) -> Deployment:
        """Version ``version`` of ``name`` (default: the latest); :class:`NotFound` if there is none."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no deployment named {name!r} (see `essa ls`)")
        if version is None:
            return versions[-1]
        if not 1 <= version <= len(versions):
            raise NotFound(f"deployment {name!r} has no version {version} (latest: {versions[-1].version})")
        return versions[version - 1]

    def versions(self, name: str) -> list[Deployment]:
        """Every version of ``name``, oldest first; empty if it was never deployed or is removed."""
        deploys, removed = self._records(name)
        if not deploys or removed >= max(r["created"] for r in deploys):
            return []
        ordered = sorted(deploys, key=lambda r: (r["version"], r["created"], r["module"], r["id"]))
        return [
            Deployment(name, number, r["module"], r["size"], tuple(r["functions"]), r["created"],
                       r.get("consistency") or "default")
            for number, r in enumerate(ordered, start=1)
        ]

    def names(self) -> list[str]:
        """Names of the deployments that exist (not removed), sorted."""
        index = self.store.get(INDEX_KEY)
        if not isinstance(index, SetLattice):
            return []
        names = sorted(value.decode("utf-8", "replace") for value in index.values)
        return [name for name in names if _NAME.fullmatch(name) and self.versions(name)]

    def remove(self, name: str) -> Deployment:
        """Remove deployment ``name`` (every version); return its latest version."""
        latest = self.resolve(name)
        record = {"kind": "remove", "time": max(time.time_ns(), latest.created + 1)}
        self.store.put(record_key(name), SetLattice({_encode(record)}))
        return latest

    def _records(self, name: str) -> tuple[list[dict], int]:
        stored = self.store.get(record_key(check_name(name)))
        deploys, removed = [], 0
        if isinstance(stored, SetLattice):
            for raw in stored.values:
                record = _decode(raw)
                if record is None:
                    continue
                if record["kind"] == "deploy":
                    deploys.append(record)
                else:
                    removed = max(removed, record["time"])
        return deploys, removed


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _decode(raw: bytes) -> dict | None:
    """A record, or ``None`` for bytes that are not one (the key is shared state: be wary)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if record.get("kind") == "remove" and isinstance(record.get("time"), int):
        return record
    fields = {"id": str, "version": int, "module": str, "size": int, "functions": list, "created": int}
    if record.get("kind") == "deploy" and all(isinstance(record.get(k), t) for k, t in fields.items()):
        if all(isinstance(f, str) for f in record["functions"]):
            return record
    return None


__all__ = [
    "Deployment",
    "DeploymentRegistry",
    "EXPORT_PREFIX",
    "check_name",
    "data_prefix",
    "display_name",
    "export_name",
    "namespace_of",
    "parse_spec",
    "user_functions",
]
