"""Naming a full disk.

LMDB reports a write that the filesystem cut short as ``EIO`` ("Input/output
error"), not ``ENOSPC``, so a full disk would read like failing hardware.
:func:`full_disk_message` checks the free space of the filesystem holding the
data when a commit fails with ``EIO`` or ``ENOSPC`` and names the problem.
Both essa's LMDB store and the Anna plugin's durable KVS nodes use it.
"""

from __future__ import annotations

import errno
import os

#: An EIO counts as a full disk when less than this much space is left (or less than 1 % of it).
NEARLY_FULL_BYTES = 16 << 20


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes available to this process on the filesystem holding ``path`` (``None`` if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def full_disk_message(path: str | os.PathLike, code: int | None) -> str | None:
    """``"the disk holding PATH is full (N bytes free)"`` if a write failing with errno ``code`` means that.

    ``ENOSPC`` always does; ``EIO`` does when the filesystem is (nearly) full,
    since that is how LMDB reports a short write. Otherwise ``None``: the
    failure is something else and should be reported as it is.
    """
    if code not in (errno.ENOSPC, errno.EIO):
        return None
    free = free_bytes(path)
    if code == errno.EIO:
        if free is None:
            return None
        try:
            st = os.statvfs(path)
            total = st.f_blocks * st.f_frsize
        except OSError:
            total = 0
        if free >= NEARLY_FULL_BYTES and free >= total // 100:
            return None
    where = os.fspath(path)
    return f"the disk holding {where} is full ({free} bytes free)" if free is not None else \
        f"the disk holding {where} is full"


def lmdb_error_code(exc: BaseException) -> int | None:
    """The errno behind an ``lmdb.Error`` (py-lmdb keeps it as ``code``; ``DiskError`` is ``ENOSPC``)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return code
    if type(exc).__name__ == "DiskError":
        return errno.ENOSPC
    return None
