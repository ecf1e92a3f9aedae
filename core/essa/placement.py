"""Placement: which executor runs a call.

A scheduler keeps an :class:`ExecutorState` per executor it sees and asks its
:class:`Placement` policy to choose one for every call. Plugins add policies
with the ``essa_register_placements`` hook (``essa scheduler --placement NAME``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from essa.transport.base import Message


@dataclass
class ExecutorState:
    """What the scheduler knows about one executor."""

    id: str
    #: Calls this scheduler placed here whose done notice (or receipt) has not come yet.
    in_flight: int = 0
    #: Calls other schedulers placed here, as of the executor's last load report
    #: (each done notice carries its load); 0 with one scheduler.
    others: int = 0
    placed: int = 0
    #: Modules this executor has run (so it has them compiled).
    modules: set[str] = field(default_factory=set)


class Placement:
    """Chooses an executor for a call; plugins register subclasses by name.

    The default is load-aware with a locality preference: fewest calls in
    flight (this scheduler's, plus the other schedulers' as last reported by
    the executor), where an executor that does not have the module loaded yet counts
    :attr:`cold_penalty` calls more; ties go to the executor used least.
    """

    name: ClassVar[str] = "least-loaded"
    cold_penalty: ClassVar[int] = 2

    def choose(self, executors: list[ExecutorState], request: Message) -> ExecutorState:
        """Pick one of ``executors`` (never empty) for ``request``."""
        module = request.get("module")
        return min(
            executors,
            key=lambda e: (e.in_flight + e.others + (0 if module in e.modules else self.cold_penalty), e.placed),
        )


__all__ = ["ExecutorState", "Placement"]
