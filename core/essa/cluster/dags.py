"""DAGs: compositions of deployments' functions, registered once and called as one.

A DAG names its stages ``DEPLOYMENT.FUNCTION`` (``wc.split``; ``wc@2.split``
pins a version, else a call takes the latest) and joins them with edges
``(FROM, TO)``: a sequence, a fan-out (a stage with several downstream
stages), a fan-in (a stage with several upstream ones). It must be acyclic
and have exactly one *sink* (a stage without downstream stages): the sink's
result is the DAG's result.

What a stage receives: a *source* (a stage without upstream stages) gets the
DAG call's arguments; any other stage gets its upstream stages' results,
concatenated in the order its in-edges were declared. Arguments are the
bincode of a tuple of parameters, which has no length prefix, so a fan-in
stage whose upstream stages return ``A`` and ``B`` is called as ``f(a: A,
b: B)``, and a stage after one stage takes its result as its one argument.

Every stage runs as a call of its deployment's function, in its
deployment's namespace, with the caller's token. Calling a DAG resolves the
deployments and builds a *plan* (:func:`call_plan`) that travels with the
call; the scheduler places every stage (:mod:`essa.cluster.dag_runs`), and
stages trigger each other executor to executor (:mod:`essa.cluster.stages`).

DAGs are kept in the store, as lattices (like deployments,
:mod:`essa.cluster.deployments`): ``dags`` is a ``Set`` of the names ever
registered, ``dags/<name>`` a ``Set`` of JSON records, one per registration
and one per removal; the newest registration counts unless a removal came
after it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from essa.cluster.consistency import DEFAULT, check_level
from essa.cluster.deployments import Deployment, check_name, parse_spec
from essa.errors import EssaError, NotFound
from essa.state.lattice import SetLattice
from essa.state.store import Store
from essa.transport.base import Message

#: Store key of the set of DAG names.
INDEX_KEY = "dags"
#: Most stages one DAG may have.
MAX_STAGES = 256
#: The text fields of a plan's stage (each at most 1024 characters).
STAGE_TEXT = ("name", "module", "function", "namespace", "deployment")


def record_key(name: str) -> str:
    """Store key of DAG ``name``'s records."""
    return f"{INDEX_KEY}/{name}"


def split_stage(stage: str) -> tuple[str, str]:
    """``"wc@2.split"`` -> ``("wc@2", "split")``; a one-line :class:`EssaError` if it is not ``DEPLOYMENT.FUNCTION``."""
    if not isinstance(stage, str):
        raise EssaError(f"a DAG stage is named DEPLOYMENT.FUNCTION, not {stage!r}")
    spec, dot, function = stage.rpartition(".")
    if not dot or not spec or not function:
        raise EssaError(f"DAG stage {stage!r} is not DEPLOYMENT.FUNCTION (as in wc.count)")
    parse_spec(spec)
    return spec, function


@dataclass(frozen=True)
class Dag:
    """A registered DAG: its stages (``DEPLOYMENT.FUNCTION``) and edges, checked (see :func:`check_dag`)."""

    name: str
    functions: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    #: When it was registered (nanoseconds since the Unix epoch).
    created: int

    def upstream(self, stage: str) -> list[str]:
        """The stages whose results ``stage`` takes, in the order its in-edges were declared."""
        return [a for a, b in self.edges if b == stage]

    def downstream(self, stage: str) -> list[str]:
        return [b for a, b in self.edges if a == stage]

    @property
    def sink(self) -> str:
        """The stage whose result is the DAG's result."""
        return next(f for f in self.functions if not self.downstream(f))

    def order(self) -> list[str]:
        """The stages, each after every stage it takes a result from (declaration order among equals)."""
        done: list[str] = []
        left = list(self.functions)
        while left:
            ready = next(f for f in left if all(u in done for u in self.upstream(f)))
            done.append(ready)
            left.remove(ready)
        return done

    def as_dict(self) -> dict:
        return {"name": self.name, "functions": list(self.functions), "edges": [list(e) for e in self.edges],
                "sink": self.sink, "created": self.created}

    @classmethod
    def from_dict(cls, data: dict) -> "Dag":
        return check_dag(data["name"], data["functions"], data["edges"], int(data["created"]))


