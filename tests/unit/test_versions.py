"""Versions of a deployment over a real (memory) store: unchanged deploys, rollbacks, tags, removing one version."""

from __future__ import annotations

import pytest

from essa.cluster.deployments import Deployed, DeploymentRegistry, FunctionChanges, record_key
from essa.cluster.versions import History, check_tag, decode
from essa.errors import EssaError, NotFound
from essa.state.lattice import SetLattice
from essa.state.memory import MemoryStore

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def registry():
    return DeploymentRegistry(MemoryStore())


def specs(registry, name="wc"):
    return [(d.version, d.current, d.tags) for d in registry.versions(name)]


def test_deploying_the_bytes_the_name_means_makes_no_version(registry):
    first = registry.add("wc", A, 10, ["f"])
    again = registry.add("wc", A, 10, ["f"])
    assert (first.spec, first.unchanged) == ("wc@1", False)
    assert (again.spec, again.unchanged, again.previous.spec) == ("wc@1", True, "wc@1")
    assert not again.changes
    assert [v.version for v in registry.versions("wc")] == [1]


def test_a_deploy_says_which_functions_came_and_went(registry):
    first = registry.add("wc", A, 10, ["count", "keep"])
    assert first.previous is None and first.changes == FunctionChanges(added=("count", "keep"))
    second = registry.add("wc", B, 10, ["keep", "total"])
    assert second.previous.spec == "wc@1"
    assert second.changes == FunctionChanges(added=("total",), removed=("count",))
    assert second.changes.describe() == "added: total; removed: count"


def test_changes_compare_signatures_where_both_are_known():
    before = {"f": "(string) -> u64", "g": None, "h": "() -> u32"}
    after = {"f": "(string) -> u32", "g": None, "h": "() -> u32", "i": None}
    assert FunctionChanges.between(before, after) == FunctionChanges(added=("i",), changed=("f",))


def test_rollback_moves_the_name_back_without_a_new_version(registry):
    for module in (A, B, C):
        registry.add("wc", module, 10, ["f"])
    back = registry.rollback("wc")
    assert (back.spec, back.previous.spec, back.unchanged) == ("wc@2", "wc@3", False)
    assert registry.resolve("wc").module == B
    assert specs(registry) == [(1, False, ()), (2, True, ()), (3, False, ())]
    assert registry.rollback("wc").spec == "wc@1"  # twice: two versions back
    with pytest.raises(EssaError, match="wc@1 is the oldest version of wc: there is none before it"):
        registry.rollback("wc")
    assert registry.rollback("wc", to=3).spec == "wc@3"  # forward, too
    assert registry.rollback("wc", to=3).unchanged
    assert registry.resolve("wc", "latest").spec == "wc@3"


def test_a_deploy_after_a_rollback_is_a_new_version_the_name_means(registry):
    registry.add("wc", A, 10, ["f"])
    registry.add("wc", B, 10, ["f"])
    registry.rollback("wc")
    assert registry.add("wc", A, 10, ["f"]).unchanged  # what the name means: nothing new
    third = registry.add("wc", B, 10, ["f"])  # the bytes of wc@2, no longer meant: a new version
    assert (third.spec, third.previous.spec) == ("wc@3", "wc@1")
    assert registry.resolve("wc").spec == "wc@3"


def test_a_rollback_wins_over_a_clock_behind(registry, monkeypatch):
    registry.add("wc", A, 10, ["f"], created=5)
    registry.add("wc", B, 10, ["f"], created=10**20)  # deployed from a host whose clock runs far ahead
    assert registry.rollback("wc").spec == "wc@1"
    assert registry.resolve("wc").spec == "wc@1"
    assert registry.add("wc", C, 10, ["f"]).spec == "wc@3"
    assert registry.resolve("wc").spec == "wc@3"


def test_tags_name_versions_move_and_go(registry):
    registry.add("wc", A, 10, ["f"])
    registry.add("wc", B, 10, ["f"])
    assert registry.tag("wc", 1, "stable").tags == ("stable",)
    assert registry.resolve("wc", "stable").module == A
    assert registry.tag("wc", None, "beta").spec == "wc@2"  # the bare name: the version it means
    assert specs(registry) == [(1, False, ("stable",)), (2, True, ("beta",))]
    registry.tag("wc", "beta", "stable")  # moved, by naming a tag
    assert registry.resolve("wc", "stable").spec == "wc@2"
    assert registry.untag("wc", "stable").spec == "wc@2"
    with pytest.raises(NotFound, match=r"deployment 'wc' has no tag 'stable' \(tags: beta\)"):
        registry.resolve("wc", "stable")
    with pytest.raises(NotFound, match="no tag 'nope'"):
        registry.untag("wc", "nope")
    for bad in ("latest", "1", "-x", "a b", ""):
        with pytest.raises(EssaError, match="is not a valid tag"):
            check_tag(bad)


