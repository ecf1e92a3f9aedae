"""``essa dev``: build, deploy and serve a project, then again each time its sources change, until Ctrl-C.

The session (:class:`DevSession`) runs on this machine's embedded runtime
(with essa.toml's limits and grants) unless told to use a cluster. It looks
at the sources essa.toml names every :data:`POLL` seconds (no file-watching
dependency: a project's sources are few), and acts on a change once they
stayed the same for :data:`QUIET` seconds (an editor's save is several
writes). Beside that loop run its *companions*, each on a thread of its own
until the session ends: the HTTP server (``essa serve``'s trigger, when
installed); a log stream is one more :meth:`DevSession.companion` call.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
from typing import Callable

import click

from essa.api import Connection
from essa.api.project import FILENAME, Project, load_project, open_project
from essa.api.trigger import TriggerConfig
from essa.cli.deployments import describe_deployed
from essa.cli.options import (
    Settings,
    connection_options,
    limits_and_grants,
    open_connection,
    refuse_limits_on_a_cluster,
)
from essa.cli.project import describe_build
from essa.cli.signals import catching_signals
from essa.errors import EssaError
from essa.plugins import DEFAULTS, get_plugin_manager

#: Seconds between two looks at the sources.
POLL = 0.25
#: Seconds the sources must stay the same before a change is built.
QUIET = 0.3


def say(line: str) -> None:
    """One line of what happened, with the time."""
    click.echo(f"{datetime.datetime.now():%H:%M:%S} {line}")


class DevSession:
    """One ``essa dev``: a project, the connection it deploys to, and the companions running beside it."""

    def __init__(self, project: Project, connection: Connection) -> None:
        self.project = project
        self.connection = connection
        #: The version that answers now (``None`` until the first deploy).
        self.current: str | None = None
        self._companions: list[tuple[threading.Thread, Callable[[], None]]] = []

    def companion(self, name: str, run: Callable[[], None], stop: Callable[[], None]) -> None:
        """Run ``run()`` on a thread of its own; :meth:`close` calls ``stop()`` and waits for it to return.

        ``run`` says what it does with :func:`say`; an error ends it with one line, never the session.
        """
        def guarded() -> None:
            try:
                run()
            except EssaError as exc:
                say(f"{name}: {exc}")
            except Exception as exc:  # a bug: one line, the session goes on
                say(f"{name} stopped: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=guarded, name=f"essa-dev-{name}", daemon=True)
        self._companions.append((thread, stop))
        thread.start()

    def update(self) -> None:
        """Build (if the project has a build command) and deploy; a failure leaves the running version as it is."""
        try:
            if self.project.command is not None:
                sys.stdout.flush()
                say(f"building: {self.project.command}")
                say(describe_build(self.project, self.project.build(output=sys.stdout)))
            signatures = self.project.path if self.project.functions else None  # essa.toml's [functions] tables
            deployed = self.connection.deploy(self.project.output_path, self.project.name, signatures=signatures)
        except EssaError as exc:
            still = f"; {self.current} still answers" if self.current else ""
            say(f"error: {exc}{still}")
            return
        self.current = deployed.spec
        say(describe_deployed(deployed, "deployed"))

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """The watched sources, and essa.toml itself: relative path -> (modification time, size)."""
        found = self.project.sources()
        try:
            stat = self.project.path.stat()
            found[FILENAME] = (stat.st_mtime_ns, stat.st_size)
        except OSError:  # being rewritten
            pass
        return found

    def watch(self, stopped: Callable[[], bool]) -> None:
        """Deploy now, then again after every change of the sources, until ``stopped()``."""
        self.update()
        seen = self.snapshot()
        while not stopped():
            time.sleep(POLL)
            now = self.snapshot()
            if now == seen:
                continue
            while not stopped():  # until the writes stop
                time.sleep(QUIET)
                settled = self.snapshot()
                if settled == now:
                    break
                now = settled
            changed = sorted(set(seen) ^ set(now) | {f for f in set(seen) & set(now) if seen[f] != now[f]})
            seen = now
            if stopped():
                return
            say(f"changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
            if FILENAME in changed and not self.reload():
                continue
            self.update()

    def reload(self) -> bool:
        """Read essa.toml again; say so, or why it cannot be used (the project stays as it was)."""
        try:
            self.project = load_project(self.project.path)
        except EssaError as exc:
            say(f"error: {exc}; essa dev goes on with the essa.toml it had")
            return False
        say(f"{FILENAME} read again ([limits], [grants] and [dev] apply when essa dev starts again)")
        return True

    def close(self) -> None:
        """Stop the companions, and wait for each (a few seconds at most)."""
        for _thread, stop in self._companions:
            try:
                stop()
            except Exception:
                pass
        for thread, _stop in self._companions:
            thread.join(10.0)


def serve_http(session: DevSession, listen: str | None, max_message_bytes: int) -> None:
    """The HTTP companion: the trigger ``essa serve`` runs, for the session's connection (if installed)."""
    try:
        trigger_class = get_plugin_manager().trigger_class(DEFAULTS["trigger"])
    except EssaError as exc:
        say(f"no HTTP endpoint: {exc}")
        return
    config = TriggerConfig(listen=listen or trigger_class.default_listen, max_message_bytes=max_message_bytes,
                           shutdown_timeout=5.0)
    trigger = trigger_class(session.connection, config)
    name = session.project.name

    def ready(address: str) -> None:
        say(f"http: {address} (call a function: curl -H 'content-type: application/json' -d '[ARG, ...]' "
            f"{address}/v1/functions/{name}/FUNCTION)")

    session.companion("http", lambda: trigger.serve(ready), trigger.stop)


@click.command()
@click.option("--listen", metavar="HOST:PORT", help="Where to answer HTTP. [default: essa.toml's [dev] http, "
              "else 127.0.0.1:8080]")
@click.option("--no-http", is_flag=True, help="Answer no HTTP: build and deploy only.")
@connection_options
@click.pass_context
def dev(ctx: click.Context, listen: str | None, no_http: bool, connect, zenoh_config, timeout) -> None:
    """Build, deploy and serve the project, and again each time its sources change (Ctrl-C ends it).

    The project is the essa.toml here or in a parent directory. It runs on
    this machine (an embedded runtime with essa.toml's limits and grants),
    whatever the current context; --connect or --context deploy it to a
    cluster instead. Every change of a watched file ([build] watch) builds
    and deploys a new version (`unchanged` when the module is the same); a
    failed build says why and leaves the running version answering. An HTTP
    endpoint answers calls all along (essa-plugin-http).
    """
    settings: Settings = ctx.obj
    project = open_project()
    limits, grants = limits_and_grants(**project.limit_flags())
    cluster = refuse_limits_on_a_cluster(ctx, connect, use_current=False)
    with catching_signals() as signals, open_connection(
            settings, connect, zenoh_config, timeout, max_message_bytes=limits.max_message_bytes, use_current=False,
            **({} if cluster else {"limits": limits, "grants": grants})) as connection:
        session = DevSession(project, connection)
        say(f"essa dev: {project.name} ({project.path}), on {connection.where}; watching "
            f"{', '.join(project.watch)}; Ctrl-C ends it")
        try:
            if not no_http:
                serve_http(session, listen or project.http, limits.max_message_bytes)
            session.watch(lambda: signals.received is not None)
        finally:
            session.close()
    say("essa dev: stopped")


__all__ = ["DevSession", "dev", "serve_http"]
