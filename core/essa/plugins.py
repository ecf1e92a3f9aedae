"""Plugin loading and the registries of engines, stores, transports, placements and triggers.

Plugins are distributions with an entry point in the ``essa`` group. Each entry
point is loaded in isolation: one that fails to import is recorded (and shown
by ``essa plugins``) but never stops essa or the other plugins. essa's own
built-in parts register through the same hooks.

Environment knobs:

``ESSA_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points (only the built-in parts);
``ESSA_BLOCK_PLUGINS=name,name``
    skip these entry point names.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

import pluggy

from essa import builtin, hookspecs
from essa.errors import PluginNotFound
from essa.placement import Placement
from essa.security.acl import grant
from essa.state.store import Store
from essa.transport.base import Transport
from essa.wasm.engine import Engine

ENTRY_POINT_GROUP = "essa"

#: The core's distribution name (``pip install essa-wasm``); the import package is ``essa``.
CORE_DISTRIBUTION = "essa-wasm"

#: Distributions known to provide a part, for "install X" hints.
KNOWN_PROVIDERS = {
    "engine": {"wasmtime": "essa-plugin-wasmtime", "wasmer": "essa-plugin-wasmer"},
    "store": {"lmdb": "essa-plugin-lmdb", "anna": "essa-plugin-anna", "redis": "essa-plugin-redis"},
    "transport": {},
    "placement": {},
    "trigger": {"http": "essa-plugin-http"},
}

#: Where each of essa's own plugins lies in essa's source tree. None of them (nor the core) is on
#: PyPI, so they are installed from a checkout of essa's repository.
PLUGIN_SOURCES = {
    "essa-plugin-wasmtime": "plugins/engine_wasmtime",
    "essa-plugin-wasmer": "plugins/engine_wasmer",
    "essa-plugin-lmdb": "plugins/store_lmdb",
    "essa-plugin-anna": "plugins/store_anna",
    "essa-plugin-http": "plugins/trigger_http",
}


def install_hint(distribution: str) -> str:
    """How to install ``distribution``: for essa's own plugins, from a checkout of essa's repository."""
    path = PLUGIN_SOURCES.get(distribution)
    if path is None:
        return f"install {distribution}"
    return (f"install {distribution} from a checkout of essa's repository: pip install -e {path} "
            "(essa's plugins are not on PyPI)")


#: The parts essa uses when the user does not choose.
DEFAULTS = {"engine": "wasmtime", "store": "lmdb", "transport": "local", "placement": "least-loaded", "trigger": "http"}

T = TypeVar("T")


@dataclass
class PluginInfo:
    """What ``essa plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    provides: list[str] = field(default_factory=list)
    #: Why the plugin cannot be used, or ``None`` when it loaded.
    error: str | None = None
    #: Parts it declares but cannot provide in this Python, with the reason.
    unavailable: list[str] = field(default_factory=list)


@dataclass
class Registration(Generic[T]):
    """One registered part: its name, class, and the plugin that gave it."""

    name: str
    cls: type[T]
    plugin: str


