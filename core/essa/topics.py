"""The transport topics and liveliness keys essa's processes use, in one place."""

#: Call requests for the scheduler to place.
SCHEDULER_CALLS = "essa/scheduler/calls"

#: Executors' notices that a placed call is finished.
SCHEDULER_DONE = "essa/scheduler/done"

#: Liveliness tokens: ``essa/live/scheduler/<id>`` and ``essa/live/executor/<id>``.
LIVE_SCHEDULERS = "essa/live/scheduler"
LIVE_EXECUTORS = "essa/live/executor"

#: Status queries: every scheduler and executor serves a topic below this.
STATUS = "essa/status"


def executor_calls(executor_id: str) -> str:
    """Calls placed on one executor."""
    return f"essa/executor/{executor_id}/calls"


def inbox(caller_id: str) -> str:
    """Replies to the calls one caller started."""
    return f"essa/inbox/{caller_id}"


def run_output(run: str) -> str:
    """A run's guest stdout/stderr, published by every executor serving it."""
    return f"essa/run/{run}/output"


def run_stdin(run: str) -> str:
    """A run's stdin bytes, published by the client that serves them (see :mod:`essa.stdin`)."""
    return f"essa/run/{run}/stdin"


def run_stdin_want(run: str) -> str:
    """The executor's requests for more of a run's stdin."""
    return f"essa/run/{run}/stdin/want"


def live_executor(executor_id: str) -> str:
    return f"{LIVE_EXECUTORS}/{executor_id}"


def live_scheduler(scheduler_id: str) -> str:
    return f"{LIVE_SCHEDULERS}/{scheduler_id}"


def key_id(key: str) -> str:
    """The last segment of a liveliness key: the process's id."""
    return key.rsplit("/", 1)[-1]
