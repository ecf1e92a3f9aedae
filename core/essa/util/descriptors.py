"""This process's limit of open file descriptors (``ulimit -n``), raised where a process needs many.

A server holding thousands of connections (the http trigger), and tests and
benchmarks opening thousands of sockets, raise the soft limit toward the hard
one, which an unprivileged process may do.
"""

from __future__ import annotations

#: What :func:`raise_open_files_limit` reports where nothing is known (no ``resource`` module).
UNKNOWN = 1 << 30


def raise_open_files_limit(wanted: int | None = None) -> int:
    """Raise the soft limit of open descriptors to ``wanted`` (default: the hard limit), never above the hard one.

    Returns the soft limit afterwards (:data:`UNKNOWN` where there is no
    ``resource`` module; "unlimited" counts as :data:`UNKNOWN` too). A limit
    already higher is left alone; one the kernel refuses to raise stays.
    """
    try:
        import resource
    except ImportError:  # not a POSIX system
        return UNKNOWN
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted is None:
        wanted = hard if hard != unlimited else 1 << 20  # the kernel's usual most (fs.nr_open)
    elif hard != unlimited:
        wanted = min(wanted, hard)
    if soft != unlimited and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # above fs.nr_open, say: keep what there is
            pass
    return UNKNOWN if soft == unlimited else min(soft, UNKNOWN)


__all__ = ["UNKNOWN", "raise_open_files_limit"]
