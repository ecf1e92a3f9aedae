"""A work pool whose waiters help, so blocked functions never starve it.

A guest blocked in ``essa_get_result`` waits for a call that may not have
started yet. If waiting simply blocked a worker, a recursive fan-out would tie
up every worker with waiters and deadlock. Here a waiter whose task is still
queued claims it and runs it on its own thread (as fork/join pools do). A task
that is already running is being run by some thread, which either computes or
waits in turn, so the chain always ends at a thread that makes progress.

Inline runs nest on the waiter's stack, so they stop at :attr:`WorkPool.max_inline_depth`;
past it the waiter blocks and the pool starts a thread if none is idle.

Threads started for a burst of blocked waiters do not stay: new work wakes the
thread that went idle last (a stack, not a queue), so under steady load the
same few threads keep working and the others stay idle; a thread idle for
:attr:`WorkPool.idle_timeout` seconds ends while the pool has more than
``workers`` threads.
"""

from __future__ import annotations

import collections
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_PENDING, _RUNNING, _DONE = 0, 1, 2


class Task:
    """A submitted function call; :meth:`result` waits (and helps)."""

    __slots__ = ("_fn", "_args", "_state", "_value", "_error", "_event", "_pool", "_callbacks")

    def __init__(self, pool: "WorkPool", fn: Callable[..., Any], args: tuple) -> None:
        self._fn = fn
        self._args = args
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._event: threading.Event | None = None
        self._pool = pool
        self._callbacks: list[Callable[["Task"], None]] = []

    def done(self) -> bool:
        return self._state == _DONE

    def started(self) -> bool:
        """Whether some thread has begun (or finished) running the task."""
        return self._state != _PENDING

    def result(self, timeout: float | None = None) -> Any:
        """Return the function's value (or raise its exception), waiting for it.

        :raises TimeoutError: not done after ``timeout`` seconds.
        """
        if self._state != _DONE and not self.help():
            self._pool._wait(self, timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def help(self) -> bool:
        """Run the task on this thread if nobody has started it; return whether it ran."""
        return self._pool._run_inline(self)

    def add_done_callback(self, callback: Callable[["Task"], None]) -> None:
        """Call ``callback(task)`` when done (at once if it already is)."""
        with self._pool._lock:
            if self._state != _DONE:
                self._callbacks.append(callback)
                return
        callback(self)

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # handed to whoever waits
            self._error = exc
        with self._pool._lock:
            self._state = _DONE
            event, callbacks = self._event, self._callbacks
            self._callbacks = []
            self._pool._unfinished -= 1
            if not self._pool._unfinished:
                self._pool._all_done.notify_all()
        if event is not None:
            event.set()
        for callback in callbacks:
            callback(self)


class WorkPool:
    """Runs tasks on up to ``workers`` threads, plus helpers while waiters block.

    :param workers: threads kept for queued tasks.
    :param name: thread name prefix.
    :param max_threads: hard cap on threads, blocked waiters included.
    """

    max_inline_depth = 24
    #: Seconds an extra thread (beyond ``workers``) waits for work before it ends.
    idle_timeout = 5.0

    def __init__(self, workers: int, name: str = "essa-worker", max_threads: int = 512) -> None:
        if workers < 1:
            raise ValueError("a work pool needs at least one worker")
        self._workers = workers
        self._name = name
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._queue: collections.deque[Task] = collections.deque()
        #: Idle threads, each waiting on its own condition; the last one is woken first.
        self._sleepers: list[threading.Condition] = []
        self._threads = 0
        self._blocked = 0
        self._unfinished = 0
        self._all_done = threading.Condition(self._lock)
        self._closed = False
        self._local = threading.local()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Task:
        """Queue ``fn(*args)``; return its :class:`Task`."""
        task = Task(self, fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("work pool is closed")
            self._queue.append(task)
            self._unfinished += 1
            if self._sleepers:
                self._sleepers.pop().notify()
            elif self._threads - self._blocked < self._workers and self._threads < self._max_threads:
                self._start_thread()
        return task

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted task has finished; return whether they did."""
        with self._lock:
            return self._all_done.wait_for(lambda: not self._unfinished, timeout)

    def close(self) -> None:
        """Stop idle threads; running tasks finish."""
        with self._lock:
            self._closed = True
            while self._sleepers:
                self._sleepers.pop().notify()

    # -- internals ---------------------------------------------------------------

    def _start_thread(self) -> None:  # with self._lock held
        self._threads += 1
        threading.Thread(target=self._worker, name=f"{self._name}-{self._threads}", daemon=True).start()

    def _worker(self) -> None:
        _thread.pool = self
        asleep = threading.Condition(self._lock)
        while True:
            with self._lock:
                task = self._next_task()
                while task is None:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._sleepers.append(asleep)
                    asleep.wait(self.idle_timeout)
                    timed_out = asleep in self._sleepers  # nobody popped it to wake it
                    if timed_out:
                        self._sleepers.remove(asleep)
                    task = self._next_task()
                    if task is None and timed_out and self._threads > self._workers:
                        self._threads -= 1  # an extra thread of a past burst
                        return
            task._run()

    def _next_task(self) -> Task | None:  # with self._lock held; claims the task
        while self._queue:
            task = self._queue.popleft()
            if task._state == _PENDING:  # else a waiter already claimed it
                task._state = _RUNNING
                return task
        return None

    def _run_inline(self, task: Task) -> bool:
        depth = getattr(self._local, "depth", 0)
        if depth >= self.max_inline_depth:
            return False
        with self._lock:
            if task._state != _PENDING:
                return False
            task._state = _RUNNING
        self._local.depth = depth + 1
        # The thread stays its own pool's (if any): when it blocks inside the
        # task, that pool, which counts it, starts a thread for its queue;
        # this pool's own threads are not affected.
        try:
            task._run()
        finally:
            self._local.depth = depth
        return True

    def _wait(self, task: Task, timeout: float | None) -> None:
        with self._lock:
            if task._state == _DONE:
                return
            if task._event is None:
                task._event = threading.Event()
            event = task._event
        with blocking():
            finished = event.wait(timeout)
        if not finished:
            raise TimeoutError(f"task not done after {timeout} s")

    def _enter_blocked(self) -> None:
        with self._lock:
            self._blocked += 1
            # This thread stops working while it waits: make sure queued work
            # still has `workers` threads to run it (not one more per waiter).
            if (self._queue and not self._sleepers and self._threads - self._blocked < self._workers
                    and self._threads < self._max_threads):
                self._start_thread()

    def _leave_blocked(self) -> None:
        with self._lock:
            self._blocked -= 1


_thread = threading.local()


@contextmanager
def blocking() -> Iterator[None]:
    """Mark the calling pool thread as blocked (waiting for another call) meanwhile.

    Work queued on its pool gets another thread while this one waits. On a
    thread that is no pool's worker this does nothing.
    """
    pool: WorkPool | None = getattr(_thread, "pool", None)
    if pool is None:
        yield
        return
    pool._enter_blocked()
    try:
        yield
    finally:
        pool._leave_blocked()
