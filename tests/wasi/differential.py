"""Run one WASI program under plain wasmtime-py (the oracle) and under essa, and compare.

A :class:`Case` is a corpus program (``examples/wasi-corpus/NAME.wasm``) with
its arguments, environment and stdin. Each run gets a fresh copy of the
fixture tree (:func:`make_fixture`): ``sandbox/`` preopened read-write as
``/sandbox`` (fd 3) and ``ro/`` read-only as ``/ro`` (fd 4), next to
``outside.txt``, which no path may reach. An :class:`Outcome` holds what a
user can observe: the exit status (or ``"trap"``), stdout, stderr and the tree
left behind (:func:`snapshot`).

Also a debugging aid::

    python -m tests.wasi.differential files --engine wasmer     # the diff, if any
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "wasi-corpus"
#: The environment every program gets.
ENV = (("GREETING", "hi"), ("EMPTY", ""))
SANDBOX, RO = "/sandbox", "/ro"


@dataclass(frozen=True)
class Case:
    """One run of a corpus program."""

    program: str
    args: tuple[str, ...] = ()
    stdin: bytes | None = None
    #: What the case shows, for the test's id and report.
    name: str = ""

    @property
    def wasm(self) -> Path:
        return CORPUS / f"{self.program}.wasm"

    @property
    def argv(self) -> list[str]:
        return [f"{self.program}.wasm", *self.args]

    @property
    def id(self) -> str:
        return self.name or "-".join((self.program, *self.args)) or self.program


@dataclass
class Outcome:
    status: int | str
    stdout: str
    stderr: str
    tree: dict[str, tuple] = field(default_factory=dict)


# -- the fixture --------------------------------------------------------------------

FILES = {
    "sandbox/hello.txt": b"hello, world\n",
    "sandbox/empty.txt": b"",
    "sandbox/sub/inner.txt": b"inner\n",
    "ro/data.txt": b"read only\n",
    "ro/dir/nested.txt": b"nested\n",
    "outside.txt": b"outside\n",
}
DIRS = ["sandbox", "sandbox/sub", "sandbox/sub/deeper", "ro", "ro/dir"]
LINKS = {
    "sandbox/link-hello": "hello.txt",
    "sandbox/link-sub": "sub",
    "sandbox/link-dangling": "missing.txt",
    "sandbox/link-loop": "link-loop",
    "sandbox/link-escape": "../outside.txt",
    "sandbox/link-abs": "/etc/hostname",
    "sandbox/sub/link-up": "../hello.txt",
    "sandbox/sub/link-chain": "../link-hello",
    "ro/link-data": "data.txt",
}


def make_fixture(root: Path) -> tuple[Path, Path]:
    """Create the fixture under ``root``; return the sandbox and read-only directories."""
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, 0o755)
    for name, data in FILES.items():
        (root / name).write_bytes(data)
        os.chmod(root / name, 0o644)
    for name, target in LINKS.items():
        os.symlink(target, root / name)
    return root / "sandbox", root / "ro"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: kind, permission bits, and content or link target."""
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", oct(mode))
            elif stat.S_ISREG(st.st_mode):
                tree[rel] = ("file", oct(mode), path.read_bytes())
            else:
                tree[rel] = ("other", oct(mode))
    return tree


# -- runners ---------------------------------------------------------------------------


def run_plain_wasmtime(case: Case, root: Path) -> Outcome:
    """The oracle: wasmtime-py's own WASI, configured as essa configures its guests."""
    import wasmtime

    sandbox, ro = make_fixture(root)
    engine = _wasmtime_engine()
    module = _wasmtime_module(engine, case.wasm)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = case.argv
    config.env = [list(pair) for pair in ENV]
    out: list[bytes] = []
    err: list[bytes] = []
    config.stdout_custom = out.append
    config.stderr_custom = err.append
    if case.stdin is not None:
        stdin_file = root / "stdin"
        stdin_file.write_bytes(case.stdin)
        config.stdin_file = str(stdin_file)
    config.preopen_dir(str(sandbox), SANDBOX, True)
    config.preopen_dir(str(ro), RO, False)
    store.set_wasi(config)
    status: int | str = 0
    try:
        linker.instantiate(store, module).exports(store)["_start"](store)
    except wasmtime.ExitTrap as exc:
        status = exc.code
    except (wasmtime.Trap, wasmtime.WasmtimeError):
        status = "trap"
    finally:
        store.close()
    if case.stdin is not None:
        (root / "stdin").unlink()
    return Outcome(status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"),
                   snapshot(root))


