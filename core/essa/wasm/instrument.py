"""Instrument a Wasm module so an engine can enforce essa's limits from the host.

Some engines cannot interrupt running Wasm code from Python (wasmer 1.1's
binding has no metering, no epochs, and holds the GIL while Wasm runs), and
none tells the host when ``memory.grow`` is refused. :func:`instrument`
rewrites a module's binary so that:

``fuel``
    every function entry and every ``loop`` header subtracts a static cost
    from a fuel global; when the fuel runs out the guest calls the import
    ``essa_meter.refuel: () -> i32``, which returns new fuel or traps (the
    host checks the call's deadline there). The cost of a check is the number
    of instructions it covers: the function body or loop body, excluding
    nested loops, which have checks of their own. Between two checks a guest
    therefore runs at most that many instructions, plus calls (which check on
    entry) and host calls. Bulk memory and table operations count
    :data:`BULK_COST` each, since one can touch a whole memory.
``grow``
    every ``memory.grow`` of memory 0 becomes a call of an added function that
    grows the memory and, when the engine refused (-1), calls the import
    ``essa_meter.grow_refused: (i32, i32) -> ()`` with the requested pages and
    the memory's current pages, so the host can report ``memory limit
    exceeded`` instead of a bare trap (even for a memory it cannot see).

The rewriter appends a type, the imports, a global and a function, and
renumbers every reference to a defined function (calls, ``ref.func``,
exports, the start function, element segments, global initializers, the name
section). Anything it does not understand (GC types, exception handling, an
unknown opcode) raises :class:`InstrumentError`; a module that does not parse
raises it too, and the engine's own validation then names the real problem.
"""

from __future__ import annotations

from essa.wasm.binary import (
    BinaryError,
    encode_u32,
    encode_u32_padded,
    read_u32,
    skip_leb,
    skip_name,
)
from essa.wasm.binary import sections as read_sections

#: The import module of the instrumentation's host functions.
METER_MODULE = "essa_meter"
#: ``() -> i32``: called when the fuel ran out; returns new fuel or traps.
REFUEL = "refuel"
#: ``(i32, i32) -> ()``: called with the requested and the current pages when ``memory.grow`` returned -1.
GROW_REFUSED = "grow_refused"

#: Fuel charged for one bulk memory/table operation (memory.fill, memory.copy, ...).
BULK_COST = 1 << 16
#: Cap on the static cost of one check.
_MAX_COST = 1 << 30

_TYPE, _IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _START, _ELEMENT, _CODE, _DATA, _DATACOUNT, _TAG = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
)
#: Where each known section goes, for inserting ones the module lacks.
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 5.5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 9.5, 10: 10, 11: 11}

_VALTYPES = {0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}
_I32 = 0x7F


class InstrumentError(BinaryError):
    """The module cannot be instrumented (malformed, or uses an unsupported feature)."""


def _vec_count(body: bytes) -> tuple[int, int]:
    return read_u32(body, 0) if body else (0, 0)


def _skip_limits(body: bytes, pos: int) -> int:
    flags = body[pos]
    if flags & ~0x07:
        raise InstrumentError(f"unsupported limits flags {flags:#x}")
    pos = skip_leb(body, pos + 1)
    if flags & 1:
        pos = skip_leb(body, pos)
    return pos


def _skip_tabletype(body: bytes, pos: int) -> int:
    if body[pos] not in (0x70, 0x6F):
        raise InstrumentError("unsupported table element type")
    return _skip_limits(body, pos + 1)


def _skip_globaltype(body: bytes, pos: int) -> int:
    if body[pos] not in _VALTYPES:
        raise InstrumentError("unsupported global type")
    return pos + 2


