"""`POST /v1/dags/{name}`: a DAG called over HTTP, from a real `essa serve` process."""

from __future__ import annotations

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")
pytest.importorskip("essa_lmdb", reason="essa-plugin-lmdb is not installed")

from essa.testing.dag_modules import tags_module  # noqa: E402

from .helpers import essa, ok, request  # noqa: E402
from .test_http_trigger import assert_error, cli_error  # noqa: E402


def test_a_dag_answers_its_sinks_result_and_its_failures_like_a_call(servers, tmp_path):
    wasm = tmp_path / "tags.wasm"
    wasm.write_bytes(tags_module())
    ok(essa("deploy", str(wasm), "--name", "t"))
    ok(essa("dag", "create", "chain", "t.tag_a", "t.tag_b", "t.tag_c"))
    ok(essa("dag", "create", "fan", "t.tag_a", "t.tag_b", "t.tag_c", "t.echo", "-e", "t.tag_a:t.tag_b",
            "-e", "t.tag_a:t.tag_c", "-e", "t.tag_b:t.echo", "-e", "t.tag_c:t.echo"))
    ok(essa("dag", "create", "broken", "t.tag_a", "t.trap", "t.tag_c"))
    url = servers.start().url

    answer = request(url, "POST", "/v1/dags/chain", b"x")
    assert (answer.status, answer.body) == (200, b"xabc")
    assert answer.headers["content-type"] == "application/octet-stream"
    assert request(url, "POST", "/v1/dags/fan", b"x").body == b"xabxac"
    assert request(url, "POST", "/v1/dags/fan?consistency=repeatable-read", b"x").body == b"xabxac"
    assert_error(request(url, "POST", "/v1/dags/fan?consistency=serializable", b"x"), 400, "invalid",
                 "unknown consistency level 'serializable'")

    line = assert_error(request(url, "POST", "/v1/dags/broken", b"x"), 500, "trap", "DAG broken, stage t.trap: ")
    assert line == cli_error("dag", "call", "broken", "x")
    line = assert_error(request(url, "POST", "/v1/dags/nope", b"x"), 404, "not-found", "no DAG named 'nope'")
    assert line == cli_error("dag", "call", "nope", "x")
    assert request(url, "GET", "/v1/dags/chain").status == 405
    assert request(url, "POST", "/v1/dags/chain", b"y").body == b"yabc"  # still answers
