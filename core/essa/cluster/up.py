"""``essa up``: a whole cluster on this machine, as child processes, from ready to stopped.

:func:`up` starts its schedulers, the store's services (the anna store's
nodes), N executors and, with ``http``, an ``essa serve`` for them; waits
until every scheduler sees every executor (and the HTTP server and metrics
endpoints answer); says where everything is; and runs until SIGINT or
SIGTERM, then stops them all. While it runs, a process that dies is
restarted, with backoff, and one that keeps dying is given up on while the
others run on (:mod:`essa.cluster.supervise`).

While it runs, the state file ``clusters/NAME.json`` in essa's data
directory names it and its processes (pids, with their start times, so a
reused pid is never taken for one of them): :func:`down` stops it from
another process, and :func:`detach` starts ``essa up`` in the background and
returns once that file says it is ready.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from essa.cluster import metrics as prometheus
from essa.cluster import topics
from essa.cluster.processes import connect_client
from essa.cluster.supervise import MAX_RESTARTS, Supervisor, describe_status
from essa.errors import EssaError
from essa.plugins import DEFAULTS, get_plugin_manager
from essa.security import tokens
from essa.security.certs import ROLES
from essa.security.local import Material, default_directory, prepare_local
from essa.security.tls import TlsFiles
from essa.util.files import write_private
from essa.util.paths import data_dir
from essa.util.pids import alive, start_time
from essa.util.ports import free_port
from essa.util.stopsignals import StopSignals

#: Seconds ``essa up`` waits for its processes to be ready.
READY_TIMEOUT = 120.0
#: Seconds its processes get to stop after SIGTERM; then they are killed.
STOP_TIMEOUT = 15.0
#: Set by :func:`detach` for the ``essa up`` it starts: the file its output goes to.
LOG_ENV = "ESSA_UP_LOG"
#: How long the token of a secure cluster's context is valid.
CONTEXT_TOKEN_TTL = 30 * 24 * 3600.0


@dataclass
class Process:
    """One process of a cluster: its name (``scheduler``, ``executor 0``, ...), pid and start time."""

    name: str
    pid: int
    started: int | None = None
    #: Times ``essa up`` restarted it after it died.
    restarts: int = 0
    #: Whether ``essa up`` gave up restarting it (it kept dying).
    given_up: bool = False


@dataclass
class ClusterInfo:
    """A running cluster, as its state file has it (and, once ready, what ``essa up`` tells its caller)."""

    name: str
    #: The ``essa up`` process that runs it.
    pid: int
    listen: str
    #: What listens where: ``scheduler``, ``http``, the store's services.
    endpoints: dict[str, str]
    #: Each process's Prometheus metrics URL (``essa up --metrics``).
    metrics: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    #: With ``--secure``: the client certificate files clients use.
    client_tls: tuple[str, str, str] | None = None
    #: Where its output goes (``essa up --detach``), or ``None``: the terminal.
    log: str | None = None
    started: int | None = None
    #: With ``--secure``: a token for everything, for the cluster's context (never in the state file).
    token: str | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("token")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ClusterInfo":
        processes = [Process(**p) for p in data.get("processes", [])]
        tls = data.get("client_tls")
        return cls(data["name"], int(data["pid"]), data["listen"], dict(data["endpoints"]),
                   dict(data.get("metrics") or {}), processes, tuple(tls) if tls else None, data.get("log"),
                   data.get("started"))

    def schedulers(self) -> tuple[str, ...]:
        """Where its schedulers listen (``listen`` first): a client may connect to any of them."""
        return (self.listen, *(e for n, e in self.endpoints.items() if n.startswith("scheduler") and e != self.listen))

    def running(self) -> bool:
        """Whether its ``essa up`` process still runs."""
        return alive(self.pid, self.started)

    def left_behind(self) -> list[Process]:
        """Its processes that still run (an ``essa up`` killed with SIGKILL leaves them running)."""
        return [p for p in self.processes if alive(p.pid, p.started)]


def clusters_directory() -> Path:
    """Where running clusters' state files are: ``clusters/`` in essa's data directory."""
    return data_dir() / "clusters"


def state_path(name: str) -> Path:
    return clusters_directory() / f"{name}.json"


def running_clusters() -> list[ClusterInfo]:
    """The clusters ``essa up`` runs on this machine (for this data directory); stale state files are removed."""
    found = []
    for path in sorted(clusters_directory().glob("*.json")):
        try:
            info = ClusterInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if info.running() or info.left_behind():
            found.append(info)
        else:  # its essa up died, and its processes with it, without cleaning up
            path.unlink(missing_ok=True)
    return found


def _running(name: str) -> ClusterInfo | None:
    return next((c for c in running_clusters() if c.name == name), None)


class _Stopping(Exception):
    """SIGINT or SIGTERM arrived before the cluster was ready."""


class _Died(Exception):
    """A process of the cluster exited on its own before the cluster was ready."""


def up(
    executors: int,
    listen: str,
    engine: str | None,
    store: str | None,
    store_options: Mapping[str, str],
    verbose: int = 0,
    executor_args: Sequence[str] = (),
    scheduler_args: Sequence[str] = (),
    http: str | None = None,
    http_options: Mapping[str, str] | None = None,
    secure: bool = False,
    security_dir: str | None = None,
    name: str | None = None,
    metrics: bool = False,
    log: str | None = None,
    on_ready: Callable[[ClusterInfo], str | None] | None = None,
    on_stop: Callable[[ClusterInfo], None] | None = None,
    schedulers: int = 1,
    max_restarts: int = MAX_RESTARTS,
) -> int:
    """Run ``schedulers`` schedulers and ``executors`` executor processes until interrupted.

    ``executor_args`` and ``scheduler_args`` are extra flags for those
    commands (limits and grants, see :func:`essa.cli.options.limit_arguments`).
    With ``http`` (``HOST:PORT``) an ``essa serve`` process answers HTTP there
    too, with ``http_options`` as its ``--trigger-option`` settings. With
    ``secure`` (``listen`` then is a ``tls/`` endpoint) every process gets its
    own certificate from the CA in ``security_dir`` (made there if missing;
    see :mod:`essa.security.local`), and the scheduler and executors check
    access tokens. With ``metrics`` each process serves its Prometheus metrics
    on a free port of its own. ``name`` (default ``local``, ``local-secure``)
    names the cluster; ``log`` is where its output goes (said in the state
    file). Once every process is ready, ``on_ready`` gets the cluster (and
    returns a line to print, or ``None``); ``on_stop`` gets it when it stops.
    The first scheduler listens at ``listen``, the others at free ports of the
    same host; executors connect to all of them. Once ready, a process that
    dies is restarted, at most ``max_restarts`` times in a row (see
    :class:`~essa.cluster.supervise.Supervisor`). Returns a non-zero status if
    a process died before the cluster was ready, or one was given up on.
    """
    name = name or ("local-secure" if secure else "local")
    log = log or os.environ.get(LOG_ENV)
    running = _running(name)
    if running is not None:
        raise EssaError(f"a cluster named {name} is running already (essa up, pid {running.pid}, at "
                        f"{running.listen}): stop it with `essa down {name}`, or name this one with --name")
    essa = [sys.executable, "-m", "essa"] + ["-v"] * verbose
    services = get_plugin_manager().store_class(store or DEFAULTS["store"]).cluster_services(store_options, listen)
    environment = _secure_environments(schedulers, executors, services, security_dir, bool(http)) \
        if secure else None
    base = list(essa)
    if engine:
        base += ["--engine", engine]
    if store:
        base += ["--store", store]
    for key, value in services.options.items():
        base += ["--store-option", f"{key}={value}"]
    metrics_urls: dict[str, str] = {}
    stopping = StopSignals().install()
    info = ClusterInfo(name, os.getpid(), listen, {}, metrics_urls, log=log, started=start_time(os.getpid()))
    ready = False
    supervisor = Supervisor(max_restarts, on_change=lambda: ready and _save_state(info, supervisor))

    def start(process: str, command: list[str], serves_metrics: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("ESSA_METRICS_ADDRESS", LOG_ENV)}  # one port each
        if environment is not None:
            env.update(environment[len(supervisor.children)])
        if metrics and serves_metrics:
            address = f"127.0.0.1:{free_port()}"
            env["ESSA_METRICS_ADDRESS"] = address
            metrics_urls[process] = f"http://{address}/metrics"
        supervisor.start(process, command, env)

    try:
        endpoints = scheduler_endpoints(listen, schedulers)
        for i, endpoint in enumerate(endpoints):
            mesh = [arg for other in endpoints[:i] for arg in ("--connect", other)]
            start(_numbered("scheduler", i, schedulers), [*essa, "scheduler", "--listen", endpoint, *mesh,
                                                           *scheduler_args])
        names = [" ".join(command[:2]) for command in services.commands]
        for i, command in enumerate(services.commands):
            start(_numbered(names[i], names[:i].count(names[i]), names.count(names[i])), [*essa, *command])
        connect = [arg for endpoint in endpoints for arg in ("--connect", endpoint)]
        for i in range(executors):
            start(f"executor {i}", [*base, "executor", str(i), *connect, *executor_args])
        if http:
            # Its requests in flight get 10 s to finish when stopping: within the 15 s the children get below.
            settings = [arg for key, value in (http_options or {}).items()
                        for arg in ("--trigger-option", f"{key}={value}")]
            start("http", [*essa, "serve", "--connect", listen, "--listen", http, "--timeout", "60",
                           "--shutdown-timeout", "10", *scheduler_args, *settings], serves_metrics=False)
            if metrics:
                metrics_urls["http"] = f"http://{http}/metrics"
        if metrics:  # essa up's own: its restarts
            metrics_urls["essa up"] = prometheus.serve(f"127.0.0.1:{free_port()}")
        info.endpoints = {**{_numbered("scheduler", i, schedulers): e for i, e in enumerate(endpoints)},
                          **services.endpoints, **({"http": f"http://{http}"} if http else {})}
        info.processes = _processes(supervisor)
        client_tls = Material(Path(security_dir) if security_dir else default_directory()).files("client") \
            if secure else None
        info.client_tls = None if client_tls is None else (client_tls.ca, client_tls.cert, client_tls.key)
        _wait_until_ready(info, schedulers, executors, supervisor, client_tls, http, stopping)
        if secure:
            material = Material(Path(security_dir) if security_dir else default_directory())
            info.token = tokens.create(material.signing_key, ["*"], ["*"], ttl=CONTEXT_TOKEN_TTL)
        context_line = on_ready(info) if on_ready is not None else None
        ready = True
        _describe(info, executors, secure, security_dir, http, context_line)
        _save_state(info, supervisor)  # detach() waits for it
        while not stopping.wait(0.5):
            supervisor.check()
        return 1 if supervisor.given_up() else 0
    except _Stopping:
        return 0
    except _Died as exc:
        print(f"essa: error: {exc}; stopping", file=sys.stderr, flush=True)
        return 1
    finally:
        supervisor.stop(STOP_TIMEOUT)
        if ready:
            state_path(name).unlink(missing_ok=True)
            if on_stop is not None:
                on_stop(info)


def scheduler_endpoints(listen: str, count: int) -> list[str]:
    """Where ``count`` schedulers of ``essa up`` listen: ``listen``, then free ports of its host."""
    protocol, _, address = listen.partition("/")
    host = address.rpartition(":")[0] or "127.0.0.1"
    return [listen] + [f"{protocol}/{host}:{free_port()}" for _ in range(count - 1)]


def _numbered(name: str, index: int, count: int) -> str:
    """``name`` if it is the only process of its kind, else ``name index``."""
    return f"{name} {index}" if count > 1 else name


def _processes(supervisor: Supervisor) -> list[Process]:
    return [Process(c.name, c.pid, start_time(c.pid), c.restarts, c.given_up) for c in supervisor.children]


def _save_state(info: ClusterInfo, supervisor: Supervisor) -> None:
    """Write the cluster's state file, with its processes' pids as they are now."""
    info.processes = _processes(supervisor)
    write_private(state_path(info.name), json.dumps(info.as_dict(), indent=2) + "\n")


def _check(supervisor: Supervisor) -> None:
    for child in supervisor.dead():
        raise _Died(f"{child.name} exited with {describe_status(child.process.returncode)} before the cluster was "
                    "ready")


def _wait_until_ready(info: ClusterInfo, schedulers: int, executors: int, supervisor: Supervisor,
                      client_tls: TlsFiles | None, http: str | None, stopping: StopSignals) -> None:
    """Return once every scheduler sees every executor and the HTTP server and metrics endpoints answer.

    :raises _Died: a process exited first; :raises _Stopping: a signal came first;
    :raises EssaError: not ready within :data:`READY_TIMEOUT`.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    urls = [f"http://{http}/healthz"] if http else []
    urls += list(info.metrics.values())
    waiting_for = "the scheduler"
    client = None
    try:
        while True:
            if stopping.is_set():
                raise _Stopping
            _check(supervisor)
            if time.monotonic() > deadline:
                raise _Died(f"the cluster was not ready within {READY_TIMEOUT:g} s (waiting for {waiting_for})")
            if client is None:
                try:
                    client = connect_client([info.listen], timeout=5.0, tls=client_tls or False, wait=True)
                except EssaError:
                    time.sleep(0.2)
                    continue
            answers = [a for a in client.transport.query(f"{topics.STATUS}/scheduler/**", {}, timeout=1.0)
                       if isinstance(a, dict)]
            seen = min((len(a.get("executors") or ()) for a in answers), default=0)
            if len(answers) < schedulers:
                waiting_for = f"schedulers: {len(answers)} of {schedulers} answered"
                time.sleep(0.2)
                continue
            if seen < executors:
                waiting_for = f"executors: {seen} of {executors} joined"
                time.sleep(0.2)
                continue
            if urls and _answers(urls[0]):
                urls.pop(0)
            if not urls:
                return
            waiting_for = urls[0]
            time.sleep(0.2)
    finally:
        if client is not None:
            client.close()
            client.transport.close()


