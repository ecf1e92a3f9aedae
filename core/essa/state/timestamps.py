"""Timestamps as RFC 3339 text, exactly as Rust's chrono writes and reads them.

Lww lattices carry integer nanoseconds since the epoch (UTC); their bincode
encoding (:mod:`essa.state.bincode`) and their readable views write them as
chrono does. Calendar arithmetic on integers (Howard Hinnant's days <-> civil
algorithms) rather than datetime keeps nanoseconds and covers year 0000.
"""

from __future__ import annotations

import re

from essa.errors import DecodeError
from essa.state.lattice import MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS

_NS = 1_000_000_000


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def format_timestamp(ns: int) -> str:
    """Format integer nanoseconds since the epoch as chrono writes RFC 3339 UTC.

    ``YYYY-MM-DDTHH:MM:SS``, then a fraction of 0, 3, 6 or 9 digits (none when
    the nanoseconds are 0, milliseconds when exact, microseconds when exact,
    else nanoseconds), then ``Z``.

    :raises ValueError: ``ns`` is outside the years 0000..9999.
    """
    if not MIN_TIMESTAMP_NS <= ns <= MAX_TIMESTAMP_NS:
        raise ValueError(f"timestamp {ns} ns is outside the years 0000..9999")
    secs, frac = divmod(ns, _NS)
    days, secs = divmod(secs, 86_400)
    year, month, day = _civil_from_days(days)
    hour, secs = divmod(secs, 3600)
    minute, second = divmod(secs, 60)
    if frac == 0:
        fraction = ""
    elif frac % 1_000_000 == 0:
        fraction = f".{frac // 1_000_000:03d}"
    elif frac % 1000 == 0:
        fraction = f".{frac // 1000:06d}"
    else:
        fraction = f".{frac:09d}"
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _shorten(text: str, limit: int = 64) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def parse_timestamp(text: str) -> int:
    """Parse RFC 3339 text into integer nanoseconds since the epoch, UTC.

    Accepts ``T``, ``t`` or a space between date and time, an optional
    fraction (digits beyond nanoseconds are truncated, as chrono does), and
    ``Z``, ``z`` or a ``±HH:MM`` offset (converted to UTC). A leap second
    (``:60``) counts as the first instant of the next minute.

    :raises essa.errors.DecodeError: ``text`` is not RFC 3339, names an
        impossible date or time, or falls outside the years 0000..9999 in UTC.
    """
    if not isinstance(text, str):
        raise TypeError(f"timestamp text must be str, not {type(text).__name__}")
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise DecodeError(
            f"invalid RFC 3339 timestamp {_shorten(text)}:"
            " expected YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM"
        )
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not 1 <= month <= 12:
        raise DecodeError(f"invalid RFC 3339 timestamp {_shorten(text)}: month {month} out of range")
    if not 1 <= day <= _days_in_month(year, month):
        raise DecodeError(
            f"invalid RFC 3339 timestamp {_shorten(text)}: day {day} out of range for {year:04d}-{month:02d}"
        )
    if hour > 23 or minute > 59 or second > 60:
        raise DecodeError(f"invalid RFC 3339 timestamp {_shorten(text)}: time of day out of range")
    offset = 0
    if m.group(8):
        off_hour, off_minute = int(m.group(9)), int(m.group(10))
        if off_hour > 23 or off_minute > 59:
            raise DecodeError(f"invalid RFC 3339 timestamp {_shorten(text)}: UTC offset out of range")
        offset = off_hour * 3600 + off_minute * 60
        if m.group(8) == "-":
            offset = -offset
    digits = m.group(7)
    frac = int(digits[:9].ljust(9, "0")) if digits else 0
    secs = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    ns = secs * _NS + frac
    if not MIN_TIMESTAMP_NS <= ns <= MAX_TIMESTAMP_NS:
        raise DecodeError(f"invalid RFC 3339 timestamp {_shorten(text)}: outside the years 0000..9999 in UTC")
    return ns


__all__ = ["format_timestamp", "parse_timestamp"]
