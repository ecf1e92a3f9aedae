"""Contexts through the command line: add, ls, show, use, rm, and which one each command uses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from essa.testing.ports import free_port

from .test_cli import TEST_FUNCTION, assert_one_line_error, essa
from .test_service import ok


def essa_env(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_contexts_round_trip(essa_home):
    assert "* embedded" in ok(essa("context", "ls"))
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    saved = ok(essa("context", "add", "far", "--connect", endpoint, "--token", "essa1.secret.sig"))
    assert saved.startswith(f"saved context far ({endpoint}) in ")
    assert stat.S_IMODE((essa_home / "contexts" / "far.json").stat().st_mode) == 0o600
    listing = ok(essa("context", "ls"))
    assert "* embedded" in listing and "  far" in listing
    for words in ("essa context use ", "essa ls --context "):  # shell completion knows the contexts
        completed = essa_env(COMP_WORDS=words, COMP_CWORD=str(len(words.split())), _ESSA_COMPLETE="bash_complete")
        assert completed.stdout.split() == ["plain,embedded", "plain,far"], completed
    assert ok(essa("context", "use", "far")) == f"current context: far ({endpoint})\n"
    shown = ok(essa("context", "show"))
    assert shown.startswith("far (current)\n") and endpoint in shown and "essa1.secret.sig" not in shown
    assert json.loads(ok(essa("context", "show", "far", "--json")))["token"] == "essa1.secret.sig"
    assert [(c["name"], c["current"], c["token"]) for c in json.loads(ok(essa("context", "ls", "--json")))] == [
        ("far", True, True)]
    assert ok(essa("context", "rm", "far")) == "removed context far; the current context is embedded\n"
    assert_one_line_error(essa("context", "use", "far"), "no context named 'far'")
    assert_one_line_error(essa("context", "add", "x", "--connect", endpoint, "--tls-ca", str(TEST_FUNCTION)),
                          "needs --tls-ca, --tls-cert and --tls-key together")


def test_commands_use_the_current_context_unless_told_otherwise(essa_home):
    endpoint = f"tcp/127.0.0.1:{free_port()}"  # nothing listens: the refusal says where a command went
    ok(essa("context", "add", "gone", "--connect", endpoint, "--use"))
    refused = essa("ls", "--timeout", "60")
    assert_one_line_error(refused, f"cannot reach {endpoint}: nothing listens there", "context 'gone'",
                          "`essa context use embedded` runs on this machine instead")
    assert_one_line_error(essa("status"), f"cannot reach {endpoint}", "context 'gone'")
    assert ok(essa("--store", "memory", "ls", "--context", "embedded")).startswith("no deployments")
    assert ok(essa_env("--store", "memory", "ls", ESSA_CONTEXT="embedded")).startswith("no deployments")
    other = f"tcp/127.0.0.1:{free_port()}"
    assert_one_line_error(essa("ls", "--connect", other, "--timeout", "60"), f"cannot reach {other}")
    assert "context" not in essa("ls", "--connect", other).stderr
    # --context beats ESSA_CONNECT; ESSA_CONNECT beats the current context
    assert ok(essa_env("--store", "memory", "ls", "--context", "embedded", ESSA_CONNECT=other)).startswith("no deploy")
    assert_one_line_error(essa_env("ls", ESSA_CONNECT=other), f"cannot reach {other}")
    assert_one_line_error(essa("run", "--time-limit", "5", str(TEST_FUNCTION)),
                          "--time-limit does not apply on the cluster of context gone (--context embedded runs here)")
    assert ok(essa("run", "--context", "embedded", str(TEST_FUNCTION))).startswith("Hello world from test function")


@pytest.mark.parametrize("name", ["a/b", "-x", "embedded"])
def test_bad_context_names_are_refused_in_one_line(name):
    assert_one_line_error(essa("context", "add", name, "--connect", "tcp/127.0.0.1:1"))