def run_essa(engine_name: str, case: Case, root: Path) -> Outcome:
    """essa on ``engine_name``, driven through the engine interface with the same grants."""
    from essa.cluster.embedded import open_engine
    from essa.errors import GuestExit, GuestTrap
    from essa.testing.conformance.support import StandaloneHost, StreamOutput
    from essa.wasm.invocation import Invocation
    from essa.wasm.limits import DirGrant, Grants
    from essa.wasm.stdin import Stdin

    sandbox, ro = make_fixture(root)
    grants = Grants(dirs=(DirGrant(str(sandbox), SANDBOX, True), DirGrant(str(ro), RO, False)), env=ENV)
    engine = open_engine(engine_name, grants=grants)
    program = engine.prepare(engine.deserialize(_artifact(engine_name, case.wasm)))
    output = StreamOutput()
    stdin = None if case.stdin is None else Stdin.of(case.stdin)
    invocation = Invocation(b"", StandaloneHost(), output, argv=case.argv, stdin=stdin)
    status: int | str = 0
    try:
        program.run(invocation, "_start")
    except GuestExit as exc:
        status = exc.status
    except GuestTrap:
        status = "trap"
    streams = {1: b"", 2: b""}
    for stream, data in output.chunks:
        streams[stream] += data
    return Outcome(status, streams[1].decode("utf-8", "replace"), streams[2].decode("utf-8", "replace"),
                   snapshot(root))


_CACHE: dict = {}


def oracle_name() -> str:
    """The oracle as the report names it: ``wasmtime X.Y.Z`` (the version the test constraints pin)."""
    from importlib.metadata import version

    return f"wasmtime {version('wasmtime')}"


def _wasmtime_engine():
    import wasmtime

    if "engine" not in _CACHE:
        _CACHE["engine"] = wasmtime.Engine()
    return _CACHE["engine"]


def _wasmtime_module(engine, path: Path):
    import wasmtime

    key = ("module", path)
    if key not in _CACHE:
        _CACHE[key] = wasmtime.Module(engine, path.read_bytes())
    return _CACHE[key]


def _artifact(engine_name: str, path: Path) -> bytes:
    """The module compiled once per engine (grants do not change artifacts)."""
    from essa.cluster.embedded import open_engine

    key = ("artifact", engine_name, path)
    if key not in _CACHE:
        engine = open_engine(engine_name)
        _CACHE[key] = engine.serialize(engine.compile(path.read_bytes()))
    return _CACHE[key]


def differences(expected: Outcome, actual: Outcome) -> list[str]:
    """What ``actual`` does differently from ``expected``, as readable lines (none if alike)."""
    problems = []
    if expected.status != actual.status:
        problems.append(f"exit status: {oracle_name()} {expected.status!r}, essa {actual.status!r}")
    for stream in ("stdout", "stderr"):
        want, got = getattr(expected, stream), getattr(actual, stream)
        if want != got:
            diff = difflib.unified_diff(want.splitlines(), got.splitlines(), oracle_name(), "essa", lineterm="", n=1)
            problems.append(f"{stream} differs:\n" + "\n".join(diff))
    for path in sorted(set(expected.tree) | set(actual.tree)):
        want, got = expected.tree.get(path), actual.tree.get(path)
        if want != got:
            problems.append(f"tree: {path}: {oracle_name()} {want!r}, essa {got!r}")
    return problems


def compare(engine_name: str, case: Case) -> tuple[Outcome, list[str]]:
    """Run ``case`` both ways in fresh directories; the oracle's outcome and the differences."""
    with tempfile.TemporaryDirectory(prefix="essa-wasi-") as tmp:
        oracle_root, essa_root = Path(tmp) / "wasmtime", Path(tmp) / "essa"
        oracle_root.mkdir()
        essa_root.mkdir()
        expected = run_plain_wasmtime(case, oracle_root)
        actual = run_essa(engine_name, case, essa_root)
    return expected, differences(expected, actual)


