"""The transport topics and liveliness keys essa's processes use, in one place.

Topics built from what a peer sent (a caller's inbox, a run's id) are checked
with :func:`is_inbox` and :func:`is_chunk` before use: a zenoh key expression
with an empty chunk or a wildcard is refused by zenoh, or worse, reaches more
than one receiver.
"""

import re

#: Below this, each scheduler has its own topics (see :func:`scheduler_calls`):
#: a cluster may run any number of schedulers, and each call is placed by the
#: one its caller sent it to.
SCHEDULERS = "essa/scheduler"

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

#: Log queries: every executor process's log book (and the embedded runtime's) serves a topic below this.
LOGS = "essa/logs"


def scheduler_calls(scheduler_id: str) -> str:
    """Call requests for one scheduler to place (callers spread their calls over the live schedulers)."""
    return f"{SCHEDULERS}/{scheduler_id}/calls"


def scheduler_done(scheduler_id: str) -> str:
    """Executors' notices that a call this scheduler placed is finished (its reply has left the executor)."""
    return f"{SCHEDULERS}/{scheduler_id}/done"


def scheduler_received(scheduler_id: str) -> str:
    """Callers' receipts, ``{"ids": [...], "inbox": ...}``: the replies to these calls reached their caller."""
    return f"{SCHEDULERS}/{scheduler_id}/received"


#: Below this, each executor answers whether it runs or lately finished given
#: calls (see :mod:`essa.cluster.adopt`); a scheduler queries them all.
FIND = "essa/find"
EXECUTORS_FIND = f"{FIND}/**"


def executor_find(executor_id: str) -> str:
    """Where one executor answers a scheduler looking for calls."""
    return f"{FIND}/{executor_id}"


def executor_calls(executor_id: str) -> str:
    """Calls placed on one executor."""
    return f"essa/executor/{executor_id}/calls"


def executor_stages(executor_id: str) -> str:
    """Inputs of DAG stages placed on one executor (see :mod:`essa.cluster.stages`)."""
    return f"essa/executor/{executor_id}/stages"
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


def logs(book: str) -> str:
    """Where one process's log book answers log queries (see :mod:`essa.cluster.logbook`)."""
    return f"{LOGS}/{book}"


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
