"""The transport topics and liveliness keys essa's processes use, in one place.

Topics built from what a peer sent (a caller's inbox, a run's id) are checked
with :func:`is_inbox` and :func:`is_chunk` before use: a zenoh key expression
with an empty chunk or a wildcard is refused by zenoh, or worse, reaches more
than one receiver.
"""

import re

#: Call requests for the scheduler to place.
SCHEDULER_CALLS = "essa/scheduler/calls"

#: Executors' notices that a placed call is finished (its reply has left the executor).
SCHEDULER_DONE = "essa/scheduler/done"

#: Callers' receipts, ``{"ids": [...]}``: the replies to these calls reached their caller.
SCHEDULER_RECEIVED = "essa/scheduler/received"

#: Liveliness tokens: ``essa/live/scheduler/<id>`` and ``essa/live/executor/<id>``.
LIVE_SCHEDULERS = "essa/live/scheduler"
LIVE_EXECUTORS = "essa/live/executor"

#: Cancellations, ``{"run": RUN, "reason": TEXT}``: the scheduler and every
#: executor end the run's calls (running or queued).
CANCEL = "essa/cancel"

#: Liveness queries of waiting callers: schedulers serve a topic below this and
#: answer which of the given call ids they still track.
TRACKING = "essa/tracking"

#: Control requests (deployments, state from outside): every executor process,
#: and the embedded runtime, serves a topic below this; one of them answers.
CONTROL = "essa/control"

#: Status queries: every scheduler and executor serves a topic below this.
STATUS = "essa/status"


def executor_calls(executor_id: str) -> str:
    """Calls placed on one executor."""
    return f"essa/executor/{executor_id}/calls"


def snapshot(executor_id: str) -> str:
    """The versions pinned by the repeatable-read call trees an executor started (:mod:`essa.cluster.consistency`)."""
    return f"essa/snapshot/{executor_id}"


def inbox(caller_id: str) -> str:
    """Replies to the calls one caller started."""
    return f"essa/inbox/{caller_id}"


def run_output(run: str) -> str:
    """A run's guest stdout/stderr, published by every executor serving it."""
    return f"essa/run/{run}/output"


def run_trace(run: str) -> str:
    """The spans of a traced run's calls (see :mod:`essa.cluster.tracing`)."""
    return f"essa/run/{run}/trace"


def run_stdin(run: str) -> str:
    """A run's stdin bytes, published by the client that serves them (see :mod:`essa.cluster.stdin`)."""
    return f"essa/run/{run}/stdin"


def run_stdin_want(run: str) -> str:
    """The executor's requests for more of a run's stdin."""
    return f"essa/run/{run}/stdin/want"


def live_executor(executor_id: str) -> str:
    return f"{LIVE_EXECUTORS}/{executor_id}"


def live_scheduler(scheduler_id: str) -> str:
    return f"{LIVE_SCHEDULERS}/{scheduler_id}"


#: One chunk of a key expression a peer may name: no ``/``, no wildcard (``*``,
#: ``$``), no ``?`` or ``#``, not empty; at most 200 characters.
_CHUNK = re.compile(r"[A-Za-z0-9_.~+=:@,-]{1,200}")
_INBOX = re.compile(r"essa/inbox/[A-Za-z0-9_.~+=:@,-]{1,200}(?:/[A-Za-z0-9_.~+=:@,-]{1,200}){0,3}")


def is_chunk(text: object) -> bool:
    """Whether ``text`` can be one chunk of a topic (a run id, a caller id)."""
    return isinstance(text, str) and _CHUNK.fullmatch(text) is not None


def is_inbox(topic: object) -> bool:
    """Whether ``topic`` is a caller's inbox (``essa/inbox/...``, no wildcard, no empty chunk)."""
    return isinstance(topic, str) and _INBOX.fullmatch(topic) is not None
