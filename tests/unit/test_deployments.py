"""The deployment registry over a real (memory) store: versions, pins, removal, names, bad records."""

from __future__ import annotations

import pytest

from essa.cluster.deployments import (
    CONSISTENCY_LEVELS,
    DEFAULT_RETRIES,
    MAX_RETRIES,
    Deployed,
    DeploymentRegistry,
    check_consistency,
    check_name,
    check_retries,
    display_name,
    parse_spec,
    record_key,
    user_functions,
)
from essa.errors import EssaError, NotFound
from essa.state.lattice import SetLattice
from essa.state.memory import MemoryStore
from essa.wasm.engine import ModuleInfo


@pytest.fixture
def registry():
    return DeploymentRegistry(MemoryStore())


def test_a_redeploy_is_a_new_version_and_the_bare_name_is_the_latest(registry):
    first = registry.add("wc", "a" * 64, 100, ["count_words"])
    second = registry.add("wc", "b" * 64, 200, ["count_words", "vocabulary"])
    assert (first.version, second.version) == (1, 2)
    assert registry.resolve("wc").module == second.module
    assert registry.resolve("wc", 1).module == first.module
    assert [d.version for d in registry.versions("wc")] == [1, 2]
    assert second.namespace == first.namespace == "wc"


def test_a_retried_deploy_records_nothing_new(registry):
    once = registry.add("wc", "a" * 64, 100, [], deploy_id="retry-me", created=5)
    again = registry.add("wc", "a" * 64, 100, [], deploy_id="retry-me", created=5)
    assert once == again and len(registry.versions("wc")) == 1


def test_concurrent_deploys_that_picked_one_number_are_numbered_alike_by_every_reader(registry):
    store = registry.store
    for module, created in (("b" * 64, 20), ("a" * 64, 10)):  # both thought they were version 1
        record = (f'{{"created":{created},"functions":[],"id":"{module[0]}","kind":"deploy",'
                  f'"module":"{module}","size":1,"version":1}}')
        store.put(record_key("wc"), SetLattice({record.encode()}))
    store.put("deployments", SetLattice({b"wc"}))
    assert [(d.version, d.module[0]) for d in registry.versions("wc")] == [(1, "a"), (2, "b")]


def test_removal_hides_every_version_until_the_next_deploy(registry):
    registry.add("wc", "a" * 64, 100, [])
    registry.add("wc", "b" * 64, 100, [])
    assert registry.remove("wc").version == 2
    assert registry.names() == []
    with pytest.raises(NotFound, match="no deployment named 'wc'"):
        registry.resolve("wc")
    again = registry.add("wc", "c" * 64, 100, [])
    assert again.version == 3 and registry.names() == ["wc"]


def test_unknown_names_versions_and_functions_are_not_found(registry):
    deployment = registry.add("wc", "a" * 64, 100, ["count_words", "count_lines"])
    with pytest.raises(NotFound, match="no deployment named 'nope'"):
        registry.resolve("nope")
    with pytest.raises(NotFound, match="has no version 9 .latest: 1."):
        registry.resolve("wc", 9)
    with pytest.raises(NotFound, match="did you mean 'count_words'"):
        deployment.check_function("count_word")
    assert deployment.check_function("count_lines") == "__essa_wrapper__count_lines"


def test_records_that_are_not_records_are_ignored(registry):
    registry.add("wc", "a" * 64, 100, [])
    registry.store.put(record_key("wc"), SetLattice({b"not json", b"[1]", b'{"kind": "deploy", "version": "x"}'}))
    assert len(registry.versions("wc")) == 1


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 64, "é", "a@1"])
def test_bad_names_are_refused_in_one_line(name):
    with pytest.raises(EssaError, match="is not a valid deployment name"):
        check_name(name)


def test_specs():
    assert parse_spec("wc") == ("wc", None)
    assert parse_spec("wc@3") == ("wc", 3)
    assert parse_spec("wc@stable") == ("wc", "stable")
    assert parse_spec("wc@latest") == ("wc", "latest")
    for bad in ("wc@", "wc@0", "wc@-x", "wc@1x", "wc@a b"):
        with pytest.raises(EssaError, match="a version is a positive number .as in wc@3. or a tag"):
            parse_spec(bad)


def test_user_functions_are_callable_exports_without_the_prefix():
    info = ModuleInfo({
        "__essa_wrapper__count": (("i32",), ()),
        "__essa_wrapper__bad": (("i32", "i32"), ()),
        "__essa_wrapper__": (("i32",), ()),
        "_start": ((), ()),
        "memory_helper": (("i32",), ()),
    })
    assert user_functions(info) == ["count"]
    assert display_name("__essa_wrapper__count") == "count" and display_name("_start") == "_start"


