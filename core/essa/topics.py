"""The transport topics essa's processes use, in one place."""

#: Calls (and runs) sent to the scheduler, which places them on an executor.
SCHEDULER_CALL = "essa/scheduler/call"


def executor_call(executor_id: str) -> str:
    """Calls placed on one executor."""
    return f"essa/executor/{executor_id}/call"


def run_output(run: str) -> str:
    """A run's guest stdout/stderr, published by every executor serving it."""
    return f"essa/run/{run}/output"
