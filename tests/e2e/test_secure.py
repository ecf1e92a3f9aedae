"""Secure clusters with real processes: mutual TLS, certificate roles, access tokens, rogue peers.

Each cluster is `essa up --secure` on a free loopback port, with its own
ESSA_HOME and security directory; clients are `essa` processes (or zenoh
peers opened here) given the certificate files `essa up` issued, or others.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from essa.testing.ports import free_port

from .test_cli import (
    EXPECTED_TEST_FUNCTION_OUTPUT,
    TEST_FUNCTION,
    assert_one_line_error,
)
from .test_service import STATEFUL

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")
pytest.importorskip("cryptography")

from essa.security import certs, tokens  # noqa: E402
from essa.security.tls import TlsFiles  # noqa: E402

ESSA = [sys.executable, "-m", "essa"]
DEADLINE = 90.0
_SECURITY_ENV = ("ESSA_TLS_CA", "ESSA_TLS_CERT", "ESSA_TLS_KEY", "ESSA_TOKEN", "ESSA_TOKEN_KEY", "ESSA_SECURITY_DIR")


class SecureCluster:
    """`essa up --secure` as a child process, and clients with its certificates."""

    def __init__(self, engine: str, tmp: Path, store_args: tuple[str, ...] = (), up_args: tuple[str, ...] = ()) -> None:
        self.endpoint = f"tls/127.0.0.1:{free_port()}"
        self.security = tmp / "security"
        self.log = tmp / "up.log"
        self.env = {k: v for k, v in os.environ.items() if k not in _SECURITY_ENV}
        self.env.update(ESSA_HOME=str(tmp / "home"), ESSA_ENGINE=engine)
        self.proc = subprocess.Popen(
            [*ESSA, "-v", *store_args, "up", "--secure", "--executors", "2", "--listen", self.endpoint,
             "--security-dir", str(self.security), *up_args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def files(self, name: str = "client") -> TlsFiles:
        prefix = self.security / "certs" / name
        return TlsFiles(str(self.security / "ca.pem"), f"{prefix}.pem", f"{prefix}.key")

    def token(self, **grant) -> str:
        return tokens.create(self.security / tokens.PRIVATE_KEY, **grant)

    def essa(self, *args: str, files: TlsFiles | None | str = "client", token: str | None = None,
             timeout: float = DEADLINE) -> subprocess.CompletedProcess:
        """``essa ARGS`` as a client with ``files`` (a certificate name, TlsFiles, or None) and ``token``."""
        env = dict(self.env)
        if isinstance(files, str):
            files = self.files(files)
        if files is not None:
            env.update(ESSA_TLS_CA=files.ca, ESSA_TLS_CERT=files.cert, ESSA_TLS_KEY=files.key)
        if token is not None:
            env["ESSA_TOKEN"] = token
        return subprocess.run([*ESSA, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def status(self) -> list[dict]:
        result = self.essa("status", "--connect", self.endpoint, "--json")
        assert result.returncode == 0, result.stderr + self.logs()
        return json.loads(result.stdout)

    def wait_ready(self, executors: int = 2) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.proc.poll() is None, f"essa up exited:\n{self.logs()}"
            # `essa up` says where everything is once its own readiness check passed; tests read those lines.
            if (self.security / "certs" / "client.key").exists() and "stop with" in self.logs():
                result = self.essa("status", "--connect", self.endpoint, "--json")
                if result.returncode == 0:
                    schedulers = [a for a in json.loads(result.stdout) if a["role"] == "scheduler"]
                    if schedulers and len(schedulers[0]["executors"]) >= executors:
                        return
            assert time.monotonic() < deadline, f"the secure cluster did not come up:\n{self.logs()}"
            time.sleep(0.3)

    def executors(self) -> set[str]:
        return {e for a in self.status() if a["role"] == "scheduler" for e in a["executors"]}

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        return self.essa("run", "--connect", self.endpoint, "--timeout", "60", *args, token=token)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def secure(engine_name, tmp_path_factory):
    cluster = SecureCluster(engine_name, tmp_path_factory.mktemp("secure"))
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def deployed(secure, tmp_path_factory):
    """Deployments a and b of the stateful module, deployed with a token for every deployment."""
    wasm = tmp_path_factory.mktemp("modules") / "stateful.wasm"
    wasm.write_bytes(STATEFUL)
    admin = secure.token(deployments=["*"])
    for name in ("a", "b"):
        result = secure.essa("deploy", str(wasm), "--name", name, "--connect", secure.endpoint, token=admin)
        assert result.returncode == 0, result.stderr
    return str(wasm)


def connect(secure: SecureCluster) -> tuple[str, ...]:
    return ("--connect", secure.endpoint, "--timeout", "60")


# -- who may connect ---------------------------------------------------------------------


def test_a_peer_without_a_certificate_cannot_connect(secure):
    result = secure.essa("status", "--connect", secure.endpoint, files=None)
    assert_one_line_error(result, secure.endpoint, "it speaks TLS", "--tls-cert")
    plain = secure.essa("status", "--connect", secure.endpoint.replace("tls/", "tcp/"), files=None)
    assert_one_line_error(plain, "it speaks TLS")


def test_a_peer_with_a_certificate_from_another_ca_cannot_connect(secure, tmp_path):
    certs.create_ca(tmp_path)
    other = certs.issue(tmp_path, "client", "intruder", tmp_path / "intruder")
    theirs = TlsFiles(str(tmp_path / "ca.pem"), str(other.cert), str(other.key))
    assert_one_line_error(secure.essa("status", "--connect", secure.endpoint, files=theirs),
                          "not signed by the CA in --tls-ca")
    ours_trusted = TlsFiles(str(secure.security / "ca.pem"), str(other.cert), str(other.key))
    assert_one_line_error(secure.essa("status", "--connect", secure.endpoint, files=ours_trusted),
                          "refused this process's certificate")


def test_an_executor_with_a_certificate_from_another_ca_never_joins(secure, tmp_path):
    certs.create_ca(tmp_path)
    rogue = certs.issue(tmp_path, "executor", "rogue", tmp_path / "rogue")
    env = {**secure.env, "ESSA_TLS_CA": str(tmp_path / "ca.pem"), "ESSA_TLS_CERT": str(rogue.cert),
           "ESSA_TLS_KEY": str(rogue.key)}
    log = tmp_path / "rogue.log"
    proc = subprocess.Popen([*ESSA, "executor", "rogue", "--connect", secure.endpoint], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while "essa executor rogue:" not in log.read_text():  # it started and keeps trying to connect
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        result = secure.run(str(TEST_FUNCTION), token=secure.token(namespaces=["*"]))
        assert result.returncode == 0, result.stderr
        assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
        assert secure.executors() == {"0", "1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(DEADLINE)


# -- roles -------------------------------------------------------------------------------


def test_a_client_cannot_announce_an_executor_nor_take_calls_nor_answer_control_requests(secure, deployed):
    from essa.cluster.processes import open_transport

    seen: list[dict] = []
    answered = threading.Event()

    def fake_control(_request: dict) -> dict:
        answered.set()
        return {"ok": True, "deployments": [{"name": "forged"}]}

    rogue = open_transport(connect=[secure.endpoint], connect_timeout=30, tls=secure.files("client"))
    undo = [
        rogue.declare_token("essa/live/executor/rogue"),
        rogue.subscribe("essa/executor/rogue/calls", seen.append),
        rogue.subscribe("essa/executor/*/calls", seen.append),
        rogue.subscribe("essa/scheduler/calls", seen.append),  # other clients' requests and tokens
        rogue.serve("essa/control", fake_control, shared=True),
    ]
    try:
        token = secure.token(deployments=["*"], namespaces=["*"])
        result = secure.run(str(TEST_FUNCTION), token=token)
        assert result.returncode == 0, result.stderr
        assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
        assert secure.executors() == {"0", "1"}
        listed = secure.essa("ls", "--json", *connect(secure), token=token)
        assert [d["name"] for d in json.loads(listed.stdout)] == ["a", "b"], listed.stderr
        assert seen == [] and not answered.is_set()
    finally:
        for item in undo:
            item.close()
        rogue.close()


def test_a_client_cannot_feed_or_end_another_clients_stdin(secure, tmp_path):
    """A rogue client hears the executor ask for a run's stdin (a wildcard subscription is allowed), and answers."""
    from wasi.test_run_argv_stdin import DATA, HELPERS, START, WASI_IMPORTS, parts

    from essa.cluster.processes import open_transport
    from essa.testing.conformance.wat import module

    echo = tmp_path / "echo.wasm"
    echo.write_bytes(module(HELPERS, DATA, start=START, imports=WASI_IMPORTS))
    rogue = open_transport(connect=[secure.endpoint], connect_timeout=30, tls=secure.files("client"))
    answered = threading.Event()

    def inject(sample) -> None:  # a raw zenoh subscriber: the rogue reads the run's id from the key
        stdin_topic = str(sample.key_expr).removesuffix("/want")
        rogue.publish(stdin_topic, {"data": b"INJECTED\n"})
        rogue.publish(stdin_topic, {"eof": True})
        answered.set()

    wants = rogue._session.declare_subscriber("essa/run/*/stdin/want", inject)
    try:
        files = secure.files()
        result = subprocess.run(
            [*ESSA, "run", "--connect", secure.endpoint, "--timeout", "60", str(echo)],
            input=b"the real line\n", capture_output=True, timeout=DEADLINE,
            env={**secure.env, "ESSA_TLS_CA": files.ca, "ESSA_TLS_CERT": files.cert, "ESSA_TLS_KEY": files.key,
                 "ESSA_TOKEN": secure.token(namespaces=["*"])})
        assert result.returncode == 0, result.stderr
        assert answered.is_set(), "the rogue never heard the executor ask for stdin"
        assert parts(result.stdout)[3] == b"the real line\n"
    finally:
        wants.undeclare()
        rogue.close()