class _Module:
    """What the rewriter needs to know about a module, from one pass over its sections."""

    def __init__(self, sections: list[tuple[int, bytes]]) -> None:
        self.types = 0
        self.func_imports = 0
        self.global_imports = 0
        self.memories = 0
        self.functions = 0
        self.globals = 0
        seen = set()
        for section_id, body in sections:
            if section_id == 0:
                continue
            if section_id in seen or section_id not in _ORDER:
                raise InstrumentError(f"unexpected section {section_id}")
            seen.add(section_id)
            if section_id == _TYPE:
                self._types(body)
            elif section_id == _IMPORT:
                self._imports(body)
            elif section_id == _FUNCTION:
                self.functions = _vec_count(body)[0]
            elif section_id == _MEMORY:
                self.memories += _vec_count(body)[0]
            elif section_id == _GLOBAL:
                self.globals = _vec_count(body)[0]
            elif section_id == _TAG:
                raise InstrumentError("exception handling is not supported")

    def _types(self, body: bytes) -> None:
        count, pos = _vec_count(body)
        for _ in range(count):
            if body[pos] != 0x60:
                raise InstrumentError("only function types are supported in the type section")
            pos += 1
            for _list in ("params", "results"):
                n, pos = read_u32(body, pos)
                for _ in range(n):
                    if body[pos] not in _VALTYPES:
                        raise InstrumentError("unsupported value type")
                    pos += 1
        self.types = count

    def _imports(self, body: bytes) -> None:
        count, pos = _vec_count(body)
        for _ in range(count):
            pos = skip_name(body, pos)
            pos = skip_name(body, pos)
            kind = body[pos]
            pos += 1
            if kind == 0x00:
                self.func_imports += 1
                pos = skip_leb(body, pos)
            elif kind == 0x01:
                pos = _skip_tabletype(body, pos)
            elif kind == 0x02:
                self.memories += 1
                pos = _skip_limits(body, pos)
            elif kind == 0x03:
                self.global_imports += 1
                pos = _skip_globaltype(body, pos)
            else:
                raise InstrumentError(f"unsupported import kind {kind}")


# -- instructions ---------------------------------------------------------------------

_NO_IMM = frozenset(
    [0x00, 0x01, 0x05, 0x0F, 0x1A, 0x1B, 0xD1] + list(range(0x45, 0xC5))
)
_U32_IMM = frozenset([0x0C, 0x0D, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F])
_MEMARG = frozenset(range(0x28, 0x3F))
_BLOCKS = frozenset([0x02, 0x03, 0x04])
# 0xFC sub-opcodes: number of u32 immediates (after the sub-opcode), and which are bulk.
_FC_IMMS = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}
_FC_BULK = frozenset([8, 10, 11, 12, 14, 17])
# 0xFD (SIMD) sub-opcodes with immediates.
_FD_MEMARG = frozenset(list(range(0, 12)) + [92, 93])
_FD_MEMARG_LANE = frozenset(range(84, 92))
_FD_LANE = frozenset(range(21, 35))
_FD_16 = frozenset([12, 13])


def _skip_blocktype(code: bytes, pos: int) -> int:
    byte = code[pos]
    if byte == 0x40 or byte in _VALTYPES:
        return pos + 1
    return skip_leb(code, pos)  # a type index (s33)


def _skip_memarg(code: bytes, pos: int) -> int:
    align, pos = read_u32(code, pos)
    if align & 0x40:  # multi-memory: a memory index follows
        pos = skip_leb(code, pos)
    return skip_leb(code, pos)


