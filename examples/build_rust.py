#!/usr/bin/env python3
"""Build the Rust guests into their committed .wasm files, reproducibly.

The guests: the Rust test function (examples/test-function-rust.wasm), the
Rust word count (examples/word-count-rust.wasm) and the Rust program of the
WASI differential corpus (examples/wasi-corpus/rust_std.wasm).

    python examples/build_rust.py            # (re)write the .wasm files
    python examples/build_rust.py --check    # rebuild from scratch; exit 1 if a
                                             # committed .wasm differs, 0 if not
    python examples/build_rust.py --check --test   # also run the SDK's unit tests

Exit status 2 means the build itself could not run (a missing toolchain that
could not be installed, another rustc version, a compile error, failing SDK
tests).

Toolchain: Debian 12's Rust 1.63 (``/usr/bin/cargo``, ``/usr/bin/rustc`` with
the wasm32-wasi standard library) and the crate sources of Debian's
``librust-*-dev`` packages, which cargo reads offline as a directory registry
(``/usr/share/cargo/registry``; see each example's .cargo/config.toml).
Missing packages are installed with apt-get when running as root (as CI does
on a fresh Debian machine); otherwise the script prints the command to run.
A rustup toolchain on PATH is ignored: ``/usr/bin`` tools are called
explicitly.

Reproducibility: cargo hashes the absolute path of a path dependency that lies
outside the workspace root into symbol and type ids, and rustc writes source
paths into panic messages. So each example builds in a scratch tree laid out like
the repository (``examples/<example>`` and ``guest/rust/{essa-api,
essa-macros,anna-api}`` under a generated workspace root): every path cargo
and rustc see is relative to that root, and the bytes do not depend on where
the checkout or the scratch tree live. The examples build one after the other
in the same scratch tree, so the second reuses the compiled dependencies. The
release profile (one codegen unit, LTO, no debug info, stripped) is in each
example's .cargo/config.toml; the crate versions are pinned by its Cargo.lock
(``--locked``). The only absolute
paths left in the module are those of Debian's Rust standard library sources
(``/usr/src/rustc-1.63.0/...``), which the compiled std carries and which are
the same on every machine.
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

SDK_CRATES = ["guest/rust/essa-api", "guest/rust/essa-macros", "guest/rust/anna-api"]
SDK_WORKSPACE = "guest/rust"
TARGET = "wasm32-wasi"


@dataclass(frozen=True)
class Guest:
    """A Rust guest: its crate, the crates it depends on by path, its output and cargo's artifact name.

    Paths are relative to the repository root.
    """

    crate: str
    output: str
    artifact: str
    path_dependencies: tuple[str, ...] = ()


GUESTS = [
    Guest("examples/test-function-rust", "examples/test-function-rust.wasm", "essa-test-function.wasm",
          tuple(SDK_CRATES)),
    Guest("examples/word-count-rust", "examples/word-count-rust.wasm", "word-count.wasm", tuple(SDK_CRATES)),
    Guest("examples/wasi-corpus/rust", "examples/wasi-corpus/rust_std.wasm", "wasi-corpus-rust.wasm"),
]

#: The rustc the committed module was built with (Debian 12's); another
#: version generally produces different bytes.
RUSTC_VERSION = "1.63.0"
CARGO = "/usr/bin/cargo"
RUSTC = "/usr/bin/rustc"

#: Debian packages: the toolchain, the wasm32-wasi std, the linker, and the
#: crate sources of every dependency in the Cargo.lock files.
APT_PACKAGES = [
    "rustc",
    "cargo",
    "libstd-rust-dev-wasm32",
    "lld-14",
    "librust-serde-dev",
    "librust-serde-derive-dev",
    "librust-bincode-dev",
    "librust-syn-dev",
    "librust-quote-dev",
    "librust-proc-macro2-dev",
    "librust-num-enum-dev",
]

#: Environment variables that would change what cargo or rustc do.
SCRUBBED_ENV_PREFIXES = ("CARGO", "RUST")


class BuildError(Exception):
    """A build problem with a message for the user."""


def missing_packages() -> list[str]:
    if shutil.which("dpkg-query") is None:
        raise BuildError(
            "dpkg-query not found: this build needs Debian 12 (bookworm) packages "
            f"({' '.join(APT_PACKAGES)})"
        )
    missing = []
    for package in APT_PACKAGES:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(package)
    return missing


def ensure_packages(allow_install: bool) -> None:
    missing = missing_packages()
    if not missing:
        return
    command = f"apt-get update && apt-get install -y --no-install-recommends {' '.join(missing)}"
    if not allow_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BuildError(f"missing Debian packages: {' '.join(missing)}; install them as root with: {command}")
    print(f"installing missing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
        print(f"  {' '.join(cmd)}")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise BuildError(f"`{' '.join(cmd)}` failed (exit status {proc.returncode}): {proc.stderr.strip()[-800:]}")
    still = missing_packages()
    if still:
        raise BuildError(f"Debian packages still missing after apt-get install: {' '.join(still)}")


def check_rustc(allow_other: bool) -> None:
    for tool in (CARGO, RUSTC):
        if not os.access(tool, os.X_OK):
            raise BuildError(f"{tool} not found; install Debian's rustc and cargo packages")
    proc = subprocess.run([RUSTC, "--version"], capture_output=True, text=True, env=build_env(None))
    words = proc.stdout.split()
    version = words[1] if len(words) > 1 else "unknown"
    if version != RUSTC_VERSION:
        message = (
            f"{RUSTC} is rustc {version} but the committed module was built with rustc "
            f"{RUSTC_VERSION} (Debian 12); another version produces different .wasm bytes"
        )
        if not allow_other:
            raise BuildError(f"{message}; pass --allow-other-rustc to build anyway")
        print(f"warning: {message}", file=sys.stderr)


def build_env(cargo_home: Path | None) -> dict[str, str]:
    """The environment for cargo: no CARGO_*/RUST* settings from outside, Debian's tools first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    env["RUSTC"] = RUSTC
    env["RUSTDOC"] = "/usr/bin/rustdoc"
    if cargo_home is not None:
        env["CARGO_HOME"] = str(cargo_home)  # ignore ~/.cargo/config.toml
    return env


