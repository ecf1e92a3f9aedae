"""WASI preview 1 for essa guests: captured stdio, and nothing of the host's.

wasmer 1.1's Python binding offers WASI only with the host process's own
stdin, stdout and stderr (``wasi.StateBuilder`` has no way to capture them),
and its WASI state is shared by every instance made from one import object. An
essa guest's output belongs to the user who ran it (``invocation.output``),
and one guest must never see or change another's descriptors, so this module
implements ``wasi_snapshot_preview1`` itself, in the sandbox essa gives every
guest (the same one the wasmtime engine configures):

- no arguments, no environment variables, no preopened directories, so every
  ``path_*`` call fails and no file can be opened; no sockets - unless the
  executor's operator grants environment variables or directories
  (:class:`essa.engine.Grants`); granted directories are preopened from fd 3
  on and served by :mod:`essa_wasmer.wasi_fs`, which never leaves them;
- stdin (fd 0) is empty; stdout (1) and stderr (2) go to
  ``invocation.output.write(stream, data)`` at each ``fd_write``, in order;
- clocks, ``random_get``, ``sched_yield`` and ``poll_oneoff`` (clock sleeps,
  stdio readiness) work; ``proc_exit`` ends the guest with its status;
- every instance has its own descriptor table (closing fd 1 in one guest does
  not close it for the next one).

The functions find the running instance through :func:`current`, a per-thread
stack that the engine pushes a :class:`Sandbox` onto for each call, and reach
guest memory through the engine-neutral :class:`essa.abi.GuestMemory` of the
invocation. A pointer outside guest memory traps the guest, as it does in
essa's host functions and in wasmtime's WASI, with the function named.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from essa.abi import GuestCancelled, GuestFault, GuestLimit, Invocation
from essa.engine import Grants

from . import wasi_fs
from .wasi_fs import Directory, Entry, File, FsError

#: The import module of WASI preview 1.
IMPORT_MODULE = "wasi_snapshot_preview1"

_MASK = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_FDSTAT = struct.Struct("<BxH4xQQ")  # filetype u8, flags u16, rights base u64, rights inheriting u64
_SUBSCRIPTION_SIZE = 48
_EVENT = struct.Struct("<QHBx4xQH6x")  # userdata, error, type, fd_readwrite.nbytes, fd_readwrite.flags

# errno values of WASI preview 1.
SUCCESS = 0
EBADF = 8
EINVAL = 28
ENOSYS = 52
ENOTDIR = 54
ENOTSOCK = 57
ENOTSUP = 58
ESPIPE = 70

_RIGHT_FD_READ = 1 << 1
_RIGHT_FD_WRITE = 1 << 6
_EVENTTYPE_CLOCK, _EVENTTYPE_FD_READ, _EVENTTYPE_FD_WRITE = 0, 1, 2
_EVENT_FD_READWRITE_HANGUP = 1

STDIN, STDOUT, STDERR = 0, 1, 2


class WasiExit(Exception):
    """The guest called ``proc_exit``; :attr:`status` is its exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"proc_exit({status})")
        self.status = status


class Sandbox:
    """WASI state of one instance: the invocation it serves and its open descriptors."""

    __slots__ = ("invocation", "fds", "environ")

    def __init__(self, invocation: Invocation, grants: Grants | None = None) -> None:
        self.invocation = invocation
        #: Open descriptors: fd -> the stdio stream it is (0, 1 or 2), or a
        #: granted directory or file (:class:`essa_wasmer.wasi_fs.Entry`).
        self.fds: dict[int, int | Entry] = {STDIN: STDIN, STDOUT: STDOUT, STDERR: STDERR}
        #: ``KEY=VALUE\0`` strings of the granted environment variables.
        self.environ = [f"{k}={v}".encode() + b"\0" for k, v in (grants.env if grants else ())]
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

    @contextmanager
    def active(self) -> Iterator["Sandbox"]:
        """Make this the sandbox WASI functions on this thread serve."""
        stack = _stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    # -- helpers -----------------------------------------------------------------

    def read(self, ptr: int, length: int) -> bytes:
        return self.invocation.memory.read(ptr & _MASK, length & _MASK)  # type: ignore[union-attr]

    def write(self, ptr: int, data: bytes) -> None:
        self.invocation.memory.write(ptr & _MASK, data)  # type: ignore[union-attr]

    def stream(self, fd: int) -> int | None:
        """The stdio stream (0, 1, 2) that ``fd`` is, else ``None``."""
        entry = self.fds.get(fd & _MASK)
        return entry if isinstance(entry, int) else None

    def entry(self, fd: int) -> int | Entry | None:
        """Whatever ``fd`` is open as, or ``None``."""
        return self.fds.get(fd & _MASK)

    def directory(self, fd: int) -> Directory:
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, Directory):
            return entry
        raise FsError(EBADF if entry is None else ENOTDIR)

    def file(self, fd: int) -> File:
        entry = self.fds.get(fd & _MASK)
        if isinstance(entry, File):
            return entry
        raise FsError(EBADF if entry is None else wasi_fs.EISDIR if isinstance(entry, Directory) else ESPIPE)

    def read_path(self, ptr: int, length: int) -> bytes:
        return self.read(ptr, length)

    def new_fd(self, entry: Entry) -> int:
        number = 3
        while number in self.fds:
            number += 1
        self.fds[number] = entry
        return number