def test_every_reply_is_confirmed_to_the_scheduler(secure, deployed):
    """Receipts pass zenoh's access control: a client's (its call), and an executor's (a run's remote calls)."""
    call = secure.essa("call", "a", "remember", "kiwi", *connect(secure), token=secure.token(deployments=["a"]))
    assert call.returncode == 0, call.stderr
    run = secure.run(str(TEST_FUNCTION), token=secure.token(namespaces=["*"]))
    assert run.returncode == 0, run.stderr + secure.logs()
    deadline = time.monotonic() + DEADLINE
    while True:
        (scheduler,) = [a for a in secure.status() if a["role"] == "scheduler"]
        if (scheduler["in_flight"], scheduler["unconfirmed"]) == (0, 0):
            break
        assert time.monotonic() < deadline, scheduler
        time.sleep(0.2)
    assert "sent no receipt" not in secure.logs()  # confirmed, not forgotten after 60 s unconfirmed


# -- tokens ------------------------------------------------------------------------------


def test_a_token_for_one_deployment_cannot_touch_another(secure, deployed):
    token_a = secure.token(deployments=["a"])
    c = connect(secure)
    ok = secure.essa("call", "a", "remember", "apple", *c, token=token_a)
    assert ok.returncode == 0 and ok.stdout == "apple", ok.stderr
    refused = "the cluster refused this client: no valid token for deployment 'b'"
    assert_one_line_error(secure.essa("call", "b", "remember", "pear", *c, token=token_a), refused)
    assert_one_line_error(secure.essa("state", "get", "-d", "b", "seen", *c, token=token_a), refused)
    assert_one_line_error(secure.essa("state", "put", "-n", "b", "k", "v", *c, token=token_a),
                          "the cluster refused this client: no valid token for namespace 'b'")
    assert_one_line_error(secure.essa("deploy", deployed, "--name", "b", *c, token=token_a), refused)
    assert_one_line_error(secure.essa("run", "--namespace", "b", *c, deployed, token=token_a),
                          "the cluster refused this client: no valid token for namespace 'b'")
    listed = secure.essa("ls", "--json", *c, token=token_a)
    assert [d["name"] for d in json.loads(listed.stdout)] == ["a"], listed.stderr
    everything = secure.token(deployments=["*"])
    keys_b = secure.essa("state", "ls", "-d", "b", "--json", *c, token=everything)
    assert json.loads(keys_b.stdout) == [], keys_b.stderr  # nothing changed


