"""A small module of functions to compose into DAGs, for tests and benchmarks.

:func:`tags_module` exports ``tag_a`` ... ``tag_z`` and ``tag_0`` ...
``tag_9`` (each returns its arguments with its letter or digit appended:
:data:`TAGS`), ``echo`` (its arguments), ``trap``
(traps), ``spin`` (loops until its time limit) and the other helpers of :func:`essa.testing.conformance.wat.module`.
So a chain ``tag_a -> tag_b`` called with ``x`` answers ``xab``, and a
fan-in's sink ``echo`` answers its inputs in the order of its in-edges.
"""

from __future__ import annotations

import string

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


__all__ = ["TAGS", "tags_module"]
