"""essa.util.descriptors: raising this process's limit of open descriptors (in a child process: limits are per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

CHILD = """
import resource
from essa.util.descriptors import raise_open_files_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 400))
print(raise_open_files_limit(200), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(raise_open_files_limit(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 400))
print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(raise_open_files_limit(50))
"""


def test_the_soft_limit_is_raised_toward_what_is_wanted_never_above_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 400:
        pytest.skip("the hard limit of open descriptors is below 400 here")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:4] == ["200 200", "400 400", "400 400", "400"]  # a higher limit is left alone