def test_a_deployments_logs_are_read_with_a_token_for_it(secure, deployed):
    c = connect(secure)
    failed = secure.essa("call", "a", "trap", *c, token=secure.token(deployments=["a"]))
    assert failed.returncode != 0 and "trap trapped" in failed.stderr
    reader = secure.token(deployments=["a"], read_only=True)
    logs = secure.essa("logs", "a", "--json", *c, token=reader)
    assert logs.returncode == 0, logs.stderr
    assert any(json.loads(line)["text"].startswith("essa: trap trapped") for line in logs.stdout.splitlines())
    assert_one_line_error(secure.essa("logs", "b", *c, token=reader),
                          "the cluster refused this client: no valid token for deployment 'b'")


def test_a_deployment_token_cannot_run_other_code_in_its_namespace(secure, deployed):
    """The executor checks the module: a client naming another module in a's namespace is refused."""
    from essa.api.connection import connect as essa_connect
    from essa.errors import RunFailed

    with essa_connect(secure.endpoint, timeout=60, tls=secure.files("client"),
                      token=secure.token(deployments=["a"])) as es:
        with pytest.raises(RunFailed, match="the cluster refused this client: the token allows deployment 'a', "
                                            "and module .* is none of its versions"):
            es.run(TEST_FUNCTION, namespace="a", timeout=60)


