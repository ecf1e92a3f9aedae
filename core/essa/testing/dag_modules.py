"""A small module of functions to compose into DAGs, for tests and benchmarks.

:func:`tags_module` exports ``tag_a`` ... ``tag_z`` and ``tag_0`` ...
``tag_9`` (each returns its arguments with its letter or digit appended:
:data:`TAGS`), ``echo`` (its arguments), ``trap``
(traps), ``spin`` (loops until its time limit) and the other helpers of :func:`essa.testing.conformance.wat.module`.
So a chain ``tag_a -> tag_b`` called with ``x`` answers ``xab``, and a
fan-in's sink ``echo`` answers its inputs in the order of its in-edges.

:func:`state_module` exports two stages that use state, for the
consistency tests of DAGs: both take ``u32 LE key length, key, rest``
(:func:`state_args`); ``put_pass`` merges ``rest`` (an encoded lattice
value) into the key and answers its arguments, ``get_append`` answers its
arguments followed by ``u32 LE length, value`` of the key (length 0: absent).
A fan-in ``get_append`` reads the key of its first part.
"""

from __future__ import annotations

import string
import struct

from essa.testing.conformance.wat import module

#: The letters and digits of the ``tag_X`` functions.
TAGS = string.ascii_lowercase + string.digits


def tags_module() -> bytes:
    """The module (WAT assembled with wasmtime)."""
    tags = "\n".join(f"""
  (func (export "__essa_wrapper__tag_{c}") (param $len i32)
    (if (call $essa_get_args (i32.const 0x8000) (local.get $len)) (then unreachable))
    (i32.store8 (i32.add (i32.const 0x8000) (local.get $len)) (i32.const {ord(c)}))
    (drop (call $essa_set_result (i32.const 0x8000) (i32.add (local.get $len) (i32.const 1)))))"""
                     for c in TAGS)
    spin = """
  (func (export "__essa_wrapper__spin") (param i32) (loop $forever (br $forever)))"""
    return module(tags + spin)


def state_args(key: str, value: bytes = b"") -> bytes:
    """The arguments of :func:`state_module`'s functions: ``key`` and ``value`` (an encoded lattice value)."""
    data = key.encode()
    return struct.pack("<I", len(data)) + data + value


def state_module() -> bytes:
    """A module exporting ``put_pass`` and ``get_append`` (see the module documentation); 4 pages of memory."""
    body = """
  (func (export "__essa_wrapper__put_pass") (param $len i32)
    (local $klen i32)
    (if (call $essa_get_args (i32.const 0x10000) (local.get $len)) (then unreachable))
    (local.set $klen (i32.load (i32.const 0x10000)))
    (if (call $essa_put_lattice (i32.const 0x10004) (local.get $klen) (i32.add (i32.const 0x10004) (local.get $klen))
              (i32.sub (local.get $len) (i32.add (i32.const 4) (local.get $klen))))
      (then unreachable))
    (drop (call $essa_set_result (i32.const 0x10000) (local.get $len))))
  (func (export "__essa_wrapper__get_append") (param $len i32)
    (local $out i32) (local $rc i32)
    (if (call $essa_get_args (i32.const 0x10000) (local.get $len)) (then unreachable))
    (local.set $out (i32.add (i32.const 0x10000) (local.get $len)))
    (local.set $rc (call $essa_get_lattice_data (i32.const 0x10004) (i32.load (i32.const 0x10000))
                         (i32.add (local.get $out) (i32.const 4))
                         (i32.sub (i32.const 0x40000) (i32.add (local.get $out) (i32.const 4))) (local.get $out)))
    (if (i32.eq (local.get $rc) (i32.const -4)) (then (i32.store (local.get $out) (i32.const 0)))
      (else (if (local.get $rc) (then unreachable))))
    (drop (call $essa_set_result (i32.const 0x10000)
                (i32.add (i32.add (local.get $len) (i32.const 4)) (i32.load (local.get $out))))))"""
    return module(body, memory="4")


def appended_values(result: bytes, skip: int) -> list[bytes]:
    """The values ``get_append`` stages appended to a result whose first ``skip`` bytes are arguments."""
    values, offset = [], skip
    while offset < len(result):
        (length,) = struct.unpack_from("<I", result, offset)
        values.append(result[offset + 4:offset + 4 + length])
        offset += 4 + length
    return values


__all__ = ["TAGS", "appended_values", "state_args", "state_module", "tags_module"]
