"""How a call's body becomes its arguments (essa_http.arguments), and answers leave in one write (OneWrite)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")

from essa.plugin import ArgumentError, Signature  # noqa: E402
from essa_http.arguments import BINCODE, answer_json, arguments, media_type  # noqa: E402
from essa_http.errors import HttpError  # noqa: E402
from essa_http.server import COALESCE, OneWrite  # noqa: E402


def signature(*params: tuple[str, str], result: str = "u64") -> Signature:
    return Signature.from_dict({"name": "f", "params": [{"name": n, "type": t} for n, t in params], "result": result})


TEXT = signature(("text", "string"))
DATA = signature(("data", "bytes"), result="bytes")
PAIR = signature(("a", "u8"), ("b", "string"))
NONE = signature(result="list<string>")


@pytest.mark.parametrize("header, media", [
    (None, ""), ("application/json", "application/json"), ("Application/JSON; charset=utf-8", "application/json"),
    ("text/plain;charset=UTF-8", "text/plain"),
])
def test_media_types_are_read_without_their_parameters(header, media):
    assert media_type(header) == media


@pytest.mark.parametrize("sig, media, body, expected", [
    (PAIR, "application/json", b'[1, "x"]', ((1, "x"), {})),
    (PAIR, "application/vnd.api+json", b'{"b": "x", "a": 1}', ((), {"b": "x", "a": 1})),
    (TEXT, "text/plain", "é".encode(), ((), {"text": "é"})),
    (TEXT, "", b"no type: octet-stream", ((), {"text": "no type: octet-stream"})),
    (DATA, "application/octet-stream", b"\xff\x00", ((), {"data": b"\xff\x00"})),
    (NONE, "application/json", b"", ((), {})),
    (NONE, "image/png", b"", ((), {})),  # no parameters, no body: any type
    (PAIR, BINCODE, b"\x01raw", ((b"\x01raw",), {})),  # the raw argument bytes
])
def test_bodies_become_arguments_by_their_type(sig, media, body, expected):
    assert arguments(sig, media, body) == expected


@pytest.mark.parametrize("sig, media, body, status, message", [
    (PAIR, "application/json", b"[1,", 400, "the body is not JSON"),
    (TEXT, "application/json", b'"bare"', None, r'expected the arguments as a JSON array or object, got "bare" '
                                                r'\(as \["bare"\] it would be the argument text\)'),
    (TEXT, "text/plain", b"\xff", 400, "parameter text: expected string, got a body that is not UTF-8 text"),
    (PAIR, "text/plain", b"x", 415, r"takes its arguments as JSON: send Content-Type application/json"),
    (TEXT, "image/png", b"x", 415, "Content-Type 'image/png' is not one a call takes"),
])
def test_bodies_that_do_not_fit_are_refused_in_one_line(sig, media, body, status, message):
    with pytest.raises((HttpError, ArgumentError), match=message) as caught:
        arguments(sig, media, body)
    if status is not None:
        assert caught.value.status == status
    else:
        assert caught.value.kind == "bad-argument"


def test_results_are_json_with_bytes_as_base64():
    assert answer_json(DATA, b"\x00\xff") == b'{"base64": "AP8="}'
    assert answer_json(NONE, ["é"]) == '["é"]'.encode()


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


def test_what_one_turn_of_the_loop_writes_leaves_in_one_write():
    async def main() -> Transport:
        inner = Transport()
        transport = OneWrite(inner, asyncio.get_running_loop())
        transport.write(b"head ")
        transport.write(b"body")
        assert inner.writes == []  # held until the turn ends
        await asyncio.sleep(0)
        transport.write(b"x" * (COALESCE + 1))  # a large body: no copy, sent after what was held
        transport.write(b"another head")
        transport.close()  # sends what is pending first
        assert transport.get_extra_info("peername") == "info peername"
        return inner

    inner = asyncio.run(main())
    assert inner.writes == [b"head body", b"x" * (COALESCE + 1), b"another head"] and inner.closed
