"""Real guests end to end on an embedded runtime, and artifacts kept in the LMDB store.

``data/test-function.wasm`` is a copy of essa's C example
(``examples/test-function.wasm``, built from ``test_function.c`` with
wasi-libc): a WASI command whose ``main`` prints, calls functions remotely
(132 calls, one recursive fan-out), and merges state.
"""

from __future__ import annotations

from importlib import resources

import pytest

from essa.cluster.embedded import EmbeddedRuntime
from essa.cluster.programs import artifact_key
from essa.plugins import get_plugin_manager
from essa.state.lattice import LwwLattice
from essa.testing import TEST_FUNCTION_OUTPUT
from essa.testing.conformance.support import Output
from essa.testing.conformance.wat import module
from essa.wasm.abi import EssaResult

pytestmark = pytest.mark.usefixtures("essa_home")



def c_test_function_wasm() -> bytes:
    path = resources.files(__package__).joinpath("data", "test-function.wasm")
    if not path.is_file():
        pytest.fail(f"{path} is missing: this essa was packaged without the suite's data files", pytrace=False)
    return path.read_bytes()




@pytest.fixture
def lmdb_options(tmp_path):
    if "lmdb" not in get_plugin_manager().stores:
        pytest.skip("the lmdb store is not installed (pip install essa-plugin-lmdb)")
    return {"path": str(tmp_path / "lmdb")}


@pytest.mark.parametrize("executors", [1, 2])
def test_c_test_function_runs_to_done(essa_engine, executors):
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=executors) as rt:
        name = rt.client.publish(c_test_function_wasm(), "test-function.wasm")
        output = Output()
        assert rt.client.run(name, output=output) == 0, output.stderr
        assert output.stdout == TEST_FUNCTION_OUTPUT
        assert output.stderr == ""
        assert sum(e.stats.calls for e in rt.executors) == 132


def test_c_test_function_with_the_lmdb_store_reuses_its_artifact(essa_engine, lmdb_options):
    sources = []
    for _ in range(2):
        with EmbeddedRuntime(engine=essa_engine, store="lmdb", store_options=lmdb_options, executors=2) as rt:
            name = rt.client.publish(c_test_function_wasm(), "test-function.wasm")
            output = Output()
            assert rt.client.run(name, output=output) == 0, output.stderr
            assert output.stdout == TEST_FUNCTION_OUTPUT  # a fresh namespace per run
            sources.append(rt.programs.sources[name])
    assert sources == ["compiled", "artifact"]


def test_artifact_is_stored_under_the_engine_tag_and_loaded_by_the_next_process(essa_engine, lmdb_options):
    wasm = module()
    with EmbeddedRuntime(engine=essa_engine, store="lmdb", store_options=lmdb_options, executors=1) as rt:
        name = rt.client.publish(wasm)
        assert rt.client.call(name, "__essa_wrapper__echo", b"first").value == b"first"
        assert rt.programs.sources == {name: "compiled"}
        stored = rt.store.get(artifact_key(name, rt.engine))
        assert isinstance(stored, LwwLattice) and stored.value
        assert rt.engine.artifact_tag in artifact_key(name, rt.engine)
    with EmbeddedRuntime(engine=essa_engine, store="lmdb", store_options=lmdb_options, executors=1) as rt:
        outcome = rt.client.call(name, "__essa_wrapper__echo", b"second")
        assert (outcome.code, outcome.value) == (EssaResult.Ok, b"second")
        assert rt.programs.sources == {name: "artifact"}


def test_an_unusable_stored_artifact_is_replaced(essa_engine, lmdb_options):
    wasm = module()
    with EmbeddedRuntime(engine=essa_engine, store="lmdb", store_options=lmdb_options, executors=1) as rt:
        name = rt.client.publish(wasm)
        rt.store.put(artifact_key(name, rt.engine), LwwLattice.now(b"not an artifact"))
        assert rt.client.call(name, "__essa_wrapper__echo", b"ok").value == b"ok"
        assert rt.programs.sources == {name: "compiled"}
    with EmbeddedRuntime(engine=essa_engine, store="lmdb", store_options=lmdb_options, executors=1) as rt:
        assert rt.client.call(name, "__essa_wrapper__echo", b"ok").value == b"ok"
        assert rt.programs.sources == {name: "artifact"}
