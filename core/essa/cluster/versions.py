"""A deployment's history: its records, its numbered versions, and which version each reference means.

A deployment is a ``Set`` of JSON records in the store (see
:mod:`essa.cluster.deployments`). Records are only ever added, so
concurrent writers merge like any other state, and every reader of the same
records agrees on what they mean:

``deploy`` ``{"id", "version", "module", "size", "functions", "created"}``
    a new version; from ``created`` on, the deployment's name means it;
``current`` ``{"id", "time"}``
    from ``time`` on, the name means the version deployed as ``id`` (a
    rollback moves this pointer; no bytes are copied);
``tag`` ``{"tag", "id", "time"}``
    from ``time`` on, ``NAME@TAG`` means version ``id`` (``id`` null: the tag
    is removed);
``drop`` ``{"id", "time"}``
    version ``id`` is removed (its tags go with it);
``remove`` ``{"time"}``
    every version deployed before ``time`` is removed (the whole deployment).

Versions are numbered by their deploy records in order of (version field,
time, module, id): two deploys that picked the same number at the same moment
get consecutive numbers, the same for every reader. Removed versions keep
their numbers, so ``NAME@3`` never comes to mean another module.

The version a name means is the one of the newest pointer (a deploy, or a
``current`` record) whose version still exists. Writers stamp a pointer or a
tag later than every one before it (:meth:`History.next_time`), so a
rollback or a deploy takes effect even from a host whose clock is behind.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterable

from essa.errors import EssaError, NotFound

#: Reserved reference: the newest version, whatever the name means now.
LATEST = "latest"

_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")

#: The fields of each kind of record, with their types (``None``: may also be null).
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "deploy": {"id": (str,), "version": (int,), "module": (str,), "size": (int,), "functions": (list,),
               "created": (int,)},
    "current": {"id": (str,), "time": (int,)},
    "tag": {"tag": (str,), "id": (str, type(None)), "time": (int,)},
    "drop": {"id": (str,), "time": (int,)},
    "remove": {"time": (int,)},
}


def check_tag(tag: str) -> str:
    """``tag`` if it can name versions; else a one-line :class:`EssaError`."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag) or tag == LATEST:
        raise EssaError(f"{tag!r} is not a valid tag: use 1-63 letters, digits, '_', '.' or '-', starting with "
                        f"a letter ({LATEST!r} is taken: it means the newest version)")
    return tag


def parse_ref(ref: str, name: str) -> int | str:
    """What follows ``@`` in ``NAME@REF``: a version number, or a tag (``latest``: the newest version)."""
    if ref.isdigit() and int(ref) >= 1:
        return int(ref)
    if ref == LATEST or _TAG.fullmatch(ref):
        return ref
    raise EssaError(f"{name}@{ref!r}: a version is a positive number (as in {name}@3) or a tag (as in "
                    f"{name}@stable)")


def encode(record: dict) -> bytes:
    """A record's bytes in the store (sorted keys: equal records are equal bytes)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def decode(raw: bytes) -> dict | None:
    """A record, or ``None`` for bytes that are not one (the key is shared state: be wary)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    fields = _FIELDS.get(record.get("kind"))  # type: ignore[arg-type]
    if fields is None:
        return None
    for key, kinds in fields.items():
        value = record.get(key)
        if key not in record or not isinstance(value, kinds) or isinstance(value, bool):
            return None
    if record["kind"] == "deploy" and not all(isinstance(f, str) for f in record["functions"]):
        return None
    return record


