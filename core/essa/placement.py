"""Placement: which executor runs a call.

A scheduler keeps an :class:`ExecutorState` per executor it sees and asks its
:class:`Placement` policy to choose one for every call. Plugins add policies
with the ``essa_register_placements`` hook (``essa scheduler --placement NAME``).

The default policy weighs load against locality. Load is the calls in flight
on an executor. Locality is twofold: the module (an executor that has not run
it yet must load it first) and the state keys the call will touch, which are
likely in the cache of an executor whose calls read them recently (see
:mod:`essa.state.cache`). A call's keys are the ones it declares (the request's
``keys``, e.g. ``Connection.call(..., keys=[...])``), else the ones its
function's last two calls both read (each executor reports the keys a call
read in its done notice; the scheduler calls :meth:`Placement.observe`): a
function whose keys depend on its arguments declares them or gets none.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

from essa.transport.base import Message

#: Most keys a done notice reports, a request declares, or a function is remembered by.
MAX_CALL_KEYS = 16
#: Most keys remembered per executor (the ones its calls read most recently).
MAX_EXECUTOR_KEYS = 100_000
#: Most functions whose keys are remembered.
MAX_FUNCTIONS = 10_000
#: Numbers the reports of keys read, in the order they arrive (which executor read a key last).
_read_order = itertools.count(1)


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
    #: State keys (:func:`key_id`) this executor's calls read lately, least recent first: likely cached there;
    #: each with when it was read last, in the order of all executors' reports.
    keys: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def touched(self, keys: list[str]) -> None:
        """This executor's call read ``keys`` (ids from :func:`key_id`)."""
        when = next(_read_order)
        for key in keys:
            self.keys[key] = when
            self.keys.move_to_end(key)
        while len(self.keys) > MAX_EXECUTOR_KEYS:
            self.keys.popitem(last=False)


def key_id(namespace: str, key: str) -> str:
    """How placement names a guest's state key ``key`` of ``namespace``."""
    return f"{namespace}\0{key}"


def call_keys(message: Message) -> list[str]:
    """The keys (namespace-relative text) a request declares or a done notice reports, at most
    :data:`MAX_CALL_KEYS`; anything malformed counts as none."""
    keys = message.get("keys")
    if not isinstance(keys, list):
        return []
    return [k for k in keys[:MAX_CALL_KEYS] if isinstance(k, str) and len(k) <= 1024]


class Placement:
    """Chooses an executor for a call; plugins register subclasses by name.

    The default: the lowest score, where an executor's score is its calls in
    flight (this scheduler's, plus the other schedulers' as last reported by
    the executor), plus :attr:`cold_penalty` if it has not loaded the module
    yet, minus :attr:`locality_weight` times the share of the call's keys it
    read lately; ties go to the executor whose calls read one of the keys last
    (so a function's calls stay with the freshest cache even when both
    executors read its keys once), then to the executor used least. So
    locality can win over at most :attr:`locality_weight` calls of extra load:
    a busy executor loses the calls whose keys it caches to an idle one (which
    then caches them). Every :attr:`explore_every`-th call with keys is placed
    by load alone (Cloudburst's share of random picks, made deterministic):
    hot keys reach other executors' caches before their first executor gets
    busy.
    """

    name: ClassVar[str] = "least-loaded"
    cold_penalty: ClassVar[int] = 2
    locality_weight: ClassVar[float] = 2.0
    #: One call with keys in this many is placed by load alone (0: never).
    explore_every: ClassVar[int] = 20

    def __init__(self) -> None:
        #: Calls with keys placed so far (every :attr:`explore_every`-th ignores them).
        self._keyed = 0
        #: (module, function) -> the keys its last call read (ids from :func:`key_id`), and whether
        #: the call before read the same ones
        self._reads: OrderedDict[tuple[str, str], tuple[list[str], bool]] = OrderedDict()

    def choose(self, executors: list[ExecutorState], request: Message) -> ExecutorState:
        """Pick one of ``executors`` (never empty) for ``request``."""
        module = request.get("module")
        keys = self._keys(request)
        if keys and self.explore_every:
            self._keyed += 1
            if self._keyed % self.explore_every == 0:
                keys = []
        if not keys:
            return min(
                executors,
                key=lambda e: (e.in_flight + e.others + (0 if module in e.modules else self.cold_penalty), e.placed),
            )
        share = self.locality_weight / len(keys)

        def score(e: ExecutorState) -> tuple[float, int, int]:
            cached = e.keys
            hits = last = 0
            for k in keys:
                when = cached.get(k)
                if when is not None:
                    hits += 1
                    last = max(last, when)
            load = e.in_flight + e.others + (0 if module in e.modules else self.cold_penalty)
            return load - share * hits, -last, e.placed

        return min(executors, key=score)

    def observe(self, executor: ExecutorState, call: Message, keys: list[str]) -> None:
        """``executor`` ran ``call`` (its ``module``, ``function`` and ``namespace``), which read ``keys``
        (namespace-relative, from the call's done notice)."""
        if not keys:
            return
        namespace = call.get("namespace", "")
        ids = [key_id(namespace, k) for k in keys]
        executor.touched(ids)
        function = (call.get("module", ""), call.get("function", ""))
        before = self._reads.get(function)
        self._reads[function] = (ids, before is not None and set(before[0]) == set(ids))
        self._reads.move_to_end(function)
        while len(self._reads) > MAX_FUNCTIONS:
            self._reads.popitem(last=False)

    def _keys(self, request: Message) -> list[str]:
        declared = call_keys(request)
        if declared:
            namespace = request.get("namespace", "")
            return [key_id(namespace, k) for k in declared]
        learned = self._reads.get((request.get("module", ""), request.get("function", "")))
        return learned[0] if learned is not None and learned[1] else []


__all__ = ["ExecutorState", "Placement", "call_keys", "key_id"]
