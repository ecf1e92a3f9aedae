"""The runtime: the call protocol and its topics, the scheduler, executors, the work pool, the client,
compiled-module cache, deployments, the control service, embedded mode, cluster processes, tracing, metrics, and
calls' logs (kept by each executor process, read from every one)."""
