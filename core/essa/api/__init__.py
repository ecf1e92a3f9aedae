"""The public Python API: :func:`essa.connect` and what it returns.

Scripts, the ``essa`` command and triggers (``essa serve``) all use essa
through this package and nothing else.
"""

from essa.api.connection import CallError, Connection, State, connect
from essa.cluster.deployments import Deployment

__all__ = ["CallError", "Connection", "Deployment", "State", "connect"]
