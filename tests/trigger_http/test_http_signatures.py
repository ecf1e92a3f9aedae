"""Functions with signatures, called by value from `essa call`, Python and HTTP, on every kind of setup.

Real processes everywhere: an embedded `essa serve` (its LMDB store shared
with the `essa` commands and this test's own embedded connection), a cluster
(`essa up --executors 2 --http`) and a secure cluster (`essa up --secure
--http`, every client with a certificate and a token, HTTP requests with
their bearer token). On each, modules of every kind: the C word count
(ESSA_SIGNATURE), its Rust twin and the Rust test function (#[essa_wrap]), its
TypeScript twin (AssemblyScript, @essa; its results and state checked against the C
one's on the README), a
hand-written WAT module with an `essa.signatures` custom section, the same
WAT module with its signatures declared in an essa.toml, and the upstream
test function, which has none and keeps taking and giving bytes.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")
pytest.importorskip("essa_lmdb", reason="essa-plugin-lmdb is not installed")

import essa  # noqa: E402
from essa.state.lattice import SetLattice  # noqa: E402
from essa.testing.conformance.wat import wat2wasm, wat_bytes  # noqa: E402
from essa.testing.ports import free_port  # noqa: E402

from .helpers import DEADLINE, ESSA, Server, request, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
U64 = struct.Struct("<Q")

SIGNATURES = [
    {"name": "echo", "params": [{"name": "x", "type": "u64"}], "result": "u64"},
    {"name": "swap", "params": [{"name": "a", "type": "u32"}, {"name": "flag", "type": "bool"}],
     "result": "tuple<bool,u32>"},
    {"name": "blob", "params": [{"name": "data", "type": "bytes"}], "result": "bytes"},
]
#: The functions: echo and blob give back their argument bytes (a u64; a length and bytes), swap
#: reads a u32 and a bool and answers them the other way round; raw has no signature (bytes in, out).
WAT_BODY = """
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func $echo (param $len i32)
    (if (call $get_args (i32.const 1024) (local.get $len)) (then unreachable))
    (drop (call $set_result (i32.const 1024) (local.get $len))))
  (func (export "__essa_wrapper__echo") (param $len i32) (call $echo (local.get $len)))
  (func (export "__essa_wrapper__blob") (param $len i32) (call $echo (local.get $len)))
  (func (export "__essa_wrapper__raw") (param $len i32) (call $echo (local.get $len)))
  (func (export "__essa_wrapper__swap") (param $len i32)
    (if (i32.ne (local.get $len) (i32.const 5)) (then unreachable))
    (drop (call $get_args (i32.const 1024) (i32.const 5)))
    (i32.store8 (i32.const 2048) (i32.load8_u (i32.const 1028)))
    (i32.store (i32.const 2049) (i32.load (i32.const 1024)))
    (drop (call $set_result (i32.const 2048) (i32.const 5))))
  (func (export "_start"))
"""
LINES = "".join(json.dumps(s, separators=(",", ":")) + "\n" for s in SIGNATURES).encode()
#: The WAT module with its signatures in a custom section (the annotation wat2wasm understands).
TYPED_WAT = wat2wasm(f'(module (@custom "essa.signatures" "{wat_bytes(LINES)}") {WAT_BODY})')
#: The same functions without the section; their signatures come from ESSA_TOML at deploy.
PLAIN_WAT = wat2wasm(f"(module {WAT_BODY})")
ESSA_TOML = """\
[project]
name = "wat"            # not read: only [functions.NAME] tables are

[functions.echo]
params = [{ name = "x", type = "u64" }]
result = "u64"

