"""Where a guest trapped, said the same way by every engine: ``(in abort <- check <- tally)``.

An engine reports a trap's backtrace in its own format; it hands the frames'
function names, innermost first, to :func:`trap_location`, which keeps the
innermost frame (where the guest trapped: ``abort``, ``rust_panic``, or the
function itself), skips the language runtime's frames under it (a Rust
panic's ``std::panicking::...``), and names the next callers: the guest's own
functions. Repeated frames (deep recursion) count once, Rust's symbol hashes
(``::h6ac9107c42850161``) are dropped, and a module without a ``name``
section has ``<wasm function 12>`` for names. One short line, whatever the
depth of the stack.
"""

from __future__ import annotations

import re
from typing import Iterable

#: Frames named in a trap's location after its innermost one.
CALLERS = 2
#: Frames looked at, at most (a stack overflow has tens of thousands).
MOST_FRAMES = 1000

#: Functions of a language's runtime between a failure and the guest's code (a panic's, an abort's).
RUNTIME_PREFIXES = (
    "rust_panic", "rust_begin_unwind", "__rust_", "std::panicking::", "std::panic::", "std::sys_common::backtrace::",
    "std::sys::", "std::process::abort", "core::panicking::", "core::result::unwrap_failed",
    "core::option::expect_failed", "core::option::unwrap_failed", "panic_abort::", "abort", "__assert_fail",
    "_Exit", "_exit",
)

_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")


def trap_location(frames: Iterable[str]) -> str:
    """`` (in INNERMOST <- CALLER <- CALLER)`` for ``frames`` (function names, innermost first), or ``""``."""
    names: list[str] = []
    skipping = False
    for count, frame in enumerate(frames):
        if count >= MOST_FRAMES:
            break
        name = _RUST_HASH.sub("", frame.strip())
        if not name or (names and names[-1] == name):
            continue
        if names and name.startswith(RUNTIME_PREFIXES) and (skipping or len(names) == 1):
            skipping = True  # the runtime's frames under the trap: the guest's code comes after them
            continue
        skipping = False
        names.append(name)
        if len(names) > 1 + CALLERS:
            break
    if not names:
        return ""
    shown = " <- ".join(names[: 1 + CALLERS])
    return f" (in {shown}{' <- ...' if len(names) > 1 + CALLERS else ''})"


__all__ = ["CALLERS", "RUNTIME_PREFIXES", "trap_location"]
