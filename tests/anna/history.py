"""A small history checker for the consistency tests: what a level promises, checked over recorded calls.

A history is a list of records, one per call: what the call did and what its
reads returned (decoded Set members). Each checker returns the records that
break its level's promise, so a test can say which calls and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Record:
    """One call: the level it ran at, what it wrote (members), and what each of its reads saw, in order."""

    level: str
    wrote: frozenset[bytes] = frozenset()
    reads: list[frozenset[bytes] | None] = field(default_factory=list)


def repeatable_read_violations(history: list[Record]) -> list[Record]:
    """Call trees whose reads of the key did not all see one version."""
    return [r for r in history if len({read for read in r.reads}) > 1]


def causal_violations(history: list[Record]) -> list[Record]:
    """Calls whose reads missed a write that causally precedes them (the caller's own write)."""
    return [r for r in history if any(read is None or not r.wrote <= read for read in r.reads)]

