"""Granted directories for essa's WASI on wasmer (``--dir HOST[:GUEST][:ro]``).

A :class:`Directory` or :class:`File` is an entry of a sandbox's descriptor
table backed by a host descriptor. Paths a guest passes are resolved by
:func:`resolve` without ever leaving the granted directory:

- absolute paths and ``..`` above the granted directory are refused (EPERM,
  as wasmtime does);
- every component is opened relative to its parent (``openat``) with
  ``O_NOFOLLOW``: symbolic links are never followed (ELOOP), so a link inside
  the directory cannot point a guest outside it;
- only regular files and directories can be opened (devices and FIFOs are
  refused, so a guest cannot block the host on a FIFO);
- in a read-only grant, anything that would write (opening for writing,
  creating, truncating, unlinking, renaming, making directories) is EPERM.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
import struct

# WASI errno values (preview 1).
EACCES, EBADF, EEXIST, EINVAL, EIO, EISDIR, ELOOP = 2, 8, 20, 28, 29, 31, 32
ENAMETOOLONG, ENOENT, ENOTDIR, ENOTEMPTY, EPERM, ESPIPE = 37, 44, 54, 55, 63, 70

_HOST_TO_WASI = {
    _errno.EACCES: EACCES, _errno.EAGAIN: 6, _errno.EBADF: EBADF, _errno.EBUSY: 10, _errno.EDQUOT: 19,
    _errno.EEXIST: EEXIST, _errno.EFBIG: 22, _errno.EINVAL: EINVAL, _errno.EIO: EIO, _errno.EISDIR: EISDIR,
    _errno.ELOOP: ELOOP, _errno.EMFILE: 33, _errno.EMLINK: 34, _errno.ENAMETOOLONG: ENAMETOOLONG,
    _errno.ENFILE: 41, _errno.ENOENT: ENOENT, _errno.ENOMEM: 48, _errno.ENOSPC: 51, _errno.ENOTDIR: ENOTDIR,
    _errno.ENOTEMPTY: ENOTEMPTY, _errno.ENXIO: 60, _errno.EOVERFLOW: 61, _errno.EPERM: EPERM,
    _errno.EROFS: 69, _errno.ESPIPE: ESPIPE, _errno.ETXTBSY: 74, _errno.EXDEV: 75,
}

# oflags, fdflags and rights of path_open.
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
FDFLAG_APPEND = 1
RIGHT_FD_READ, RIGHT_FD_WRITE, RIGHT_FD_ALLOCATE, RIGHT_FD_READDIR, RIGHT_FD_FILESTAT_SET_SIZE = (
    1 << 1, 1 << 6, 1 << 8, 1 << 14, 1 << 22,
)
_WRITE_RIGHTS = RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE
ALL_RIGHTS = (1 << 29) - 1

FILETYPE_UNKNOWN, FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE, FILETYPE_SYMBOLIC_LINK = 0, 3, 4, 7
FILESTAT = struct.Struct("<QQB7xQQQQQ")  # dev, ino, filetype, nlink, size, atim, mtim, ctim
_DIRENT = struct.Struct("<QQIB3x")  # d_next, d_ino, d_namlen, d_type
#: Most bytes one fd_read moves (the guest may ask for gigabytes).
MAX_READ = 16 << 20


class FsError(Exception):
    """A WASI errno for the guest."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


def wasi_errno(exc: OSError | ValueError) -> int:
    if isinstance(exc, ValueError):  # an embedded NUL
        return EINVAL
    return _HOST_TO_WASI.get(exc.errno or 0, EIO)


class Entry:
    """A descriptor backed by a host descriptor."""

    __slots__ = ("fd", "writable")

    def __init__(self, fd: int, writable: bool) -> None:
        self.fd = fd
        self.writable = writable

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    def filestat(self) -> bytes:
        return filestat(os.fstat(self.fd))


class Directory(Entry):
    """A granted directory or one below it.

    :param root: the descriptor of the granted directory it lies in.
    :param parts: its path below the granted directory.
    :param name: the guest's name of a preopened directory, else ``None``.
    """

    __slots__ = ("root", "parts", "name")

    def __init__(self, fd: int, writable: bool, root: int, parts: tuple[str, ...], name: str | None = None) -> None:
        super().__init__(fd, writable)
        self.root = root
        self.parts = parts
        self.name = name

    @classmethod
    def preopen(cls, host: str, guest: str, writable: bool) -> "Directory":
        fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return cls(fd, writable, fd, (), guest)

    def close(self) -> None:
        super().close()


class File(Entry):
    """A regular file opened by the guest."""

    __slots__ = ("readable", "append")

    def __init__(self, fd: int, readable: bool, writable: bool, append: bool) -> None:
        super().__init__(fd, writable)
        self.readable = readable
        self.append = append


def filestat(st: os.stat_result) -> bytes:
    return FILESTAT.pack(
        st.st_dev & 0xFFFFFFFFFFFFFFFF, st.st_ino & 0xFFFFFFFFFFFFFFFF, filetype(st.st_mode), st.st_nlink,
        st.st_size, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns,
    )


