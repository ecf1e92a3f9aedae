"""essa's long-running processes, from Python: what ``essa scheduler``, ``essa executor``, ``essa up`` and
``essa down`` run.

::

    from essa.api import services

    scheduler = services.start_scheduler(listen=["tcp/127.0.0.1:7447"])
    executor = services.start_executor("0", connect=["tcp/127.0.0.1:7447"])
    services.wait_for_signal()          # until SIGINT or SIGTERM
    print(executor.stop())              # essa executor 0: served 12 calls and 1 runs (0 failed)
    scheduler.stop()

Each process uses this process's security settings: the TLS files and token
key of the ``essa`` command's ``--tls-*``/``--token-key`` or the
``ESSA_TLS_*``/``ESSA_TOKEN_KEY`` environment variables.
"""

from __future__ import annotations

from typing import Any, Sequence

from essa.api import contexts
from essa.cluster.metrics import serve as serve_metrics
from essa.cluster.processes import (
    RunningExecutor,
    RunningScheduler,
    default_workers,
    start_executor,
    start_scheduler,
    wait_for_signal,
)
from essa.cluster.supervise import MAX_RESTARTS
from essa.cluster.up import ClusterInfo, detach, down, running_clusters, up
from essa.state.cache import DEFAULT_CAPACITY as DEFAULT_CACHE_SIZE


def run_cluster(*args: Any, context: bool = True, **kwargs: Any) -> int:
    """``essa up``: :func:`essa.cluster.up.up`, and the cluster's context (see :mod:`essa.api.contexts`).

    With ``context``, once the cluster is ready a context named like it
    (``local``, ``local-secure``) is written with its schedulers' endpoints (and, secure,
    the client certificate and a token for everything) and made current;
    when the cluster stops, the context that was current before is current
    again (unless another was chosen meanwhile). Returns the exit status.
    """
    before = contexts.current_name()

    def ready(info: ClusterInfo) -> str | None:
        if not context:
            return None
        contexts.save(contexts.Context(info.name, info.schedulers(), info.client_tls, info.token,
                                       f"written by essa up (pid {info.pid})"), make_current=True)
        token = ", a client certificate and a token for everything" if info.token else ""
        return (f"context:            {info.name} (current until the cluster stops{token}): `essa ls`, "
                "essa.connect() and the other commands use this cluster")

    def stopped(info: ClusterInfo) -> None:
        if context:
            contexts.restore_current(info.name, before)

    return up(*args, on_ready=ready, on_stop=stopped, **kwargs)


def start_cluster_in_background(argv: Sequence[str], name: str) -> tuple[ClusterInfo, str]:
    """``essa up --detach``: run ``essa ARGV`` (an ``essa up``) in the background; return once it is ready.

    Returns the cluster and what ``essa up`` printed (see :func:`essa.cluster.up.detach`).
    """
    return detach(argv, name)


def stop_cluster(name: str | None = None) -> ClusterInfo:
    """``essa down``: stop the cluster ``name`` started by ``essa up`` (default: the only one running).

    Its ``essa up`` gives the current context back as it stops; if it had died, its context stops being
    current here (embedded is).
    """
    info = down(name)
    contexts.restore_current(info.name, contexts.EMBEDDED)
    return info


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "MAX_RESTARTS",
    "ClusterInfo",
    "RunningExecutor",
    "RunningScheduler",
    "default_workers",
    "run_cluster",
    "running_clusters",
    "serve_metrics",
    "start_cluster_in_background",
    "start_executor",
    "start_scheduler",
    "stop_cluster",
    "wait_for_signal",
]
