"""Plugin discovery, isolation and the registries, with no plugin installed."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import types
from pathlib import Path

import pytest

import essa
from essa.errors import PluginNotFound
from essa.plugins import PluginManager
from essa.wasm.engine import Engine


def manager_with(monkeypatch, **modules: types.ModuleType) -> PluginManager:
    """A manager whose entry points are exactly ``modules`` (name -> module)."""
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, f"essa_test_plugin_{name}", module)
    points = [
        importlib.metadata.EntryPoint(name=name, value=f"essa_test_plugin_{name}", group="essa")
        for name in modules
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: points if group == "essa" else [])
    return PluginManager()


def plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("plugin")
    for name, fn in hooks.items():
        setattr(module, name, essa.hookimpl(fn))
    return module


class DummyEngine(Engine):
    version = "1"

    def compile(self, wasm):  # pragma: no cover - never run
        raise NotImplementedError

    serialize = deserialize = prepare = compile


def test_builtin_parts_register_through_the_hooks():
    pm = PluginManager(autoload=False)
    assert "local" in pm.transports
    assert "memory" in pm.stores
    assert [p.name for p in pm.plugins] == ["builtin"]


def test_builtin_parts_name_the_core_distribution_and_its_version():
    # The core is installed as `essa-wasm` (PyPI's `essa` is another project);
    # `essa plugins` shows that name and its installed version.
    builtin = PluginManager(autoload=False).plugins[0]
    assert builtin.distribution == "essa-wasm"
    assert builtin.version == importlib.metadata.version("essa-wasm") == essa.__version__


def test_the_package_ships_its_type_hints():
    from importlib.resources import files

    assert files("essa").joinpath("py.typed").is_file()


@pytest.mark.parametrize(
    "kind, name, package",
    [("engine", "wasmtime", "essa-plugin-wasmtime"), ("engine", "wasmer", "essa-plugin-wasmer"),
     ("store", "lmdb", "essa-plugin-lmdb"), ("store", "anna", "essa-plugin-anna"),
     ("trigger", "http", "essa-plugin-http")],
)
def test_missing_known_part_names_the_package_to_install(kind, name, package):
    pm = PluginManager(autoload=False)
    with pytest.raises(PluginNotFound) as raised:
        getattr(pm, f"{kind}_class")(name)
    # None of essa's plugins is on PyPI: the hint installs it from the source tree, where it is.
    path = re.search(r"pip install -e (\S+) ", str(raised.value)).group(1)
    assert package in str(raised.value) and "not on PyPI" in str(raised.value)
    assert (Path(__file__).resolve().parents[2] / path / "pyproject.toml").read_text().count(f'"{package}"')


def test_unknown_part_lists_what_is_installed():
    pm = PluginManager(autoload=False)
    with pytest.raises(PluginNotFound, match=r"unknown store 'nope' \(installed: memory\)"):
        pm.store_class("nope")


def test_a_plugin_registers_an_engine(monkeypatch):
    pm = manager_with(monkeypatch, dummy=plugin(essa_register_engines=lambda register: register("dummy", DummyEngine)))
    assert pm.engine_class("dummy") is DummyEngine
    assert DummyEngine.name == "dummy"
    info = next(p for p in pm.plugins if p.name == "dummy")
    assert info.provides == ["engine dummy"] and info.error is None


def test_a_plugin_registers_a_trigger(monkeypatch):
    from essa.api.trigger import Trigger

    class EchoTrigger(Trigger):
        option_help = {"volume": "how loud (default 11)"}

        def serve(self, ready=None):  # pragma: no cover - never run
            raise NotImplementedError

        def stop(self, force=False):  # pragma: no cover - never run
            raise NotImplementedError

    pm = manager_with(monkeypatch, echo=plugin(essa_register_triggers=lambda register: register("echo", EchoTrigger)))
    assert pm.trigger_class("echo") is EchoTrigger
    assert EchoTrigger.name == "echo"
    assert next(p for p in pm.plugins if p.name == "echo").provides == ["trigger echo"]
    assert pm.trigger_options() == [("echo", "volume", "how loud (default 11)")]  # for essa plugins, serve --help


def test_a_broken_plugin_is_reported_and_the_rest_still_load(monkeypatch):
    broken = types.ModuleType("broken")
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None: [
            importlib.metadata.EntryPoint(name="broken", value="essa_no_such_module_xyz", group="essa"),
            importlib.metadata.EntryPoint(name="good", value="essa_test_plugin_good", group="essa"),
        ],
    )
    monkeypatch.setitem(
        sys.modules, "essa_test_plugin_good",
        plugin(essa_register_engines=lambda register: register("dummy", DummyEngine)),
    )
    del broken
    pm = PluginManager()
    info = {p.name: p for p in pm.plugins}
    assert "failed to import" in info["broken"].error
    assert pm.engine_class("dummy") is DummyEngine


def test_a_plugin_whose_hook_raises_is_reported(monkeypatch):
    def boom(register):
        raise RuntimeError("kaboom")

    pm = manager_with(monkeypatch, bad=plugin(essa_register_stores=boom))
    info = next(p for p in pm.plugins if p.name == "bad")
    assert "kaboom" in info.error
    assert "memory" in pm.stores


def test_a_misspelled_hook_fails_only_its_plugin(monkeypatch):
    pm = manager_with(monkeypatch, typo=plugin(essa_register_engine=lambda register: None))
    info = next(p for p in pm.plugins if p.name == "typo")
    assert "essa_register_engine" in info.error
    assert "local" in pm.transports


def test_duplicate_names_are_refused(monkeypatch):
    register_dummy = lambda register: register("dummy", DummyEngine)  # noqa: E731
    pm = manager_with(
        monkeypatch, a=plugin(essa_register_engines=register_dummy), b=plugin(essa_register_engines=register_dummy)
    )
    info = {p.name: p for p in pm.plugins}
    assert info["a"].error is None
    assert "registered by both a and b" in info["b"].error


def test_unavailable_engine_is_listed_with_its_reason(monkeypatch):
    class OldPythonEngine(DummyEngine):
        @classmethod
        def unavailable_reason(cls):
            return "needs Python 3.10"

    pm = manager_with(monkeypatch, old=plugin(essa_register_engines=lambda register: register("old", OldPythonEngine)))
    with pytest.raises(PluginNotFound, match="not available here: needs Python 3.10"):
        pm.engine_class("old")
    info = next(p for p in pm.plugins if p.name == "old")
    assert info.provides == ["engine old"]
    assert info.unavailable == ["engine old: needs Python 3.10"]


def test_autoload_can_be_switched_off_and_plugins_blocked(monkeypatch):
    hooks = plugin(essa_register_engines=lambda register: register("dummy", DummyEngine))
    monkeypatch.setenv("ESSA_BLOCK_PLUGINS", "dummy")
    assert "dummy" not in manager_with(monkeypatch, dummy=hooks).engines
    monkeypatch.delenv("ESSA_BLOCK_PLUGINS")
    monkeypatch.setenv("ESSA_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "dummy" not in manager_with(monkeypatch, dummy=hooks).engines


def test_plugins_can_add_commands(monkeypatch):
    import click

    @click.command("hello")
    def hello():
        click.echo("hi")

    pm = manager_with(monkeypatch, cmd=plugin(essa_register_commands=lambda cli: cli.add_command(hello)))
    group = click.Group("essa")
    assert pm.add_commands(group) == []
    assert "hello" in group.commands
