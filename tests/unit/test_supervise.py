"""The supervisor of `essa up` with real child processes: backoff, one line per restart, giving up."""

from __future__ import annotations

import sys
import time

from essa.cluster import metrics
from essa.cluster.supervise import Supervisor, describe_status
from essa.cluster.up import scheduler_endpoints

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]


def test_a_child_that_keeps_crashing_is_restarted_with_backoff_then_given_up_on():
    lines: list[str] = []
    changes: list[int] = []
    supervisor = Supervisor(max_restarts=2, say=lines.append, on_change=lambda: changes.append(1))
    before = metrics.RESTARTS.labels("crasher")._value.get()
    child = supervisor.start("crasher", CRASH, {})
    pids = {child.pid}
    deadline = time.monotonic() + 60
    while not child.given_up:
        assert time.monotonic() < deadline, lines
        supervisor.check()
        pids.add(child.pid)
        time.sleep(0.05)
    assert len(pids) == 3 and child.restarts == 2 and len(changes) == 5  # 3 deaths, 2 restarts
    assert [line.split(") ", 1)[1] for line in lines] == [
        "exited with status 3; restarting it in 0.5 s (restart 1; 1 of 2 in a row)",
        "exited with status 3; restarting it in 1 s (restart 2; 2 of 2 in a row)",
        "exited with status 3, 3 times in a row within 30 s of its start: given up on it (the rest of the cluster "
        "runs on)"]
    assert all(line.startswith("essa up: crasher (pid ") for line in lines)
    assert metrics.RESTARTS.labels("crasher")._value.get() == before + 2
    assert supervisor.given_up() == [child]
    supervisor.check()  # nothing more happens to it
    assert len(lines) == 3


def test_stop_ends_children_that_run_and_restarts_nothing():
    supervisor = Supervisor(say=lambda line: None)
    child = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], {})
    supervisor.stop(timeout=30)
    assert child.process.returncode is not None
    supervisor.check()
    assert child.restarts == 0


def test_exit_statuses_are_named():
    assert describe_status(3) == "status 3"
    assert describe_status(-9) == "signal 9 (SIGKILL)"


def test_the_first_scheduler_listens_where_told_the_others_on_its_host():
    first, *others = scheduler_endpoints("tls/10.0.0.5:7447", 3)
    assert first == "tls/10.0.0.5:7447" and len(others) == 2
    assert all(e.startswith("tls/10.0.0.5:") and e != first for e in others)
    assert scheduler_endpoints("tcp/127.0.0.1:7447", 1) == ["tcp/127.0.0.1:7447"]


def test_a_clusters_schedulers_are_its_listen_endpoint_then_the_others():
    from essa.cluster.up import ClusterInfo

    info = ClusterInfo("c", 1, "tcp/127.0.0.1:7447", {"scheduler 0": "tcp/127.0.0.1:7447",
                                                     "scheduler 1": "tcp/127.0.0.1:7500",
                                                     "anna routing": "tcp/127.0.0.1:7450"})
    assert info.schedulers() == ("tcp/127.0.0.1:7447", "tcp/127.0.0.1:7500")
    assert ClusterInfo("c", 1, "tcp/127.0.0.1:7447", {"scheduler": "tcp/127.0.0.1:7447"}).schedulers() == (
        "tcp/127.0.0.1:7447",)


def test_a_cluster_that_could_not_start_says_why_its_process_exited(tmp_path):
    from essa.cluster.up import _last_lines

    log = tmp_path / "up.log"
    log.write_text("essa: error: cannot serve metrics on 127.0.0.1:40000: Address already in use\n"
                   "essa: metrics at http://127.0.0.1:40001/metrics\nessa scheduler s: zenoh peer listening\n"
                   "essa: error: executor 0 exited with status 1 before the cluster was ready; stopping\n")
    assert _last_lines(log).startswith("essa: error: cannot serve metrics on 127.0.0.1:40000")
    assert _last_lines(log).endswith("before the cluster was ready; stopping")
