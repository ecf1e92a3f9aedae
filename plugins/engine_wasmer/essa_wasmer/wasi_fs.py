"""Granted directories for essa's WASI on wasmer (``--dir HOST[:GUEST][:ro]``), as wasmtime serves them.

A :class:`Directory` or :class:`File` is a descriptor of a guest's table
backed by a host descriptor of its own. Every path a guest passes is resolved
beneath the directory descriptor it comes with (:mod:`essa_wasmer.wasi_paths`):
links are followed while they stay beneath it, and anything that would leave
it is EPERM - the preopened directory is no more special than any directory
opened below it, and closing or renumbering it changes nothing for the others.

The operations follow wasmtime's (wasmtime-wasi over cap-std) case by case,
errno for errno: a read-only grant refuses every change with EPERM before the
host is asked; everything else is the host's answer to the same system call
wasmtime makes. Where wasmtime itself declines (``fd_allocate``, the ``SYNC``
open flags, ``fd_fdstat_set_rights``) so does essa. The differential tests in
``tests/wasi`` hold both to the same corpus.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import hashlib
import os
import stat
import struct
from dataclasses import dataclass

from essa.plugin import wasip1

from .wasi_paths import Escape, open_beneath, open_parent, strip_dir_suffix

EBADF = wasip1.EBADF
EINVAL = wasip1.EINVAL
EISDIR = wasip1.EISDIR
ENOTDIR = wasip1.ENOTDIR
ENOTSUP = wasip1.ENOTSUP
EPERM = wasip1.EPERM

_O_PATH = getattr(os, "O_PATH", 0)

# oflags, fdflags, lookupflags, fstflags.
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
FDFLAG_APPEND, FDFLAG_DSYNC, FDFLAG_NONBLOCK, FDFLAG_RSYNC, FDFLAG_SYNC = 1, 2, 4, 8, 16
LOOKUP_SYMLINK_FOLLOW = 1
FST_ATIM, FST_ATIM_NOW, FST_MTIM, FST_MTIM_NOW = 1, 2, 4, 8

# Rights.
RIGHT_FD_READ, RIGHT_FD_SEEK, RIGHT_FD_WRITE = 1 << 1, 1 << 2, 1 << 6
RIGHT_FD_READDIR, RIGHT_FD_FILESTAT_SET_SIZE, RIGHT_PATH_FILESTAT_SET_SIZE = 1 << 14, 1 << 22, 1 << 19
ALL_RIGHTS = (1 << 30) - 1
#: What wasmtime reports for a preopened directory (fixed, whatever the grant).
PREOPEN_RIGHTS = 0x7B7FE00
PREOPEN_INHERITING = 0xFF7FFFF
#: A directory opened below one.
DIRECTORY_RIGHTS = ALL_RIGHTS & ~(RIGHT_FD_SEEK | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_PATH_FILESTAT_SET_SIZE
                                  | RIGHT_FD_WRITE)

FILETYPE_UNKNOWN, FILETYPE_BLOCK, FILETYPE_CHAR, FILETYPE_DIRECTORY = 0, 1, 2, 3
FILETYPE_REGULAR_FILE, FILETYPE_SYMBOLIC_LINK = 4, 7
#: dev, ino, filetype, nlink, size, atim, mtim, ctim
FILESTAT = struct.Struct("<QQB7xQQQQQ")
_DIRENT = struct.Struct("<QQIB3x")  # d_next, d_ino, d_namlen, d_type
#: Most bytes one read asks the host for at a time.
READ_CHUNK = 16 << 20

_HOST_TO_WASI = {
    _errno.EACCES: wasip1.EACCES, _errno.EAGAIN: wasip1.EAGAIN, _errno.EBADF: EBADF, _errno.EBUSY: wasip1.EBUSY,
    _errno.EDQUOT: 19, _errno.EEXIST: wasip1.EEXIST, _errno.EFBIG: wasip1.EFBIG, _errno.EILSEQ: wasip1.EILSEQ,
    _errno.EINTR: wasip1.EINTR, _errno.EINVAL: EINVAL, _errno.EIO: wasip1.EIO, _errno.EISDIR: EISDIR,
    _errno.ELOOP: wasip1.ELOOP, _errno.EMLINK: wasip1.EMLINK, _errno.ENAMETOOLONG: wasip1.ENAMETOOLONG,
    _errno.ENOENT: wasip1.ENOENT, _errno.ENOMEM: wasip1.ENOMEM, _errno.ENOSPC: wasip1.ENOSPC,
    _errno.ENOSYS: ENOTSUP, _errno.ENOTDIR: ENOTDIR, _errno.ENOTEMPTY: wasip1.ENOTEMPTY, _errno.ENOTSUP: ENOTSUP,
    _errno.ENXIO: wasip1.ENXIO, _errno.EOVERFLOW: wasip1.EOVERFLOW, _errno.EPERM: EPERM, _errno.EPIPE: 64,
    _errno.EROFS: wasip1.EROFS, _errno.ESPIPE: wasip1.ESPIPE, _errno.ETXTBSY: wasip1.ETXTBSY,
    _errno.EXDEV: wasip1.EXDEV, _errno.EDEADLK: 16, _errno.ENODEV: 43, _errno.ENOLCK: 46, _errno.ENOTTY: 59,
}


class FsError(Exception):
    """A WASI errno for the guest."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


