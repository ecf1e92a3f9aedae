"""ProgramCache keeps a bounded number of programs in memory (essa.cluster.programs)."""

from __future__ import annotations

import threading

from essa.cluster.embedded import open_engine, open_store
from essa.cluster.programs import ProgramCache, publish_module
from essa.testing.conformance.support import invocation
from essa.testing.conformance.wat import module


def modules(store, count: int) -> list[str]:
    return [publish_module(store, module(f'(func (export "f{i}"))')) for i in range(count)]


def test_the_least_recently_used_program_is_dropped_and_loads_again_from_its_artifact(engine_name):
    store = open_store("memory")
    cache = ProgramCache(open_engine(engine_name), store, max_programs=2)
    a, b, c = modules(store, 3)
    cache.get(a)
    cache.get(b)
    cache.get(a)  # b is now the least recently used
    cache.get(c)
    assert (cache.loaded(a), cache.loaded(b), cache.loaded(c)) == (True, False, True)
    assert cache.sources == {a: "compiled", c: "compiled"}
    cache.get(b)  # a call needs it again: from the artifact stored when it was compiled
    assert cache.sources == {c: "compiled", b: "artifact"} and not cache.loaded(a)


def test_a_dropped_program_still_runs_for_the_call_that_holds_it(engine_name):
    store = open_store("memory")
    cache = ProgramCache(open_engine(engine_name), store, max_programs=1)
    first, second = modules(store, 2)
    held = cache.get(first)
    cache.get(second)
    assert not cache.loaded(first)
    held.run(invocation(b""), "f0")  # no trap: the program outlives its place in the cache


def test_memory_stays_bounded_while_threads_load_many_modules(engine_name):
    store = open_store("memory")
    cache = ProgramCache(open_engine(engine_name), store, max_programs=3)
    names = modules(store, 12)
    errors: list[BaseException] = []

    def load(offset: int) -> None:
        try:
            for i in range(24):
                cache.get(names[(i + offset) % len(names)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert len(cache._programs) == len(cache.sources) == 3
    assert set(cache._used) == set(cache._programs) and len(cache._locks) <= len(names)