def filetype(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return FILETYPE_DIRECTORY
    if stat.S_ISREG(mode):
        return FILETYPE_REGULAR_FILE
    if stat.S_ISLNK(mode):
        return FILETYPE_SYMBOLIC_LINK
    if stat.S_ISBLK(mode):
        return 1
    if stat.S_ISCHR(mode):
        return 2
    if stat.S_ISSOCK(mode):
        return 6
    return FILETYPE_UNKNOWN


class Resolved:
    """A path resolved inside a granted directory: the open parent and the last name.

    Use as a context manager; it closes the parent descriptor it opened.
    """

    __slots__ = ("parent", "name", "parts", "_owned")

    def __init__(self, parent: int, name: str, parts: tuple[str, ...], owned: bool) -> None:
        self.parent = parent
        self.name = name
        self.parts = parts
        self._owned = owned

    def __enter__(self) -> "Resolved":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            os.close(self.parent)


def resolve(directory: Directory, path: bytes) -> Resolved:
    """Resolve ``path`` relative to ``directory`` without leaving its granted directory.

    :raises FsError: EPERM for absolute paths and escapes, ELOOP for symbolic
        links, ENOENT, ENOTDIR, ... from the host.
    """
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(25) from None  # EILSEQ
    if text.startswith("/"):
        raise FsError(EPERM)
    if not text:
        raise FsError(ENOENT)
    parts = list(directory.parts)
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise FsError(EPERM)  # above the granted directory
            parts.pop()
        else:
            parts.append(part)
    if not parts:  # the granted directory itself
        return Resolved(directory.root, ".", (), False)
    fd = directory.root
    owned = False
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if owned:
                os.close(fd)
            fd, owned = nxt, True
    except (OSError, ValueError) as exc:
        if owned:
            os.close(fd)
        raise FsError(wasi_errno(exc)) from None
    return Resolved(fd, parts[-1], tuple(parts), owned)


def open_at(directory: Directory, path: bytes, oflags: int, rights: int, fdflags: int) -> Entry:
    """``path_open``: a :class:`File` or :class:`Directory` below ``directory``."""
    write = bool(rights & _WRITE_RIGHTS or oflags & (O_CREAT | O_TRUNC) or fdflags & FDFLAG_APPEND)
    read = bool(rights & (RIGHT_FD_READ | RIGHT_FD_READDIR)) or not write
    if write and not directory.writable:
        raise FsError(EPERM)
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if oflags & O_DIRECTORY:
        flags |= os.O_DIRECTORY
    if oflags & O_CREAT:
        flags |= os.O_CREAT
    if oflags & O_EXCL:
        flags |= os.O_EXCL
    if oflags & O_TRUNC:
        flags |= os.O_TRUNC
    if fdflags & FDFLAG_APPEND:
        flags |= os.O_APPEND
    with resolve(directory, path) as where:
        access = os.O_RDWR if read and write else os.O_WRONLY if write else os.O_RDONLY
        try:
            fd = os.open(where.name, flags | access, 0o666, dir_fd=where.parent)
        except (OSError, ValueError) as exc:
            raise FsError(wasi_errno(exc)) from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        return Directory(fd, directory.writable, directory.root, where.parts)
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FsError(EACCES)  # devices, FIFOs, sockets: not for guests
    os.set_blocking(fd, True)
    return File(fd, read, write, bool(fdflags & FDFLAG_APPEND))


def stat_at(directory: Directory, path: bytes) -> bytes:
    with resolve(directory, path) as where:
        try:
            return filestat(os.stat(where.name, dir_fd=where.parent, follow_symlinks=False))
        except (OSError, ValueError) as exc:
            raise FsError(wasi_errno(exc)) from None


def change_at(directory: Directory, path: bytes, action: str) -> None:
    """``mkdir``, ``unlink`` or ``rmdir`` below a writable directory."""
    if not directory.writable:
        raise FsError(EPERM)
    with resolve(directory, path) as where:
        if where.name == ".":
            raise FsError(EPERM)  # the granted directory itself
        try:
            if action == "mkdir":
                os.mkdir(where.name, 0o777, dir_fd=where.parent)
            elif action == "unlink":
                os.unlink(where.name, dir_fd=where.parent)
            else:
                os.rmdir(where.name, dir_fd=where.parent)
        except (OSError, ValueError) as exc:
            raise FsError(wasi_errno(exc)) from None


def rename_at(source: Directory, old: bytes, target: Directory, new: bytes) -> None:
    if not (source.writable and target.writable):
        raise FsError(EPERM)
    with resolve(source, old) as src, resolve(target, new) as dst:
        if "." in (src.name, dst.name):
            raise FsError(EPERM)
        try:
            os.rename(src.name, dst.name, src_dir_fd=src.parent, dst_dir_fd=dst.parent)
        except (OSError, ValueError) as exc:
            raise FsError(wasi_errno(exc)) from None


def readdir(directory: Directory, size: int, cookie: int) -> bytes:
    """``fd_readdir``: entries from ``cookie`` on, as many bytes as fit in ``size``."""
    try:
        names = sorted(os.listdir(directory.fd))
    except OSError as exc:
        raise FsError(wasi_errno(exc)) from None
    entries = [".", ".."] + names
    out = bytearray()
    for index in range(cookie, len(entries)):
        name = entries[index]
        try:
            st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
            ino, kind = st.st_ino, filetype(st.st_mode)
        except OSError:
            ino, kind = 0, FILETYPE_UNKNOWN
        encoded = os.fsencode(name)
        out += _DIRENT.pack(index + 1, ino & 0xFFFFFFFFFFFFFFFF, len(encoded), kind) + encoded
        if len(out) >= size:
            break
    return bytes(out[:size])