class _Rewriter:
    def __init__(self, func_imports: int, shift: int, fuel_global: int | None, refuel: int, grow_helper: int | None):
        self.k = func_imports
        self.shift = shift
        self.fuel_global = fuel_global
        self.grow_helper = grow_helper
        if fuel_global is not None:
            g = encode_u32(fuel_global)
            # fuel -= COST; if fuel < 0 { fuel = refuel() }
            self.check_head = b"\x23" + g + b"\x41"
            self.check_tail = (
                b"\x6b\x24" + g + b"\x23" + g + b"\x41\x00\x48\x04\x40\x10" + encode_u32(refuel) + b"\x24" + g + b"\x0b"
            )

    def func(self, idx: int) -> int:
        return idx + self.shift if idx >= self.k else idx

    def body(self, code: bytes) -> bytes:
        """One function body (locals + expression) rewritten."""
        out = bytearray()
        count, pos = read_u32(code, 0)
        for _ in range(count):
            pos = skip_leb(code, pos)
            if code[pos] not in _VALTYPES:
                raise InstrumentError("unsupported local type")
            pos += 1
        out += code[:pos]
        fuel = self.fuel_global is not None
        # Meters: [patch offset in out, cost]; frames: the meter index of each open block.
        meters: list[list[int]] = []
        frames: list[tuple[int, bool]] = []
        if fuel:
            meters.append([self._emit_check(out), 0])
        frames.append((0, True))
        copy = pos
        end = len(code)
        no_imm, u32_imm, memarg, blocks = _NO_IMM, _U32_IMM, _MEMARG, _BLOCKS
        meter = meters[0] if fuel else None
        while pos < end:
            op = code[pos]
            start = pos
            pos += 1
            if meter is not None:
                meter[1] += 1
            if op in no_imm:
                continue
            if op in u32_imm:
                if code[pos] < 0x80:
                    pos += 1
                else:
                    pos = skip_leb(code, pos)
                continue
            if op in memarg:
                pos = _skip_memarg(code, pos)
                continue
            if op == 0x0B:  # end
                index, own = frames.pop()
                if own and fuel:
                    self._patch(out, meters[index])
                if not frames:
                    if pos != end:
                        raise InstrumentError("code after the end of a function body")
                    break
                meter = meters[frames[-1][0]] if fuel else None
                continue
            if op in blocks:
                pos = _skip_blocktype(code, pos)
                if op == 0x03 and fuel:  # loop: a check of its own at the top
                    out += code[copy:pos]
                    copy = pos
                    meters.append([self._emit_check(out), 0])
                    frames.append((len(meters) - 1, True))
                    meter = meters[-1]
                else:
                    frames.append((frames[-1][0], False))
                continue
            if op == 0x41 or op == 0x42:  # i32.const, i64.const
                pos = skip_leb(code, pos)
                continue
            if op == 0x10 or op == 0x12 or op == 0xD2:  # call, return_call, ref.func
                idx, after = read_u32(code, pos)
                if self.shift and idx >= self.k:
                    out += code[copy:pos]
                    out += encode_u32(idx + self.shift)
                    copy = after
                pos = after
                continue
            if op == 0x11 or op == 0x13:  # call_indirect, return_call_indirect
                pos = skip_leb(code, skip_leb(code, pos))
                continue
            if op == 0x40:  # memory.grow
                mem, after = read_u32(code, pos)
                if mem == 0 and self.grow_helper is not None:
                    out += code[copy:start]
                    out += b"\x10" + encode_u32(self.grow_helper)
                    copy = after
                pos = after
                continue
            if op == 0x43:
                pos += 4
                continue
            if op == 0x44:
                pos += 8
                continue
            if op == 0x0E:  # br_table
                n, pos = read_u32(code, pos)
                for _ in range(n + 1):
                    pos = skip_leb(code, pos)
                continue
            if op == 0x1C:  # select t*
                n, pos = read_u32(code, pos)
                pos += n
                continue
            if op == 0xD0:  # ref.null t
                pos += 1
                continue
            if op == 0xFC:
                sub, pos = read_u32(code, pos)
                imms = _FC_IMMS.get(sub)
                if imms is None:
                    raise InstrumentError(f"unsupported instruction 0xfc {sub}")
                for _ in range(imms):
                    pos = skip_leb(code, pos)
                if sub in _FC_BULK and meter is not None:
                    meter[1] += BULK_COST
                continue
            if op == 0xFD:
                sub, pos = read_u32(code, pos)
                if sub in _FD_MEMARG:
                    pos = _skip_memarg(code, pos)
                elif sub in _FD_MEMARG_LANE:
                    pos = _skip_memarg(code, pos) + 1
                elif sub in _FD_LANE:
                    pos += 1
                elif sub in _FD_16:
                    pos += 16
                continue
            raise InstrumentError(f"unsupported instruction {op:#04x}")
        else:
            raise InstrumentError("function body without end")
        out += code[copy:pos]
        return bytes(out)

    def _emit_check(self, out: bytearray) -> int:
        out += self.check_head
        offset = len(out)
        out += encode_u32_padded(0)
        out += self.check_tail
        return offset

    @staticmethod
    def _patch(out: bytearray, meter: list[int]) -> None:
        out[meter[0] : meter[0] + 5] = encode_u32_padded(min(meter[1], _MAX_COST))


# -- references to functions outside the code section ---------------------------------


def _rewrite_const_expr(body: bytes, pos: int, rw: _Rewriter, out: bytearray) -> int:
    """Copy one constant expression at ``pos`` into ``out``, renumbering ``ref.func``."""
    while True:
        op = body[pos]
        if op == 0x0B:
            out.append(op)
            return pos + 1
        if op == 0xD2:
            idx, pos = read_u32(body, pos + 1)
            out += b"\xd2" + encode_u32(rw.func(idx))
            continue
        start = pos
        if op in (0x41, 0x42, 0x23):
            pos = skip_leb(body, pos + 1)
        elif op == 0x43:
            pos += 5
        elif op == 0x44:
            pos += 9
        elif op == 0xD0:
            pos += 2
        elif op == 0xFD and body[pos + 1] == 12:
            pos += 18
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended constant expressions
            pos += 1
        else:
            raise InstrumentError(f"unsupported constant expression {op:#04x}")
        out += body[start:pos]