def check_dag(name: str, functions: Sequence[str], edges: Sequence[Sequence[str]], created: int = 0) -> Dag:
    """The :class:`Dag` these make, or a one-line :class:`EssaError` saying what is wrong with it."""
    check_name(name, "DAG name")
    if isinstance(functions, str) or not isinstance(functions, Sequence) or not functions:
        raise EssaError(f"DAG {name!r} needs at least one stage (DEPLOYMENT.FUNCTION)")
    if len(functions) > MAX_STAGES:
        raise EssaError(f"DAG {name!r} has {len(functions)} stages; the most is {MAX_STAGES}")
    stages = tuple(functions)
    for stage in stages:
        split_stage(stage)
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise EssaError(f"DAG {name!r} names stage {repeated[0]!r} twice")
    pairs: list[tuple[str, str]] = []
    for edge in edges:
        if isinstance(edge, str) or not isinstance(edge, Sequence) or len(edge) != 2:
            raise EssaError(f"a DAG edge is a pair (FROM, TO), not {edge!r}")
        a, b = edge
        for end in (a, b):
            if end not in stages:
                raise EssaError(f"DAG {name!r}: edge {a!r} -> {b!r} names {end!r}, which is not one of its stages")
        if a == b:
            raise EssaError(f"DAG {name!r}: edge {a!r} -> {b!r} joins a stage to itself")
        if (a, b) in pairs:
            raise EssaError(f"DAG {name!r} has edge {a!r} -> {b!r} twice")
        pairs.append((a, b))
    dag = Dag(name, stages, tuple(pairs), created)
    sinks = [f for f in stages if not dag.downstream(f)]
    left = set(stages)
    while True:  # peel off stages whose upstream stages are all peeled: what stays is on a cycle
        ready = {f for f in left if not any(u in left for u in dag.upstream(f))}
        if not ready:
            break
        left -= ready
    if left:
        raise EssaError(f"DAG {name!r} has a cycle through {sorted(left)[0]!r}")
    if len(sinks) != 1:
        raise EssaError(f"DAG {name!r} has {len(sinks)} stages without downstream stages ({', '.join(sinks)}); "
                        "it needs exactly one, whose result is the DAG's result")
    return dag


class DagRegistry:
    """DAGs kept in ``store`` (see the module documentation)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, dag: Dag) -> Dag:
        """Record ``dag`` (replacing a DAG of that name); return it as recorded."""
        created = max(dag.created, time.time_ns())
        record = {"kind": "create", "id": uuid.uuid4().hex, "functions": list(dag.functions),
                  "edges": [list(e) for e in dag.edges], "created": created}
        self.store.put(record_key(dag.name), SetLattice({_encode(record)}))
        self.store.put(INDEX_KEY, SetLattice({dag.name.encode()}))
        return self.get(dag.name)

    def get(self, name: str) -> Dag:
        """DAG ``name``; :class:`NotFound` if there is none."""
        stored = self.store.get(record_key(check_name(name, "DAG name")))
        latest, removed = None, 0
        if isinstance(stored, SetLattice):
            for raw in stored.values:
                record = _decode(raw)
                if record is None:
                    continue
                if record["kind"] == "remove":
                    removed = max(removed, record["time"])
                elif latest is None or (record["created"], record["id"]) > (latest["created"], latest["id"]):
                    latest = record
        if latest is None or removed >= latest["created"]:
            raise NotFound(f"no DAG named {name!r} (see `essa dag ls`)")
        try:
            return check_dag(name, latest["functions"], latest["edges"], latest["created"])
        except EssaError as exc:  # the key is shared state: a record written by hand
            raise NotFound(f"DAG {name!r} is damaged in the store: {exc}") from None

    def names(self) -> list[str]:
        """Names of the DAGs that exist (not removed), sorted."""
        index = self.store.get(INDEX_KEY)
        if not isinstance(index, SetLattice):
            return []
        found = []
        for raw in sorted(index.values):
            name = raw.decode("utf-8", "replace")
            try:
                self.get(name)
            except EssaError:
                continue
            found.append(name)
        return found

    def remove(self, name: str) -> Dag:
        """Remove DAG ``name``; return it."""
        dag = self.get(name)
        record = {"kind": "remove", "time": max(time.time_ns(), dag.created + 1)}
        self.store.put(record_key(name), SetLattice({_encode(record)}))
        return dag


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _decode(raw: bytes) -> dict | None:
    """A record, or ``None`` for bytes that are not one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if record.get("kind") == "remove" and isinstance(record.get("time"), int):
        return record
    fields = {"id": str, "functions": list, "edges": list, "created": int}
    if record.get("kind") == "create" and all(isinstance(record.get(k), t) for k, t in fields.items()):
        return record
    return None


# -- plans ------------------------------------------------------------------------------


