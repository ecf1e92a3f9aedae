"""What a call may use: resource limits, and the host resources granted to guests."""

from __future__ import annotations

from dataclasses import dataclass

from essa.util.units import MiB, format_bytes, format_seconds


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every call an engine runs.

    Exceeding one ends that call only: the engine raises
    :class:`essa.errors.LimitExceeded` (a :class:`~essa.errors.GuestTrap`)
    whose message names the limit, e.g. ``time limit exceeded (5 s)``.

    :param time_limit: seconds of wall time one call may run (host calls and
        waits included), or ``None`` for no limit.
    :param max_memory_bytes: cap on one instance's linear memory; growing past
        it fails inside the guest (``memory.grow`` returns -1), and a call that
        then fails is reported as ``memory limit exceeded``.
    :param max_message_bytes: cap on the bytes of one call's arguments, of its
        result, and of one lattice value a guest puts; larger ones are refused
        with ``UnknownError`` and a one-line warning.
    :param max_output_bytes: cap on the stdout + stderr bytes of one call, or
        ``None`` for no limit.
    """

    time_limit: float | None = 30.0
    max_memory_bytes: int = 256 * MiB
    max_message_bytes: int = 64 * MiB
    max_output_bytes: int | None = 64 * MiB

    def __post_init__(self) -> None:
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError("the time limit must be positive (or None for no limit)")
        for name in ("max_memory_bytes", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_output_bytes is not None and self.max_output_bytes < 0:
            raise ValueError("max_output_bytes must not be negative")

    def exceeded(self, limit: str) -> str:
        """The one-line message for exceeding ``limit`` ("time", "memory", "output", "message size")."""
        value = {
            "time": self.time_limit,
            "memory": self.max_memory_bytes,
            "output": self.max_output_bytes,
            "message size": self.max_message_bytes,
        }[limit]
        shown = format_seconds(value) if limit == "time" else format_bytes(value)
        return f"{limit} limit exceeded ({shown})"


@dataclass(frozen=True)
class DirGrant:
    """A host directory a guest may use, preopened as ``guest`` (e.g. ``/data``)."""

    host: str
    guest: str
    writable: bool = False


@dataclass(frozen=True)
class Grants:
    """What a guest may reach of the host beyond stdio, clocks and randomness.

    Nothing by default: no preopened directory, no environment variable, no
    socket. Only whoever runs the executor grants more (``--dir``, ``--env``).
    """

    dirs: tuple[DirGrant, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dirs or self.env)


__all__ = ["DirGrant", "Grants", "Limits"]
