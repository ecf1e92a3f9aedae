"""Resolving a guest's paths beneath a directory descriptor, the way wasmtime does.

wasmtime resolves WASI paths with cap-std: every directory descriptor is a
root of its own. A path is taken relative to the descriptor it is given with,
symbolic links are followed while they stay beneath it, and anything that
would leave it - an absolute path, a ``..`` above it, a link to an absolute
path or one that climbs out - fails with EPERM. On Linux 5.6 and later cap-std
lets the kernel do it (``openat2`` with ``RESOLVE_BENEATH``), and so does this
module; where ``openat2`` is missing (older kernels, some seccomp sandboxes)
it resolves one component at a time, following links itself (:func:`_open_manually`,
cap-std's fallback algorithm).

Two primitives serve every path function:

- :func:`open_beneath` opens a path (the final open of ``path_open``, or an
  ``O_PATH`` handle for ``path_filestat_get``);
- :func:`open_parent` opens the directory holding a path's last component and
  returns that component, for the ``*at`` system calls that create, remove,
  rename or link it (cap-std's ``via_parent`` functions), with cap-std's rules
  for trailing slashes and ``.``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import stat
import sys

#: Links followed in one resolution before ELOOP (the kernel's limit too).
MAX_LINKS = 40

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (asm-generic)
_O_PATH = getattr(os, "O_PATH", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


class Escape(OSError):
    """A path led outside the directory it is resolved in (the guest sees EPERM)."""

    def __init__(self) -> None:
        super().__init__(_errno.EPERM, "a path led outside of the granted directory")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_syscall():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):  # pragma: no cover - every glibc and musl has it
        return None
    syscall.restype = ctypes.c_long
    return syscall


_syscall = _load_syscall()
#: Whether to try ``openat2`` (cleared once the kernel says it has none).
use_openat2 = _syscall is not None


def open_beneath(dirfd: int, path: str, flags: int, mode: int = 0o666) -> int:
    """Open ``path`` beneath ``dirfd`` with ``flags`` (``O_NOFOLLOW`` for no links at the end).

    :raises OSError: as the kernel says; :class:`Escape` for a way out.
    """
    encoded = _encode(path)
    if not encoded:
        raise OSError(_errno.ENOENT, "empty path")
    flags |= os.O_CLOEXEC
    if use_openat2:
        creates = flags & os.O_CREAT or (_O_TMPFILE and flags & _O_TMPFILE == _O_TMPFILE)
        fd = _openat2(dirfd, encoded, flags, mode if creates else 0)  # openat2 wants no mode otherwise
        if fd is not None:
            return fd
    return _open_manually(dirfd, path, flags, mode)


def _openat2(dirfd: int, path: bytes, flags: int, mode: int) -> int | None:
    """``openat2`` beneath ``dirfd``, or ``None`` if the kernel cannot do it."""
    global use_openat2
    how = _OpenHow(flags, mode, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    for _attempt in range(4):
        fd = _syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(path), ctypes.byref(how),
                      ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err == _errno.EAGAIN:  # a rename raced the lookup: try again
            continue
        if err == _errno.ENOSYS:
            use_openat2 = False
            return None
        if err == _errno.EPERM:  # how some seccomp sandboxes refuse the call: resolve by hand
            return None
        if err == _errno.EXDEV:
            raise Escape()
        raise OSError(err, os.strerror(err))
    return None


def open_dir_path(dirfd: int, path: str) -> int:
    """A handle on the directory ``path`` (links followed), for ``*at`` calls."""
    return open_beneath(dirfd, path, _O_PATH | os.O_DIRECTORY if _O_PATH else os.O_RDONLY | os.O_DIRECTORY)


def open_parent(dirfd: int, path: str) -> tuple[int, str, bool]:
    """The directory holding ``path``'s last component, that component, and whether the caller owns the handle.

    As cap-std splits paths: one ending in ``/``, ``/.`` or ``..`` names ``.``
    of the directory it spells; ``.`` is ``.`` of ``dirfd``; the empty path is
    ENOENT.
    """
    if not path:
        raise OSError(_errno.ENOENT, "empty path")
    if "\0" in path:
        raise OSError(_errno.EINVAL, "NUL in path")
    if not (path.endswith("/") or path.endswith("/.")):
        head, _, last = path.rpartition("/")
        if last == "." and not head:
            return dirfd, ".", False
        if last != "..":
            dirname = head.rstrip("/") or ("/" if path.startswith("/") else "")
            if not dirname:
                return dirfd, last, False
            return open_dir_path(dirfd, dirname), last, True
    return open_dir_path(dirfd, path), ".", True


def strip_dir_suffix(path: str) -> str:
    """``path`` without trailing slashes (cap-std's ``create_dir``, ``rename`` and, from wasmtime 51, ``remove_dir`` ignore them)."""
    stripped = path.rstrip("/")
    return stripped if stripped or not path else "/"


def _encode(path: str) -> bytes:
    encoded = path.encode("utf-8")
    if b"\0" in encoded:
        raise OSError(_errno.EINVAL, "NUL in path")
    return encoded


# -- the manual fallback (cap-std's manually::open) -------------------------------------


def _components(path: str) -> list[str]:
    """``path``'s components as Rust's ``Path::components`` gives them (``.`` only first; ``/`` for the root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if path.startswith("/"):
        return ["/", *parts]
    if path == "." or path.startswith("./") or path == "./":
        return [".", *parts]
    return parts


def _trailing_dot(path: str) -> bool:
    return path == "." or path.endswith("/.")


def _open_manually(start: int, path: str, flags: int, mode: int) -> int:
    """Resolve ``path`` beneath ``start`` one component at a time, following links by hand."""
    follow = not flags & os.O_NOFOLLOW
    flags &= ~os.O_NOFOLLOW
    trailing_slash = path.endswith("/")
    components = _components(path)
    components.reverse()
    if _trailing_dot(path):
        components.insert(0, ".")
    follow_with_dot = _trailing_dot(path) or path.rstrip("/").endswith("..") and path.rstrip("/").split("/")[-1] == ".."
    dir_required = trailing_slash
    base = start
    owned: list[int] = []  # handles this resolution opened, innermost last
    dirs: list[int] = []  # the directories below ``base`` (for "..")
    links = 0

    def descend(fd: int) -> None:
        nonlocal base
        dirs.append(base)
        owned.append(fd)
        base = fd

    try:
        while components:
            one = components.pop()
            last = not components
            if one == "/":
                raise Escape()
            if one == ".":
                continue
            if one == "..":
                if not dirs:
                    raise Escape()
                base = dirs.pop()
                continue
            if last:
                # A trailing slash already makes the host insist on a directory (and say EISDIR to O_CREAT).
                use = flags | (os.O_DIRECTORY if dir_required and not flags & os.O_CREAT else 0)
                name = one + ("/" if trailing_slash else "")
            else:
                use = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY
                name = one
            try:
                fd = os.open(name, use | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=base)
                if use & _O_PATH and (not last or follow) and stat.S_ISLNK(os.fstat(fd).st_mode):
                    os.close(fd)  # O_PATH opens a link itself: follow it by hand
                    raise OSError(_errno.ELOOP, "a symbolic link")
            except OSError as exc:
                if exc.errno not in (_errno.ELOOP, _errno.ENOTDIR) or not _is_symlink(base, one):
                    raise
                if last and not follow and not trailing_slash:
                    raise
                links += 1
                if links > MAX_LINKS:
                    raise OSError(_errno.ELOOP, "too many levels of symbolic links") from None
                target = os.readlink(one, dir_fd=base)
                if target.startswith("/"):
                    raise Escape() from None
                if target.endswith("/"):
                    trailing_slash = dir_required = True
                if _trailing_dot(target) or target.rstrip("/").split("/")[-1] == "..":
                    follow_with_dot = True
                new = _components(target)
                if _trailing_dot(target):
                    new.append(".")
                components.extend(reversed(new))
                continue
            if not last:
                descend(fd)
                continue
            if follow_with_dot and not flags & os.O_CREAT:
                descend(fd)
                break
            for handle in owned:
                os.close(handle)
            owned.clear()
            return fd
        # The path ended in ".", ".." or a component already open: open "." of where we are.
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=base)
    finally:
        for handle in owned:
            os.close(handle)


def _is_symlink(dirfd: int, name: str) -> bool:
    try:
        os.readlink(name, dir_fd=dirfd)
    except OSError:
        return False
    return True


__all__ = ["Escape", "MAX_LINKS", "open_beneath", "open_dir_path", "open_parent", "strip_dir_suffix"]