class Registry(Generic[T]):
    """Named parts of one kind (``engine``, ``store`` or ``transport``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Registration[T]] = {}
        #: Parts a plugin declared but cannot provide here, with the reason.
        self.unavailable: dict[str, str] = {}

    def add(self, name: str, cls: type[T], plugin: str) -> None:
        if name in self._items:
            other = self._items[name].plugin
            raise ValueError(f"{self.kind} {name!r} is registered by both {other} and {plugin}")
        self._items[name] = Registration(name, cls, plugin)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(self._items.values())

    def get(self, name: str) -> type[T]:
        """Return the class registered as ``name``.

        :raises PluginNotFound: with a one-line message that lists what is
            installed and names the distribution to install.
        """
        if name in self._items:
            return self._items[name].cls
        if name in self.unavailable:
            raise PluginNotFound(f"{self.kind} {name!r} is not available here: {self.unavailable[name]}")
        installed = ", ".join(self.names()) or "none"
        hint = KNOWN_PROVIDERS.get(self.kind, {}).get(name)
        if hint:
            advice = install_hint(hint)
        else:
            advice = "the plugin that provides it may not be installed"
        raise PluginNotFound(f"unknown {self.kind} {name!r} (installed: {installed}); {advice}")


class PluginManager:
    """Loads plugins once and exposes typed registries and hooks."""

    def __init__(self, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("essa")
        self.pm.add_hookspecs(hookspecs)
        if autoload is None:
            autoload = not os.environ.get("ESSA_DISABLE_PLUGIN_AUTOLOAD")
        self._autoload = autoload
        self.plugins: list[PluginInfo] = []
        self.engines: Registry[Engine] = Registry("engine")
        self.stores: Registry[Store] = Registry("store")
        self.transports: Registry[Transport] = Registry("transport")
        self.placements: Registry[Placement] = Registry("placement")
        #: Trigger classes (subclasses of :class:`essa.api.trigger.Trigger`, a layer above this one).
        self.triggers: Registry[Any] = Registry("trigger")
        #: Every registered engine class, available here or not (for what it supports).
        self.engine_support: dict[str, type[Engine]] = {}
        self._load()

    # -- loading ---------------------------------------------------------------

    def _load(self) -> None:
        self._register(builtin, PluginInfo("builtin", CORE_DISTRIBUTION, _version(CORE_DISTRIBUTION)))
        if self._autoload:
            blocked = {n.strip() for n in os.environ.get("ESSA_BLOCK_PLUGINS", "").split(",") if n.strip()}
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in blocked or self.pm.is_blocked(ep.name):
                    continue
                dist = ep.dist.name if ep.dist else "?"
                info = PluginInfo(ep.name, dist, ep.dist.version if ep.dist else "?")
                try:
                    module = ep.load()
                except Exception as exc:  # a broken plugin must not break essa
                    info.error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                    self.plugins.append(info)
                    continue
                self._register(module, info)

    def _register(self, module: object, info: PluginInfo) -> None:
        try:
            self.pm.register(module, name=info.name)
            # A misspelled hook name fails loudly, but only for its own plugin.
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            info.error = f"invalid plugin: {exc}"
            self.plugins.append(info)
            return
        for kind, registry, hook in (
            ("engine", self.engines, self.pm.hook.essa_register_engines),
            ("store", self.stores, self.pm.hook.essa_register_stores),
            ("transport", self.transports, self.pm.hook.essa_register_transports),
            ("placement", self.placements, self.pm.hook.essa_register_placements),
            ("trigger", self.triggers, self.pm.hook.essa_register_triggers),
        ):
            def register(name: str, cls: type, _kind: str = kind, _registry: Registry = registry) -> None:
                reason = getattr(cls, "unavailable_reason", lambda: None)()
                if _kind == "engine":
                    self.engine_support[name] = cls
                if reason:
                    _registry.unavailable[name] = reason
                    info.provides.append(f"{_kind} {name}")
                    info.unavailable.append(f"{_kind} {name}: {reason}")
                    return
                cls.name = name
                _registry.add(name, cls, info.name)
                info.provides.append(f"{_kind} {name}")
                options = getattr(cls, "option_help", None) if _kind == "store" else None
                if options:  # (triggers' options have a table of their own: trigger_options)
                    info.provides.append(f"  options: {', '.join(options)}")

            # Call only this plugin's implementation, so each plugin's parts are
            # attributed to it and one failing plugin cannot hide another's.
            others = [p for p in self.pm.get_plugins() if p is not module]
            try:
                self.pm.subset_hook_caller(hook.name, remove_plugins=others)(register=register)
            except Exception as exc:
                info.error = f"{hook.name} failed: {type(exc).__name__}: {exc}"
        self.plugins.append(info)

    # -- typed access ----------------------------------------------------------

    def engine_class(self, name: str) -> type[Engine]:
        return self.engines.get(name)

    def store_class(self, name: str) -> type[Store]:
        return self.stores.get(name)

    def transport_class(self, name: str) -> type[Transport]:
        return self.transports.get(name)

    def placement_class(self, name: str) -> type[Placement]:
        return self.placements.get(name)

    def trigger_class(self, name: str) -> type:
        return self.triggers.get(name)

    def trigger_options(self) -> list[tuple[str, str, str]]:
        """``(trigger, key, description)`` of every installed trigger's ``--trigger-option`` keys, in order."""
        return [(r.name, key, text) for r in sorted(self.triggers, key=lambda r: r.name)
                for key, text in r.cls.option_help.items()]

    def access(self) -> list[tuple[str, dict[str, list[str]]]]:
        """The ``(role, keys)`` access installed plugins grant on a secure cluster (``essa_register_access``)."""
        granted: list[tuple[str, dict[str, list[str]]]] = []
        self.pm.hook.essa_register_access(allow=lambda role, **keys: granted.append(grant(role, **keys)))
        return granted

    def add_commands(self, cli: Any) -> list[str]:
        """Let every plugin add CLI commands; return one error line per failure."""
        errors = []
        plugins = self.pm.get_plugins()
        for impl in self.pm.hook.essa_register_commands.get_hookimpls():
            others = [p for p in plugins if p is not impl.plugin]
            try:
                self.pm.subset_hook_caller("essa_register_commands", remove_plugins=others)(cli=cli)
            except Exception as exc:
                errors.append(f"plugin {impl.plugin_name}: essa_register_commands failed: {exc}")
        return errors


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager
