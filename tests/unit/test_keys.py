"""essa.keys: what a state key is, LMDB record keys of long keys, and how listings show keys."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from essa.errors import InvalidKey, StoreError
from essa.state.keys import (
    RECORD_KEY_KEPT,
    RECORD_KEY_LIMIT,
    KeyList,
    encode_key,
    encode_text,
    is_shortened,
    is_text,
    record_key,
    shown,
)


def test_record_keys_keep_short_keys_and_shorten_long_ones_to_511_bytes():
    assert record_key(b"k" * 510) == b"k" * 510
    for n in (511, 512, 5000):
        raw = b"k" * n
        assert record_key(raw) == raw[:479] + hashlib.sha256(raw).digest()
        assert is_shortened(record_key(raw)) and len(record_key(raw)) == RECORD_KEY_LIMIT
    assert not is_shortened(b"k" * 510)
    assert RECORD_KEY_KEPT == 479


@given(st.binary(min_size=RECORD_KEY_KEPT, max_size=RECORD_KEY_KEPT), st.binary(max_size=100), st.binary(max_size=100))
def test_long_keys_sharing_their_first_479_bytes_get_distinct_record_keys(stem, a, b):
    ka, kb = stem + b"-" * 40 + a, stem + b"-" * 40 + b
    assert (record_key(ka) == record_key(kb)) == (ka == kb)


def test_keys_are_utf8_text():
    assert encode_key("ключ/é") == "ключ/é".encode()
    assert encode_text("") == b"" and is_text("")
    for bad in ("\udcff", "a\ud800b", b"k", None):
        assert not is_text(bad)
        with pytest.raises(InvalidKey):
            encode_key(bad)
    with pytest.raises(InvalidKey, match="empty key"):
        encode_key("")
    with pytest.raises(InvalidKey) as info:
        encode_text("bad\udcff" + "x" * 500)
    assert str(info.value).startswith("the state key 'bad\\udcffxxx") and "character 3" in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
    assert issubclass(InvalidKey, StoreError)  # everything that handles a refused store operation handles it


@given(st.text())
def test_shown_keys_are_one_line_and_unambiguous(key):
    line = shown(key)
    assert "\n" not in line and "\r" not in line and all(ch.isprintable() or ch == " " for ch in line)
    if line.startswith('"'):
        assert json.loads(line) == key
    else:
        assert line == key


def test_plain_keys_are_shown_as_they_are():
    for key in ("vocab", "a/b/c", "with spaces inside", "ключ", "it's"):
        assert shown(key) == key
    assert shown("") == '""'
    assert shown('"q') == '"\\"q"'
    assert shown("a\u2028b") == '"a\\u2028b"'
    assert shown("x\U000e0001") == '"x\\udb40\\udc01"'  # a non-printable character beyond the BMP


def test_a_key_list_is_a_list_that_counts_what_it_left_out():
    keys = KeyList(["a", "b"], 2, "why")
    assert keys == ["a", "b"] and keys.unlisted == 2 and keys.why == "why"
    assert KeyList().unlisted == 0 and KeyList().why == ""
