"""A module's signatures, read from its ``essa.signatures`` custom section without instantiating it.

The SDKs write one JSON line per typed function into the custom section
``essa.signatures`` (docs/signatures.md); the linker concatenates the lines
every function contributes. This module finds that section (every one of
that name, in order) by walking the module's sections with
:mod:`essa.wasm.binary`, and :func:`essa.state.signatures.parse_lines`
reads it.
"""

from __future__ import annotations

from essa.errors import ModuleError
from essa.state.signatures import SECTION, Signature, parse_lines
from essa.wasm import binary

_NAME = SECTION.encode()


def section_bytes(wasm: bytes) -> bytes | None:
    """The contents of the module's ``essa.signatures`` custom sections, joined; ``None`` if it has none.

    :raises essa.errors.ModuleError: ``wasm`` is not a well-formed module's sections.
    """
    found: list[bytes] = []
    try:
        for section_id, _start, body, end in binary.section_spans(wasm):
            if section_id != 0:
                continue
            length, pos = binary.read_u32(wasm, body)
            if pos + length > end:
                raise binary.BinaryError("a custom section's name runs past its end")
            if wasm[pos:pos + length] == _NAME:
                found.append(wasm[pos + length:end])
    except binary.BinaryError as exc:
        raise ModuleError(f"the module is malformed: {exc}") from None
    except IndexError:
        raise ModuleError("the module is malformed: it ends too soon") from None
    return b"".join(found) if found else None


def module_signatures(wasm: bytes, origin: str = "the module") -> list[Signature]:
    """The signatures the module declares (none without the section), sorted by name.

    :raises essa.errors.SignatureError: the section is malformed (one line naming the line and why).
    """
    data = section_bytes(wasm)
    return [] if data is None else parse_lines(data, f"{origin}'s {SECTION} section")


__all__ = ["module_signatures", "section_bytes"]
