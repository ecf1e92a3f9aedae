"""WASI deny-by-default, and what an executor's operator may grant.

Without grants a guest has no preopened directory and no environment variable
(``test_engine.test_wasi_is_a_sandbox_with_stdio_only``). With
:class:`essa.wasm.limits.Grants` it gets exactly what was granted: environment
variables, and directories read-only or read-write, from which no path, no
``..`` and no symbolic link leads out. An engine that cannot honour a grant
refuses it when created, in one line; it never ignores one.
"""

from __future__ import annotations

import os
import struct

import pytest

from essa.cluster.embedded import open_engine
from essa.errors import EssaError
from essa.testing.conformance.support import invocation
from essa.testing.conformance.wat import module
from essa.wasm.limits import DirGrant, Grants

pytestmark = pytest.mark.usefixtures("essa_home")

WASI = {
    "environ_sizes_get": "(param i32 i32) (result i32)",
    "environ_get": "(param i32 i32) (result i32)",
    "fd_prestat_get": "(param i32 i32) (result i32)",
    "fd_prestat_dir_name": "(param i32 i32 i32) (result i32)",
    "path_open": "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
    "fd_read": "(param i32 i32 i32 i32) (result i32)",
    "fd_close": "(param i32) (result i32)",
    "fd_readdir": "(param i32 i32 i32 i64 i32) (result i32)",
    "path_filestat_get": "(param i32 i32 i32 i32 i32) (result i32)",
    "path_create_directory": "(param i32 i32 i32) (result i32)",
    "path_unlink_file": "(param i32 i32 i32) (result i32)",
}
IMPORTS = "\n".join(f'  (import "wasi_snapshot_preview1" "{n}" (func ${n} {sig}))' for n, sig in WASI.items())

READ_RIGHTS = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 21)  # fd_read, fd_seek, fd_tell, fd_filestat_get
WRITE_RIGHTS = READ_RIGHTS | (1 << 6)  # and fd_write
CREAT, TRUNC = 1, 8
EPERM, ENOENT, SUCCESS = 63, 44, 0

#: Paths the probes use, at fixed addresses; (address, length).
PATHS = {
    "hello": b"hello.txt",
    "new": b"new.txt",
    "escape": b"../outside.txt",
    "absolute": b"/etc/hostname",
    "link": b"link.txt",
    "subdir": b"made",
    "deep": b"sub/../hello.txt",
}
_ADDR = {name: 0x600 + 0x40 * i for i, name in enumerate(PATHS)}
DATA = {_ADDR[name]: path for name, path in PATHS.items()} | {0x900: b"written by the guest"}


def _path(name: str) -> str:
    return f"(i32.const {_ADDR[name]}) (i32.const {len(PATHS[name])})"


def _open(slot: int, name: str, oflags: int, rights: int) -> str:
    """path_open in the first preopen (fd 3); code at 0x2000 + 4 slot, fd at 0x2100 + 4 slot."""
    return (f"(i32.store (i32.const {0x2000 + 4 * slot}) (call $path_open (i32.const 3) (i32.const 0) {_path(name)}"
            f" (i32.const {oflags}) (i64.const {rights}) (i64.const {rights}) (i32.const 0)"
            f" (i32.const {0x2100 + 4 * slot})))")


PROBE = f"""
  (func (export "__essa_wrapper__probe") (param i32)
    ;; 0: read hello.txt (the first 64 bytes land at 0x2400, count at 0x2300)
    {_open(0, "hello", 0, READ_RIGHTS)}
    (i32.store (i32.const 0x3000) (i32.const 0x2400))
    (i32.store (i32.const 0x3004) (i32.const 64))
    (i32.store (i32.const 0x2004) (call $fd_read (i32.load (i32.const 0x2100)) (i32.const 0x3000) (i32.const 1)
      (i32.const 0x2300)))
    ;; 2: create new.txt for writing; 3: write to it; 4: the same through sub/../
    {_open(2, "new", CREAT | TRUNC, WRITE_RIGHTS)}
    (i32.store (i32.const 0x3008) (i32.const 0x900))
    (i32.store (i32.const 0x300c) (i32.const 20))
    (i32.store (i32.const 0x200c) (call $fd_write (i32.load (i32.const 0x2108)) (i32.const 0x3008) (i32.const 1)
      (i32.const 0x2304)))
    {_open(4, "deep", 0, READ_RIGHTS)}
    ;; 5: ../ out of the directory; 6: an absolute path; 7: a symbolic link pointing outside
    {_open(5, "escape", 0, READ_RIGHTS)}
    {_open(6, "absolute", 0, READ_RIGHTS)}
    {_open(7, "link", 0, READ_RIGHTS)}
    ;; 8: mkdir; 9: stat hello.txt; 10: unlink hello.txt; 11: prestat of fd 3; 12: readdir of fd 3
    (i32.store (i32.const 0x2020) (call $path_create_directory (i32.const 3) {_path("subdir")}))
    (i32.store (i32.const 0x2024) (call $path_filestat_get (i32.const 3) (i32.const 0) {_path("hello")}
      (i32.const 0x2500)))
    (i32.store (i32.const 0x2028) (call $path_unlink_file (i32.const 3) {_path("hello")}))
    (i32.store (i32.const 0x202c) (call $fd_prestat_get (i32.const 3) (i32.const 0x2308)))
    (i32.store (i32.const 0x2030) (call $fd_readdir (i32.const 3) (i32.const 0x2600) (i32.const 0x200) (i64.const 0)
      (i32.const 0x2310)))
    (drop (call $fd_prestat_dir_name (i32.const 3) (i32.const 0x2380) (i32.const 32)))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 0x800))))

  (func (export "__essa_wrapper__env") (param i32)
    (i32.store (i32.const 0x2000) (call $environ_sizes_get (i32.const 0x2004) (i32.const 0x2008)))
    (i32.store (i32.const 0x200c) (call $environ_get (i32.const 0x2100) (i32.const 0x2200)))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 0x300))))
"""


