"""essa's processes cap glibc's malloc arenas (essa.util.memory); the user's MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from essa.util.memory import limit_malloc_arenas

CHECK = "from essa.util.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def run_child(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_arenas_are_capped_unless_the_environment_says_how_many():
    import os
    import platform

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert run_child(env) == expected
    assert run_child({**env, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert limit_malloc_arenas() is False
