"""The default placement: load, module locality and key locality."""

from __future__ import annotations

from essa.placement import MAX_CALL_KEYS, MAX_EXECUTOR_KEYS, ExecutorState, Placement, call_keys, key_id


def executors(*loads: int) -> list[ExecutorState]:
    return [ExecutorState(str(i), in_flight=load, modules={"m"}) for i, load in enumerate(loads)]


def request(function: str = "f", keys=None) -> dict:
    r = {"module": "m", "function": function, "namespace": "ns"}
    if keys is not None:
        r["keys"] = keys
    return r


def test_without_keys_the_least_loaded_executor_wins():
    es = executors(3, 1, 2)
    assert Placement().choose(es, request()).id == "1"


def test_declared_keys_draw_the_call_to_the_executor_that_caches_them():
    es = executors(1, 0)
    es[0].touched([key_id("ns", "a"), key_id("ns", "b")])
    assert Placement().choose(es, request(keys=["a", "b"])).id == "0"
    assert Placement().choose(es, request(keys=["c"])).id == "1"  # nobody caches c: load decides


def test_load_wins_over_locality_when_the_caching_executor_is_busy():
    es = executors(3, 0)
    es[0].touched([key_id("ns", "a")])
    assert Placement().choose(es, request(keys=["a"])).id == "1"


def test_keys_are_learned_per_function_once_two_calls_read_the_same_ones():
    placement = Placement()
    es = executors(1, 0)
    placement.observe(es[0], request("g"), ["k"])
    assert placement.choose(es, request("g")).id == "1"  # one call: not a pattern yet
    placement.observe(es[0], request("g"), ["k"])
    assert placement.choose(es, request("g")).id == "0"
    placement.observe(es[0], request("g"), ["other"])  # keys that move with the arguments: not learned
    es[0].keys.clear()
    assert placement.choose(es, request("g")).id == "1"


def test_what_placement_remembers_is_bounded():
    e = ExecutorState("0")
    e.touched([str(i) for i in range(MAX_EXECUTOR_KEYS + 10)])
    assert len(e.keys) == MAX_EXECUTOR_KEYS and "0" not in e.keys
    assert len(call_keys({"keys": [str(i) for i in range(100)]})) == MAX_CALL_KEYS
    assert call_keys({"keys": "a"}) == [] and call_keys({"keys": [1, "a"]}) == ["a"]


def test_one_call_with_keys_in_explore_every_is_placed_by_load_alone():
    placement = Placement()
    es = executors(1, 0)
    es[0].touched([key_id("ns", "a")])
    chosen = [placement.choose(es, request(keys=["a"])).id for _ in range(3 * Placement.explore_every)]
    assert chosen.count("1") == 3  # the idle executor gets a share, and so a cache of the hot key
    assert all(chosen[i] == "1" for i in range(Placement.explore_every - 1, len(chosen), Placement.explore_every))


def test_when_two_executors_read_the_keys_the_last_reader_gets_the_call():
    """Both executors read a function's key once (its first two calls alternated): its calls then stay with the
    executor that read it last, however many calls each ran, and follow the next read."""
    es = executors(0, 0)
    es[1].placed = 5  # used more: without the keys it would lose the tie
    es[0].touched([key_id("ns", "a")])
    es[1].touched([key_id("ns", "a")])
    assert Placement().choose(es, request(keys=["a"])).id == "1"
    es[0].touched([key_id("ns", "a")])
    assert Placement().choose(es, request(keys=["a"])).id == "0"
    assert Placement().choose(es, request(keys=["b"])).id == "0"  # nobody read b: the one used least
