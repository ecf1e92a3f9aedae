"""essa plugin hooks of essa-plugin-anna: the ``anna`` store, the ``essa anna`` commands, and its access rules."""

from __future__ import annotations

import essa

from .store import AnnaStore


@essa.hookimpl
def essa_register_stores(register):
    register("anna", AnnaStore)


@essa.hookimpl
def essa_register_commands(cli):
    from .cli import anna

    cli.add_command(anna)


@essa.hookimpl
def essa_register_access(allow):
    """On a secure cluster: KVS and routing nodes use anna's topics; executors and admins are their clients."""
    from .access import grant

    grant(allow)
