"""A listing that meets a key it cannot represent answers the others and names the problem.

The control service (with a store plugin that names keys no answer can
carry) and the zenoh transport (an answer it cannot encode, over a real
zenoh session on loopback) never leave the asker waiting for an answer that
never comes, which the client reported as "no executor answered the request".
"""

from __future__ import annotations

import pytest

from essa.cluster import topics
from essa.cluster.control import ControlClient, ControlError, ControlService
from essa.cluster.programs import ProgramCache
from essa.state.keys import KeyList
from essa.state.lattice import LwwLattice
from essa.state.memory import MemoryStore
from essa.state.store import Store


class Haunted(MemoryStore):
    """A store plugin whose listing names one key with bytes that are not UTF-8, and reports one it left out."""

    def keys(self, prefix: str = "") -> list[str]:
        return KeyList([*super().keys(prefix), prefix + "bad\udcff"], 1, "1 written in an old format")


def service(store: Store, max_message_bytes: int = 1 << 20) -> ControlService:
    return ControlService(ProgramCache(None, store), max_message_bytes)


def test_a_listing_leaves_out_keys_it_cannot_carry_and_says_how_many_and_why():
    store = Haunted()
    store.put("ns/data/fine", LwwLattice(1, b"v"))
    answer = service(store).handle({"op": "state-keys", "namespace": "ns"})
    assert answer == {"ok": True, "keys": ["fine"], "unlisted": 2,
                      "why": "1 written in an old format; 1 that the store named with text that is not UTF-8"}


def test_state_requests_with_keys_that_are_not_utf8_text_are_refused_in_one_line():
    control = service(MemoryStore(), max_message_bytes=1024)
    for op in ("state-get", "state-delete"):
        answer = control.handle({"op": op, "namespace": "ns", "key": "bad\udcff"})
        assert answer["ok"] is False and answer["kind"] == "invalid"
        assert "is not UTF-8 text" in answer["error"] and "\n" not in answer["error"]
    answer = control.handle({"op": "state-keys", "namespace": "ns", "prefix": "\ud800"})
    assert answer["ok"] is False and answer["kind"] == "invalid"
    answer = control.handle({"op": "state-get", "namespace": "ns", "key": "k" * 1025})
    assert answer["ok"] is False and "exceeds the message size limit (1 KiB)" in answer["error"]
    assert control.handle({"op": "state-get", "namespace": "ns", "key": "k" * 1024}) == {"ok": True, "value": None}
    assert control.handle({"op": "state-get", "namespace": "ns", "key": ""}) == {"ok": True, "value": None}


def test_an_answer_zenoh_cannot_encode_comes_back_as_an_error_naming_why(zenoh_pair):
    a, b = zenoh_pair
    served = a.serve(topics.CONTROL, lambda request: {"ok": True, "keys": ["bad\udcff"]}, shared=True)
    try:
        client = ControlClient(b, timeout=30.0)
        with pytest.raises(ControlError) as info:
            client.request("state-keys", namespace="ns")
        assert "could not be sent" in str(info.value) and "surrogates not allowed" in str(info.value)
        assert "no executor answered" not in str(info.value)  # the answer came: an error, not silence
    finally:
        served.close()
