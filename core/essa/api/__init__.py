"""The public Python API: :func:`connect` and what it returns, and essa's processes (:mod:`essa.api.services`).

Scripts, the ``essa`` command and triggers (``essa serve``) all use essa
through this package. The most used names are importable from ``essa`` too.
"""

from essa.api.connection import CallError, Connection, Run, State, connect
from essa.cluster.client import ConsoleOutput
from essa.cluster.consistency import LEVELS as CONSISTENCY_LEVELS
from essa.cluster.deployments import Deployment, check_name
from essa.cluster.programs import read_module
from essa.cluster.tracing import write_chrome_trace
from essa.errors import RunFailed
from essa.security.tls import TlsFiles
from essa.wasm.limits import DirGrant, Grants, Limits

__all__ = [
    "CONSISTENCY_LEVELS",
    "CallError",
    "Connection",
    "ConsoleOutput",
    "Deployment",
    "DirGrant",
    "Grants",
    "Limits",
    "Run",
    "RunFailed",
    "State",
    "TlsFiles",
    "check_name",
    "connect",
    "read_module",
    "write_chrome_trace",
]