class History:
    """What the records of deployment ``name`` say (see the module documentation)."""

    def __init__(self, name: str, records: Iterable[dict]) -> None:
        self.name = name
        deploys: list[dict] = []
        self._pointers: list[tuple[int, str]] = []  # (time, deploy id)
        self._tags: dict[str, tuple[int, str, str | None]] = {}  # tag -> (time, id or "", target id)
        dropped: set[str] = set()
        removed = 0
        for record in records:
            kind = record["kind"]
            if kind == "deploy":
                deploys.append(record)
                self._pointers.append((record["created"], record["id"]))
            elif kind == "current":
                self._pointers.append((record["time"], record["id"]))
            elif kind == "tag":
                entry = (record["time"], record["id"] or "", record["id"])
                if entry[:2] > self._tags.get(record["tag"], (-1, ""))[:2]:
                    self._tags[record["tag"]] = entry
            elif kind == "drop":
                dropped.add(record["id"])
            else:
                removed = max(removed, record["time"])
        deploys.sort(key=lambda r: (r["version"], r["created"], r["module"], r["id"]))
        #: Every deploy record, removed ones too: version number -> record.
        self.numbered: dict[int, dict] = dict(enumerate(deploys, start=1))
        self._number = {r["id"]: n for n, r in self.numbered.items()}
        self._alive = {r["id"] for r in deploys if r["id"] not in dropped and r["created"] > removed}
        self._pointers.sort(reverse=True)

    # -- versions ------------------------------------------------------------------

    def alive(self) -> list[int]:
        """The numbers of the versions that exist, oldest first (empty: no such deployment, or removed)."""
        return [n for n, r in self.numbered.items() if r["id"] in self._alive]

    def current(self) -> int | None:
        """The version the bare name means, or ``None`` if there is none."""
        for _time, deploy_id in self._pointers:
            if deploy_id in self._alive:
                return self._number[deploy_id]
        return None

    def latest(self) -> int | None:
        """The newest version that exists."""
        alive = self.alive()
        return alive[-1] if alive else None

    def find(self, ref: int | str | None) -> int:
        """The version ``ref`` means (``None``: the bare name's); :class:`NotFound` if there is none."""
        current = self.current()
        if current is None:
            raise NotFound(f"no deployment named {self.name!r} (see `essa ls`)")
        if ref is None:
            return current
        if ref == LATEST:
            return self.latest()  # type: ignore[return-value]
        if isinstance(ref, int):
            record = self.numbered.get(ref)
            if record is None:
                raise NotFound(f"deployment {self.name!r} has no version {ref} (latest: {self.latest()})")
            if record["id"] not in self._alive:
                raise NotFound(f"{self.name}@{ref} was removed (versions: {_listing(self.alive())})")
            return ref
        target = self.tags().get(ref)
        if target is None:
            raise NotFound(f"deployment {self.name!r} has no tag {ref!r} (tags: {_listing(self.tags()) or 'none'})")
        return target

    # -- tags ----------------------------------------------------------------------

    def tags(self) -> dict[str, int]:
        """Every tag that names a version that exists: tag -> version number."""
        return {tag: self._number[target] for tag, (_t, _i, target) in sorted(self._tags.items())
                if target is not None and target in self._alive}

    def tags_of(self, number: int) -> tuple[str, ...]:
        """The tags naming version ``number``, sorted."""
        return tuple(tag for tag, target in self.tags().items() if target == number)

    # -- writing -------------------------------------------------------------------

    def next_number(self) -> int:
        """The version field of a new deploy record (it ends up numbered after every other)."""
        return max([len(self.numbered), *(r["version"] for r in self.numbered.values())]) + 1

    def next_time(self, tag: str | None = None, at: int | None = None) -> int:
        """A time for a new pointer (or a record of ``tag``): ``at`` (default: now), but later than every one before.

        Every executor answers a control request (the client takes the first
        answer): from the client's ``at`` and the same records, each writes
        the same record, which the store keeps once.
        """
        if tag is None:
            before = self._pointers[0][0] if self._pointers else 0
        else:
            before = self._tags.get(tag, (0,))[0]
        return max(time.time_ns() if at is None else at, before + 1)


def _listing(numbers: Iterable) -> str:
    return ", ".join(str(n) for n in numbers)


__all__ = ["History", "LATEST", "check_tag", "decode", "encode", "parse_ref"]
