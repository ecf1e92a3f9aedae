"""WASI preview 1 for essa guests on wasmer, behaving like wasmtime's.

wasmer 1.1's Python binding offers WASI only with the host process's own
stdin, stdout and stderr (``wasi.StateBuilder`` has no way to capture them),
and its WASI state is shared by every instance made from one import object. An
essa guest's output belongs to the user who ran it (``invocation.output``),
and one guest must never see or change another's descriptors, so this module
implements ``wasi_snapshot_preview1`` itself. wasmtime's implementation is the
reference, function by function and errno by errno (``tests/wasi`` runs a
corpus of programs under both and compares every line they print):

- arguments are :attr:`essa.wasm.invocation.Invocation.argv`; environment variables and
  directories only what the executor's operator grants
  (:class:`essa.wasm.limits.Grants`), directories preopened from fd 3 on and served
  by :mod:`essa_wasmer.wasi_fs`;
- stdin (fd 0) is :attr:`essa.wasm.invocation.Invocation.stdin` (empty without one);
  stdout (1) and stderr (2) go to ``invocation.output`` at each ``fd_write``;
- the descriptor table numbers, renumbers and reuses descriptors as wasmtime
  does (a closed number is reused highest first);
- a pointer outside guest memory or misaligned, an unknown enum value or flag
  in an argument, and ``proc_exit`` with a status of 126 or more trap the
  guest, as in wasmtime; blocking calls (stdin, ``poll_oneoff``) end at the
  call's deadline.

The functions find the running instance through :func:`current`, a per-thread
stack that the engine pushes a :class:`Sandbox` onto for each call, and reach
guest memory through the engine-neutral :class:`essa.wasm.abi.GuestMemory`.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Callable

from essa.plugin import (
    Grants,
    GuestFault,
    GuestLimit,
    Invocation,
    Stdin,
    current_invocation,
    fault_guard,
    wasip1,
)

from . import wasi_fs
from .wasi_fs import Directory, Entry, File, FsError

EBADF = wasip1.EBADF
EINVAL = wasip1.EINVAL
ENOTDIR = wasip1.ENOTDIR
ENOTSOCK = wasip1.ENOTSOCK
ENOTSUP = wasip1.ENOTSUP
ESPIPE = wasip1.ESPIPE
SUCCESS = wasip1.SUCCESS

#: The import module of WASI preview 1.
IMPORT_MODULE = "wasi_snapshot_preview1"

_MASK = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_FDSTAT = struct.Struct("<BxH4xQQ")  # filetype u8, flags u16, rights base u64, rights inheriting u64

STDIN, STDOUT, STDERR = 0, 1, 2
_STDIO_RIGHTS = {STDIN: wasi_fs.RIGHT_FD_READ, STDOUT: wasi_fs.RIGHT_FD_WRITE, STDERR: wasi_fs.RIGHT_FD_WRITE}
_EMPTY_STDIN = Stdin.of(b"")

#: Largest valid value of each flags argument (more bits trap, as wiggle's checks do in wasmtime).
_MAX_OFLAGS, _MAX_FDFLAGS, _MAX_LOOKUP, _MAX_FSTFLAGS, _MAX_RIFLAGS, _MAX_SDFLAGS = 15, 31, 1, 15, 3, 3
_MAX_ADVICE, _MAX_WHENCE, _MAX_CLOCK, _MAX_SIGNAL = 5, 2, 3, 30


class WasiExit(Exception):
    """The guest called ``proc_exit``; :attr:`status` is its exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"proc_exit({status})")
        self.status = status


class Stdio:
    """One of the standard streams in the descriptor table."""

    __slots__ = ("stream",)

    def __init__(self, stream: int) -> None:
        self.stream = stream


Descriptor = Stdio | Entry


