#!/usr/bin/env python3
"""Build the TypeScript (AssemblyScript) guests into their committed .wasm files, reproducibly.

The guest: the TypeScript word count (examples/word-count-ts.wasm, from
examples/word-count-ts with the SDK in guest/assemblyscript).

    python examples/build_ts.py            # (re)write the .wasm files
    python examples/build_ts.py --check    # rebuild from scratch; exit 1 if a
                                           # committed .wasm differs, 0 if not

Exit status 2 means the build itself could not run (no node or npm, an npm
install that failed, a compile error).

Toolchain: Node.js 20 or newer and npm, and the npm packages each project's
package-lock.json pins (assemblyscript and binaryen, exact versions and
integrity hashes), installed with ``npm ci`` from the npm registry (or npm's
cache). The SDK is a ``file:`` dependency on guest/assemblyscript.

Reproducibility: each project builds in a scratch tree laid out like the
repository (``examples/<project>`` and ``guest/assemblyscript``), so its
``file:../../guest/assemblyscript`` resolves there; the compiler writes only
paths relative to the project (``assembly/index.ts``, ``~lib/...``) into the
module, so the bytes do not depend on where the checkout or the scratch tree
live, and the pinned compiler gives the same bytes on every machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from committed import settle  # examples/, beside this script

EXAMPLES_DIR = Path(__file__).resolve().parent
ROOT = EXAMPLES_DIR.parent
SDK = "guest/assemblyscript"
NODE_MAJOR = 20


@dataclass(frozen=True)
class Guest:
    """A TypeScript guest: its npm project, its output, and where `npm run build` writes the module.

    Paths are relative to the repository root (the artifact to the project).
    """

    project: str
    output: str
    artifact: str


GUESTS = [Guest("examples/word-count-ts", "examples/word-count-ts.wasm", "build/word-count-ts.wasm")]


class BuildError(Exception):
    """A build problem with a message for the user."""


def check_node() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found: install Node.js {NODE_MAJOR} or newer with npm")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        raise BuildError(f"cannot tell node's version from {version!r}") from None
    if major < NODE_MAJOR:
        raise BuildError(f"node is {version}; AssemblyScript 0.28 needs Node.js {NODE_MAJOR} or newer")


def prepare_tree(guest: Guest, work: Path) -> Path:
    """Copy the project and the SDK into `work`, laid out as in the repository; return the project dir."""
    for name in ("package.json", "package-lock.json", "asconfig.json"):
        if not (ROOT / guest.project / name).is_file():
            raise BuildError(f"{guest.project}/{name} is missing")
    for top in ("examples", "guest"):
        shutil.rmtree(work / top, ignore_errors=True)
    ignore = shutil.ignore_patterns("node_modules", "build", ".git")
    for src in (guest.project, SDK):
        shutil.copytree(ROOT / src, work / src, ignore=ignore)
    return work / guest.project


def npm_env() -> dict[str, str]:
    """npm without update notices, audits or funding messages."""
    return dict(os.environ, NPM_CONFIG_UPDATE_NOTIFIER="false", NPM_CONFIG_AUDIT="false",
                NPM_CONFIG_FUND="false")


def run(cmd: list[str], cwd: Path, what: str) -> None:
    print(f"  (cd {cwd} && {' '.join(cmd)})")
    proc = subprocess.run(cmd, cwd=cwd, env=npm_env())
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit status {proc.returncode})")


def build(guest: Guest, work: Path) -> bytes:
    project = prepare_tree(guest, work)
    # npm ci: exactly the package-lock.json's versions; no install scripts (the build needs none).
    run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], project, f"installing {guest.project}'s packages")
    run(["npm", "run", "--silent", "build"], project, f"building {guest.output}")
    artifact = project / guest.artifact
    if not artifact.is_file():
        raise BuildError(f"npm run build did not write {artifact}")
    data = artifact.read_bytes()
    for path in {str(work), str(work.resolve()), str(ROOT)}:
        if path.encode() in data:
            raise BuildError(f"the built module contains the build path {path}; it would not be reproducible")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild from scratch in a temporary directory and exit 1 if a committed .wasm differs",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="scratch directory to build in (default: a fresh temporary one)",
    )
    args = parser.parse_args(argv)

    try:
        check_node()
        stale = []
        with tempfile.TemporaryDirectory(prefix="essa-ts-build-") as tmp:
            for guest in GUESTS:
                started = time.monotonic()
                work = (args.work_dir or Path(tmp)).resolve()
                work.mkdir(parents=True, exist_ok=True)
                print(f"building {guest.output} in {work}")
                new = build(guest, work)
                elapsed = f"{time.monotonic() - started:.0f} s"
                problem = settle(ROOT, guest.output, new, args.check, guest.project, elapsed)
                if problem is not None:
                    stale.append(problem)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if stale:
        for line in stale:
            print(f"error: {line}", file=sys.stderr)
        print("rebuild with: python examples/build_ts.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
