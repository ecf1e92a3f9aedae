"""Signatures at deploy time and from the command line: what is refused (in one line), what is declared, JSON errors.

The calls themselves, by value from every client on every setup, are
tests/trigger_http/test_http_signatures.py's (it needs essa-plugin-http).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import essa
from essa.testing.conformance.wat import wat2wasm, wat_bytes

ROOT = Path(__file__).resolve().parents[2]
ESSA = [sys.executable, "-m", "essa"]
U64 = struct.Struct("<Q")

ECHO = """
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "__essa_wrapper__echo") (param $len i32)
    (drop (call $get_args (i32.const 1024) (local.get $len)))
    (drop (call $set_result (i32.const 1024) (local.get $len))))
"""


def module(section: bytes | None = None, body: str = ECHO, start: bool = True) -> bytes:
    custom = f'(@custom "essa.signatures" "{wat_bytes(section)}")' if section is not None else ""
    main = '(func (export "_start"))' if start else ""
    return wat2wasm(f"(module {custom} {body} {main})")


def line(name: str = "echo", params=(("x", "u64"),), result: str = "u64") -> bytes:
    return json.dumps({"name": name, "params": [{"name": n, "type": t} for n, t in params], "result": result},
                      separators=(",", ":")).encode() + b"\n"


def essa_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*ESSA, *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def es(engine_name):
    with essa.connect(engine=engine_name, store="memory") as connection:
        yield connection


@pytest.mark.parametrize("section, why", [
    (b"{nope\n", "the module's essa.signatures section, line 1: not JSON"),
    (line(result="u65"), "line 1: the result of echo: 'u65' is not a type: unknown type 'u65'"),
    (line() + line(result="u32"), r"two different signatures of echo: echo\(x: u64\) -> u64 and echo\(x: u64\) -> u32"),
    (line("echoo"), r"declares echoo\(x: u64\) -> u64, but the module has no function 'echoo' \(functions: echo\)"),
    (b"\xff\n", "not UTF-8 text"),
])
def test_a_malformed_section_is_refused_at_deploy_in_one_line(es, section, why):
    with pytest.raises(essa.SignatureError, match=why) as caught:
        es.deploy(module(section), name="bad")
    assert "\n" not in str(caught.value)
    assert es.deployments() == []  # nothing was recorded


def test_the_command_line_refuses_it_in_one_line_or_as_json(tmp_path):
    path = tmp_path / "bad.wasm"
    path.write_bytes(module(line(result="u65")))
    refused = essa_cli("deploy", str(path), "--name", "bad", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("essa: error: the module's essa.signatures section, line 1: the result of echo")
    as_json = essa_cli("deploy", str(path), "--name", "bad", "--json", check=False)
    assert as_json.returncode == 1 and json.loads(as_json.stderr)["kind"] == "signature"
    missing = essa_cli("functions", "nothing-here", "--json", check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stderr) == {"error": "no deployment named 'nothing-here' (see `essa ls`)",
                                          "kind": "not-found"}


def test_declared_signatures_take_the_place_of_the_modules_own(es, tmp_path):
    typed = module(line())
    assert str(es.deploy(typed, name="own").signature("echo")) == "echo(x: u64) -> u64"
    toml = tmp_path / "essa.toml"
    toml.write_text('[functions.echo]\nparams = [{ name = "text", type = "string" }]\nresult = "string"\n')
    replaced = es.deploy(typed, name="declared", signatures=toml)
    assert str(replaced.signature("echo")) == "echo(text: string) -> string"
    assert es.call("declared", "echo", "as declared") == "as declared"
    es.deploy(module(), name="objects", signatures=[
        {"name": "echo", "params": [{"name": "pair", "type": "tuple<u8,bool>"}], "result": "tuple<u8,bool>"}])
    assert es.call("objects", "echo", [3, False]) == (3, False)
    with pytest.raises(essa.SignatureError, match=r"essa.toml, \[functions.nope\]"):
        toml.write_text('[functions.nope]\nparams = []\n')
        es.deploy(typed, name="declared", signatures=toml)
    with pytest.raises(essa.SignatureError, match="declares nope.. -> unit, but the module has no function 'nope'"):
        toml.write_text('[functions.nope]\nparams = []\nresult = "unit"\n')
        es.deploy(typed, name="declared", signatures=toml)
    with pytest.raises(essa.EssaError, match="missing.toml: cannot read: No such file or directory"):
        es.deploy(typed, name="declared", signatures=tmp_path / "missing.toml")
    assert [d.version for d in es.versions("declared")] == [1]


def test_a_module_without_functions_says_so_and_one_with_nothing_to_do_is_refused(tmp_path):
    only_start = tmp_path / "start.wasm"
    only_start.write_bytes(wat2wasm('(module (func (export "_start")))'))
    deployed = essa_cli("deploy", str(only_start), "--name", "job")
    assert deployed.stdout.startswith("deployed job@1: module ") and deployed.stdout.endswith(
        ", no functions (only _start)\n")
    nothing = tmp_path / "nothing.wasm"
    nothing.write_bytes(wat2wasm("(module)"))
    refused = essa_cli("deploy", str(nothing), "--name", "nothing", check=False)
    assert refused.returncode == 1 and refused.stderr == (
        "essa: error: the module exports no function to call (__essa_wrapper__NAME, of type (i32) -> ()) and no "
        "_start to run: nothing could use it\n")


def test_modules_without_signatures_deploy_and_call_as_before(es):
    upstream = (ROOT / "examples" / "test-function.wasm").read_bytes()
    deployment = es.deploy(upstream, name="tf")
    assert deployment.signatures == () and deployment.as_dict()["signatures"] == []
    assert es.call("tf", "to_uppercase", essa.encode("string", "abc")) == essa.encode("string", "ABC")
    assert es.function("tf", "to_uppercase").signature is None


def test_listings_carry_signatures_and_plugins_list_as_json(tmp_path):
    path = tmp_path / "typed.wasm"
    path.write_bytes(module(line()))
    essa_cli("deploy", str(path), "--name", "typed")
    [listed] = json.loads(essa_cli("ls", "--json").stdout)
    assert listed["signatures"] == [{"name": "echo", "params": [{"name": "x", "type": "u64"}], "result": "u64"}]
    assert essa_cli("call", "typed", "echo", "0x10").stdout == "16\n"
    plugins = json.loads(essa_cli("plugins", "--json").stdout)
    assert any(p["name"] == "builtin" and p["error"] is None for p in plugins)


def test_results_that_are_not_their_signatures_type_fail_clearly(es):
    # echo declared to return a string but echoing a u64's 8 bytes: not a string
    liar = es.deploy(module(line(result="string")), name="liar")
    assert liar.signature("echo") is not None
    with pytest.raises(essa.ResultError, match=r"echo: its result \(8 bytes\) ends before a whole string|echo: its "
                                               r"result is not a string: a length of .* bytes where 0 remain"):
        es.call("liar", "echo", 1)
