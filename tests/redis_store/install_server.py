"""Install Debian's redis-server for the redis store's tests, when it is missing (`tox -e py311-redis` runs it).

As root on Debian or Ubuntu (a fresh CI machine, this project's machines) it
runs ``apt-get update`` and ``apt-get install -y --no-install-recommends
redis-server`` (which brings redis-cli too); elsewhere it says what to run and
exits 0, and the tests that need a server skip, naming the same command. The
service the package would start is not started (no init system in a
container; the tests start servers of their own on free ports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGES = ["redis-server"]
COMMAND = "apt-get update && apt-get install -y --no-install-recommends redis-server"


def main() -> int:
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"redis-server is missing and cannot be installed here; as root: {COMMAND} "
              "(the tests that need it are skipped)", file=sys.stderr)
        return 0
    print(f"installing Debian's redis-server: {COMMAND}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"`{' '.join(command)}` failed (exit status {done.returncode}): {done.stderr.strip()[-800:]}",
                  file=sys.stderr)
            return 1
    if not shutil.which("redis-server"):
        print("redis-server is still missing after apt-get install", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