[functions.raw]         # raw echoes its bytes: a string in, the same string out
params = [{ name = "text", type = "string" }]
result = "string"
"""
WORD_COUNT = ["count_lines(text: string) -> u64", "count_words(text: string) -> u64", "vocabulary() -> list<string>"]
JSON = {"content-type": "application/json"}


class Setup:
    """Where the calls go, and how each kind of client reaches it."""

    url: str
    connect_args: tuple[str, ...] = ()

    def __init__(self, tmp: Path, engine: str) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "ESSA_HOME": str(tmp / "home"), "ESSA_ENGINE": engine}
        self.server: Server | None = None
        self.engine = engine

    def essa(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``essa COMMAND ARGS`` as a client of this setup (its endpoint, certificate and token)."""
        result = subprocess.run([*ESSA, command, *args, *self.connect_args], capture_output=True, text=True,
                                timeout=DEADLINE, env=self.env)
        assert "Traceback" not in result.stderr, result.stderr
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def connect(self) -> essa.Connection:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None):
        return request(self.url, "POST", path, body, {**self.headers(), **(headers or {})})

    def stop(self) -> None:
        if self.server is not None:
            assert self.server.stop() == 0, self.server.log_text()
            assert "Traceback" not in self.server.log_text()


class Embedded(Setup):
    """`essa serve` on this machine's LMDB store, which the commands and :meth:`connect` share."""

    def __init__(self, tmp: Path, engine: str) -> None:
        super().__init__(tmp, engine)
        self.server = Server([*ESSA, "serve", "--listen", "127.0.0.1:0"], env=self.env)
        self.url = self.server.url

    def connect(self) -> essa.Connection:
        return essa.connect(engine=self.engine, store_options={"path": str(self.tmp / "home" / "lmdb")})


class Cluster(Setup):
    """`essa up --executors 2 --http`: a scheduler, two executor processes and an HTTP server."""

    def __init__(self, tmp: Path, engine: str) -> None:
        super().__init__(tmp, engine)
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.connect_args = ("--connect", self.endpoint, "--timeout", "60")
        self.server = Server([*ESSA, "up", "--executors", "2", "--listen", self.endpoint, "--http",
                              f"127.0.0.1:{free_port()}"], env=self.env)
        self.url = self.server.url
        wait_until(lambda: request(self.url, "GET", "/healthz").status == 200, "the cluster to answer /healthz")

    def connect(self) -> essa.Connection:
        return essa.connect(self.endpoint, timeout=60)


class Secure(Setup):
    """`essa up --secure --http`: mutual TLS for every process, a token for every client and request."""

    def __init__(self, tmp: Path, engine: str) -> None:
        from essa.security import tokens

        super().__init__(tmp, engine)
        self.endpoint = f"tls/127.0.0.1:{free_port()}"
        self.connect_args = ("--connect", self.endpoint, "--timeout", "60")
        security = tmp / "security"
        self.server = Server([*ESSA, "up", "--secure", "--executors", "2", "--listen", self.endpoint, "--security-dir",
                              str(security), "--http", f"127.0.0.1:{free_port()}"], env=self.env)
        self.url = self.server.url
        wait_until(lambda: request(self.url, "GET", "/healthz").status == 200, "the secure cluster to answer")
        self.token = tokens.create(security / tokens.PRIVATE_KEY, deployments=["*"])
        certs = security / "certs"
        self.tls = essa.TlsFiles(str(security / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))
        self.env.update(ESSA_TLS_CA=self.tls.ca, ESSA_TLS_CERT=self.tls.cert, ESSA_TLS_KEY=self.tls.key,
                        ESSA_TOKEN=self.token)

    def connect(self) -> essa.Connection:
        return essa.connect(self.endpoint, timeout=60, tls=self.tls, token=self.token)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module", params=["embedded", "cluster", "secure"])
def setup(request, tmp_path_factory, engine_name):
    kind = {"embedded": Embedded, "cluster": Cluster, "secure": Secure}[request.param]
    started = kind(tmp_path_factory.mktemp(request.param), engine_name)
    try:
        for name, module in (("wc", "word-count.wasm"), ("wcr", "word-count-rust.wasm"), ("wct", "word-count-ts.wasm"),
                             ("tfr", "test-function-rust.wasm"), ("tf", "test-function.wasm")):
            started.essa("deploy", str(EXAMPLES / module), "--name", name)
        (started.tmp / "typed.wasm").write_bytes(TYPED_WAT)
        (started.tmp / "plain.wasm").write_bytes(PLAIN_WAT)
        (started.tmp / "essa.toml").write_text(ESSA_TOML)
        started.essa("deploy", str(started.tmp / "typed.wasm"), "--name", "wat")
        started.essa("deploy", str(started.tmp / "plain.wasm"), "--name", "watt", "--signatures",
                     str(started.tmp / "essa.toml"))
        yield started
    finally:
        started.stop()