def wasi_errno(exc: OSError) -> int:
    """The WASI errno wasmtime gives for a host error."""
    return _HOST_TO_WASI.get(exc.errno or 0, wasip1.EIO)


@dataclass(frozen=True)
class Perms:
    """What a grant allows: wasmtime's ``DirPerms::MUTATE`` and ``FilePerms::WRITE`` (reading is always allowed)."""

    writable: bool


class Entry:
    """A descriptor backed by a host descriptor."""

    __slots__ = ("fd", "perms")

    def __init__(self, fd: int, perms: Perms) -> None:
        self.fd = fd
        self.perms = perms

    def close(self) -> None:
        """Close the host descriptor (once: its number may be reused by then)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def filestat(self) -> bytes:
        return filestat(os.fstat(self.fd))

    def check_mutable(self) -> None:
        """EPERM unless the grant is writable."""
        if not self.perms.writable:
            raise FsError(EPERM)


class Directory(Entry):
    """A directory: a granted one (``name`` is its guest path) or one the guest opened."""

    __slots__ = ("name",)

    def __init__(self, fd: int, perms: Perms, name: str | None = None) -> None:
        super().__init__(fd, perms)
        self.name = name

    @classmethod
    def preopen(cls, host: str, guest: str, writable: bool) -> "Directory":
        return cls(os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), Perms(writable), guest)

    def fdstat_rights(self) -> tuple[int, int]:
        if self.name is not None:
            return PREOPEN_RIGHTS, PREOPEN_INHERITING
        return DIRECTORY_RIGHTS, DIRECTORY_RIGHTS


class File(Entry):
    """A regular file the guest opened.

    wasmtime keeps a file's position itself and reads and writes at it, so
    does this: :attr:`position`, with ``pread``/``pwrite`` on the host.
    """

    __slots__ = ("readable", "writable", "append", "nonblocking", "position")

    def __init__(self, fd: int, perms: Perms, readable: bool, writable: bool, append: bool, nonblocking: bool) -> None:
        super().__init__(fd, perms)
        self.readable = readable
        self.writable = writable
        self.append = append
        self.nonblocking = nonblocking
        self.position = 0

    def fdstat_rights(self) -> int:
        rights = ALL_RIGHTS
        if not self.readable:
            rights &= ~(RIGHT_FD_READ | RIGHT_FD_READDIR)
        if not self.writable:
            rights &= ~RIGHT_FD_WRITE
        return rights

    def fdflags(self) -> int:
        return (FDFLAG_APPEND if self.append else 0) | (FDFLAG_NONBLOCK if self.nonblocking else 0)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (one host read per chunk, like one ``read_at``)."""
        if offset >= 1 << 63:
            raise FsError(EINVAL)
        chunks = []
        while size > 0:
            chunk = os.pread(self.fd, min(size, READ_CHUNK), offset)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
            offset += len(chunk)
            if len(chunk) < READ_CHUNK:
                break
        return b"".join(chunks)

    def write(self, data: bytes, offset: int | None) -> int:
        """Write at ``offset``, or at the end in append mode (``offset`` ignored, as Linux's ``pwrite``)."""
        if self.append or offset is None:
            offset = self.size()
        if offset >= 1 << 63:
            raise FsError(EINVAL)
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.pwrite(self.fd, view[written:], offset + written)
        return written