def test_one_version_can_go_but_not_the_one_the_name_means(registry):
    registry.add("wc", A, 10, ["f"])
    with pytest.raises(EssaError, match="wc@1 is the only version of wc: `essa rm wc` removes the deployment"):
        registry.drop("wc", 1)
    registry.add("wc", B, 10, ["f"])
    registry.add("wc", C, 10, ["f"])
    registry.tag("wc", 2, "stable")
    with pytest.raises(EssaError, match="wc@3 is the version wc means now: roll back first"):
        registry.drop("wc", 3)
    dropped = registry.drop("wc", "stable")
    assert (dropped.spec, dropped.tags) == ("wc@2", ("stable",))
    assert specs(registry) == [(1, False, ()), (3, True, ())]  # the others keep their numbers
    with pytest.raises(NotFound, match=r"wc@2 was removed \(versions: 1, 3\)"):
        registry.resolve("wc", 2)
    with pytest.raises(NotFound, match="no tag 'stable'"):  # its tags went with it
        registry.resolve("wc", "stable")
    assert registry.rollback("wc").spec == "wc@1"  # the one before, among those left
    assert registry.add("wc", B, 10, ["f"]).spec == "wc@4"  # numbers never come back


def test_removing_the_deployment_removes_its_versions_and_tags(registry):
    registry.add("wc", A, 10, ["f"])
    registry.tag("wc", 1, "stable")
    registry.remove("wc")
    again = registry.add("wc", B, 10, ["f"])
    assert again.spec == "wc@2" and [v.version for v in registry.versions("wc")] == [2]
    with pytest.raises(NotFound, match="was removed"):
        registry.resolve("wc", 1)
    with pytest.raises(NotFound, match="no tag 'stable'"):
        registry.resolve("wc", "stable")


def test_a_deployed_answer_round_trips():
    registry = DeploymentRegistry(MemoryStore())
    registry.add("wc", A, 10, ["f"])
    second = registry.add("wc", B, 20, ["g"])
    assert Deployed.from_dict(second.as_dict()) == second
    assert second.as_dict()["changes"] == {"added": ["g"], "removed": ["f"], "changed": []}


def test_every_reader_agrees_whatever_order_the_records_merged_in(registry):
    registry.add("wc", A, 10, ["f"])
    registry.add("wc", B, 10, ["f"])
    registry.rollback("wc")
    registry.tag("wc", 2, "stable")
    stored = registry.store.get(record_key("wc"))
    records = [decode(raw) for raw in stored.values]
    one, other = History("wc", records), History("wc", list(reversed(records)))
    assert (one.current(), one.tags(), one.alive()) == (other.current(), other.tags(), other.alive()) == (
        1, {"stable": 2}, [1, 2])


def test_malformed_records_of_every_kind_are_ignored(registry):
    registry.add("wc", A, 10, ["f"])
    registry.store.put(record_key("wc"), SetLattice({
        b'{"kind": "current", "id": 7, "time": 1}', b'{"kind": "tag", "tag": "x", "time": 1}',
        b'{"kind": "drop", "id": "x", "time": true}', b'{"kind": "nope"}', b'{"kind": "remove", "time": "soon"}',
    }))
    assert specs(registry) == [(1, True, ())]


def test_a_request_every_executor_answers_at_once_is_recorded_once():
    """Each executor answers a control request; two that read the same records write the same record."""
    first, second = DeploymentRegistry(MemoryStore()), DeploymentRegistry(MemoryStore())
    for registry in (first, second):
        registry.add("wc", A, 10, ["f"], deploy_id="one", created=1_000)
    for registry in (first, second):  # both read wc@1 only, then write
        registry.add("wc", B, 10, ["f"], deploy_id="two", created=2_000)
        registry.rollback("wc", at=3_000)
        registry.tag("wc", 2, "stable", at=4_000)
    first.store.put(record_key("wc"), second.store.get(record_key("wc")))  # the store merges both writes
    assert specs(first) == [(1, True, ()), (2, False, ("stable",))]