def call_plan(dag: Dag, resolve: Callable[[str], Deployment]) -> Message:
    """The plan of one call of ``dag``: its stages in order, each resolved to a module and function.

    ``resolve(spec)`` gives the deployment a stage names. A stage of the plan
    is ``{"module", "function" (the export), "namespace", "deployment",
    "name" (as the DAG names it), "parts" (how many inputs it waits for),
    "next" ([[stage, part], ...]: where its result goes), and "consistency"
    (its deployment's level, when not ``default``: the stage's level unless
    the call names one)}``; stages come in an order where every ``next``
    points forward, and the sink is last.
    """
    order = dag.order()
    order.remove(dag.sink)
    order.append(dag.sink)  # still a valid order: nothing comes after the sink
    index = {stage: i for i, stage in enumerate(order)}
    stages = []
    for stage in order:
        spec, function = split_stage(stage)
        deployment = resolve(spec)
        upstream = dag.upstream(stage)
        stages.append({
            "name": stage, "module": deployment.module, "function": deployment.check_function(function),
            "namespace": deployment.namespace, "deployment": deployment.name, "parts": max(1, len(upstream)),
            "next": [[index[b], dag.upstream(b).index(stage)] for b in dag.downstream(stage)],
        })
        if deployment.consistency != DEFAULT:
            stages[-1]["consistency"] = deployment.consistency
    return {"name": dag.name, "stages": stages}


def check_stage_level(i: int, stage: Message) -> str | None:
    """Why stage ``i``'s ``consistency`` (optional) is not a level (one line), or ``None``."""
    level = stage.get("consistency")
    if level is None:
        return None
    problem = check_level(level)
    return None if problem is None else f"stage {i}: {problem}"


def check_plan(plan: object) -> str | None:
    """Why ``plan`` (from a peer) cannot be run (one line), or ``None`` if it can.

    Beyond its fields' types: every ``next`` points forward (so no plan can
    loop), every stage's parts are fed exactly once, only the last stage has
    no ``next``, and sources wait for one part (the call's arguments).
    """
    if type(plan) is not dict or type(plan.get("name")) is not str or len(plan["name"]) > 63:
        return "malformed DAG plan: it needs a 'name'"
    stages = plan.get("stages")
    if type(stages) is not list or not 0 < len(stages) <= MAX_STAGES:
        return f"malformed DAG plan: 'stages' must list 1 to {MAX_STAGES} stages"
    count = len(stages)
    # Per stage: how many parts are fed, the lowest and the highest; (stage, part) pairs seen, to refuse one
    # fed twice. Plain lists of numbers: a set per stage costs more than the whole check (a plan comes with
    # every DAG call).
    fed, lowest, highest = [0] * count, [0] * count, [0] * count
    seen: set = set()
    for i, stage in enumerate(stages):
        if type(stage) is not dict:
            return "malformed DAG plan: a stage is not a dict"
        for key in STAGE_TEXT:
            value = stage.get(key)
            if type(value) is not str or len(value) > 1024:
                return f"malformed DAG plan: stage {i} has no {key!r}"
        parts, nexts = stage.get("parts"), stage.get("next")
        if type(parts) is not int or not 1 <= parts <= MAX_STAGES or type(nexts) is not list:
            return f"malformed DAG plan: stage {i} needs 'parts' and 'next'"
        if "consistency" in stage:
            problem = check_stage_level(i, stage)
            if problem is not None:
                return f"malformed DAG plan: {problem}"
        if (not nexts) != (i == count - 1):
            return "malformed DAG plan: the last stage, and only it, is the sink"
        for edge in nexts:
            if type(edge) is not list or len(edge) != 2:
                return f"malformed DAG plan: stage {i} sends its result to no later stage"
            j, part = edge
            if type(j) is not int or type(part) is not int or not i < j < count:
                return f"malformed DAG plan: stage {i} sends its result to no later stage"
            pair = j * MAX_STAGES + part if 0 <= part < MAX_STAGES else (j, part)
            if pair in seen:
                return f"malformed DAG plan: part {part} of stage {j} is fed twice"
            seen.add(pair)
            if not fed[j]:
                lowest[j] = highest[j] = part
            elif part < lowest[j]:
                lowest[j] = part
            elif part > highest[j]:
                highest[j] = part
            fed[j] += 1
    for j, stage in enumerate(stages):
        parts = stage["parts"]
        if fed[j] and (fed[j] != parts or lowest[j] != 0 or highest[j] != parts - 1):
            return f"malformed DAG plan: stage {j} waits for {parts} parts but is fed {fed[j]}"
        if not fed[j] and parts != 1:
            return f"malformed DAG plan: source stage {j} waits for more than the call's arguments"
    return None


def sources(plan: Message) -> list[int]:
    """The stages of a (checked) plan that no stage feeds: they get the call's arguments."""
    fed = {edge[0] for stage in plan["stages"] for edge in stage["next"]}
    return [i for i in range(len(plan["stages"])) if i not in fed]


__all__ = ["Dag", "DagRegistry", "MAX_STAGES", "call_plan", "check_dag", "check_plan", "check_stage_level", "sources",
           "split_stage"]
