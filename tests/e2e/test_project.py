"""A project (essa.toml) through the command line: essa build, essa deploy with no arguments, and essa dev in a
pseudo-terminal, where an edited source becomes a new version answering over HTTP. Real builds (a Python script
assembling WAT with wasmtime.wat2wasm, run through the shell as essa.toml says), real processes."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from essa.testing.ports import free_port

from .test_cli import assert_one_line_error
from .test_service import ok

pytest.importorskip("essa_lmdb")
pytest.importorskip("wasmtime")  # the projects' build assembles WAT with it

DEADLINE = 90.0

#: hello() answers the text at 16; {answer} is filled in (and edited by the tests).
WAT = """(module
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{answer}")
  (func (export "__essa_wrapper__hello") (param i32)
    (drop (call $set_result (i32.const 16) (i32.const {length}))))
  (func (export "_start")))
"""

BUILD = """import sys, wasmtime
try:
    with open("hello.wat") as source:
        wasm = wasmtime.wat2wasm(source.read())
except Exception as exc:
    sys.exit(f"hello.wat: {str(exc).splitlines()[0]}")
open("dev.wasm", "wb").write(wasm)
print("assembled", len(wasm), "bytes")
"""


def write_source(project: Path, answer: str) -> None:
    (project / "hello.wat").write_text(WAT.format(answer=answer, length=len(answer)))


@pytest.fixture
def project(tmp_path) -> Path:
    directory = tmp_path / "dev"
    directory.mkdir()
    (directory / "build.py").write_text(BUILD)
    write_source(directory, "v1")
    (directory / "essa.toml").write_text(f"""[project]
name = "dev"
[build]
command = '"$PYTHON" build.py'
output = "dev.wasm"
watch = ["*.wat"]
[dev]
http = "127.0.0.1:{free_port()}"
""")
    return directory


def essa_in(directory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, cwd=directory,
                          timeout=DEADLINE, env=env)


def test_build_then_deploy_with_no_arguments_from_anywhere_in_the_project(project):
    built = essa_in(project, "build")
    assert re.fullmatch(r"assembled \d+ bytes\nbuilt dev\.wasm \(\d+ bytes\) in \d+\.\d s\n", ok(built))
    assert built.stderr == 'building dev: "$PYTHON" build.py\n'
    sub = project / "more"
    sub.mkdir()
    assert ok(essa_in(sub, "deploy")).startswith("deployed dev@1: module ")  # up to date: no build
    assert ok(essa_in(sub, "call", "dev", "hello")) == "v1"
    write_source(project, "v2")
    deployed = essa_in(sub, "deploy")  # the source is newer than the output: built first
    assert ok(deployed).startswith("deployed dev@2") and "built ../dev.wasm" in deployed.stderr
    assert ok(essa_in(sub, "deploy")) == "unchanged: dev@2\n"
    assert ok(essa_in(sub, "deploy", "--build")) == "unchanged: dev@2\n"  # built again: the same bytes
    assert ok(essa_in(project, "deploy", "--name", "other")).startswith("deployed other@1")

    (project / "hello.wat").write_text("(module (oops")
    failed = essa_in(project, "build")  # the command's own output, then essa's one line
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-2:] == ["hello.wat: expected valid module field",
                                               'essa: error: the build failed (exit status 1): "$PYTHON" build.py']
    (project / "essa.toml").write_text('[project]\nname = "dev"\n[build]\ncomand = "x"\n')
    assert_one_line_error(essa_in(project, "deploy"), "essa.toml: [build] has no key 'comand'")
    assert_one_line_error(essa_in(project.parent, "build"), "no essa.toml here or in a parent directory")
    assert_one_line_error(essa_in(project.parent, "deploy"), "give FILE.wasm and --name NAME, or run `essa deploy`")


class Terminal:
    """``essa ARGS`` on a pseudo-terminal, in ``directory``; :meth:`expect` reads until a pattern appears."""

    def __init__(self, directory: Path, *args: str) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(directory)
            env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
            os.execve(sys.executable, [sys.executable, "-m", "essa", *args], env)
        self.screen = ""

    def expect(self, pattern: str, deadline: float = DEADLINE) -> re.Match:
        end = time.monotonic() + deadline
        while True:
            found = re.search(pattern, self.screen)
            if found:
                return found
            assert time.monotonic() < end, f"no {pattern!r} in:\n{self.screen}"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    pass

    def wait(self, deadline: float = DEADLINE) -> int:
        end = time.monotonic() + deadline
        while True:
            finished, status = os.waitpid(self.pid, os.WNOHANG)
            if finished:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < end, f"essa dev did not end:\n{self.screen}"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    pass

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def call(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=DEADLINE) as a:
            return a.read()
    except (urllib.error.URLError, OSError):
        return None


def test_dev_rebuilds_redeploys_and_serves_each_change_until_ctrl_c(project):
    pytest.importorskip("essa_http")
    terminal = Terminal(project, "dev")
    try:
        url = terminal.expect(r"http: (http://\S+) ").group(1) + "/v1/functions/dev/hello"
        terminal.expect(r"deployed dev@1: module ")
        assert call(url) == b"v1"

        write_source(project, "v2")  # an edit: built, deployed, answering
        terminal.expect(r"changed: hello\.wat")
        terminal.expect(r"deployed dev@2: module ")
        assert call(url) == b"v2"

        (project / "hello.wat").write_text("(module (oops")  # a broken edit: said, and v2 still answers
        terminal.expect(r"error: the build failed \(exit status 1\): .*; dev@2 still answers")
        assert call(url) == b"v2"

        write_source(project, "v2")  # back to the bytes dev means: no new version
        terminal.expect(r"unchanged: dev@2")

        toml = (project / "essa.toml").read_text()
        (project / "essa.toml").write_text(toml + "[biuld]\n")  # a broken essa.toml: said, the old one goes on
        terminal.expect(r"error: .*essa\.toml: unknown table \[biuld\].*; essa dev goes on with the essa.toml it had")
        (project / "essa.toml").write_text(toml.replace('name = "dev"', 'name = "renamed"'))
        terminal.expect(r"essa\.toml read again")
        terminal.expect(r"deployed renamed@1: module ")
        assert call(url.replace("/dev/", "/renamed/")) == b"v2"

        os.write(terminal.fd, b"\x03")  # Ctrl-C
        assert terminal.wait() == 0, terminal.screen
        terminal.expect(r"essa dev: stopped")
        assert "Traceback" not in terminal.screen
    finally:
        terminal.close()
    assert call(url) is None  # the HTTP endpoint went with it
