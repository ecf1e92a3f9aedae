"""Remove a module's debug info and keep its function names: ``python -m essa.wasm.debuginfo FILE.wasm...``.

A C guest built with Zig's clang carries wasi-libc's DWARF sections
(``.debug_info``, ``.debug_line``, ...): about 1 MB, and source paths. The
``name`` section, a few KB of function names, is what lets a trap say where
it happened (``(in abort <- check <- essa_function_export_tally)`` instead
of ``(in <wasm function 64>)``). The linker's ``-s`` drops both, and Zig's
clang turns ``--strip-debug`` into ``-s`` too, so essa's builds (the C
examples, ``essa new c`` projects) link without stripping and then drop the
debug info with this, rewriting each file in place. Rust guests need none of
it: cargo's ``strip = "debuginfo"`` keeps the names.
"""

from __future__ import annotations

import sys

from essa.wasm.binary import BinaryError, read_u32, section_spans

#: Custom sections that are debug info (or point to it), dropped; all other sections are kept as they are.
DEBUG_SECTIONS = ("external_debug_info", "sourceMappingURL")


def is_debug_section(name: str) -> bool:
    """Whether a custom section called ``name`` is debug info."""
    return name.startswith(".debug") or name in DEBUG_SECTIONS


def without_debug_info(wasm: bytes) -> bytes:
    """``wasm`` without its debug-info custom sections (the same bytes if it has none).

    :raises BinaryError: ``wasm`` is not a Wasm 1.0 binary module.
    """
    out = bytearray(wasm[:8])
    for section_id, start, body, end in section_spans(wasm):
        if section_id == 0:
            length, at = read_u32(wasm, body)
            if is_debug_section(wasm[at : at + length].decode("utf-8", "replace")):
                continue
        out += wasm[start:end]
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    """Rewrite each file given without its debug info; one line per problem, exit status 1 if any."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths or any(p in ("-h", "--help") for p in paths):
        print("usage: python -m essa.wasm.debuginfo FILE.wasm...  (drops debug info, keeps function names)",
              file=sys.stdout if paths else sys.stderr)
        return 0 if paths else 2
    failed = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                wasm = f.read()
            smaller = without_debug_info(wasm)
            if smaller != wasm:
                with open(path, "wb") as f:
                    f.write(smaller)
        except OSError as exc:
            print(f"essa: error: {path}: {exc.strerror}", file=sys.stderr)
            failed = 1
        except (BinaryError, IndexError) as exc:
            print(f"essa: error: {path}: not a Wasm module ({exc or 'it ends too soon'})", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