def test_the_command_line_shows_signatures_and_calls_by_value(setup):
    for name in ("wc", "wcr", "wct"):  # the C word count and its Rust and TypeScript twins
        assert setup.essa("functions", name).stdout.splitlines() == WORD_COUNT
        assert setup.essa("call", name, "count_words", "the quick brown fox").stdout == "4\n"
        assert setup.essa("call", name, "count_lines", "a b\nc").stdout == "3\n"
        called = json.loads(setup.essa("call", name, "count_words", "to be", "--json").stdout)
        assert called == {"deployment": f"{name}@1", "function": "count_words", "result": 2}
        assert "quick" in json.loads(setup.essa("call", name, "vocabulary").stdout)
    listed = json.loads(setup.essa("functions", "wc", "--json").stdout)
    assert listed[1] == {"name": "count_words", "params": [{"name": "text", "type": "string"}], "result": "u64"}
    assert setup.essa("call", "tfr", "repeat_string", "ab", "3").stdout == "ababab\n"
    assert setup.essa("call", "wat", "swap", "7", "true").stdout == "[true, 7]\n"
    assert json.loads(setup.essa("call", "wat", "blob", "hi", "--json").stdout)["result"] == {"base64": "aGk="}
    assert setup.essa("call", "watt", "raw", "from essa.toml").stdout == "from essa.toml\n"
    assert setup.essa("functions", "watt").stdout.splitlines() == [
        "blob", "echo(x: u64) -> u64", "raw(text: string) -> string", "swap"]  # a name alone: bytes in, out

    wrong = setup.essa("call", "wc", "count_words", "a", "b", check=False)
    assert (wrong.returncode, wrong.stderr) == (
        1, "essa: error: count_words: takes 1 argument (count_words(text: string) -> u64), got 2\n")
    as_json = setup.essa("call", "wat", "echo", "abc", "--json", check=False)
    assert as_json.returncode == 1 and as_json.stdout == ""
    assert json.loads(as_json.stderr) == {"error": 'echo: parameter x: expected u64 (a whole number), got "abc"',
                                          "kind": "bad-argument"}

    # The upstream test function has no signature: bytes in, bytes out, as ever.
    assert "to_uppercase" in setup.essa("functions", "tf").stdout.splitlines()
    assert setup.essa("call", "tf", "to_uppercase", "--args", "string", "foo", "--result", "string").stdout == "FOO\n"
    raw = json.loads(setup.essa("call", "tf", "to_uppercase", "--args", "string", "ab", "--json").stdout)
    assert raw["result"] == {"base64": base64.b64encode(U64.pack(2) + b"AB").decode()}