def test_a_read_only_token_cannot_write(secure, deployed):
    c = connect(secure)
    reader = secure.token(deployments=["a"], read_only=True)
    read = secure.essa("state", "get", "-d", "a", "seen", *c, token=reader)
    assert read.returncode == 0, read.stderr
    assert_one_line_error(secure.essa("state", "put", "-d", "a", "seen", "--type", "set", "x", *c, token=reader),
                          "the cluster refused this client: the token is read-only: it cannot write the state of")
    assert_one_line_error(secure.essa("deploy", deployed, "--name", "a", *c, token=reader),
                          "the token is read-only: it cannot deploy deployment 'a'")
    # The guest's own write is refused: remember traps when essa_put_lattice fails. (The console
    # line saying why travels apart from the reply and may miss a call this short.)
    call = secure.essa("call", "a", "remember", "written-by-a-reader", *c, token=reader)
    assert call.returncode != 0 and "Traceback" not in call.stderr
    assert "remember trapped" in call.stderr
    after = secure.essa("state", "get", "-d", "a", "seen", *c, token=reader)
    assert after.stdout == read.stdout  # nothing changed


def test_an_expired_or_tampered_token_is_refused(secure, deployed):
    c = connect(secure)
    expired = secure.token(deployments=["a"], ttl=60, now=time.time() - 3600)
    assert_one_line_error(secure.essa("call", "a", "remember", "x", *c, token=expired),
                          "the cluster refused this client: no valid token for deployment 'a': the token expired at")
    prefix, payload, signature = secure.token(deployments=["a"]).split(".")
    claims = json.loads(tokens._unb64(payload))
    widened = f"{prefix}.{tokens._b64(json.dumps({**claims, 'd': ['*']}).encode())}.{signature}"
    assert_one_line_error(secure.essa("call", "b", "remember", "x", *c, token=widened),
                          "no valid token for deployment 'b': the token's signature does not match")
    run = secure.run(str(TEST_FUNCTION), token=widened)
    assert_one_line_error(run, "the cluster refused this client", "signature does not match")
    refused = secure.essa("call", "a", "remember", "x", *c).stderr
    assert refused.startswith(
        "essa: error: the cluster refused this client: no valid token for deployment 'a': no token was given")
    assert refused.rstrip().endswith("pass --token TOKEN, set ESSA_TOKEN or use a context with one")