def test_signatures_are_recorded_with_a_version_and_read_back():
    from essa.cluster.deployments import Deployed
    from essa.state.signatures import parse_lines

    registry = DeploymentRegistry(MemoryStore())
    [count] = parse_lines(b'{"name":"count_words","params":[{"name":"text","type":"string"}],"result":"u64"}\n')
    deployment = registry.add("wc", "a" * 64, 100, ["count_words", "vocabulary"], signatures=[count])
    assert registry.resolve("wc").signature("count_words") == count
    assert deployment.signature("vocabulary") is None  # no signature: bytes in, bytes out
    assert Deployed.from_dict(deployment.as_dict()) == deployment  # as a control answer carries it
    assert deployment.changes.added == ("count_words", "vocabulary")
    again = registry.add("wc", "a" * 64, 100, ["count_words", "vocabulary"], signatures=[count])
    assert again.unchanged and again.spec == "wc@1"  # the same bytes and signatures: no new version
    untyped = registry.add("wc", "a" * 64, 100, ["count_words", "vocabulary"])
    assert untyped.spec == "wc@2" and untyped.changes.changed == ("count_words",)  # its signature went
    with pytest.raises(EssaError, match="declares count_words.text: string. -> u64, but the module has no function"):
        registry.add("wc", "b" * 64, 100, ["vocabulary"], signatures=[count])


def test_records_without_signatures_or_with_unreadable_ones_keep_their_version_untyped():
    import json

    store = MemoryStore()
    registry = DeploymentRegistry(store)
    older = {"kind": "deploy", "id": "x", "version": 1, "module": "a" * 64, "size": 1, "functions": ["f"],
             "created": 1}  # written before signatures existed
    garbled = {**older, "id": "y", "version": 2, "created": 2, "signatures": [{"name": "f", "params": "?"}]}
    store.put(record_key("wc"), SetLattice({json.dumps(older).encode(), json.dumps(garbled).encode()}))
    store.put("deployments", SetLattice({b"wc"}))
    assert [(d.version, d.signatures) for d in registry.versions("wc")] == [(1, ()), (2, ())]
def test_a_version_keeps_its_retry_limit_and_records_without_one_mean_the_default(registry):
    default = registry.add("wc", "a" * 64, 100, [])
    once = registry.add("wc", "b" * 64, 100, [], retries=0)
    assert (default.retries, once.retries) == (DEFAULT_RETRIES, 0)
    assert registry.resolve("wc", 2).retries == 0 and registry.resolve("wc", 1).retries == DEFAULT_RETRIES
    assert Deployed.from_dict(once.as_dict()) == once
    assert Deployed.from_dict({k: v for k, v in default.as_dict().items() if k != "retries"}) == default


@pytest.mark.parametrize("retries", [-1, MAX_RETRIES + 1, True, "3", 2.0])
def test_bad_retry_limits_are_refused_in_one_line(registry, retries):
    with pytest.raises(EssaError, match="retries must be a whole number from 0 to 100"):
        registry.add("wc", "a" * 64, 100, [], retries=retries)
    with pytest.raises(EssaError):
        check_retries(retries)


def test_a_record_with_a_bad_retry_limit_keeps_its_version_with_the_default(registry):
    record = ('{"created":1,"functions":[],"id":"x","kind":"deploy","module":"' + "a" * 64 + '","retries":-4,'
              '"size":1,"version":1}')
    registry.store.put(record_key("wc"), SetLattice({record.encode()}))
    registry.store.put("deployments", SetLattice({b"wc"}))
    assert [d.retries for d in registry.versions("wc")] == [DEFAULT_RETRIES]  # the version stays, with the default


def test_a_version_keeps_its_consistency_level_beside_signatures_and_retries(registry):
    default = registry.add("wc", "a" * 64, 100, [])
    causal = registry.add("wc", "a" * 64, 100, [], retries=0, consistency="causal")  # same bytes, another level
    assert (default.version, causal.version, causal.unchanged) == (1, 2, False)
    assert (default.consistency, causal.consistency, causal.retries) == ("default", "causal", 0)
    assert registry.resolve("wc", 2).consistency == "causal" and registry.resolve("wc", 1).consistency == "default"
    assert registry.add("wc", "a" * 64, 100, [], retries=0, consistency="causal").unchanged
    assert Deployed.from_dict(causal.as_dict()) == causal
    assert Deployed.from_dict({k: v for k, v in default.as_dict().items() if k != "consistency"}) == default
    stored = [r for r in registry.store.get(record_key("wc")).values]
    assert sum(b'"consistency"' in r for r in stored) == 1  # only where it is not the default


def test_bad_consistency_levels_are_refused_and_a_bad_stored_one_reads_as_the_default(registry):
    assert set(CONSISTENCY_LEVELS) == {"default", "repeatable-read", "causal"}
    with pytest.raises(EssaError, match="unknown consistency level 'linearizable'"):
        registry.add("wc", "a" * 64, 100, [], consistency="linearizable")
    with pytest.raises(EssaError):
        check_consistency(None)
    record = ('{"consistency":"strong","created":1,"functions":[],"id":"x","kind":"deploy","module":"' + "a" * 64
              + '","size":1,"version":1}')
    registry.store.put(record_key("wc"), SetLattice({record.encode()}))
    registry.store.put("deployments", SetLattice({b"wc"}))
    assert [d.consistency for d in registry.versions("wc")] == ["default"]
