"""check_request: every malformed field of a call request is refused in one line naming it."""

from __future__ import annotations

import pytest

from essa.cluster.calls import MAX_NAME, call_request, check_request
from essa.cluster.deployments import MAX_RETRIES

GOOD = {"id": "caller/1", "reply_to": "essa/inbox/caller", "clock": 1_700_000_000_000_000_000,
        **call_request("m", "f", b"args", "ns", "run")}
OPTIONAL = {"argv": ["a", "b"], "stdin": True, "output": False, "adopt": True, "retries": MAX_RETRIES,
            "attempt": MAX_RETRIES + 1, "scheduler": "s1", "wasm": b"\0asm"}


@pytest.mark.parametrize("request_", [GOOD, {**GOOD, **OPTIONAL}, {k: v for k, v in GOOD.items() if k != "clock"}])
def test_a_well_formed_request_passes(request_):
    assert check_request(request_, "scheduler") is None


@pytest.mark.parametrize(("field", "bad", "named"), [
    ("id", None, "'id'"), ("id", "", "'id'"), ("id", "x" * (MAX_NAME + 1), "'id'"), ("id", 7, "'id'"),
    ("reply_to", "essa/calls", "'reply_to'"), ("reply_to", None, "'reply_to'"),
    ("module", None, "'module'"), ("function", b"f", "'function'"), ("namespace", "n" * (MAX_NAME + 1), "'namespace'"),
    ("run", "a/b", "'run'"), ("run", None, "'run'"),
    ("argv", "a b", "'argv'"), ("argv", ["a", 1], "'argv'"), ("argv", ["a\0b"], "'argv'"),
    ("stdin", 1, "'stdin'"), ("output", "yes", "'output'"), ("adopt", None, "'adopt'"),
    ("retries", -1, "'retries'"), ("retries", MAX_RETRIES + 1, "'retries'"), ("retries", True, "'retries'"),
    ("attempt", 1.0, "'attempt'"), ("attempt", MAX_RETRIES + 2, "'attempt'"),
    ("clock", -1, "'clock'"), ("clock", "now", "'clock'"),
    ("scheduler", "a/b", "'scheduler'"),
    ("args", "text", "'args'"), ("wasm", [1], "'wasm'"),
])
def test_a_malformed_field_is_refused_in_one_line_naming_it(field, bad, named):
    problem = check_request({**GOOD, **OPTIONAL, field: bad}, "scheduler")
    assert problem is not None and named in problem and "\n" not in problem


def test_a_missing_required_field_is_refused():
    for field in ("id", "reply_to", "module", "function", "namespace", "run"):
        problem = check_request({k: v for k, v in GOOD.items() if k != field}, "executor")
        assert problem is not None and repr(field) in problem


def test_sizes_and_oversized_requests_name_the_receiver():
    assert "of this executor" in check_request({**GOOD, "args": b"x" * 11}, "executor", max_message_bytes=10)
    assert "module of 11 bytes" in check_request({**GOOD, "wasm": b"x" * 11}, "scheduler", max_message_bytes=10)
    assert "scheduler's message size limit" in check_request({**GOOD, "oversized": 99}, "scheduler")
    assert check_request(["not", "a", "map"], "scheduler") == "not a call request"
