"""The work pool: results, errors, and waiting that never starves it."""

from __future__ import annotations

import threading
import time

import pytest

from essa.cluster.pool import WorkPool, blocking


def test_result_and_exception_reach_the_waiter():
    pool = WorkPool(2)
    assert pool.submit(lambda a, b: a + b, 2, 3).result(timeout=60) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=60)


def fan_out(pool: WorkPool, start: int, end: int) -> int:
    """A recursive fan-out like a guest's: submit both halves, then wait for both."""
    if end - start == 1:
        return 1
    mid = (start + end) // 2
    left = pool.submit(fan_out, pool, start, mid)
    right = pool.submit(fan_out, pool, mid, end)
    return left.result(timeout=30) + right.result(timeout=30)


@pytest.mark.parametrize("workers", [1, 2])
def test_recursive_fan_out_does_not_starve_a_small_pool(workers):
    pool = WorkPool(workers)
    assert pool.submit(fan_out, pool, 0, 1000).result(timeout=60) == 1000


def test_deep_chains_beyond_inline_depth_still_complete():
    pool = WorkPool(1)

    def chain(n: int) -> int:
        return 0 if n == 0 else 1 + pool.submit(chain, n - 1).result(timeout=30)

    assert pool.submit(chain, 3 * WorkPool.max_inline_depth).result(timeout=60) == 3 * WorkPool.max_inline_depth


def test_waiting_on_a_running_task_blocks_until_it_finishes():
    pool = WorkPool(2)
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(60)
        return "done"

    task = pool.submit(slow)
    assert started.wait(60)
    with pytest.raises(TimeoutError):
        task.result(timeout=0.05)
    release.set()
    assert task.result(timeout=60) == "done"


def test_done_callbacks_run_once_done():
    pool = WorkPool(1)
    seen = []
    task = pool.submit(lambda: 42)
    task.add_done_callback(lambda t: seen.append(t.result()))
    task.result(timeout=60)
    task.add_done_callback(lambda t: seen.append("late"))
    assert seen == [42, "late"]


def test_closed_pool_refuses_work():
    pool = WorkPool(1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: None)


def test_threads_started_for_a_burst_of_waiters_end_when_idle():
    pool = WorkPool(1)
    pool.idle_timeout = 0.05
    release = threading.Event()

    def waiter() -> bool:  # blocked like a guest in essa_get_result: the pool starts a thread for the queue
        with blocking():
            return release.wait(60)

    tasks = [pool.submit(waiter) for _ in range(5)]
    deadline = time.monotonic() + 60
    while pool._threads < 5:
        assert time.monotonic() < deadline, f"only {pool._threads} threads started"
        time.sleep(0.01)
    release.set()
    assert all(task.result(60) for task in tasks)
    while pool._threads > 1:
        assert time.monotonic() < deadline, f"{pool._threads} threads still alive"
        time.sleep(0.01)
    assert pool.submit(lambda: "still works").result(60) == "still works"


def test_blocked_waiters_keep_exactly_the_workers_running_not_one_thread_each():
    pool = WorkPool(2)
    release = threading.Event()
    started = threading.Semaphore(0)

    def waiter() -> bool:
        started.release()
        with blocking():
            return release.wait(60)

    waiters = [pool.submit(waiter) for _ in range(6)]
    for _ in range(6):  # every waiter got a thread: each blocked one was replaced while work was queued
        assert started.acquire(timeout=60)
    quick = [pool.submit(lambda i=i: i) for i in range(50)]  # queued while 6 threads block
    assert [t.result(60) for t in quick] == list(range(50))
    assert pool._threads <= 6 + 2, f"{pool._threads} threads for 6 blocked waiters and 2 workers"
    release.set()
    assert all(t.result(60) for t in waiters)