def _rewrite_exports(body: bytes, rw: _Rewriter) -> bytes:
    count, pos = _vec_count(body)
    out = bytearray(body[:pos])
    for _ in range(count):
        name_end = skip_name(body, pos)
        out += body[pos:name_end]
        kind = body[name_end]
        idx, pos = read_u32(body, name_end + 1)
        out.append(kind)
        out += encode_u32(rw.func(idx) if kind == 0 else idx)
    return bytes(out)


def _rewrite_globals(body: bytes, rw: _Rewriter, extra: bytes) -> bytes:
    count, pos = _vec_count(body)
    out = bytearray(encode_u32(count + (1 if extra else 0)))
    for _ in range(count):
        end = _skip_globaltype(body, pos)
        out += body[pos:end]
        pos = _rewrite_const_expr(body, end, rw, out)
    return bytes(out + extra)


def _rewrite_elements(body: bytes, rw: _Rewriter) -> bytes:
    count, pos = _vec_count(body)
    out = bytearray(body[:pos])
    for _ in range(count):
        flags, pos = read_u32(body, pos)
        out += encode_u32(flags)
        if flags > 7:
            raise InstrumentError(f"unsupported element segment flags {flags}")
        if flags & 2 and not flags & 1:  # explicit table index
            start = pos
            pos = skip_leb(body, pos)
            out += body[start:pos]
        if not flags & 1:  # active: an offset expression
            pos = _rewrite_const_expr(body, pos, rw, out)
        if flags & 3:  # elemkind or reftype
            out.append(body[pos])
            pos += 1
        n, pos = read_u32(body, pos)
        out += encode_u32(n)
        for _ in range(n):
            if flags & 4:
                pos = _rewrite_const_expr(body, pos, rw, out)
            else:
                idx, pos = read_u32(body, pos)
                out += encode_u32(rw.func(idx))
    return bytes(out)


def _rewrite_code(body: bytes, rw: _Rewriter, extra: bytes) -> bytes:
    count, pos = _vec_count(body)
    out = bytearray(encode_u32(count + (1 if extra else 0)))
    for _ in range(count):
        size, start = read_u32(body, pos)
        pos = start + size
        if pos > len(body):
            raise InstrumentError("truncated function body")
        new = rw.body(body[start:pos])
        out += encode_u32(len(new)) + new
    if pos != len(body):
        raise InstrumentError("trailing bytes in the code section")
    if extra:
        out += encode_u32(len(extra)) + extra
    return bytes(out)


def _rewrite_names(body: bytes, rw: _Rewriter) -> bytes:
    pos = skip_name(body, 0)
    if body[:pos] != b"\x04name":
        return body
    out = bytearray(body[:pos])
    while pos < len(body):
        sub = body[pos]
        size, start = read_u32(body, pos + 1)
        end = start + size
        content = body[start:end]
        if sub in (1, 2, 3):
            new = bytearray()
            count, p = _vec_count(content)
            new += encode_u32(count)
            for _ in range(count):
                idx, p = read_u32(content, p)
                new += encode_u32(rw.func(idx))
                if sub == 1:
                    q = skip_name(content, p)
                else:  # an inner name map
                    inner, q = read_u32(content, p)
                    for _ in range(inner):
                        q = skip_name(content, skip_leb(content, q))
                new += content[p:q]
                p = q
            content = bytes(new)
        out.append(sub)
        out += encode_u32(len(content)) + content
        pos = end
    return bytes(out)


# -- the entry point ------------------------------------------------------------------


def instrument(wasm: bytes, fuel: bool = True, grow: bool = True, initial_fuel: int = 0) -> bytes:
    """``wasm`` with fuel checks and/or the ``memory.grow`` hook (see the module docs).

    :param initial_fuel: the fuel every instance starts with (below 2**31);
        with 0 the first check calls ``refuel``.

    :raises InstrumentError: the module does not parse, or uses a feature the
        rewriter does not support.
    """
    try:
        return _instrument(bytes(wasm), fuel, grow, initial_fuel)
    except IndexError:
        raise InstrumentError("truncated module") from None
    except InstrumentError:
        raise
    except BinaryError as exc:  # from the shared reader: say it as the rewriter's error
        raise InstrumentError(str(exc)) from None