_local = threading.local()


def _stack() -> list[Sandbox]:
    try:
        return _local.stack
    except AttributeError:
        _local.stack = []
        return _local.stack


def current() -> Sandbox:
    """The sandbox of the instance the calling thread runs."""
    try:
        return _local.stack[-1]
    except (AttributeError, IndexError):
        raise GuestFault("WASI function called outside of an essa invocation") from None


# -- the functions ------------------------------------------------------------------
# Each takes the raw Wasm arguments (i32 as signed ints, i64 as ints) and returns
# an errno, except proc_exit.


def args_get(argv: int, argv_buf: int) -> int:
    return SUCCESS


def args_sizes_get(argc_ptr: int, size_ptr: int) -> int:
    sb = current()
    sb.write(argc_ptr, _U32.pack(0))
    sb.write(size_ptr, _U32.pack(0))
    return SUCCESS


def environ_get(environ: int, environ_buf: int) -> int:
    sb = current()
    pointer = environ_buf & _MASK
    pointers = []
    for entry in sb.environ:
        pointers.append(pointer)
        pointer += len(entry)
    sb.write(environ, b"".join(_U32.pack(p & _MASK) for p in pointers))
    sb.write(environ_buf, b"".join(sb.environ))
    return SUCCESS


def environ_sizes_get(count_ptr: int, size_ptr: int) -> int:
    sb = current()
    sb.write(count_ptr, _U32.pack(len(sb.environ)))
    sb.write(size_ptr, _U32.pack(sum(map(len, sb.environ))))
    return SUCCESS

_CLOCKS: dict[int, Callable[[], int]] = {
    0: time.time_ns,  # realtime
    1: time.monotonic_ns,  # monotonic
    2: time.process_time_ns,  # process cputime
    3: time.thread_time_ns,  # thread cputime
}


def clock_res_get(clock_id: int, res_ptr: int) -> int:
    if clock_id not in _CLOCKS:
        return EINVAL
    current().write(res_ptr, _U64.pack(1))
    return SUCCESS


def clock_time_get(clock_id: int, precision: int, time_ptr: int) -> int:
    clock = _CLOCKS.get(clock_id)
    if clock is None:
        return EINVAL
    current().write(time_ptr, _U64.pack(clock()))
    return SUCCESS


def _gather(sb: Sandbox, iovs: int, iovs_len: int) -> bytes:
    table = sb.read(iovs, 8 * (iovs_len & _MASK))
    return b"".join(sb.read(ptr, length) for ptr, length in _IOVEC.iter_unpack(table))


def _scatter(sb: Sandbox, iovs: int, iovs_len: int, data: bytes) -> None:
    table = sb.read(iovs, 8 * (iovs_len & _MASK))
    offset = 0
    for ptr, length in _IOVEC.iter_unpack(table):
        if offset >= len(data):
            break
        chunk = data[offset : offset + length]
        sb.write(ptr, chunk)
        offset += len(chunk)


def _capacity(sb: Sandbox, iovs: int, iovs_len: int) -> int:
    table = sb.read(iovs, 8 * (iovs_len & _MASK))
    return min(wasi_fs.MAX_READ, sum(length for _ptr, length in _IOVEC.iter_unpack(table)))


def _fs(impl: Callable[..., int]) -> Callable[..., int]:
    """``impl``, with a :class:`FsError` or a host error returned as the guest's errno."""

    def call(*args: int) -> int:
        try:
            return impl(*args)
        except FsError as exc:
            return exc.errno
        except OSError as exc:
            return wasi_fs.wasi_errno(exc)

    call.__name__ = impl.__name__
    return call