class Sandbox:
    """WASI state of one instance: the invocation it serves and its descriptor table."""

    __slots__ = ("invocation", "fds", "free", "environ", "argv", "stdin")

    def __init__(self, invocation: Invocation, grants: Grants | None = None) -> None:
        self.invocation = invocation
        #: Open descriptors by number.
        self.fds: dict[int, Descriptor] = {STDIN: Stdio(STDIN), STDOUT: Stdio(STDOUT), STDERR: Stdio(STDERR)}
        #: Numbers closed and not yet reused (wasmtime reuses the highest first).
        self.free: set[int] = set()
        #: ``KEY=VALUE\0`` strings of the granted environment variables.
        self.environ = [f"{k}={v}".encode() + b"\0" for k, v in (grants.env if grants else ())]
        self.argv = [arg.encode() + b"\0" for arg in invocation.argv]
        self.stdin = invocation.stdin or _EMPTY_STDIN
        for number, grant in enumerate(grants.dirs if grants else (), start=3):
            try:
                self.fds[number] = Directory.preopen(grant.host, grant.guest, grant.writable)
            except OSError as exc:
                self.close()
                raise GuestFault(f"cannot open the granted directory {grant.host}: {exc.strerror}") from None

    def close(self) -> None:
        """Release the host descriptors of granted directories and files the instance opened."""
        for entry in self.fds.values():
            if isinstance(entry, Entry):
                entry.close()
        self.fds.clear()

    # -- memory ---------------------------------------------------------------------

    def read(self, ptr: int, length: int) -> bytes:
        return self.invocation.memory.read(ptr & _MASK, length & _MASK)  # type: ignore[union-attr]

    def write(self, ptr: int, data: bytes) -> None:
        self.invocation.memory.write(ptr & _MASK, data)  # type: ignore[union-attr]

    def check(self, ptr: int, length: int) -> None:
        """Trap unless ``[ptr, ptr + length)`` lies in guest memory (without copying it)."""
        if length & _MASK:
            self.read((ptr & _MASK) + (length & _MASK) - 1, 1)

    def write_u32(self, ptr: int, value: int) -> None:
        self.write(_aligned(ptr, 4), _U32.pack(value & _MASK))

    def write_u64(self, ptr: int, value: int) -> None:
        self.write(_aligned(ptr, 8), _U64.pack(value & _MASK64))

    def path(self, ptr: int, length: int) -> str:
        """A path argument: UTF-8 (EILSEQ if not), as wasmtime reads it."""
        raw = self.read(ptr, length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FsError(wasip1.EILSEQ) from None

    def iovec(self, iovs: int, count: int) -> tuple[int, int]:
        """The first non-empty buffer of an iovec array (wasmtime reads and writes only that one)."""
        table = self.read(_aligned(iovs, 4), 8 * (count & _MASK))
        for ptr, length in _IOVEC.iter_unpack(table):
            if length:
                return ptr, length
        return 0, 0

    # -- the descriptor table ---------------------------------------------------------

    def get(self, fd: int) -> Descriptor:
        entry = self.fds.get(fd & _MASK)
        if entry is None:
            raise FsError(EBADF)
        return entry

    def directory(self, fd: int) -> Directory:
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, Directory):
            return entry
        raise FsError(EBADF)

    def file(self, fd: int) -> File:
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, File):
            return entry
        raise FsError(EBADF)

    def seekable(self, fd: int) -> File:
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, File):
            return entry
        raise FsError(ESPIPE if isinstance(entry, Stdio) else EBADF)

    def entry(self, fd: int) -> Entry:
        """A file or directory (stdio is EBADF)."""
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, Entry):
            return entry
        raise FsError(EBADF)

    def add(self, entry: Entry) -> int:
        if self.free:
            number = max(self.free)
            self.free.discard(number)
        else:
            number = max(self.fds, default=-1) + 1
            if number > _MASK:
                number = next(n for n in range(_MASK, -1, -1) if n not in self.fds)
        self.fds[number] = entry
        return number

    def remove(self, fd: int) -> Descriptor:
        entry = self.fds.pop(fd & _MASK, None)
        if entry is None:
            raise FsError(EBADF)
        self.free.add(fd & _MASK)
        return entry


def _aligned(ptr: int, alignment: int) -> int:
    if ptr & (alignment - 1):
        raise GuestFault(f"pointer {ptr & _MASK:#x} is not aligned to {alignment} bytes")
    return ptr