#: Arguments of the trap cases (traps.c lists them when run without).
TRAPS = (
    "fdstat-misaligned", "fdstat-outside", "write-iovs-outside", "write-buffer-outside", "write-nwritten-outside",
    "read-buffer-outside", "path-outside", "opened-fd-outside", "args-outside", "random-outside", "clock-outside",
    "clock-misaligned", "poll-misaligned", "poll-outside", "seek-bad-whence", "advise-bad-advice", "clock-bad-id",
    "res-bad-id", "set-flags-bad", "open-bad-oflags", "open-bad-lookupflags", "open-bad-rights",
    "open-bad-fdflags", "set-times-bad-flags", "set-rights-bad", "shutdown-bad-how", "recv-bad-flags", "exit-126",
    "exit-255", "exit-big", "raise-bad-signal", "unreachable",
)
TEXT_STDIN = b"some input\nsecond line\n\xc3\xa9t\xc3\xa9\n"


def corpus_cases() -> list[Case]:
    """Every case of the corpus: each program with the arguments and stdin it is meant for."""
    cases = [
        Case("args_env", ("one", "two words", "", "\u00fcn\u00efc\u00f6d\u00e9", "--flag"), name="args_env"),
        Case("clock_random"),
        Case("stdio", stdin=TEXT_STDIN, name="stdio-text"),
        Case("stdio", stdin=bytes(range(256)) * 3, name="stdio-binary"),
        Case("stdio", name="stdio-no-stdin"),
        Case("poll", stdin=b"x\ny", name="poll-stdin"),
        Case("poll", name="poll-no-stdin"),
        *(Case(program) for program in ("files", "dirs", "paths", "links", "fdtable", "times", "readonly")),
        *(Case("sockets_exit", (status,), name=f"exit-{status}") for status in ("0", "1", "7", "125")),
        *(Case("traps", (trap,), name=f"trap-{trap}") for trap in TRAPS),
    ]
    if (CORPUS / "rust_std.wasm").is_file():
        cases += [
            Case("rust_std", ("fs",), name="rust-fs"),
            Case("rust_std", ("io", "3"), stdin=TEXT_STDIN, name="rust-io"),
            Case("rust_std", ("io",), name="rust-io-no-stdin"),
            Case("rust_std", ("panic",), name="rust-panic"),
            Case("rust_std", (), name="rust-usage"),
        ]
    return cases


def preview1_functions_used() -> set[str]:
    """The wasi_snapshot_preview1 functions the corpus modules import."""
    import wasmtime

    engine = _wasmtime_engine()
    used = set()
    for path in sorted(CORPUS.glob("*.wasm")):
        module = _wasmtime_module(engine, path)
        used |= {imp.name for imp in module.imports if imp.module == "wasi_snapshot_preview1" and imp.name}
    del wasmtime
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare a corpus program under wasmtime and essa.")
    parser.add_argument("program", help="a corpus program, or 'summary' for the corpus's size")
    parser.add_argument("args", nargs="*")
    parser.add_argument("--engine", default=os.environ.get("ESSA_TEST_ENGINE", "wasmtime"))
    parser.add_argument("--stdin", help="bytes for the program's stdin")
    parser.add_argument("--show", action="store_true", help="print the oracle's stdout too")
    options = parser.parse_args(argv)
    if options.program == "summary":
        cases = corpus_cases()
        print(f"{len(list(CORPUS.glob('*.wasm')))} programs, {len(preview1_functions_used())} preview1 functions "
              f"called, {len(cases)} cases")
        return 0
    case = Case(options.program, tuple(options.args), None if options.stdin is None else options.stdin.encode())
    expected, problems = compare(options.engine, case)
    if options.show:
        print(expected.stdout, end="")
        print(f"[exit {expected.status}]")
    for problem in problems:
        print(problem)
    print(f"{case.id} on {options.engine}: {'same' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