def _instrument(wasm: bytes, fuel: bool, grow: bool, initial_fuel: int) -> bytes:
    if not 0 <= initial_fuel < 1 << 31:
        raise ValueError("initial_fuel must be in [0, 2**31)")
    sections = read_sections(wasm)
    info = _Module(sections)
    grow = grow and info.memories > 0
    if not fuel and not grow:
        return wasm
    new_types = bytearray()
    new_imports = bytearray()
    n_types = info.types
    refuel = grow_refused = -1
    n_new_funcs = 0
    if fuel:
        new_types += b"\x60\x00\x01\x7f"  # () -> i32
        new_imports += _import_entry(REFUEL, n_types)
        refuel = info.func_imports + n_new_funcs
        n_types += 1
        n_new_funcs += 1
    helper_type = None
    if grow:
        new_types += b"\x60\x02\x7f\x7f\x00"  # (i32, i32) -> ()
        new_imports += _import_entry(GROW_REFUSED, n_types)
        grow_refused = info.func_imports + n_new_funcs
        n_new_funcs += 1
        new_types += b"\x60\x01\x7f\x01\x7f"  # (i32) -> i32
        helper_type = n_types + 1
        n_types += 2
    grow_helper = info.func_imports + n_new_funcs + info.functions if grow else None
    fuel_global = info.global_imports + info.globals if fuel else None
    rw = _Rewriter(info.func_imports, n_new_funcs, fuel_global, refuel, grow_helper)
    helper_body = b""
    if grow:
        r = encode_u32(grow_refused)
        # (local $r i32) local.get 0; memory.grow; local.tee $r; i32.const -1; i32.eq;
        # if: local.get 0; memory.size; call grow_refused; end; local.get $r
        helper_body = (
            b"\x01\x01\x7f\x20\x00\x40\x00\x22\x01\x41\x7f\x46\x04\x40\x20\x00\x3f\x00\x10" + r + b"\x0b\x20\x01\x0b"
        )
    fuel_global_entry = b"\x7f\x01\x41" + encode_u32_padded(initial_fuel) + b"\x0b" if fuel else b""

    added_types = n_types - info.types
    present = {section_id for section_id, _ in sections}
    wanted: dict[int, bytes] = {}
    if _TYPE not in present:
        wanted[_TYPE] = encode_u32(added_types) + new_types
    if _IMPORT not in present:
        wanted[_IMPORT] = encode_u32(n_new_funcs) + new_imports
    if grow and _FUNCTION not in present:
        wanted[_FUNCTION] = b"\x01" + encode_u32(helper_type)
    if grow and _CODE not in present:
        wanted[_CODE] = b"\x01" + encode_u32(len(helper_body)) + helper_body
    if fuel and _GLOBAL not in present:
        wanted[_GLOBAL] = b"\x01" + fuel_global_entry

    out: list[tuple[int, bytes]] = []
    for section_id, body in sections:
        if section_id != 0:
            for missing in sorted(wanted, key=_ORDER.__getitem__):
                if _ORDER[missing] < _ORDER[section_id]:
                    out.append((missing, wanted.pop(missing)))
        if section_id == _TYPE:
            count, pos = _vec_count(body)
            body = encode_u32(count + added_types) + body[pos:] + new_types
        elif section_id == _IMPORT:
            count, pos = _vec_count(body)
            body = encode_u32(count + n_new_funcs) + body[pos:] + new_imports
        elif section_id == _FUNCTION and grow:
            count, pos = _vec_count(body)
            body = encode_u32(count + 1) + body[pos:] + encode_u32(helper_type)
        elif section_id == _GLOBAL:
            body = _rewrite_globals(body, rw, fuel_global_entry)
        elif section_id == _EXPORT:
            body = _rewrite_exports(body, rw)
        elif section_id == _START:
            idx, _ = read_u32(body, 0)
            body = encode_u32(rw.func(idx))
        elif section_id == _ELEMENT:
            body = _rewrite_elements(body, rw)
        elif section_id == _CODE:
            body = _rewrite_code(body, rw, helper_body if grow else b"")
        elif section_id == 0:
            try:
                body = _rewrite_names(body, rw)
            except (InstrumentError, IndexError):
                continue  # a name section we cannot renumber: drop it (names are only for messages)
        out.append((section_id, body))
    for missing in sorted(wanted, key=_ORDER.__getitem__):
        out.append((missing, wanted[missing]))
    if _CODE not in present and info.functions:
        raise InstrumentError("function section without code section")
    result = bytearray(wasm[:8])
    for section_id, body in out:
        result.append(section_id)
        result += encode_u32(len(body)) + body
    return bytes(result)


def _import_entry(name: str, type_index: int) -> bytes:
    module = METER_MODULE.encode()
    field = name.encode()
    return encode_u32(len(module)) + module + encode_u32(len(field)) + field + b"\x00" + encode_u32(type_index)


__all__ = ["BULK_COST", "GROW_REFUSED", "METER_MODULE", "REFUEL", "InstrumentError", "instrument"]
