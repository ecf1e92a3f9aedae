"""Sizes and durations as people write and read them (``64M``, ``500ms``, ``64 MiB``)."""

from __future__ import annotations

import re

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b?)|b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"64M"``, ``"64MiB"``, ``"1g"``, ``"65536"`` -> bytes (K, M, G, T are powers of 1024).

    :raises ValueError: with a message saying what is accepted.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 65536, 64K, 256M, 1G)")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    value = int(number * (1 << (10 * " kmgt".index(unit or " "))))
    if value < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return value


def parse_duration(text: str) -> float:
    """``"5"``, ``"0.5"``, ``"500ms"``, ``"2m"`` -> seconds.

    :raises ValueError: with a message saying what is accepted.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 5, 0.5, 500ms, 2m)")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[(match.group(2) or "s").lower()]
    if not value > 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return value


def format_bytes(n: int | None) -> str:
    """``67108864`` -> ``"64 MiB"``; exact multiples of KiB/MiB/GiB are shown as such."""
    if n is None:
        return "no limit"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def format_seconds(seconds: float | None) -> str:
    """``5.0`` -> ``"5 s"``, ``0.5`` -> ``"0.5 s"``."""
    if seconds is None:
        return "no limit"
    return f"{seconds:g} s"


def spell_size(n: int) -> str:
    """The shortest exact spelling of ``n`` bytes that :func:`parse_size` reads back (``4294967296`` -> ``"4G"``)."""
    for suffix, unit in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


__all__ = ["GiB", "KiB", "MiB", "TiB", "format_bytes", "format_seconds", "parse_duration", "parse_size", "spell_size"]
