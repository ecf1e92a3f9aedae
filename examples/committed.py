"""The committed example modules: checking one against a fresh build, or replacing it (build_rust.py, build_ts.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def describe(data: bytes) -> str:
    """A module's bytes in a few words: its size and the start of its SHA-256."""
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


def settle(root: Path, name: str, new: bytes, check: bool, source: str, elapsed: str) -> str | None:
    """Check the committed module ``root/name`` against ``new``, a fresh build of ``source``, or replace it.

    With ``check``, returns why it is stale (``None``: up to date) and changes
    nothing; otherwise writes ``new`` in its place atomically.
    """
    target = root / name
    if check:
        if not target.is_file():
            return f"{name} is missing (rebuilt: {describe(new)})"
        if target.read_bytes() != new:
            return (f"{name} differs from a fresh build of {source} "
                    f"(committed: {describe(target.read_bytes())}; rebuilt: {describe(new)})")
        print(f"  {name} is up to date ({describe(new)}; {elapsed})")
        return None
    staging = target.with_name(target.name + ".tmp")
    staging.write_bytes(new)
    os.replace(staging, target)
    print(f"  wrote {name} ({describe(new)}; {elapsed})")
    return None