def filestat(st: os.stat_result) -> bytes:
    """A ``filestat`` as wasmtime fills it: device 1, an inode hash, the host's other fields."""
    return FILESTAT.pack(1, inode_hash(st), filetype(st.st_mode), st.st_nlink, st.st_size, st.st_atime_ns,
                         st.st_mtime_ns, st.st_ctime_ns)


def inode_hash(st: os.stat_result) -> int:
    """A stable stand-in for the inode (wasmtime reports a hash of device and inode, not the inode)."""
    digest = hashlib.blake2b(struct.pack("<QQ", st.st_dev & (2**64 - 1), st.st_ino & (2**64 - 1)), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def filetype(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return FILETYPE_DIRECTORY
    if stat.S_ISREG(mode):
        return FILETYPE_REGULAR_FILE
    if stat.S_ISLNK(mode):
        return FILETYPE_SYMBOLIC_LINK
    if stat.S_ISBLK(mode):
        return FILETYPE_BLOCK
    if stat.S_ISCHR(mode):
        return FILETYPE_CHAR
    return FILETYPE_UNKNOWN  # FIFOs and sockets: preview 1 has no code wasmtime uses for them


def _host(call, *args, **kwargs):
    """Run a host call; its error becomes the guest's errno."""
    try:
        return call(*args, **kwargs)
    except Escape:
        raise FsError(EPERM) from None
    except OSError as exc:
        raise FsError(wasi_errno(exc)) from None


class _Parent:
    """``open_parent`` as a context manager that closes the handle it opened."""

    __slots__ = ("fd", "name", "_owned")

    def __init__(self, directory: Directory, path: str) -> None:
        self.fd, self.name, self._owned = _host(open_parent, directory.fd, path)

    def __enter__(self) -> "_Parent":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            os.close(self.fd)


# -- path operations ---------------------------------------------------------------


def open_at(directory: Directory, path: str, lookup: int, oflags: int, rights: int, fdflags: int) -> Entry:
    """``path_open``: a :class:`File` or :class:`Directory` beneath ``directory``."""
    read = bool(rights & RIGHT_FD_READ)
    write = bool(rights & RIGHT_FD_WRITE)
    if fdflags & (FDFLAG_SYNC | FDFLAG_DSYNC | FDFLAG_RSYNC):
        raise FsError(ENOTSUP)
    if (oflags & (O_CREAT | O_TRUNC) or write) and not directory.perms.writable:
        raise FsError(EPERM)
    if oflags & O_DIRECTORY and oflags & (O_CREAT | O_EXCL | O_TRUNC):
        raise FsError(EINVAL)
    flags = os.O_RDWR if read and write else os.O_WRONLY if write else os.O_RDONLY
    if oflags & O_CREAT:
        flags |= os.O_CREAT | (os.O_EXCL if oflags & O_EXCL else 0)
    if oflags & O_TRUNC:
        flags |= os.O_TRUNC
    if oflags & O_DIRECTORY:
        flags |= os.O_DIRECTORY
    if not lookup & LOOKUP_SYMLINK_FOLLOW:
        flags |= os.O_NOFOLLOW
    try:
        fd = open_beneath(directory.fd, path, flags | os.O_NONBLOCK)
    except Escape:
        raise FsError(EPERM) from None
    except OSError as exc:
        if exc.errno == _errno.ENOTDIR and flags & os.O_NOFOLLOW and flags & os.O_DIRECTORY and _is_link(directory, path):
            raise FsError(wasip1.ELOOP) from None  # a link where a directory must be, not followed
        raise FsError(wasi_errno(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            if flags & os.O_ACCMODE != os.O_RDONLY:  # pragma: no cover - the host refuses first (EISDIR)
                raise FsError(EISDIR)
            return Directory(fd, directory.perms)
        if not stat.S_ISREG(mode):
            raise FsError(wasip1.EACCES)  # FIFOs, devices, sockets could block the executor: not for guests
        os.set_blocking(fd, True)
        return File(fd, directory.perms, read or not write, write, bool(fdflags & FDFLAG_APPEND),
                    bool(fdflags & FDFLAG_NONBLOCK))
    except BaseException:
        os.close(fd)
        raise


def _is_link(directory: Directory, path: str) -> bool:
    try:
        fd = open_beneath(directory.fd, path, (_O_PATH or os.O_RDONLY) | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def stat_at(directory: Directory, path: str, follow: bool) -> bytes:
    """``path_filestat_get``."""
    fd = _host(open_beneath, directory.fd, path, (_O_PATH or os.O_RDONLY) | (0 if follow else os.O_NOFOLLOW))
    try:
        return filestat(os.fstat(fd))
    finally:
        os.close(fd)


def mkdir_at(directory: Directory, path: str) -> None:
    directory.check_mutable()
    with _Parent(directory, strip_dir_suffix(path)) as parent:
        _host(os.mkdir, parent.name, 0o777, dir_fd=parent.fd)


def rmdir_at(directory: Directory, path: str) -> None:
    # Trailing slashes name the same directory (wasmtime 51 and Linux: `rmdir dir/`
    # removes dir, `rmdir link/` is ENOTDIR: the link itself is not followed).
    directory.check_mutable()
    with _Parent(directory, strip_dir_suffix(path)) as parent:
        _host(os.rmdir, parent.name, dir_fd=parent.fd)


def unlink_at(directory: Directory, path: str) -> None:
    directory.check_mutable()
    with _Parent(directory, path) as parent:
        _host(os.unlink, parent.name, dir_fd=parent.fd)


def rename_at(source: Directory, old: str, target: Directory, new: str) -> None:
    source.check_mutable()
    target.check_mutable()
    with _Parent(source, strip_dir_suffix(old)) as src, _Parent(target, strip_dir_suffix(new)) as dst:
        # A trailing slash is kept for the host, which refuses it on anything but a directory (ENOTDIR).
        old_name = src.name + "/" if old.endswith("/") else src.name
        new_name = dst.name + "/" if new.endswith("/") else dst.name
        _host(os.rename, old_name, new_name, src_dir_fd=src.fd, dst_dir_fd=dst.fd)


def link_at(source: Directory, old: str, target: Directory, new: str) -> None:
    source.check_mutable()
    target.check_mutable()
    with _Parent(source, old) as src, _Parent(target, new) as dst:
        _host(os.link, src.name, dst.name, src_dir_fd=src.fd, dst_dir_fd=dst.fd, follow_symlinks=False)


def symlink_at(target: str, directory: Directory, path: str) -> None:
    directory.check_mutable()
    if target.startswith("/"):
        raise FsError(EPERM)  # a link to an absolute path would lead out
    if "\0" in target:
        raise FsError(EINVAL)
    with _Parent(directory, path) as parent:
        _host(os.symlink, target, parent.name, dir_fd=parent.fd)


def readlink_at(directory: Directory, path: str) -> bytes:
    with _Parent(directory, path) as parent:
        target = _host(os.readlink, os.fsencode(parent.name), dir_fd=parent.fd)
    if target.startswith(b"/"):
        raise FsError(EPERM)
    return target


def set_times_at(directory: Directory, path: str, follow: bool, atim: int | None, mtim: int | None,
                 atim_now: bool, mtim_now: bool) -> None:
    directory.check_mutable()
    times = _timespecs(atim, mtim, atim_now, mtim_now)
    if follow:
        fd = _host(open_beneath, directory.fd, path, _O_PATH or os.O_RDONLY)
        try:
            _utimensat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), times, 0)
        finally:
            os.close(fd)
        return
    with _Parent(directory, path) as parent:
        _utimensat(parent.fd, os.fsencode(parent.name), times, _AT_SYMLINK_NOFOLLOW)


def set_times(entry: Entry, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool) -> None:
    """``fd_filestat_set_times`` on a file or directory."""
    entry.check_mutable()
    _futimens(entry.fd, _timespecs(atim, mtim, atim_now, mtim_now))


def set_size(file: File, size: int) -> None:
    file.check_mutable()
    if size >= 1 << 63:
        raise FsError(EINVAL)
    _host(os.ftruncate, file.fd, size)


_FADVISE = {0: "POSIX_FADV_NORMAL", 1: "POSIX_FADV_SEQUENTIAL", 2: "POSIX_FADV_RANDOM", 3: "POSIX_FADV_WILLNEED",
            4: "POSIX_FADV_DONTNEED", 5: "POSIX_FADV_NOREUSE"}


def advise(file: File, offset: int, length: int, advice: int) -> None:
    if offset >= 1 << 63 or length >= 1 << 63 or offset + length >= 1 << 63:
        raise FsError(EINVAL)
    _host(os.posix_fadvise, file.fd, offset, length, getattr(os, _FADVISE[advice]))


def readdir(directory: Directory, size: int, cookie: int) -> bytes:
    """``fd_readdir``: entries from ``cookie`` on, cut at ``size`` bytes exactly as wasmtime cuts them."""
    names = _host(os.listdir, directory.fd)
    here = inode_hash(_host(os.fstat, directory.fd))
    entries = [(".", here, FILETYPE_DIRECTORY), ("..", here, FILETYPE_DIRECTORY)]
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # not UTF-8 on the host: wasmtime fails the whole listing
            raise FsError(wasip1.EILSEQ) from None
        st = _host(os.stat, name, dir_fd=directory.fd, follow_symlinks=False)
        entries.append((name, inode_hash(st), filetype(st.st_mode)))
    out = bytearray()
    room = size
    for index in range(min(cookie, len(entries)), len(entries)):
        name, ino, kind = entries[index]
        encoded = name.encode("utf-8")
        head = _DIRENT.pack(index + 1, ino, len(encoded), kind)[:room]
        out += head
        room -= len(head)
        if not room:
            break
        tail = encoded[:room]
        out += tail
        room -= len(tail)
        if not room:
            break
    return bytes(out)


# -- timestamps through libc (os.utime cannot leave one time as it is) -----------------

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)


def _timespecs(atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool):
    def one(value: int | None, now: bool) -> _Timespec:
        if now:
            return _Timespec(0, _UTIME_NOW)
        if value is None:
            return _Timespec(0, _UTIME_OMIT)
        return _Timespec(value // 1_000_000_000, value % 1_000_000_000)

    return (_Timespec * 2)(one(atim, atim_now), one(mtim, mtim_now))


def _utimensat(dirfd: int, path: bytes, times, flags: int) -> None:
    if _libc.utimensat(dirfd, path, times, flags) != 0:
        raise FsError(_HOST_TO_WASI.get(ctypes.get_errno(), wasip1.EIO))


def _futimens(fd: int, times) -> None:
    if _libc.futimens(fd, times) != 0:
        raise FsError(_HOST_TO_WASI.get(ctypes.get_errno(), wasip1.EIO))


__all__ = ["Directory", "Entry", "File", "FsError", "Perms", "filestat", "open_at", "readdir", "wasi_errno"]
