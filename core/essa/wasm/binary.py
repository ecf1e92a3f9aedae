"""The Wasm binary format's basics: LEB128 numbers, names, and a module's sections.

Shared by the module rewriter (:mod:`essa.wasm.instrument`) and engines that
patch a module before compiling it (wasmer's memory cap). Everything raises
:class:`BinaryError` (or ``IndexError`` on bytes that end too soon) for input
that does not parse.
"""

from __future__ import annotations

MAGIC = b"\0asm"
VERSION = b"\x01\0\0\0"


class BinaryError(ValueError):
    """Bytes that are not what the Wasm binary format says they must be."""


def read_u32(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 number at ``pos``, and the position after it."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        if shift > 28:
            raise BinaryError("bad LEB128")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def skip_leb(data: bytes, pos: int) -> int:
    """The position after the LEB128 number (of any width and sign) at ``pos``."""
    start = pos
    while data[pos] & 0x80:
        pos += 1
        if pos - start > 10:
            raise BinaryError("bad LEB128")
    return pos + 1


def encode_u32(value: int) -> bytes:
    """``value`` as the shortest unsigned LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_u32_padded(value: int) -> bytes:
    """``value`` as a 5-byte LEB128 (signed-compatible for 0 <= value < 2**31), patchable in place."""
    return bytes(((value >> (7 * i)) & 0x7F) | (0x80 if i < 4 else 0) for i in range(5))


def skip_name(data: bytes, pos: int) -> int:
    """The position after the name (a length, then UTF-8 bytes) at ``pos``."""
    length, pos = read_u32(data, pos)
    return pos + length


def section_spans(wasm: bytes) -> list[tuple[int, int, int, int]]:
    """``(section id, start, body start, end)`` of every section of a Wasm 1.0 module, in order."""
    if wasm[:4] != MAGIC or wasm[4:8] != VERSION:
        raise BinaryError("not a Wasm 1.0 binary module")
    spans = []
    pos = 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = read_u32(wasm, pos + 1)
        end = body + size
        if end > len(wasm):
            raise BinaryError("truncated section")
        spans.append((section_id, pos, body, end))
        pos = end
    return spans


def sections(wasm: bytes) -> list[tuple[int, bytes]]:
    """``(section id, body)`` of every section of a Wasm 1.0 module, in order."""
    return [(section_id, wasm[body:end]) for section_id, _start, body, end in section_spans(wasm)]


def section(section_id: int, body: bytes) -> bytes:
    """The bytes of a section: its id, its size, its body."""
    return bytes([section_id]) + encode_u32(len(body)) + body


__all__ = ["MAGIC", "VERSION", "BinaryError", "encode_u32", "encode_u32_padded", "read_u32", "section",
           "section_spans", "sections", "skip_leb", "skip_name"]