def test_the_typescript_word_count_gives_the_c_ones_results_and_state(setup):
    """examples/word-count-ts.wasm beside examples/word-count.wasm, each in a fresh deployment (its own
    namespace): count_lines of the README from the command line, Python and HTTP; the same results, the
    same vocabulary, the same state."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    seen = {}
    for name, module in (("readme-c", "word-count.wasm"), ("readme-ts", "word-count-ts.wasm")):
        setup.essa("deploy", str(EXAMPLES / module), "--name", name)
        cli = setup.essa("call", name, "count_lines", f"@{readme}").stdout
        http = setup.post(f"/v1/functions/{name}/count_lines", text.encode(), {"content-type": "text/plain"})
        assert http.status == 200, http.body
        with setup.connect() as es:
            python = es.call(name, "count_lines", text)
            vocabulary = es.call(name, "vocabulary")
            state = es.state(name).get("vocab")
        seen[name] = (int(cli), python, http.json(), vocabulary, state)
    assert seen["readme-ts"] == seen["readme-c"]
    words, _, _, vocabulary, state = seen["readme-c"]
    assert words > 5000 and len(vocabulary) > 1000 and vocabulary == sorted(vocabulary, key=str.encode)
    assert state == SetLattice({word.encode() for word in vocabulary})


def test_python_calls_by_value_and_bytes_still_pass(setup):
    with setup.connect() as es:
        assert es.call("wc", "count_words", "one two three") == 3
        assert es.call("wcr", "count_words", text="one two") == 2
        vocabulary = es.function("wc", "vocabulary")
        assert str(vocabulary.signature) == "vocabulary() -> list<string>" and "one" in vocabulary()
        assert es.call("wat", "swap", 7, True) == (True, 7)
        assert es.call("wat", "blob", data=b"\x00\xff") == b"\x00\xff"
        assert es.call("tfr", "repeat_string", "x", count=2) == "xx"
        assert es.call("wc", "count_words", essa.encode("string", "a b")) == U64.pack(2)  # raw, as before
        assert es.call("tf", "to_uppercase", essa.encode("string", "ok")) == essa.encode("string", "OK")
        with pytest.raises(essa.ArgumentError, match="^count_words: parameter text: expected string, got 3$"):
            es.call("wc", "count_words", 3)
        with pytest.raises(essa.ArgumentError, match="swap: parameter a: expected u32 .0 to 4294967295., got -1"):
            es.call("wat", "swap", -1, True)
        with pytest.raises(essa.ArgumentError, match="to_uppercase .deployment tf@1. has no signature"):
            es.call("tf", "to_uppercase", "foo")
        future = es.function("wat", "echo").call_async(41)
        assert future.result(DEADLINE) == 41


def test_http_takes_json_text_and_bytes_by_the_signature(setup):
    count = "/v1/functions/wc/count_words"
    for body in (b'["the quick fox"]', b'{"text": "the quick fox"}'):
        answer = setup.post(count, body, JSON)
        assert (answer.status, answer.json()) == (200, 3)
    assert setup.post("/v1/functions/wcr/count_lines", "a\nb c".encode(), {"content-type": "text/plain"}).json() == 3
    assert "quick" in setup.post("/v1/functions/wc/vocabulary", b"").json()
    assert setup.post("/v1/functions/wat/swap", b"[7, true]", JSON).json() == [True, 7]
    blob = setup.post("/v1/functions/wat/blob", b"\x00\xff", {"content-type": "application/octet-stream"})
    assert blob.json() == {"base64": "AP8="}
    assert setup.post("/v1/functions/tfr/repeat_string", b'{"string": "ab", "count": 2}', JSON).json() == "abab"
    assert setup.post("/v1/functions/watt/echo", b"[5]", JSON).json() == 5

    wrong = setup.post(count, b"[3]", JSON)
    assert (wrong.status, wrong.json()) == (400, {"error": "count_words: parameter text: expected string, got 3",
                                                  "kind": "bad-argument"})
    assert setup.post(count, b'{"txt": "a"}', JSON).json()["error"] == "count_words: no parameter 'txt' (parameters: text)"
    assert setup.post(count, b"[1,", JSON).status == 400
    assert setup.post("/v1/functions/wat/swap", b"7", {"content-type": "text/plain"}).status == 415
    assert setup.post(count, b"x", {"content-type": "image/png"}).status == 415

    # Raw bytes: application/x-bincode for a function with a signature (checked against it), any body without one.
    bincode = {"content-type": "application/x-bincode"}
    raw = setup.post(count, essa.encode("string", "a b c"), bincode)
    assert (raw.status, raw.headers["content-type"], raw.body) == (200, "application/x-bincode", U64.pack(3))
    assert setup.post(count, b"\x05", bincode).json()["kind"] == "bad-argument"
    upper = setup.post("/v1/functions/tf/to_uppercase", essa.encode("string", "http"), {"content-type": "x/y"})
    assert (upper.status, upper.headers["content-type"], upper.body) == (200, "x/y", essa.encode("string", "HTTP"))
