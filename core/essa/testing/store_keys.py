"""What every store must do with keys, for the tests of essa's stores and of store plugins.

:data:`KEYS` generates keys as guests and users name them: text of 0 to
several KB, "/" and line breaks, bytes that are not UTF-8 (as Python
decodes them: lone surrogates), lone surrogates themselves, and long keys
that share their first 479 bytes (what LMDB record keys keep of them).
:func:`check_round_trip` puts such keys into a store under a fresh
namespace and checks that the store keeps every UTF-8 key exactly (get,
list, list by prefix, delete) and refuses every other key with
:class:`~essa.errors.InvalidKey`, without disturbing the others.

Needs pytest and hypothesis (``essa-wasm[test]`` or ``[conformance]``).
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import strategies as st

from essa.errors import InvalidKey
from essa.state.keys import RECORD_KEY_KEPT, is_text
from essa.state.lattice import LwwLattice
from essa.state.store import Store


def text_of_bytes(raw: bytes) -> str:
    """What Python makes of key bytes from outside (argv, a file): UTF-8, else lone surrogates."""
    return raw.decode("utf-8", "surrogateescape")


#: Long stems: keys built on one share their first 479 bytes (a 2-byte character across byte 479 in the second).
STEMS = ["s" * RECORD_KEY_KEPT, "s" * (RECORD_KEY_KEPT - 1) + "é", "é" * 240, "ü" * 300, "/" * 600]

KEY_PARTS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="/ab\n", max_size=40),
    st.binary(max_size=40).map(text_of_bytes),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.integers(0, 6000).map(lambda n: "x" * n),
    st.sampled_from(STEMS),
)
#: Keys relative to a namespace, as guests name them: concatenations of the parts above.
KEYS = st.lists(KEY_PARTS, min_size=1, max_size=3).map("".join)


def value(n: int) -> LwwLattice:
    """A distinct value for the ``n``-th key."""
    return LwwLattice(timestamp=n + 1, value=str(n).encode())


def check_round_trip(store: Store, keys: list[str], prefix_of: str = "") -> None:
    """Put each of the (distinct) ``keys`` under a fresh namespace of ``store`` and check what comes back.

    Keys that are not UTF-8 text are refused by every operation with
    :class:`~essa.errors.InvalidKey`; the others list (also by the prefix
    ``prefix_of`` of a key), read and delete back exactly, and nothing is
    left out of a listing.
    """
    ns = f"{uuid.uuid4().hex}/data/"
    stored: dict[str, int] = {}
    for n, key in enumerate(keys):
        full = ns + key
        if not is_text(key):
            for operation in (lambda: store.put(full, value(n)), lambda: store.get(full),
                              lambda: store.delete(full), lambda: store.keys(full)):
                with pytest.raises(InvalidKey, match="is not UTF-8 text"):
                    operation()
            continue
        store.put(full, value(n))
        stored[full] = n
    listed = store.keys(ns)
    assert listed == sorted(stored)
    assert getattr(listed, "unlisted", 0) == 0
    for full, n in stored.items():
        assert store.get(full) == value(n)
    if is_text(prefix_of):
        start = ns + prefix_of
        assert store.keys(start) == sorted(k for k in stored if k.startswith(start))
    gone = sorted(stored)[::2]
    for full in gone:
        assert store.delete(full) is True
        assert store.delete(full) is False
        assert store.get(full) is None
    assert store.keys(ns) == sorted(set(stored) - set(gone))
    for full in stored:
        store.delete(full)
    assert store.keys(ns) == []


__all__ = ["KEYS", "STEMS", "check_round_trip", "text_of_bytes", "value"]
