"""Versions through the command line and Python, in real processes sharing one store:
unchanged deploys, function changes, rollback, tags, removing one version."""

from __future__ import annotations

import json

import pytest

import essa
from essa.testing.conformance.wat import module

from .test_cli import assert_one_line_error
from .test_cli import essa as run_essa
from .test_service import STATEFUL, ok

pytest.importorskip("essa_lmdb")

#: The conformance helpers only (echo, trap, ...): no `remember`.
PLAIN = module()


@pytest.fixture
def modules(tmp_path):
    paths = {}
    for name, wasm in (("stateful", STATEFUL), ("plain", PLAIN)):
        paths[name] = tmp_path / f"{name}.wasm"
        paths[name].write_bytes(wasm)
    return {k: str(v) for k, v in paths.items()}


def test_versions_round_trip_through_the_cli(modules):
    assert ok(run_essa("deploy", modules["stateful"], "--name", "memo")).startswith("deployed memo@1: module ")
    assert ok(run_essa("deploy", modules["stateful"], "--name", "memo")) == "unchanged: memo@1\n"
    second = ok(run_essa("deploy", modules["plain"], "--name", "memo"))
    assert second.startswith("deployed memo@2") and second.rstrip().endswith("(removed: remember since memo@1)")
    assert_one_line_error(run_essa("call", "memo", "remember", "x"), "memo@2 has no function 'remember'")

    back = ok(run_essa("rollback", "memo"))
    assert back.startswith("rolled back memo to memo@1: module ") and "(added: remember since memo@2)" in back
    assert ok(run_essa("call", "memo", "remember", "x")) == "x"
    assert ok(run_essa("rollback", "memo", "--to", "1")) == "unchanged: memo means memo@1 already\n"
    assert_one_line_error(run_essa("rollback", "memo"), "memo@1 is the oldest version of memo")

    assert ok(run_essa("tag", "memo@2", "beta")) == "tagged memo@2 beta: memo@beta means it\n"
    assert ok(run_essa("call", "memo@beta", "echo", "hi")) == "hi"
    assert_one_line_error(run_essa("call", "memo@beta", "remember", "x"), "no function 'remember'")
    listing = json.loads(ok(run_essa("ls", "--json")))
    assert [(d["name"], d["version"], d["latest"], d["tags"]) for d in listing] == [("memo", 1, 2, [])]
    versions = json.loads(ok(run_essa("ls", "memo", "--json")))
    assert [(v["version"], v["current"], v["tags"]) for v in versions] == [(1, True, []), (2, False, ["beta"])]
    table = ok(run_essa("ls", "memo"))
    assert "1 *" in table and "beta" in table

    assert_one_line_error(run_essa("rm", "memo@1"), "memo@1 is the version memo means now: roll back first")
    assert ok(run_essa("rm", "memo@beta")) == "removed memo@2 and its tag beta\n"
    assert_one_line_error(run_essa("call", "memo@2", "echo", "x"), "memo@2 was removed (versions: 1)")
    assert_one_line_error(run_essa("tag", "--rm", "memo", "beta"), "no tag 'beta'")
    assert_one_line_error(run_essa("tag", "memo", "latest"), "'latest' is not a valid tag")
    assert_one_line_error(run_essa("rm", "memo@1", "--purge"), "it applies to the whole deployment (memo)")
    assert ok(run_essa("deploy", modules["plain"], "--name", "memo")).startswith("deployed memo@3")


def test_versions_round_trip_between_the_cli_and_python(modules, engine_name):
    ok(run_essa("deploy", modules["stateful"], "--name", "memo"))
    with essa.connect(engine=engine_name) as es:
        deployed = es.deploy(modules["plain"], "memo")
        assert isinstance(deployed, essa.Deployed) and deployed.spec == "memo@2"
        assert (deployed.previous.spec, deployed.changes.removed) == ("memo@1", ("remember",))
        assert es.deploy(modules["plain"], "memo").unchanged
        assert es.tag("memo@1", "stable").tags == ("stable",)
        assert es.call("memo@stable", "remember", b"apple") == b"apple"
    assert "stable" in ok(run_essa("ls", "memo"))
    assert ok(run_essa("rollback", "memo", "--to", "stable")).startswith("rolled back memo to memo@1")
    with essa.connect(engine=engine_name) as es:
        assert es.deployment("memo").spec == "memo@1"
        assert [(d.version, d.current, d.tags) for d in es.versions("memo")] == [(1, True, ("stable",)),
                                                                                  (2, False, ())]
        assert es.rollback("memo", to=2).spec == "memo@2"
        assert es.untag("memo", "stable").spec == "memo@1"
        assert es.remove("memo@1") == 0
        assert [d.version for d in es.versions("memo")] == [2]
    assert_one_line_error(run_essa("call", "memo@stable", "echo", "x"), "has no tag 'stable' (tags: none)")
