"""State keys: what a key is, how a store with a key size limit names a long one, how keys are shown.

**A key is text.** A guest names a state key with bytes that must be valid
UTF-8 (the ABI refuses others with ``UnknownError``: docs/abi.md), so every
key essa stores is a ``str`` whose UTF-8 encoding exists: no lone surrogates,
which is what Python makes of bytes that are not UTF-8 (``surrogateescape``,
as in ``sys.argv``). The API, the CLI, the control service and every store
refuse any other key with :class:`~essa.errors.InvalidKey`, one line, so all
stores agree on what can be stored and a listing never meets a key its
answer cannot carry. A store key is the guest's key under its namespace,
``{namespace}/data/{key}`` (:func:`essa.cluster.deployments.data_prefix`); the
guest's part may be empty and as long as the message size limit.

**Long keys in stores with a key size limit.** LMDB keys are at most 511
bytes. essa's LMDB store and the Anna plugin's durable KVS nodes keep a key
under :func:`record_key` of its UTF-8 bytes: the bytes themselves when
shorter than 511, else their first 479 bytes followed by their 32-byte
SHA-256 (exactly 511 bytes, so never equal to a key kept verbatim). Each
store keeps the full key beside such a record so that listings return it.

**Listings.** :meth:`essa.state.store.Store.keys` returns keys sorted (code point
order, which is their UTF-8 byte order). A store that finds records it
cannot name returns a :class:`KeyList` saying how many and why, instead of
failing the listing.

**Showing keys.** :func:`shown` prints a key unambiguously on one line:
as it is when that is plain, else as a JSON string.
"""

from __future__ import annotations

import hashlib
import json

from essa.errors import InvalidKey

#: The longest record key of a store that keeps keys in LMDB (LMDB's limit), in bytes.
RECORD_KEY_LIMIT = 511
#: How many leading bytes of a longer key its record key keeps (before the 32-byte digest).
RECORD_KEY_KEPT = RECORD_KEY_LIMIT - 32


def quoted(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message (``repr``), shortened if long: ``'kkkk...'... (600 characters)``."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def encode_text(key: object, what: str = "state key") -> bytes:
    """The UTF-8 bytes of ``key`` (which may be empty: a prefix, or a guest's empty key).

    :raises essa.errors.InvalidKey: ``key`` is not a ``str``, or holds a lone
        surrogate (bytes that were not UTF-8, decoded with ``surrogateescape``).
    """
    if not isinstance(key, str):
        raise InvalidKey(f"a {what} is text, not {type(key).__name__}")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(f"the {what} {quoted(key)} is not UTF-8 text (character {exc.start} is "
                         f"{key[exc.start]!r}, bytes that are not UTF-8); state keys are UTF-8, as guests "
                         "name them") from None


def encode_key(key: object) -> bytes:
    """The UTF-8 bytes of the store key ``key``, for a store to keep.

    :raises essa.errors.InvalidKey: ``key`` is empty, not a ``str``, or not UTF-8 text.
    """
    raw = encode_text(key, "store key")
    if not raw:
        raise InvalidKey("the empty key cannot be stored")
    return raw


def is_text(key: object) -> bool:
    """Whether ``key`` is a ``str`` that is UTF-8 text (what a reply can carry and a store keep)."""
    try:
        encode_text(key)
    except InvalidKey:
        return False
    return True


def record_key(raw: bytes) -> bytes:
    """The record key under which a store limited to 511-byte keys (LMDB) keeps the key ``raw``.

    ``raw`` itself when shorter than :data:`RECORD_KEY_LIMIT`; else its first
    :data:`RECORD_KEY_KEPT` bytes and its SHA-256 (exactly 511 bytes, so it
    never equals a key kept verbatim, and two keys sharing their first 479
    bytes still get distinct record keys). Every process maps a key the same way.
    """
    if len(raw) < RECORD_KEY_LIMIT:
        return raw
    return raw[:RECORD_KEY_KEPT] + hashlib.sha256(raw).digest()


def is_shortened(record: bytes) -> bool:
    """Whether the record key ``record`` stands for a longer key (see :func:`record_key`)."""
    return len(record) == RECORD_KEY_LIMIT


class KeyList(list):
    """A listing of keys (a ``list[str]``), and how many keys it left out because it could not name them.

    :ivar unlisted: keys that exist but could not be named (0 when the listing is complete).
    :ivar why: one line saying why they were left out, and what still works ("" when complete).
    """

    def __init__(self, keys=(), unlisted: int = 0, why: str = "") -> None:
        super().__init__(keys)
        self.unlisted = unlisted
        self.why = why


def _plain(key: str) -> bool:
    return bool(key) and key.isprintable() and key == key.strip() and not key.startswith('"')


def _escape(code: int) -> str:
    if code > 0xFFFF:  # a UTF-16 surrogate pair, as JSON spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def shown(key: str) -> str:
    """``key`` on one line, unambiguously: as it is, or as a JSON string (starting with ``"``).

    A key is shown as it is when it is non-empty, printable, has no leading
    or trailing whitespace and does not start with ``"``; any other key as a
    JSON string (``json.loads`` gives the key back) whose non-printable
    characters are ``\\u`` escapes. So a line starting with ``"`` is always a
    quoted key.
    """
    if _plain(key):
        return key
    out = []
    for ch in key:
        if ch == " " or (ch.isprintable() and ch not in '"\\'):
            out.append(ch)
        elif ch in '"\\\n\r\t\b\f':
            out.append(json.dumps(ch)[1:-1])
        else:
            out.append(_escape(ord(ch)))
    return '"' + "".join(out) + '"'


__all__ = ["KeyList", "RECORD_KEY_KEPT", "RECORD_KEY_LIMIT", "encode_key", "encode_text", "is_shortened",
           "is_text", "quoted", "record_key", "shown"]