# -- HTTP --------------------------------------------------------------------------------


def _http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_requests_are_allowed_by_their_own_bearer_token(engine_name, tmp_path):
    """`essa up --secure --http`: the HTTP server joins with its own certificate and holds no rights of its own."""
    pytest.importorskip("essa_http")
    port = free_port()
    cluster = SecureCluster(engine_name, tmp_path, up_args=("--http", f"127.0.0.1:{port}"))
    try:
        cluster.wait_ready()
        wasm = tmp_path / "stateful.wasm"
        wasm.write_bytes(STATEFUL)
        for name in ("a", "b"):
            deployed = cluster.essa("deploy", str(wasm), "--name", name, *connect(cluster),
                                    token=cluster.token(deployments=["*"]))
            assert deployed.returncode == 0, deployed.stderr
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEADLINE
        while _http(f"{base}/healthz")[0] != 200:  # the server may still be connecting
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.3)
        bearer = {"Authorization": f"Bearer {cluster.token(deployments=['a'])}"}
        assert _http(f"{base}/v1/functions/a/remember", b"apple", bearer) == (200, b"apple")
        status, body = _http(f"{base}/v1/functions/b/remember", b"pear", bearer)
        assert status == 403
        error = json.loads(body)
        assert error["kind"] == "refused"
        assert error["error"].startswith("the cluster refused this client: no valid token for deployment 'b'")
        status, body = _http(f"{base}/v1/functions/a/remember", b"pear")  # no token
        assert status == 403 and "no token was given" in json.loads(body)["error"]
        # The advice is HTTP's: a header, not the command line's --token or ESSA_TOKEN.
        assert "Authorization: Bearer TOKEN" in json.loads(body)["error"] and "--token" not in json.loads(body)["error"]
        status, body = _http(f"{base}/v1/functions/a/remember", b"pear", {"Authorization": "Basic dXNlcg=="})
        assert status == 401 and json.loads(body)["kind"] == "refused"
        status, body = _http(f"{base}/v1/state/a/seen", None, bearer)
        assert status == 200 and json.loads(body) == {"type": "Set", "values": ["apple"]}
        assert _http(f"{base}/v1/state/b/seen", None, bearer)[0] == 403
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.logs()


# -- anna --------------------------------------------------------------------------------


def test_the_test_function_runs_on_a_secure_cluster_with_anna(engine_name, tmp_path):
    pytest.importorskip("essa_anna")
    from essa.cluster.processes import open_transport

    cluster = SecureCluster(engine_name, tmp_path, ("--store", "anna", "--store-option", "kvs_nodes=2"))
    try:
        cluster.wait_ready()
        rogue = open_transport(connect=[cluster.endpoint], connect_timeout=30, tls=cluster.files("client"))
        fake_kvs = rogue.declare_token("anna/live/kvs/rogue/1/1/2/1")
        fake_executor = rogue.declare_token("essa/live/executor/rogue")
        try:
            result = cluster.run(str(TEST_FUNCTION), token=cluster.token(namespaces=["*"]))
            assert result.returncode == 0, result.stderr + cluster.logs()
            assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
            routing = re.search(r"anna routing +(tls/\S+)", cluster.logs()).group(1)
            status = cluster.essa("anna", "status", "--connect", routing, "--timeout", "30", "--json", files="admin")
            assert status.returncode == 0, status.stderr
            nodes = {a["id"] for a in json.loads(status.stdout) if a["role"] == "kvs"}
            assert nodes == {"kvs-0", "kvs-1"}
            assert cluster.executors() == {"0", "1"}
            assert_one_line_error(cluster.essa("anna", "get", "k", "--connect", routing),
                                  "the store nodes answer admins only")
        finally:
            fake_kvs.close()
            fake_executor.close()
            rogue.close()
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.logs()
