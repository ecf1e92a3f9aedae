"""The public Python API, as a library user meets it: essa.connect() and what it returns."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

import essa
from essa.testing.conformance.wat import module

from .test_cluster import cluster  # noqa: F401  (the fixture)
from .test_service import STATEFUL


@pytest.fixture
def es(engine_name):
    with essa.connect(engine=engine_name, store="memory") as connection:
        yield connection


def test_deploy_call_and_state(es):
    deployment = es.deploy(STATEFUL, name="memo")
    assert isinstance(deployment, essa.Deployment)
    assert (deployment.spec, deployment.namespace) == ("memo@1", "memo")
    assert es.call("memo", "remember", b"apple") == b"apple"
    assert es.state("memo").get("seen") == essa.SetLattice({b"apple"})
    es.state("memo").merge("seen", essa.SetLattice({b"pear"}))
    assert es.state("memo").keys() == ["seen"]
    assert es.call("memo", "echo", essa.encode(["string"], ["hi"])) == essa.encode(["string"], ["hi"])
    assert essa.decode("string", es.call("memo", "echo", essa.encode(["string"], ["hé"]))) == "hé"
    assert es.run(STATEFUL, namespace="memo", output=lambda message: None) == 0
    assert es.state("memo").get("seen") == essa.SetLattice({b"apple", b"pear", b"from-run"})
    assert es.state("memo").delete("seen") and es.state("memo").get("seen") is None


def test_versions_pins_and_removal(es):
    es.deploy(module(), name="svc")
    es.deploy(STATEFUL, name="svc")
    assert [d.version for d in es.versions("svc")] == [1, 2]
    assert "remember" in es.functions("svc") and "remember" not in es.functions("svc@1")
    with pytest.raises(essa.NotFound, match="no function 'remember'"):
        es.call("svc@1", "remember", b"x")
    assert es.remove("svc") == 0
    with pytest.raises(essa.NotFound, match="no deployment named 'svc'"):
        es.call("svc", "echo")
    assert es.deployments() == []


def test_a_deployments_retry_limit_is_kept_and_checked(es):
    assert es.deploy(STATEFUL, name="memo").retries == 3
    assert es.deploy(STATEFUL, name="memo", retries=0).retries == 0
    assert es.deployment("memo").retries == 0 and es.deployment("memo@1").retries == 3
    assert es.call("memo", "remember", b"apple") == b"apple"  # its calls carry it (checked by the scheduler)
    with pytest.raises(essa.EssaError, match="retries must be a whole number from 0 to 100, not 101"):
        es.deploy(STATEFUL, name="memo", retries=101)


def test_consistency_and_keys_are_call_options_carried_in_the_request(es, monkeypatch):
    es.deploy(STATEFUL, name="memo", consistency="causal")
    assert es.deployment("memo").consistency == "causal" and es.deployment("memo@1").consistency == "causal"
    sent: list[dict] = []
    start_call = es._client.start_call

    def recording(*args, **kwargs):
        sent.append(kwargs.get("fields") or {})
        return start_call(*args, **kwargs)

    monkeypatch.setattr(es._client, "start_call", recording)
    assert es.call("memo", "remember", b"a") == b"a"  # the deployment's level
    assert es.call("memo", "remember", b"b", consistency="repeatable-read", keys=["seen"]) == b"b"
    assert es.call_async("memo", "remember", b"c", consistency="default").result(60) == b"c"
    assert asyncio.run(es.acall("memo", "remember", b"d", keys=["seen", "other"])) == b"d"
    assert asyncio.run(es.acall_result("memo", "remember", b"e", consistency="causal")).value == b"e"
    assert [(f.get("consistency"), f.get("keys")) for f in sent] == [
        ("causal", None), ("repeatable-read", ["seen"]), (None, None), ("causal", ["seen", "other"]),
        ("causal", None)]
    assert all(f["deployment"] == "memo" and f["version"] == 1 and f["retries"] == 3 for f in sent)
    with pytest.raises(essa.EssaError, match="unknown consistency level 'strict'"):
        es.call("memo", "remember", b"x", consistency="strict")
    with pytest.raises(essa.EssaError, match="unknown consistency level 'strict'"):
        es.deploy(STATEFUL, name="memo", consistency="strict")


def test_failures_are_call_errors_with_the_cli_message(es):
    es.deploy(STATEFUL, name="memo")
    with pytest.raises(essa.CallError, match=r"^trap trapped: ") as info:
        es.call("memo", "trap")
    assert info.value.kind == "trap"
    with pytest.raises(essa.CallError, match="no_result returned without essa_set_result") as info:
        es.call("memo", "no_result")
    assert info.value.kind == "no-result"
    with pytest.raises(essa.NotFound, match="did you mean 'remember'"):
        es.call("memo", "remembr")
    with pytest.raises(essa.EssaError, match="is not a valid deployment name"):
        es.deploy(STATEFUL, name="a b")


def test_call_async_is_a_future_and_acall_awaits(es):
    es.deploy(STATEFUL, name="memo")
    futures = [es.call_async("memo", "echo", b"%d" % i) for i in range(20)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    assert [f.result(60) for f in futures] == [b"%d" % i for i in range(20)]

    async def main() -> list[bytes]:
        return await asyncio.gather(*(es.acall("memo", "echo", b"async %d" % i) for i in range(5)))

    assert asyncio.run(main()) == [b"async %d" % i for i in range(5)]


def test_a_call_past_its_timeout_is_cancelled_and_the_executor_is_free_again(engine_name):
    from essa.wasm.limits import Limits

    from .test_interrupt import CALLER

    # One executor, no time limit: only the cancellation can free its workers.
    with essa.connect(engine=engine_name, store="memory", executors=1, limits=Limits(time_limit=None)) as es:
        es.deploy(CALLER, name="spinner")
        es.deploy(STATEFUL, name="memo")
        for _ in range(4):  # more than the executor's workers
            with pytest.raises(essa.CallError, match=r"^spin: no answer within 0.5 s$") as info:
                es.call("spinner", "spin", timeout=0.5)
            assert info.value.kind == "cancelled"
        assert es.call("memo", "echo", b"after", timeout=60) == b"after"



#: A script that deploys, leaves a call running, makes one more and ends without close().
_UNCLOSED = """
import sys, essa
es = essa.connect(sys.argv[2]) if len(sys.argv) > 2 else essa.connect(store="memory")
es.deploy(sys.argv[1], name="memo")
pending = es.call_async("memo", "echo", b"left running")
print(es.call("memo", "echo", b"done").decode(), flush=True)
"""


@pytest.mark.parametrize("mode", ["embedded", "cluster"])
def test_a_script_that_never_closes_its_connection_exits(mode, tmp_path, request):
    # zenoh runs callbacks on threads that kept the interpreter alive forever at exit.
    import subprocess
    import sys

    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    args = [str(wasm)]
    if mode == "cluster":
        cluster = request.getfixturevalue("cluster")
        cluster.scheduler()
        cluster.executor("0")
        cluster.wait_for_executors(1)
        args.append(cluster.endpoint)
    script = subprocess.Popen([sys.executable, "-c", _UNCLOSED, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out, err = script.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        script.kill()
        out, err = script.communicate()
        pytest.fail(f"the script did not exit: {out!r} {err!r}")
    assert (script.returncode, out) == (0, "done\n"), err
