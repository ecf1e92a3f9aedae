"""essa plugin hooks of essa-plugin-anna: the ``anna`` store and the ``essa anna`` commands."""

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
