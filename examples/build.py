#!/usr/bin/env python3
"""Build the C examples into the committed .wasm files.

    python examples/build.py            # (re)write examples/*.wasm
    python examples/build.py --check    # rebuild into a temp dir; exit 1 if the
                                        # committed .wasm files differ, 0 if not

Exit status 2 means the build itself could not run (ziglang missing or of
another version, compile error).

The compiler is Zig's bundled clang with wasi-libc, from the PyPI package
``ziglang`` (pinned below and in examples/requirements.txt), run as
``sys.executable -m ziglang cc -target wasm32-wasi ...``.

The build is reproducible: it runs with the examples directory as the working
directory and passes only relative source/include paths, without debug info,
so the bytes do not depend on where the repository lives or when it was
built. The modules keep their ``name`` section (function names, so a trap
says where it happened); wasi-libc's debug info, which the linker would keep
unless it also stripped the names, is removed afterwards
(:mod:`essa.wasm.debuginfo`: essa must be installed for the Python that runs
this, e.g. ``pip install -e .``). Another ziglang version generally produces different bytes,
hence the pin.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from essa.wasm.debuginfo import without_debug_info
except ImportError:  # said in one line by main()
    without_debug_info = None

#: The ziglang (PyPI) version the committed .wasm files were built with.
ZIGLANG_VERSION = "0.17.1"

EXAMPLES_DIR = Path(__file__).resolve().parent

#: output file (relative to examples/) -> C sources (relative to examples/)
#: Other places a built module is kept (the conformance suite ships its own copy).
COPIES: dict[str, list[Path]] = {
    "test-function.wasm": [EXAMPLES_DIR.parent / "core/essa/testing/conformance/data/test-function.wasm"],
}

EXAMPLES: dict[str, list[str]] = {
    "test-function.wasm": ["test-function/test_function.c"],
    "word-count.wasm": ["word-count/word_count.c"],
    "state-ops.wasm": ["state-ops/state_ops.c"],
    # The WASI differential corpus (tests/wasi): one module per C file.
    **{
        f"wasi-corpus/{source.stem}.wasm": [f"wasi-corpus/{source.name}"]
        for source in sorted((EXAMPLES_DIR / "wasi-corpus").glob("*.c"))
    },
}

#: Compiler flags; paths are relative to examples/ (the working directory).
CFLAGS = [
    "-target", "wasm32-wasi",
    "-std=c11",
    "-O2",
    "-g0",          # no debug info (it would carry paths); wasi-libc's is removed after linking
    "-Wall",
    "-Wextra",
    "-I", "../guest/c",
]

INSTALL_HINT = (
    f"install it with: {sys.executable} -m pip install ziglang=={ZIGLANG_VERSION}"
    "  (or: pip install -r examples/requirements.txt)"
)


class BuildError(Exception):
    """A build problem with a message for the user."""


def zig_command() -> list[str]:
    return [sys.executable, "-m", "ziglang"]


def check_ziglang(allow_other: bool) -> None:
    """Fail clearly when ziglang is missing; refuse (or warn) on another version."""
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            f"the Python package 'ziglang' (version {ZIGLANG_VERSION}) is not installed "
            f"for {sys.executable}; {INSTALL_HINT}"
        )
    try:
        version = importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is None:
        proc = subprocess.run(zig_command() + ["version"], capture_output=True, text=True)
        version = proc.stdout.strip() or "unknown"
    if version != ZIGLANG_VERSION:
        message = (
            f"ziglang {version} is installed but the examples are pinned to "
            f"ziglang=={ZIGLANG_VERSION}; another version produces different .wasm bytes"
        )
        if not allow_other:
            raise BuildError(f"{message}; {INSTALL_HINT}; or pass --allow-other-zig to build anyway")
        print(f"warning: {message}", file=sys.stderr)


def compile_example(output: str, sources: list[str], out_path: Path) -> None:
    """Compile `sources` (relative to examples/) into `out_path`."""
    for src in sources:
        if not (EXAMPLES_DIR / src).is_file():
            raise BuildError(f"source file examples/{src} is missing")
    cmd = zig_command() + ["cc"] + CFLAGS + sources + ["-o", str(out_path)]
    shown = " ".join(["python", "-m", "ziglang", "cc"] + CFLAGS + sources + ["-o", output])
    print(f"  (cd examples && {shown})")
    proc = subprocess.run(cmd, cwd=EXAMPLES_DIR, capture_output=True, text=True)
    if proc.stdout:
        sys.stdout.write(proc.stdout)
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise BuildError(
            f"compiling examples/{output} from {', '.join('examples/' + s for s in sources)} "
            f"failed (exit status {proc.returncode})"
        )
    if not out_path.is_file():
        raise BuildError(f"the compiler did not write examples/{output}")
    out_path.write_bytes(without_debug_info(out_path.read_bytes()))  # keeps the name section


def describe(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary directory and exit 1 if any committed .wasm differs",
    )
    parser.add_argument(
        "--allow-other-zig",
        action="store_true",
        help=f"build with an installed ziglang other than {ZIGLANG_VERSION} (warns)",
    )
    args = parser.parse_args(argv)

    try:
        check_ziglang(args.allow_other_zig)
        if without_debug_info is None:
            raise BuildError(f"essa is not installed for {sys.executable} (it removes the modules' debug info); "
                             f"install it with: {sys.executable} -m pip install -e .")
        stale = []
        with tempfile.TemporaryDirectory(prefix="essa-examples-") as tmp:
            for output, sources in EXAMPLES.items():
                built = Path(tmp) / Path(output).name
                print(f"building examples/{output}")
                compile_example(output, sources, built)
                new = built.read_bytes()
                target = EXAMPLES_DIR / output
                if args.check:
                    if not target.is_file():
                        stale.append(f"examples/{output} is missing (rebuilt: {describe(new)})")
                    else:
                        old = target.read_bytes()
                        if old != new:
                            stale.append(
                                f"examples/{output} differs from a fresh build of "
                                f"{', '.join('examples/' + s for s in sources)} "
                                f"(committed: {describe(old)}; rebuilt: {describe(new)})"
                            )
                        else:
                            print(f"  examples/{output} is up to date ({describe(new)})")
                else:
                    for path in [target, *COPIES.get(output, [])]:
                        staging = path.with_name(path.name + ".tmp")
                        shutil.copyfile(built, staging)
                        os.replace(staging, path)
                        print(f"  wrote {path.relative_to(EXAMPLES_DIR.parent)} ({describe(new)})")
        if stale:
            for line in stale:
                print(f"error: {line}", file=sys.stderr)
            print(
                "error: the committed example modules are out of date; run "
                "`python examples/build.py` and commit the result",
                file=sys.stderr,
            )
            return 1
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
