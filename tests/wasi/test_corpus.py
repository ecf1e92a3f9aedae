"""WASI fidelity: every corpus program behaves under essa exactly as under plain wasmtime.

Each case runs one program of ``examples/wasi-corpus`` (C and Rust, built by
``examples/build.py`` and ``examples/build_rust.py``) twice, in fresh copies of
the fixture tree: under wasmtime-py's own WASI, configured by hand (the
oracle), and under essa on the engine under test, with the same arguments,
environment, stdin and granted directories. Exit status (or trap), stdout,
stderr and the directory tree left behind must be identical. See
``differential.py`` for the fixture and the runners, and
``python -m tests.wasi.differential PROGRAM --engine NAME`` to see a diff.

Where wasmtime itself declines something, :func:`test_what_wasmtime_declines`
says so by name, checking the oracle's own output, so a change in wasmtime
shows up as a failing test rather than as a silently different corpus.
"""

from __future__ import annotations

import pytest

from .differential import CORPUS, Case, compare, corpus_cases, preview1_functions_used

pytest.importorskip("wasmtime")  # the oracle

#: Every function of wasi_snapshot_preview1.
PREVIEW1 = {
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
    "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
    "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
    "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
    "path_link", "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
    "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
    "sock_recv", "sock_send", "sock_shutdown",
}

CASES = corpus_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_essa_behaves_like_wasmtime(essa_engine, case):
    _expected, problems = compare(essa_engine, case)
    assert not problems, f"{case.id} on {essa_engine}:\n" + "\n".join(problems)


#: Programs whose paths exercise resolution; run again on wasmer with openat2 out of the way.
RESOLUTION = [case for case in CASES if case.program in ("paths", "links", "dirs", "fdtable", "readonly")]


@pytest.mark.parametrize("case", RESOLUTION, ids=[case.id for case in RESOLUTION])
def test_manual_path_resolution_behaves_like_wasmtime(essa_engine, case, monkeypatch):
    """Kernels without openat2 get essa's own component-by-component resolution: same answers."""
    if essa_engine != "wasmer":
        pytest.skip("only essa's own WASI (wasmer) resolves paths itself")
    from essa_wasmer import wasi_paths

    monkeypatch.setattr(wasi_paths, "use_openat2", False)
    _expected, problems = compare(essa_engine, case)
    assert not problems, f"{case.id} (manual resolution):\n" + "\n".join(problems)


def test_the_corpus_calls_every_preview1_function():
    used = preview1_functions_used()
    assert used == PREVIEW1, f"not called by any corpus program: {sorted(PREVIEW1 - used)}"


def test_every_corpus_program_has_cases():
    programs = {path.stem for path in CORPUS.glob("*.wasm")}
    assert programs == {case.program for case in CASES}


#: What wasmtime declines (returns an error for, or accepts and ignores), as the
#: oracle prints it: (program, args, the line). essa declines the same things the
#: same way (test_essa_behaves_like_wasmtime); this says which ones they are.
DECLINED = {
    "fd_allocate on a file": ("files", (), "fd_allocate = ENOTSUP"),
    "changing rights (fd_fdstat_set_rights)": ("files", (), "fd_fdstat_set_rights(read only) = ENOTSUP"),
    "rights beyond the open mode (writes still work)": ("files", (), "fd_write after dropping the write right = OK n=5"),
    "setting a size without FD_FILESTAT_SET_SIZE (set_size only)": (
        "files", (), "  fd_filestat_set_size(13) = EINVAL"),
    "SYNC open flag": ("files", (), "open hello.txt read SYNC = ENOTSUP (fd untouched)"),
    "DSYNC open flag": ("files", (), "open hello.txt write DSYNC = ENOTSUP (fd untouched)"),
    "RSYNC open flag": ("files", (), "open hello.txt read RSYNC = ENOTSUP (fd untouched)"),
    "SYNC through fd_fdstat_set_flags": ("files", (), "fd_fdstat_set_flags(SYNC) = EINVAL"),
    "CPU-time clocks": ("clock_random", (), "clock_time_get(2) = EBADF"),
    "CPU-time clocks in poll_oneoff": ("poll", (), "process cputime 1 ms = EINVAL"),
    "proc_raise": ("clock_random", (), "proc_raise(SIGTERM) = ENOTSUP"),
    "sockets": ("sockets_exit", ("0",), "fd 3: sock_accept = ENOTSOCK, sock_recv = ENOTSOCK, sock_send = ENOTSOCK, "
                "sock_shutdown = ENOTSOCK"),
    "hard links through a symbolic link": ("links", (), "link a symlink, following = EINVAL"),
    "symbolic links to absolute paths": ("links", (), "symlink absolute = EPERM"),
    "reading a link to an absolute path": ("paths", (), "readlink absolute link = EPERM"),
    "fd_renumber to a number not in use": ("fdtable", (), "renumber to an unused number 40 = EBADF"),
}


@pytest.mark.parametrize("what", list(DECLINED))
def test_what_wasmtime_declines(what, tmp_path):
    from .differential import run_plain_wasmtime

    program, args, line = DECLINED[what]
    outcome = run_plain_wasmtime(Case(program, args), tmp_path)
    assert line in outcome.stdout.splitlines(), f"wasmtime no longer declines {what}: {line!r} not printed"