def _enum(value: int, largest: int, what: str) -> int:
    if not 0 <= value <= largest:
        raise GuestFault(f"invalid {what} {value}")
    return value


def current() -> Sandbox:
    """The sandbox of the instance the calling thread runs (hung on its invocation)."""
    return current_invocation().wasi


# -- the functions ------------------------------------------------------------------
# Each takes the raw Wasm arguments (i32 as signed ints, i64 as ints) and returns
# an errno (an FsError raised inside becomes its errno), except proc_exit.


def args_get(argv: int, argv_buf: int) -> int:
    return _strings(current().argv, argv, argv_buf)


def args_sizes_get(argc_ptr: int, size_ptr: int) -> int:
    sb = current()
    sb.write_u32(argc_ptr, len(sb.argv))
    sb.write_u32(size_ptr, sum(map(len, sb.argv)))
    return SUCCESS


def environ_get(environ: int, environ_buf: int) -> int:
    return _strings(current().environ, environ, environ_buf)


def environ_sizes_get(count_ptr: int, size_ptr: int) -> int:
    sb = current()
    sb.write_u32(count_ptr, len(sb.environ))
    sb.write_u32(size_ptr, sum(map(len, sb.environ)))
    return SUCCESS


def _strings(strings: list[bytes], pointers: int, buffer: int) -> int:
    sb = current()
    pointer = buffer & _MASK
    for index, string in enumerate(strings):
        sb.write_u32((pointers & _MASK) + 4 * index, pointer)
        sb.write(pointer, string)
        pointer += len(string)
    return SUCCESS


def clock_res_get(clock_id: int, res_ptr: int) -> int:
    if _enum(clock_id & _MASK, _MAX_CLOCK, "clock id") > wasip1.CLOCK_MONOTONIC:
        return EBADF  # wasmtime has no CPU-time clocks
    current().write_u64(res_ptr, 1)
    return SUCCESS


def clock_time_get(clock_id: int, precision: int, time_ptr: int) -> int:
    return wasip1.clock_time_get(current().invocation, clock_id, time_ptr)