def probe_module() -> bytes:
    return module(PROBE, DATA, imports=IMPORTS)


def engine_with(essa_engine, grants: Grants):
    from essa.plugins import get_plugin_manager

    cls = get_plugin_manager().engine_class(essa_engine)
    kinds = {"dirs"} if grants.dirs else set()
    kinds |= {"env"} if grants.env else set()
    if not kinds <= cls.supported_grants:
        pytest.skip(f"engine {essa_engine} does not grant {', '.join(sorted(kinds - cls.supported_grants))}")
    return open_engine(essa_engine, grants=grants)


def run_probe(engine, export: str = "__essa_wrapper__probe") -> bytes:
    program = engine.prepare(engine.compile(probe_module()))
    inv = invocation()
    program.run(inv, export, 0)
    return inv.result


@pytest.fixture
def tree(tmp_path):
    """granted/hello.txt, granted/sub/, granted/link.txt -> ../outside.txt, and outside.txt."""
    granted = tmp_path / "granted"
    (granted / "sub").mkdir(parents=True)
    (granted / "hello.txt").write_bytes(b"hello from the host")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.txt", granted / "link.txt")
    return granted


def codes(result: bytes) -> list[int]:
    return list(struct.unpack_from("<13i", result))


def test_a_read_only_directory_can_be_read_but_not_changed_or_left(essa_engine, tree):
    engine = engine_with(essa_engine, Grants(dirs=(DirGrant(str(tree), "/data", writable=False),)))
    result = run_probe(engine)
    read, nread, create, _write, deep, escape, absolute, link, mkdir, stat, unlink, prestat, readdir = codes(result)
    assert read == SUCCESS and result[0x400:0x400 + 19] == b"hello from the host"
    assert deep == SUCCESS, "sub/../hello.txt stays inside"
    assert create == EPERM and not (tree / "new.txt").exists()
    assert escape == EPERM and absolute != SUCCESS and link != SUCCESS
    assert b"secret" not in result
    assert mkdir == EPERM and not (tree / "made").exists()
    assert stat == SUCCESS and struct.unpack_from("<Q", result, 0x500 + 32)[0] == 19  # the file's size
    assert unlink == EPERM and (tree / "hello.txt").exists()
    assert prestat == SUCCESS and result[0x380:0x385] == b"/data"
    assert readdir == SUCCESS
    names = result[0x600:0x800]
    assert b"hello.txt" in names and b"sub" in names


def test_a_read_write_directory_can_be_changed_but_not_left(essa_engine, tree):
    engine = engine_with(essa_engine, Grants(dirs=(DirGrant(str(tree), "/data", writable=True),)))
    result = run_probe(engine)
    read, _nread, create, write, _deep, escape, absolute, link, mkdir, _stat, unlink, _prestat, _readdir = codes(result)
    assert read == SUCCESS and create == SUCCESS and write == SUCCESS
    assert (tree / "new.txt").read_bytes() == b"written by the guest"
    assert escape == EPERM and absolute != SUCCESS and link != SUCCESS
    assert (tree.parent / "outside.txt").read_bytes() == b"secret"
    assert mkdir == SUCCESS and (tree / "made").is_dir()
    assert unlink == SUCCESS and not (tree / "hello.txt").exists()


def test_environment_variables_are_exactly_the_granted_ones(essa_engine):
    engine = engine_with(essa_engine, Grants(env=(("GREETING", "hello"), ("EMPTY", ""))))
    result = run_probe(engine, "__essa_wrapper__env")
    sizes, count, size, environ = struct.unpack_from("<iIIi", result)
    assert (sizes, environ) == (0, 0)
    assert (count, size) == (2, len("GREETING=hello\0EMPTY=\0"))
    assert result[0x200:0x200 + size] == b"GREETING=hello\0EMPTY=\0"
    first, second = struct.unpack_from("<II", result, 0x100)
    assert (first, second) == (0x2200, 0x2200 + len("GREETING=hello\0"))


def test_without_grants_nothing_is_preopened(essa_engine, tree):
    engine = open_engine(essa_engine)
    result = run_probe(engine)
    assert codes(result)[11] == 8  # fd_prestat_get(3): EBADF
    assert codes(result)[0] == 8  # path_open in fd 3: EBADF
    assert struct.unpack_from("<iII", run_probe(engine, "__essa_wrapper__env")) == (0, 0, 0)


def test_a_grant_the_engine_cannot_honour_is_refused_in_one_line(essa_engine, tmp_path):
    from essa.plugins import get_plugin_manager

    cls = get_plugin_manager().engine_class(essa_engine)
    if {"dirs", "env"} <= cls.supported_grants:
        pytest.skip(f"engine {essa_engine} honours every grant")
    grants = Grants(dirs=(DirGrant(str(tmp_path), "/x"),)) if "dirs" not in cls.supported_grants else \
        Grants(env=(("A", "1"),))
    with pytest.raises(EssaError, match="cannot grant"):
        open_engine(essa_engine, grants=grants)