def _answers(url: str) -> bool:
    """Whether an HTTP server answers ``url`` with 200."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            return answer.status == 200
    except OSError:
        return False


def _describe(info: ClusterInfo, executors: int, secure: bool, security_dir: str | None, http: str | None,
              context_line: str | None) -> None:
    """Say where everything is, and how to use it."""
    say = lambda line: print(line, flush=True)  # noqa: E731
    schedulers = sum(1 for p in info.processes if p.name.startswith("scheduler"))
    say(f"essa cluster {info.name} up: " + (f"{schedulers} schedulers, " if schedulers > 1 else "")
        + f"{executors} executors" + (", mutual TLS, access tokens" if secure else ""))
    for service, where in info.endpoints.items():
        say(f"  {service:<14} {where}")
    if info.metrics:
        say("metrics (Prometheus):")
        for process, url in info.metrics.items():
            say(f"  {process:<14} {url}")
    if context_line:
        say(context_line)
    via = "" if context_line else f" --connect {info.listen}"
    if secure:
        _print_secure_usage(security_dir, bool(context_line))
    say(f"run a module with:  essa run{via} FILE.wasm")
    say(f"deploy one with:    essa deploy{via} FILE.wasm --name NAME")
    if http:
        bearer = '-H "Authorization: Bearer $ESSA_TOKEN" ' if secure else ""
        say(f"call one over HTTP: curl {bearer}-H 'content-type: application/json' -d '[ARG, ...]' "
            f"http://{http}/v1/functions/NAME/FUNCTION")
    say("stop with Ctrl-C" if info.log is None else f"stop with: essa down {info.name}")


def _secure_environments(schedulers: int, executors: int, services, security_dir: str | None,
                         http: bool) -> list[dict[str, str]]:
    """The security environment of each process ``up`` starts, in start order (schedulers, services, executors,
    the HTTP trigger: a client whose requests carry their own tokens)."""
    if len(services.roles) != len(services.commands) or not set(services.roles) <= set(ROLES):
        raise EssaError("the store's processes do not say their certificate roles: `essa up --secure` cannot "
                        "start them (start them yourself with certificates from `essa certs issue`)")
    names: list[tuple[str, str]] = [("scheduler" + (f"-{i}" if i else ""), "scheduler") for i in range(schedulers)]
    counts: dict[str, int] = {}
    for role in services.roles:
        index = counts.get(role, 0)
        counts[role] = index + 1
        names.append((f"{role}-{index}", role))
    names += [(f"executor-{i}", "executor") for i in range(executors)]
    if http:
        names.append(("http", "client"))
    material = prepare_local(security_dir, dict(names))
    return [material.environment(name, verify_tokens=role in ("scheduler", "executor")) for name, role in names]


def _print_secure_usage(security_dir: str | None, in_context: bool) -> None:
    material = Material(Path(security_dir) if security_dir else default_directory())
    files = material.files("client")
    where = "" if security_dir is None else f" --dir {shlex.quote(security_dir)}"
    print(f"certificates in:    {material.directory} (admin.pem: also reaches the store nodes)", flush=True)
    print(f"{'other shells:' if in_context else 'connect with:':<20}export ESSA_TLS_CA={shlex.quote(files.ca)} "
          f"ESSA_TLS_CERT={shlex.quote(files.cert)} ESSA_TLS_KEY={shlex.quote(files.key)}", flush=True)
    print(f"                    export ESSA_TOKEN=$(essa token create{where} --deployment '*' --namespace '*')",
          flush=True)


# -- in the background -----------------------------------------------------------------


def detach(argv: Sequence[str], name: str, timeout: float = READY_TIMEOUT + 30) -> tuple[ClusterInfo, str]:
    """Run ``essa ARGV`` (an ``essa up``, for cluster ``name``) in the background; return once it is ready.

    It runs in a session of its own (no terminal, so closing this one does
    not stop it), its output in ``clusters/NAME.log``. Returns the cluster
    and what ``essa up`` printed.

    :raises EssaError: a cluster of that name runs already, or this one
        exited (the last lines of its log say why) or was not ready in time.
    """
    running = _running(name)
    if running is not None:
        raise EssaError(f"a cluster named {name} is running already (essa up, pid {running.pid}, at "
                        f"{running.listen}): `essa down {name}` stops it")
    log = clusters_directory() / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log, "w", encoding="utf-8") as output:
        child = subprocess.Popen([sys.executable, "-m", "essa", *argv], stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, LOG_ENV: str(log)})
    deadline = time.monotonic() + timeout
    while True:
        info = _running(name)
        if info is not None and info.pid == child.pid:
            return info, log.read_text(encoding="utf-8", errors="replace")
        if child.poll() is not None:
            raise EssaError(f"essa up exited with status {child.returncode}: {_last_lines(log)}")
        if time.monotonic() > deadline:
            _stop_group(child.pid)
            raise EssaError(f"the cluster was not ready within {timeout:g} s: {_last_lines(log)}")
        time.sleep(0.1)


def _last_lines(log: Path, count: int = 3) -> str:
    """The log's last ``count`` lines, after the error lines before them (a child's own reason to exit)."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines[:-count] if line.startswith("essa: error:")][-count:]
    return " / ".join(errors + lines[-count:]) or f"no output (see {log})"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:  # it ended meanwhile
        pass


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def down(name: str | None = None, timeout: float = STOP_TIMEOUT + 15) -> ClusterInfo:
    """Stop the cluster ``name`` (default: the only one running) and every process of it; return it.

    :raises EssaError: none runs, several run and ``name`` is not given, or one
        named so does not run.
    """
    clusters = running_clusters()
    if not clusters:
        raise EssaError("no cluster started by `essa up` is running here (`essa up --detach` starts one)")
    if name is None:
        if len(clusters) > 1:
            raise EssaError(f"{len(clusters)} clusters are running ({', '.join(c.name for c in clusters)}): "
                            "name the one to stop, as in `essa down NAME`")
        info = clusters[0]
    else:
        info = next((c for c in clusters if c.name == name), None)
        if info is None:
            raise EssaError(f"no cluster named {name} is running (running: {', '.join(c.name for c in clusters)})")
    deadline = time.monotonic() + timeout
    if info.running():
        _signal(info.pid, signal.SIGTERM)  # it stops its processes, removes its state file, gives the context back
        while info.running() and time.monotonic() < deadline:
            time.sleep(0.1)
    else:  # essa up died (SIGKILL): its processes are still there, stop them here
        for process in info.left_behind():
            _signal(process.pid, signal.SIGTERM)
        while info.left_behind() and time.monotonic() < deadline:
            time.sleep(0.1)
    leftovers = info.left_behind()
    if info.running():
        leftovers.append(Process("essa up", info.pid, info.started))
    for process in leftovers:  # they did not stop in time: end them
        _signal(process.pid, signal.SIGKILL)
    state_path(info.name).unlink(missing_ok=True)
    return info


__all__ = ["ClusterInfo", "Process", "READY_TIMEOUT", "clusters_directory", "detach", "down", "running_clusters",
           "scheduler_endpoints", "state_path", "up"]