def fd_write(fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if isinstance(entry, File):
        ptr, length = sb.iovec(iovs, iovs_len)
        written = _host(entry.write, sb.read(ptr, length), entry.position)
        entry.position = _host(entry.size) if entry.append else entry.position + written
        sb.write_u32(nwritten_ptr, written)
        return SUCCESS
    if not isinstance(entry, Stdio) or entry.stream == STDIN:
        return EBADF
    ptr, length = sb.iovec(iovs, iovs_len)
    data = sb.read(ptr, length)
    if data and not sb.invocation.write_output(entry.stream, data):
        raise GuestLimit(sb.invocation.exceeded or "output limit exceeded")
    sb.write_u32(nwritten_ptr, len(data))
    return SUCCESS


def fd_pwrite(fd: int, iovs: int, iovs_len: int, offset: int, nwritten_ptr: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if isinstance(entry, Stdio):
        return ESPIPE if entry.stream != STDIN else EBADF
    if not isinstance(entry, File):
        return EBADF
    ptr, length = sb.iovec(iovs, iovs_len)
    written = _host(entry.write, sb.read(ptr, length), offset & _MASK64)
    sb.write_u32(nwritten_ptr, written)
    return SUCCESS


def fd_read(fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if isinstance(entry, File):
        ptr, length = sb.iovec(iovs, iovs_len)
        sb.check(ptr, length)  # a buffer outside memory traps before the file is read
        data = _host(entry.read, length, entry.position)
        sb.write(ptr, data)
        entry.position += len(data)
        sb.write_u32(nread_ptr, len(data))
        return SUCCESS
    if not isinstance(entry, Stdio) or entry.stream != STDIN:
        return EBADF
    ptr, length = sb.iovec(iovs, iovs_len)
    sb.check(ptr, length)
    data = _stdin_read(sb, length)
    if data is None:
        return wasip1.EINTR  # a read of nothing while bytes wait: wasmtime's answer
    sb.write(ptr, data)
    sb.write_u32(nread_ptr, len(data))
    return SUCCESS


def _stdin_read(sb: Sandbox, size: int) -> bytes | None:
    """Block until stdin has bytes or ends (past the call's deadline: a trap); ``None`` for a read of nothing
    while bytes wait (wasmtime answers that one with EINTR)."""
    inv = sb.invocation
    while True:
        if size == 0:
            if sb.stdin.wait(inv.deadline):
                return b"" if sb.stdin.at_end() else None
        else:
            data = sb.stdin.read(size, inv.deadline)
            if data is not None:
                return data
        if inv.remaining() == 0:
            raise GuestLimit(inv.exceed("time"))


def fd_pread(fd: int, iovs: int, iovs_len: int, offset: int, nread_ptr: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if isinstance(entry, Stdio):
        return ESPIPE if entry.stream == STDIN else EBADF
    if not isinstance(entry, File):
        return EBADF
    ptr, length = sb.iovec(iovs, iovs_len)
    sb.check(ptr, length)
    data = _host(entry.read, length, offset & _MASK64)
    sb.write(ptr, data)
    sb.write_u32(nread_ptr, len(data))
    return SUCCESS


def fd_seek(fd: int, offset: int, whence: int, newoffset_ptr: int) -> int:
    sb = current()
    whence = _enum(whence & 0xFF, _MAX_WHENCE, "whence")
    file = sb.seekable(fd)
    if whence == 0:
        position = offset
    elif whence == 1:
        position = file.position + offset
    else:
        position = _host(file.size) + offset
    if not 0 <= position <= _MASK64:
        return EINVAL
    file.position = position
    sb.write_u64(newoffset_ptr, position)
    return SUCCESS


def fd_tell(fd: int, offset_ptr: int) -> int:
    sb = current()
    sb.write_u64(offset_ptr, sb.seekable(fd).position)
    return SUCCESS


def fd_sync(fd: int) -> int:
    _host(os.fsync, current().file(fd).fd)
    return SUCCESS


def fd_datasync(fd: int) -> int:
    _host(os.fdatasync, current().file(fd).fd)
    return SUCCESS


def fd_advise(fd: int, offset: int, length: int, advice: int) -> int:
    advice = _enum(advice & 0xFF, _MAX_ADVICE, "advice")
    wasi_fs.advise(current().file(fd), offset & _MASK64, length & _MASK64, advice)
    return SUCCESS


def fd_allocate(fd: int, offset: int, length: int) -> int:
    current().file(fd)
    return ENOTSUP  # wasmtime declines fd_allocate for every file


def fd_filestat_set_size(fd: int, size: int) -> int:
    wasi_fs.set_size(current().file(fd), size & _MASK64)
    return SUCCESS


def fd_filestat_set_times(fd: int, atim: int, mtim: int, fst_flags: int) -> int:
    times = _times(atim, mtim, fst_flags)
    wasi_fs.set_times(current().entry(fd), *times)
    return SUCCESS


def _times(atim: int, mtim: int, flags: int) -> tuple[int | None, int | None, bool, bool]:
    """``(atim, mtim, atim_now, mtim_now)`` from a fstflags argument; EINVAL for a time both given and now."""
    flags = _flags(flags, _MAX_FSTFLAGS, "fstflags")
    if flags & wasi_fs.FST_ATIM and flags & wasi_fs.FST_ATIM_NOW or flags & wasi_fs.FST_MTIM and flags & wasi_fs.FST_MTIM_NOW:
        raise FsError(EINVAL)
    return (
        atim & _MASK64 if flags & wasi_fs.FST_ATIM else None,
        mtim & _MASK64 if flags & wasi_fs.FST_MTIM else None,
        bool(flags & wasi_fs.FST_ATIM_NOW),
        bool(flags & wasi_fs.FST_MTIM_NOW),
    )


def _flags(value: int, largest: int, what: str) -> int:
    value &= _MASK
    if value & ~largest:
        raise GuestFault(f"invalid {what} {value:#x}")
    return value


def _rights(value: int) -> int:
    value &= _MASK64
    if value & ~wasi_fs.ALL_RIGHTS:
        raise GuestFault(f"invalid rights {value:#x}")
    return value


def fd_readdir(fd: int, buf: int, buf_len: int, cookie: int, bufused_ptr: int) -> int:
    sb = current()
    entries = wasi_fs.readdir(sb.directory(fd), buf_len & _MASK, cookie & _MASK64)
    sb.write(buf, entries)
    sb.write_u32(bufused_ptr, len(entries))
    return SUCCESS


def path_open(fd: int, dirflags: int, path: int, path_len: int, oflags: int, rights: int, inheriting: int,
              fdflags: int, fd_ptr: int) -> int:
    sb = current()
    lookup = _flags(dirflags, _MAX_LOOKUP, "lookupflags")
    oflags = _flags(oflags & 0xFFFF, _MAX_OFLAGS, "oflags")
    rights = _rights(rights)
    _rights(inheriting)
    fdflags = _flags(fdflags & 0xFFFF, _MAX_FDFLAGS, "fdflags")
    name = sb.path(path, path_len)
    entry = sb.fds.get(fd & _MASK)
    if not isinstance(entry, Directory):
        return ENOTDIR if isinstance(entry, File) else EBADF
    opened = wasi_fs.open_at(entry, name, lookup, oflags, rights, fdflags)
    number = sb.add(opened)
    try:
        sb.write_u32(fd_ptr, number)
    except BaseException:
        sb.fds.pop(number, None)
        sb.free.add(number)
        opened.close()
        raise
    return SUCCESS


def path_filestat_get(fd: int, flags: int, path: int, path_len: int, buf: int) -> int:
    sb = current()
    follow = _flags(flags, _MAX_LOOKUP, "lookupflags")
    directory = sb.directory(fd)
    sb.write(_aligned(buf, 8), wasi_fs.stat_at(directory, sb.path(path, path_len), bool(follow)))
    return SUCCESS


def path_filestat_set_times(fd: int, flags: int, path: int, path_len: int, atim: int, mtim: int,
                            fst_flags: int) -> int:
    sb = current()
    follow = _flags(flags, _MAX_LOOKUP, "lookupflags")
    times = _times(atim, mtim, fst_flags)
    directory = sb.directory(fd)
    wasi_fs.set_times_at(directory, sb.path(path, path_len), bool(follow), *times)
    return SUCCESS


def path_create_directory(fd: int, path: int, path_len: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    wasi_fs.mkdir_at(directory, sb.path(path, path_len))
    return SUCCESS


def path_remove_directory(fd: int, path: int, path_len: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    wasi_fs.rmdir_at(directory, sb.path(path, path_len))
    return SUCCESS


def path_unlink_file(fd: int, path: int, path_len: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    wasi_fs.unlink_at(directory, sb.path(path, path_len))
    return SUCCESS


def path_rename(fd: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> int:
    sb = current()
    source, target = sb.directory(fd), sb.directory(new_fd)
    wasi_fs.rename_at(source, sb.path(old, old_len), target, sb.path(new, new_len))
    return SUCCESS


def path_link(fd: int, flags: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> int:
    sb = current()
    follow = _flags(flags, _MAX_LOOKUP, "lookupflags")
    source, target = sb.directory(fd), sb.directory(new_fd)
    old_path, new_path = sb.path(old, old_len), sb.path(new, new_len)
    if follow:
        return EINVAL  # wasmtime does not link through a symbolic link
    wasi_fs.link_at(source, old_path, target, new_path)
    return SUCCESS


def path_symlink(old: int, old_len: int, fd: int, new: int, new_len: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    target, path = sb.path(old, old_len), sb.path(new, new_len)
    wasi_fs.symlink_at(target, directory, path)
    return SUCCESS


def path_readlink(fd: int, path: int, path_len: int, buf: int, buf_len: int, used_ptr: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    target = wasi_fs.readlink_at(directory, sb.path(path, path_len))[: buf_len & _MASK]
    sb.write(buf, target)
    sb.write_u32(used_ptr, len(target))
    return SUCCESS


def fd_close(fd: int) -> int:
    entry = current().remove(fd)
    if isinstance(entry, Entry):
        entry.close()
    return SUCCESS


def fd_renumber(fd: int, to: int) -> int:
    sb = current()
    fd, to = fd & _MASK, to & _MASK
    if fd not in sb.fds or to not in sb.fds:
        return EBADF
    if fd != to:
        replaced = sb.fds[to]
        sb.fds[to] = sb.fds.pop(fd)
        sb.free.add(fd)
        if isinstance(replaced, Entry):
            replaced.close()
    return SUCCESS


def fd_fdstat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if isinstance(entry, Stdio):
        rights = _STDIO_RIGHTS[entry.stream]
        stat = _FDSTAT.pack(wasi_fs.FILETYPE_UNKNOWN, 0, rights, rights)
    elif isinstance(entry, Directory):
        stat = _FDSTAT.pack(wasi_fs.FILETYPE_DIRECTORY, 0, *entry.fdstat_rights())
    else:
        assert isinstance(entry, File)
        kind = wasi_fs.filetype(_host(os.fstat, entry.fd).st_mode)
        stat = _FDSTAT.pack(kind, entry.fdflags(), entry.fdstat_rights(), entry.fdstat_rights())
    sb.write(_aligned(buf, 8), stat)
    return SUCCESS


def fd_fdstat_set_flags(fd: int, flags: int) -> int:
    flags = _flags(flags & 0xFFFF, _MAX_FDFLAGS, "fdflags")
    file = current().file(fd)
    if flags & (wasi_fs.FDFLAG_DSYNC | wasi_fs.FDFLAG_SYNC | wasi_fs.FDFLAG_RSYNC):
        return EINVAL
    file.append = bool(flags & wasi_fs.FDFLAG_APPEND)
    file.nonblocking = bool(flags & wasi_fs.FDFLAG_NONBLOCK)
    return SUCCESS


def fd_fdstat_set_rights(fd: int, base: int, inheriting: int) -> int:
    _rights(base)
    _rights(inheriting)
    current().entry(fd)
    return ENOTSUP  # wasmtime declines to change rights


def fd_filestat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.get(fd)
    stat = _host(entry.filestat) if isinstance(entry, Entry) else bytes(64)
    sb.write(_aligned(buf, 8), stat)
    return SUCCESS


def fd_prestat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.fds.get(fd & _MASK)
    if not isinstance(entry, Directory) or entry.name is None:
        return EBADF
    sb.write(_aligned(buf, 4), struct.pack("<B3xI", 0, len(entry.name.encode())))
    return SUCCESS


def fd_prestat_dir_name(fd: int, path: int, path_len: int) -> int:
    sb = current()
    entry = sb.get(fd)
    if not isinstance(entry, Directory) or entry.name is None:
        return ENOTDIR
    name = entry.name.encode()
    if (path_len & _MASK) < len(name):
        return wasip1.ENAMETOOLONG
    sb.write(path, name)
    return SUCCESS


def random_get(buf: int, length: int) -> int:
    sb = current()
    length &= _MASK
    sb.check(buf, length)  # a buffer outside memory traps before any randomness is made
    offset = 0
    while offset < length:
        chunk = min(1 << 16, length - offset)
        sb.write((buf & _MASK) + offset, os.urandom(chunk))
        offset += chunk
    return SUCCESS


def sched_yield() -> int:
    time.sleep(0)
    return SUCCESS


def proc_exit(status: int) -> None:
    status &= _MASK
    if status >= 126:
        raise GuestFault(f"exit with invalid exit status {status} outside of [0..126)")
    raise WasiExit(status)


def proc_raise(signal: int) -> int:
    _enum(signal & 0xFF, _MAX_SIGNAL, "signal")
    return ENOTSUP


def sock_accept(fd: int, flags: int, fd_ptr: int) -> int:
    _flags(flags & 0xFFFF, _MAX_FDFLAGS, "fdflags")
    current().get(fd)
    return ENOTSOCK


def sock_recv(fd: int, iovs: int, iovs_len: int, ri_flags: int, nread_ptr: int, flags_ptr: int) -> int:
    _flags(ri_flags & 0xFFFF, _MAX_RIFLAGS, "riflags")
    current().get(fd)
    return ENOTSOCK


def sock_send(fd: int, iovs: int, iovs_len: int, si_flags: int, nwritten_ptr: int) -> int:
    current().get(fd)
    return ENOTSOCK


def sock_shutdown(fd: int, how: int) -> int:
    _flags(how & 0xFF, _MAX_SDFLAGS, "sdflags")
    current().get(fd)
    return ENOTSOCK


def poll_oneoff(in_ptr: int, out_ptr: int, nsubscriptions: int, nevents_ptr: int) -> int:
    """Wait for clocks, stdin, files and stdout as wasmtime does; the wait ends at the call's deadline.

    Descriptors other than stdin are ready at once (files and stdout never
    block); if any subscription is ready at once, only those are reported, as
    wasmtime reports them (its clocks fire only once it waited). Otherwise
    the wait ends at the earliest clock or when stdin has bytes or ends.
    """
    sb = current()
    count = nsubscriptions & _MASK
    if count == 0:
        return EINVAL
    _aligned(in_ptr, 8), _aligned(out_ptr, 8), _aligned(nevents_ptr, 4)
    subscriptions = wasip1.read_subscriptions(sb.read(in_ptr, count * wasip1.SUBSCRIPTION_SIZE))
    clocks: dict[int, int] = {}  # subscription index -> deadline
    stdin_subs: list[int] = []
    events: dict[int, bytes] = {}  # ready at once
    for index, sub in enumerate(subscriptions):
        if sub.is_clock:
            deadline = wasip1.clock_deadline(sub)
            if deadline is None:
                return EINVAL
            clocks[index] = deadline
        elif sub.tag in (wasip1.EVENTTYPE_FD_READ, wasip1.EVENTTYPE_FD_WRITE):
            event = _fd_event(sb, sub)
            if event is None:
                stdin_subs.append(index)
            else:
                events[index] = event
        else:
            return EINVAL
    if not events and not (stdin_subs and sb.stdin.ready()):
        wasip1.wait(sb.invocation, min(clocks.values(), default=None), sb.stdin if stdin_subs else None)
        now = time.monotonic_ns()
        events = {i: wasip1.clock_event(subscriptions[i].userdata) for i, d in clocks.items() if d <= now}
    if sb.stdin.ready():
        events.update((i, wasip1.fd_event(subscriptions[i].userdata, subscriptions[i].tag)) for i in stdin_subs)
    sb.write(out_ptr, b"".join(events[i] for i in sorted(events)))
    sb.write_u32(nevents_ptr, len(events))
    return SUCCESS


def _fd_event(sb: Sandbox, sub: wasip1.Subscription) -> bytes | None:
    """The event of a descriptor subscription, ready at once; ``None`` for stdin (it may have to wait)."""
    entry = sb.get(sub.fd)
    if sub.tag == wasip1.EVENTTYPE_FD_READ:
        if isinstance(entry, Stdio) and entry.stream == STDIN:
            return None
        if isinstance(entry, File):
            return wasip1.fd_event(sub.userdata, sub.tag, hangup=_host(entry.size) <= entry.position)
        raise FsError(EBADF)
    if isinstance(entry, Stdio) and entry.stream != STDIN:
        return wasip1.fd_event(sub.userdata, sub.tag)
    if isinstance(entry, File):
        entry.check_mutable()
        return wasip1.fd_event(sub.userdata, sub.tag)
    raise FsError(EBADF)


def _host(call, *args):
    try:
        return call(*args)
    except OSError as exc:
        raise FsError(wasi_fs.wasi_errno(exc)) from None


_I32, _I64 = "i32", "i64"

#: Every function of wasi_snapshot_preview1: name -> (param types, result types).
SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "args_get": ((_I32, _I32), (_I32,)),
    "args_sizes_get": ((_I32, _I32), (_I32,)),
    "environ_get": ((_I32, _I32), (_I32,)),
    "environ_sizes_get": ((_I32, _I32), (_I32,)),
    "clock_res_get": ((_I32, _I32), (_I32,)),
    "clock_time_get": ((_I32, _I64, _I32), (_I32,)),
    "fd_advise": ((_I32, _I64, _I64, _I32), (_I32,)),
    "fd_allocate": ((_I32, _I64, _I64), (_I32,)),
    "fd_close": ((_I32,), (_I32,)),
    "fd_datasync": ((_I32,), (_I32,)),
    "fd_fdstat_get": ((_I32, _I32), (_I32,)),
    "fd_fdstat_set_flags": ((_I32, _I32), (_I32,)),
    "fd_fdstat_set_rights": ((_I32, _I64, _I64), (_I32,)),
    "fd_filestat_get": ((_I32, _I32), (_I32,)),
    "fd_filestat_set_size": ((_I32, _I64), (_I32,)),
    "fd_filestat_set_times": ((_I32, _I64, _I64, _I32), (_I32,)),
    "fd_pread": ((_I32, _I32, _I32, _I64, _I32), (_I32,)),
    "fd_prestat_get": ((_I32, _I32), (_I32,)),
    "fd_prestat_dir_name": ((_I32, _I32, _I32), (_I32,)),
    "fd_pwrite": ((_I32, _I32, _I32, _I64, _I32), (_I32,)),
    "fd_read": ((_I32, _I32, _I32, _I32), (_I32,)),
    "fd_readdir": ((_I32, _I32, _I32, _I64, _I32), (_I32,)),
    "fd_renumber": ((_I32, _I32), (_I32,)),
    "fd_seek": ((_I32, _I64, _I32, _I32), (_I32,)),
    "fd_sync": ((_I32,), (_I32,)),
    "fd_tell": ((_I32, _I32), (_I32,)),
    "fd_write": ((_I32, _I32, _I32, _I32), (_I32,)),
    "path_create_directory": ((_I32, _I32, _I32), (_I32,)),
    "path_filestat_get": ((_I32, _I32, _I32, _I32, _I32), (_I32,)),
    "path_filestat_set_times": ((_I32, _I32, _I32, _I32, _I64, _I64, _I32), (_I32,)),
    "path_link": ((_I32, _I32, _I32, _I32, _I32, _I32, _I32), (_I32,)),
    "path_open": ((_I32, _I32, _I32, _I32, _I32, _I64, _I64, _I32, _I32), (_I32,)),
    "path_readlink": ((_I32, _I32, _I32, _I32, _I32, _I32), (_I32,)),
    "path_remove_directory": ((_I32, _I32, _I32), (_I32,)),
    "path_rename": ((_I32, _I32, _I32, _I32, _I32, _I32), (_I32,)),
    "path_symlink": ((_I32, _I32, _I32, _I32, _I32), (_I32,)),
    "path_unlink_file": ((_I32, _I32, _I32), (_I32,)),
    "poll_oneoff": ((_I32, _I32, _I32, _I32), (_I32,)),
    "proc_exit": ((_I32,), ()),
    "proc_raise": ((_I32,), (_I32,)),
    "sched_yield": ((), (_I32,)),
    "random_get": ((_I32, _I32), (_I32,)),
    "sock_accept": ((_I32, _I32, _I32), (_I32,)),
    "sock_recv": ((_I32, _I32, _I32, _I32, _I32, _I32), (_I32,)),
    "sock_send": ((_I32, _I32, _I32, _I32, _I32), (_I32,)),
    "sock_shutdown": ((_I32, _I32), (_I32,)),
}


def _answering_errno(impl: Callable[..., int | None]) -> Callable[..., int | None]:
    """``impl``, with an :class:`FsError` returned as its errno."""

    def call(*args: int) -> int | None:
        try:
            return impl(*args)
        except FsError as exc:
            return exc.errno

    return call


#: Every function of wasi_snapshot_preview1: name -> implementation.
FUNCTIONS: dict[str, Callable[..., int | None]] = {
    name: fault_guard(name, _answering_errno(globals()[name]), passthrough=(WasiExit,)) for name in SIGNATURES
}
