"""``essa new`` projects build with their own build.sh and run: C in ``tox -e guests``, Rust in
``tox -e rust-guests``, TypeScript in ``tox -e ts-guests``.

They compile real modules with real toolchains (the first zig build compiles
wasi-libc, the first cargo build the SDK's dependencies, the first TypeScript
build installs AssemblyScript from the npm registry: minutes on a busy
machine), so they run only for the languages named in ESSA_TEST_GUEST_BUILDS
(``c``, ``rust``, ``ts``, or several: ``c,rust``), which those tox environments set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LANGUAGES = {"c", "rust", "ts"}
TOX_ENVS = {"c": "guests", "rust": "rust-guests", "ts": "ts-guests"}


def essa(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=dict(os.environ))


def build_env(language: str, tmp_path) -> dict[str, str]:
    if language == "c":
        # build.sh runs "$PYTHON -m ziglang": the Python that has ziglang is this one.
        return dict(os.environ, PYTHON=sys.executable)
    if language == "ts":
        return dict(os.environ, NPM_CONFIG_UPDATE_NOTIFIER="false")
    # Debian's cargo with the project's .cargo/config.toml only: no CARGO_*/RUST*
    # settings or ~/.cargo/config.toml from outside.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUST"))}
    env["CARGO_HOME"] = str(tmp_path / "cargo-home")
    return env


@pytest.mark.parametrize("language, largest", [("c", 100_000), ("rust", 400_000), ("ts", 100_000)])
def test_a_new_project_builds_small_and_runs(tmp_path, language, largest):
    wanted = set(os.environ.get("ESSA_TEST_GUEST_BUILDS", "").split(",")) & LANGUAGES
    if language not in wanted:
        pytest.skip(f"building a {language} project takes minutes: set ESSA_TEST_GUEST_BUILDS={language} "
                    f"(tox -e {TOX_ENVS[language]})")
    created = essa("new", language, "hello", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    project = tmp_path / "hello"
    assert "essa build && essa run hello.wasm" in created.stdout

    # `essa build` runs build.sh as essa.toml says (C: with $PYTHON set to essa's Python, which has ziglang)
    env = {k: v for k, v in build_env(language, tmp_path).items() if k != "PYTHON"}
    built = subprocess.run([sys.executable, "-m", "essa", "build"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.splitlines()[-1].startswith("built hello.wasm (")
    module = project / "hello.wasm"
    assert 0 < module.stat().st_size < largest  # the build flags give small modules

    # From another directory, as a user would after `cd ..`.
    ran = essa("--store", "memory", "run", str(module), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "Hello, world!\n"
    assert ran.stderr == ""

    # Deployed from the project as its essa.toml names it (up to date: no second build); its signature travels
    # with it: greet takes its argument as text.
    deployed = essa("deploy", cwd=project)
    assert deployed.returncode == 0 and deployed.stdout.startswith("deployed hello@1: "), deployed.stderr
    assert "functions: greet (with signatures)" in deployed.stdout
    assert essa("functions", "hello", cwd=project).stdout == "greet(name: string) -> string\n"
    called = essa("call", "hello", "greet", "essa", cwd=project)
    assert (called.returncode, called.stdout) == (0, "Hello, essa!\n"), called.stderr
