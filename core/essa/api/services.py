"""essa's long-running processes, from Python: what ``essa scheduler``, ``essa executor`` and ``essa up`` run.

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

from essa.cluster.metrics import serve as serve_metrics
from essa.cluster.processes import (
    RunningExecutor,
    RunningScheduler,
    default_workers,
    start_executor,
    start_scheduler,
    wait_for_signal,
)
from essa.cluster.processes import up as run_cluster
from essa.state.cache import DEFAULT_CAPACITY as DEFAULT_CACHE_SIZE

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "RunningExecutor",
    "RunningScheduler",
    "default_workers",
    "run_cluster",
    "serve_metrics",
    "start_executor",
    "start_scheduler",
    "wait_for_signal",
]
