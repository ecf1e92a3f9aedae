"""Hook specifications: how plugins add engines, stores, transports, triggers and commands.

Plugins implement these hooks with the :data:`essa.hookimpl` marker and are
found through the ``essa`` entry point group; essa's built-in parts register
through the very same hooks. Every ``essa_register_*`` hook follows the
registrar pattern: essa passes a ``register`` callable and the plugin calls it
once per thing it provides, for example::

    import essa

    @essa.hookimpl
    def essa_register_engines(register):
        register("wasmtime", WasmtimeEngine)
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

#: Marker for hook specifications; plugin authors use :data:`essa.hookimpl`.
hookspec = pluggy.HookspecMarker("essa")


# -- parts -------------------------------------------------------------------


@hookspec
def essa_register_engines(register: Callable[[str, type], None]) -> None:
    """Register Wasm engines.

    :param register: call ``register(name, engine_class)`` for each engine; the
        class subclasses :class:`essa.plugin.Engine`. ``name`` is what users
        pass to ``--engine``.
    """


@hookspec
def essa_register_stores(register: Callable[[str, type], None]) -> None:
    """Register key-value stores.

    :param register: call ``register(name, store_class)`` for each store; the
        class subclasses :class:`essa.plugin.Store`. ``name`` is what users pass
        to ``--store``.
    """


@hookspec
def essa_register_transports(register: Callable[[str, type], None]) -> None:
    """Register message transports between clients, schedulers and executors.

    :param register: call ``register(name, transport_class)`` for each
        transport; the class subclasses :class:`essa.plugin.Transport`.
    """


@hookspec
def essa_register_placements(register: Callable[[str, type], None]) -> None:
    """Register placement policies for the scheduler (``essa scheduler --placement NAME``).

    :param register: call ``register(name, placement_class)``; the class
        subclasses :class:`essa.plugin.Placement` and overrides ``choose``.
    """


@hookspec
def essa_register_triggers(register: Callable[[str, type], None]) -> None:
    """Register triggers: ways outside events become calls (``essa serve --trigger NAME``).

    :param register: call ``register(name, trigger_class)`` for each trigger;
        the class subclasses :class:`essa.plugin.Trigger`.
    """


# -- command line --------------------------------------------------------------


@hookspec
def essa_register_commands(cli: Any) -> None:
    """Add commands or command groups to the ``essa`` command line.

    :param cli: the top-level ``essa`` click group; call ``cli.add_command``.
    """


# -- security ----------------------------------------------------------------------


@hookspec
def essa_register_access(allow: Callable[..., None]) -> None:
    """Let the plugin's processes use their own key spaces on a secure cluster.

    A secure cluster's zenoh access control lets a peer do only what its
    certificate's role may (see :mod:`essa.security.acl`). A plugin whose
    processes talk over their own topics grants them, per role::

        allow("kvs", put=["anna/kvs/*/*"], subscribe=["anna/kvs/*/*"], token=["anna/live/kvs/**"])

    :param allow: call ``allow(role, put=..., subscribe=..., serve=...,
        query=..., token=..., watch=...)`` with lists of zenoh key
        expressions; ``role`` is one of :data:`essa.security.certs.ROLES`.
    """
