"""essa plugin hooks of essa-plugin-http: the ``http`` trigger."""

from __future__ import annotations

import essa


@essa.hookimpl
def essa_register_triggers(register):
    from .trigger import HttpTrigger

    register("http", HttpTrigger)