def fd_write(fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
    sb = current()
    entry = sb.entry(fd)
    if isinstance(entry, Entry):
        return _fs(_file_write)(fd, iovs, iovs_len, nwritten_ptr)
    stream = sb.stream(fd)
    if stream not in (STDOUT, STDERR):
        return EBADF
    data = _gather(sb, iovs, iovs_len)
    if data and not sb.invocation.write_output(stream, data):
        raise GuestLimit(sb.invocation.exceeded or "output limit exceeded")
    sb.write(nwritten_ptr, _U32.pack(len(data)))
    return SUCCESS


def _file_write(fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
    sb = current()
    file = sb.file(fd)
    if not file.writable:
        return EBADF
    data = _gather(sb, iovs, iovs_len)
    written = 0
    while written < len(data):
        written += os.write(file.fd, data[written:])
    sb.write(nwritten_ptr, _U32.pack(written))
    return SUCCESS


def fd_read(fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> int:
    sb = current()
    if isinstance(sb.entry(fd), Entry):
        return _fs(_file_read)(fd, iovs, iovs_len, nread_ptr)
    if sb.stream(fd) != STDIN:
        return EBADF
    sb.write(nread_ptr, _U32.pack(0))  # stdin is empty: end of file at once
    return SUCCESS


def _file_read(fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> int:
    sb = current()
    file = sb.file(fd)
    if not file.readable:
        return EBADF
    data = os.read(file.fd, _capacity(sb, iovs, iovs_len))
    _scatter(sb, iovs, iovs_len, data)
    sb.write(nread_ptr, _U32.pack(len(data)))
    return SUCCESS


@_fs
def fd_pread(fd: int, iovs: int, iovs_len: int, offset: int, nread_ptr: int) -> int:
    sb = current()
    file = sb.file(fd)
    if not file.readable:
        return EBADF
    data = os.pread(file.fd, _capacity(sb, iovs, iovs_len), offset & _MASK64)
    _scatter(sb, iovs, iovs_len, data)
    sb.write(nread_ptr, _U32.pack(len(data)))
    return SUCCESS


@_fs
def fd_pwrite(fd: int, iovs: int, iovs_len: int, offset: int, nwritten_ptr: int) -> int:
    sb = current()
    file = sb.file(fd)
    if not file.writable:
        return EBADF
    written = os.pwrite(file.fd, _gather(sb, iovs, iovs_len), offset & _MASK64)
    sb.write(nwritten_ptr, _U32.pack(written))
    return SUCCESS


@_fs
def fd_seek(fd: int, offset: int, whence: int, newoffset_ptr: int) -> int:
    sb = current()
    file = sb.file(fd)
    if whence & 0xFF not in (0, 1, 2):
        return EINVAL
    position = os.lseek(file.fd, offset, whence & 0xFF)  # WASI's SET, CUR, END are the host's
    sb.write(newoffset_ptr, _U64.pack(position))
    return SUCCESS


@_fs
def fd_tell(fd: int, offset_ptr: int) -> int:
    sb = current()
    sb.write(offset_ptr, _U64.pack(os.lseek(sb.file(fd).fd, 0, os.SEEK_CUR)))
    return SUCCESS


@_fs
def fd_sync(fd: int) -> int:
    os.fsync(current().file(fd).fd)
    return SUCCESS


fd_datasync = fd_sync


@_fs
def fd_filestat_set_size(fd: int, size: int) -> int:
    file = current().file(fd)
    if not file.writable:
        return EBADF
    os.ftruncate(file.fd, size & _MASK64)
    return SUCCESS


@_fs
def fd_readdir(fd: int, buf: int, buf_len: int, cookie: int, bufused_ptr: int) -> int:
    sb = current()
    entries = wasi_fs.readdir(sb.directory(fd), buf_len & _MASK, cookie & _MASK64)
    sb.write(buf, entries)
    sb.write(bufused_ptr, _U32.pack(len(entries)))
    return SUCCESS


@_fs
def path_open(fd: int, dirflags: int, path: int, path_len: int, oflags: int, rights: int, inheriting: int,
              fdflags: int, fd_ptr: int) -> int:
    sb = current()
    directory = sb.directory(fd)
    entry = wasi_fs.open_at(directory, sb.read(path, path_len), oflags & 0xFFFF, rights & _MASK64, fdflags & 0xFFFF)
    try:
        number = sb.new_fd(entry)
        sb.write(fd_ptr, _U32.pack(number))
    except BaseException:
        entry.close()
        sb.fds = {k: v for k, v in sb.fds.items() if v is not entry}
        raise
    return SUCCESS


@_fs
def path_filestat_get(fd: int, flags: int, path: int, path_len: int, buf: int) -> int:
    sb = current()
    sb.write(buf, wasi_fs.stat_at(sb.directory(fd), sb.read(path, path_len)))
    return SUCCESS


@_fs
def path_create_directory(fd: int, path: int, path_len: int) -> int:
    sb = current()
    wasi_fs.change_at(sb.directory(fd), sb.read(path, path_len), "mkdir")
    return SUCCESS


@_fs
def path_unlink_file(fd: int, path: int, path_len: int) -> int:
    sb = current()
    wasi_fs.change_at(sb.directory(fd), sb.read(path, path_len), "unlink")
    return SUCCESS


@_fs
def path_remove_directory(fd: int, path: int, path_len: int) -> int:
    sb = current()
    wasi_fs.change_at(sb.directory(fd), sb.read(path, path_len), "rmdir")
    return SUCCESS


@_fs
def path_rename(fd: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> int:
    sb = current()
    wasi_fs.rename_at(sb.directory(fd), sb.read(old, old_len), sb.directory(new_fd), sb.read(new, new_len))
    return SUCCESS


@_fs
def path_link(fd: int, flags: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> int:
    sb = current()
    sb.directory(fd), sb.directory(new_fd)
    return wasi_fs.EPERM  # links could reach outside a granted directory


@_fs
def path_symlink(old: int, old_len: int, fd: int, new: int, new_len: int) -> int:
    current().directory(fd)
    return wasi_fs.EPERM


@_fs
def path_readlink(fd: int, path: int, path_len: int, buf: int, buf_len: int, used_ptr: int) -> int:
    current().directory(fd)
    return EINVAL  # essa never makes or follows links


def fd_close(fd: int) -> int:
    entry = current().fds.pop(fd & _MASK, None)
    if entry is None:
        return EBADF
    if isinstance(entry, Entry):
        entry.close()
    return SUCCESS


def fd_renumber(fd: int, to: int) -> int:
    fds = current().fds
    fd, to = fd & _MASK, to & _MASK
    if fd not in fds or to not in fds:
        return EBADF
    if fd != to:
        replaced = fds[to]
        if isinstance(replaced, Entry):
            replaced.close()
        fds[to] = fds.pop(fd)
    return SUCCESS


def fd_fdstat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.entry(fd)
    if entry is None:
        return EBADF
    if isinstance(entry, Entry):
        kind = wasi_fs.FILETYPE_DIRECTORY if isinstance(entry, Directory) else wasi_fs.FILETYPE_REGULAR_FILE
        flags = 1 if isinstance(entry, File) and entry.append else 0
        rights = wasi_fs.ALL_RIGHTS if entry.writable else wasi_fs.ALL_RIGHTS & ~wasi_fs._WRITE_RIGHTS
        sb.write(buf, _FDSTAT.pack(kind, flags, rights, rights))
        return SUCCESS
    rights = _RIGHT_FD_READ if entry == STDIN else _RIGHT_FD_WRITE
    sb.write(buf, _FDSTAT.pack(0, 0, rights, rights))  # filetype unknown: not a tty, not seekable
    return SUCCESS


def fd_filestat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.entry(fd)
    if entry is None:
        return EBADF
    sb.write(buf, entry.filestat() if isinstance(entry, Entry) else bytes(64))
    return SUCCESS


def _on_stdio(errno: int, fd_index: int = 0) -> Callable[..., int]:
    """A function that gives ``errno`` for an open descriptor and EBADF otherwise."""

    def call(*args: int) -> int:
        return errno if current().entry(args[fd_index]) is not None else EBADF

    return call


fd_advise = _on_stdio(ESPIPE)
fd_allocate = _on_stdio(ESPIPE)
fd_fdstat_set_flags = _on_stdio(ENOTSUP)
fd_fdstat_set_rights = _on_stdio(ENOTSUP)
fd_filestat_set_times = _on_stdio(ENOTSUP)
path_filestat_set_times = _on_stdio(ENOTSUP)
sock_accept = _on_stdio(ENOTSOCK)
sock_recv = _on_stdio(ENOTSOCK)
sock_send = _on_stdio(ENOTSOCK)
sock_shutdown = _on_stdio(ENOTSOCK)


def fd_prestat_get(fd: int, buf: int) -> int:
    sb = current()
    entry = sb.entry(fd)
    if not isinstance(entry, Directory) or entry.name is None:
        return EBADF  # only granted directories are preopened
    sb.write(buf, struct.pack("<B3xI", 0, len(entry.name.encode())))
    return SUCCESS


def fd_prestat_dir_name(fd: int, path: int, path_len: int) -> int:
    sb = current()
    entry = sb.entry(fd)
    if not isinstance(entry, Directory) or entry.name is None:
        return EBADF
    name = entry.name.encode()
    if (path_len & _MASK) < len(name):
        return wasi_fs.ENAMETOOLONG
    sb.write(path, name)
    return SUCCESS


def random_get(buf: int, length: int) -> int:
    sb = current()
    length &= _MASK
    offset = 0
    while offset < length:  # in chunks: a bad length faults before a huge allocation
        chunk = min(65536, length - offset)
        sb.write((buf & _MASK) + offset, os.urandom(chunk))
        offset += chunk
    return SUCCESS


def sched_yield() -> int:
    time.sleep(0)
    return SUCCESS


def proc_exit(status: int) -> None:
    raise WasiExit(status & _MASK)


def proc_raise(signal: int) -> int:
    return ENOSYS


def poll_oneoff(in_ptr: int, out_ptr: int, nsubscriptions: int, nevents_ptr: int) -> int:
    """Wait for clock timeouts; stdio is always ready (stdin at end of file)."""
    sb = current()
    count = nsubscriptions & _MASK
    if count == 0:
        return EINVAL
    subscriptions = sb.read(in_ptr, count * _SUBSCRIPTION_SIZE)
    events: list[bytes] = []
    timers: list[tuple[int, int]] = []  # (delay in ns, userdata)
    for offset in range(0, len(subscriptions), _SUBSCRIPTION_SIZE):
        userdata, tag = struct.unpack_from("<QB", subscriptions, offset)
        if tag == _EVENTTYPE_CLOCK:
            clock_id, timeout, _precision, flags = struct.unpack_from("<I4xQQH", subscriptions, offset + 16)
            clock = _CLOCKS.get(clock_id)
            if clock is None:
                events.append(_EVENT.pack(userdata, EINVAL, tag, 0, 0))
                continue
            delay = timeout - clock() if flags & 1 else timeout  # flag 1: absolute time
            timers.append((max(0, delay), userdata))
        elif tag in (_EVENTTYPE_FD_READ, _EVENTTYPE_FD_WRITE):
            (fd,) = struct.unpack_from("<I", subscriptions, offset + 16)
            if isinstance(sb.entry(fd), Entry):  # files and directories are always ready
                events.append(_EVENT.pack(userdata, SUCCESS, tag, 0, 0))
                continue
            stream = sb.stream(fd)
            if stream is None or (stream == STDIN) != (tag == _EVENTTYPE_FD_READ):
                events.append(_EVENT.pack(userdata, EBADF, tag, 0, 0))
            else:
                flags = _EVENT_FD_READWRITE_HANGUP if stream == STDIN else 0
                events.append(_EVENT.pack(userdata, SUCCESS, tag, 0, flags))
        else:
            return EINVAL
    if not events:
        delay = min(d for d, _ in timers)
        sb.invocation.sleep(delay / 1e9)  # ends early, raising, at the deadline or on cancel
        events = [_EVENT.pack(u, SUCCESS, _EVENTTYPE_CLOCK, 0, 0) for d, u in timers if d <= delay]
    sb.write(out_ptr, b"".join(events))
    sb.write(nevents_ptr, _U32.pack(len(events)))
    return SUCCESS


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


def _guarded(name: str, impl: Callable[..., int | None]) -> Callable[..., int | None]:
    """``impl``, recording why it makes the guest trap (a bad pointer, a bug)."""

    def call(*args: int) -> int | None:
        try:
            return impl(*args)
        except (WasiExit, GuestLimit, GuestCancelled):
            raise
        except GuestFault as exc:
            _record_fault(f"{name}: {exc}")
            raise
        except Exception as exc:
            _record_fault(f"{name} failed: {type(exc).__name__}: {exc}")
            raise

    call.__name__ = name
    return call


def _record_fault(message: str) -> None:
    stack = getattr(_local, "stack", None)
    if stack and stack[-1].invocation.fault is None:
        stack[-1].invocation.fault = message


#: Every function of wasi_snapshot_preview1: name -> implementation.
FUNCTIONS: dict[str, Callable[..., int | None]] = {name: _guarded(name, globals()[name]) for name in SIGNATURES}
