"""Cap a module's linear memory by lowering its declared maximum.

wasmer 1.1's Python binding has no resource limiter (no tunables, no store
limits), so essa enforces :attr:`essa.wasm.limits.Limits.max_memory_bytes` in the
module itself: before compiling, every memory the module defines gets the
maximum ``min(declared maximum, cap)``. The engine then refuses to grow past it
natively - ``memory.grow`` returns -1 inside the guest, exactly as with
wasmtime's store limits. A memory whose *minimum* is above the cap cannot be
instantiated at all; :func:`cap_memory` reports that as :class:`MemoryOverLimit`.

Only the memory section changes; no other section holds offsets into it, so
the rest of the module is copied byte for byte. Bytes that do not parse are
returned unchanged and left to the compiler's validation to reject.
"""

from __future__ import annotations

from essa.plugin import binary

PAGE = 65536
#: The largest memory a wasm32 module can have, in pages (4 GiB).
MAX_PAGES = 65536

_MEMORY_SECTION = 5


class MemoryOverLimit(Exception):
    """A memory's minimum size is above the cap."""

    def __init__(self, minimum: int, cap: int) -> None:
        super().__init__(
            f"memory minimum size of {minimum} pages ({minimum * PAGE} bytes) exceeds the limit of "
            f"{cap} pages ({cap * PAGE} bytes)"
        )
        self.minimum = minimum
        self.cap = cap


def cap_pages(max_memory_bytes: int) -> int:
    """The cap in whole Wasm pages for a byte limit."""
    return max(0, min(MAX_PAGES, max_memory_bytes // PAGE))


def cap_memory(wasm: bytes, pages: int) -> bytes:
    """``wasm`` with every defined memory's maximum lowered to at most ``pages``.

    :raises MemoryOverLimit: a memory's minimum is above ``pages``.
    """
    try:
        return _cap(wasm, pages)
    except (ValueError, IndexError):
        return wasm  # not well-formed: the compiler will say why


def _cap(wasm: bytes, pages: int) -> bytes:
    for section_id, start, body, end in binary.section_spans(wasm):
        if section_id == _MEMORY_SECTION:
            new_body = _cap_section(wasm[body:end], pages)
            if new_body is None:
                return wasm
            return wasm[:start] + binary.section(section_id, new_body) + wasm[end:]
    return wasm


def _cap_section(body: bytes, pages: int) -> bytes | None:
    count, pos = binary.read_u32(body, 0)
    out = bytearray(binary.encode_u32(count))
    changed = False
    for _ in range(count):
        flags = body[pos]
        pos += 1
        if flags & ~0x03:  # memory64 or unknown flags: leave the module as it is
            return None
        minimum, pos = binary.read_u32(body, pos)
        maximum = None
        if flags & 0x01:
            maximum, pos = binary.read_u32(body, pos)
        if minimum > MAX_PAGES or (maximum is not None and not minimum <= maximum <= MAX_PAGES):
            return None  # invalid limits: the compiler refuses them with the reason
        if minimum > pages:
            raise MemoryOverLimit(minimum, pages)
        if maximum is None or maximum > pages:
            maximum = pages
            changed = True
        out.append(flags | 0x01)
        out += binary.encode_u32(minimum) + binary.encode_u32(maximum)
    if pos != len(body):
        raise ValueError("trailing bytes in the memory section")
    return bytes(out) if changed else None
