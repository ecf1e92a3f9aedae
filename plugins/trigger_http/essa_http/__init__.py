"""essa-plugin-http: the ``http`` trigger (``essa serve``), built on the public API.

:class:`HttpTrigger` serves a :class:`essa.api.Connection` over HTTP/1.1 with
starlette and uvicorn; see the README for its routes, status codes, limits,
shutdown and metrics.
"""

from .trigger import HttpTrigger

__all__ = ["HttpTrigger"]
