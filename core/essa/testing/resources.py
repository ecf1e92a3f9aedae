"""What a process holds of the operating system, counted (for leak tests and ``bench/soak.py``).

Counts, not times: a test that serves thousands of calls asserts that none of
these grows with the number of calls. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Resources:
    """One sample of a process's resources."""

    #: Lines of ``/proc/PID/maps``: memory mappings (the kernel caps them at ``vm.max_map_count``).
    mappings: int
    #: Open file descriptors.
    fds: int
    #: OS threads of the process.
    threads: int
    #: Resident set size, bytes: ``rss_anon`` + ``rss_file`` (+ shared memory).
    rss: int
    #: Resident anonymous memory (heaps, stacks): what a leak grows.
    rss_anon: int
    #: Resident file-backed pages (code, and a store's memory-mapped file as its data is touched).
    rss_file: int
    #: Virtual size (reserved address space), bytes.
    vsz: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sample(pid: int | str = "self") -> Resources:
    """The resources of process ``pid`` (default: this one) now."""
    base = f"/proc/{pid}"
    with open(f"{base}/maps", "rb") as maps:
        mappings = sum(1 for _ in maps)
    fields = {}
    with open(f"{base}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return Resources(
        mappings=mappings,
        fds=len(os.listdir(f"{base}/fd")),
        threads=int(fields["Threads"][0]),
        rss=int(fields["VmRSS"][0]) * 1024,
        rss_anon=int(fields["RssAnon"][0]) * 1024,
        rss_file=int(fields["RssFile"][0]) * 1024,
        vsz=int(fields["VmSize"][0]) * 1024,
    )


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (benchmarks: CPU per call of each process)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def python_threads() -> list[str]:
    """Names of this process's live Python threads (to name a thread that leaked)."""
    return sorted(t.name for t in threading.enumerate())


__all__ = ["Resources", "cpu_seconds", "python_threads", "sample"]