def prepare_tree(guest: Guest, work: Path) -> Path:
    """Copy the guest's crates into `work`, under a generated workspace root; return the crate dir."""
    crates = [guest.crate, *guest.path_dependencies]
    for src in crates:
        if not (ROOT / src / "Cargo.toml").is_file():
            raise BuildError(f"{src}/Cargo.toml is missing")
    lock = ROOT / guest.crate / "Cargo.lock"
    if not lock.is_file():
        raise BuildError(f"{guest.crate}/Cargo.lock is missing (it pins the crate versions)")
    for top in ("examples", "guest"):
        shutil.rmtree(work / top, ignore_errors=True)
    ignore = shutil.ignore_patterns("target", ".git")
    for src in crates:
        shutil.copytree(ROOT / src, work / src, ignore=ignore)  # copy2: mtimes kept
    (work / "Cargo.toml").write_text(
        "# Generated by examples/build_rust.py: a root that makes every path relative.\n"
        f'[workspace]\nmembers = ["{guest.crate}"]\nresolver = "2"\n'
    )
    shutil.copy2(lock, work / "Cargo.lock")
    return work / guest.crate


def run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    print(f"  (cd {cwd} && {' '.join(cmd)})")
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit status {proc.returncode})")


def build(guest: Guest, work: Path) -> bytes:
    crate = prepare_tree(guest, work)
    env = build_env(work / "cargo-home")
    # rustc writes cross-crate source paths joined to its working directory
    # (the scratch root) into the module; strip that prefix. (Not part of
    # cargo's crate hashes, so it does not change the bytes otherwise.)
    env["RUSTFLAGS"] = f"--remap-path-prefix={work}/="
    run(
        [CARGO, "build", "--release", "--locked", "--offline", "--target", TARGET],
        crate,
        env,
        f"building {guest.output}",
    )
    artifact = work / "target" / TARGET / "release" / guest.artifact
    if not artifact.is_file():
        raise BuildError(f"cargo did not write {artifact}")
    data = artifact.read_bytes()
    for path in {str(work), str(work.resolve()), str(ROOT)}:
        if path.encode() in data:
            raise BuildError(f"the built module contains the build path {path}; it would not be reproducible")
    return data


def test_sdk(work: Path) -> None:
    env = build_env(work / "cargo-home")
    run(
        [CARGO, "test", "--locked", "--offline", "--quiet", "--target-dir", str(work / "sdk-target")],
        ROOT / SDK_WORKSPACE,
        env,
        "the SDK's unit tests (cargo test in guest/rust)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild from scratch in a temporary directory and exit 1 if a committed .wasm differs",
    )
    parser.add_argument(
        "--test", action="store_true", help="also run the SDK's unit tests (cargo test in guest/rust)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="scratch directory to build in (default: a fresh temporary one for --check, "
        "else target/essa-build in each crate, reused for faster rebuilds)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never run apt-get; fail if a package is missing"
    )
    parser.add_argument(
        "--allow-other-rustc",
        action="store_true",
        help=f"build with a rustc other than {RUSTC_VERSION} (warns; the bytes will differ)",
    )
    args = parser.parse_args(argv)

    try:
        ensure_packages(allow_install=not args.no_install)
        check_rustc(args.allow_other_rustc)
        stale = []
        with tempfile.TemporaryDirectory(prefix="essa-rust-build-") as tmp:
            for guest in GUESTS:
                started = time.monotonic()
                if args.work_dir is not None:
                    work = args.work_dir.resolve()
                elif args.check:
                    work = Path(tmp) / Path(guest.crate).name
                else:
                    work = ROOT / guest.crate / "target" / "essa-build"
                work.mkdir(parents=True, exist_ok=True)
                print(f"building {guest.output} in {work}")
                new = build(guest, work)
                elapsed = f"{time.monotonic() - started:.0f} s"
                problem = settle(ROOT, guest.output, new, args.check, guest.crate, elapsed)
                if problem is not None:
                    stale.append(problem)
            if args.test:
                print("testing the Rust guest SDK")
                test_sdk(Path(tmp) / "sdk")
        if stale:
            for line in stale:
                print(f"error: {line}", file=sys.stderr)
            print(
                "error: the committed Rust modules are out of date; run "
                "`python examples/build_rust.py` and commit the result",
                file=sys.stderr,
            )
            return 1
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
