"""The public Python API: :func:`connect` and what it returns, and essa's processes (:mod:`essa.api.services`).

Scripts, the ``essa`` command and triggers (``essa serve``) all use essa
through this package. The most used names are importable from ``essa`` too.
"""

from essa.api.connection import CallError, CallResult, Connection, LogBounds, LogFollower, LogLine, Run, State, connect
from essa.api.function import Function
from essa.cluster.client import ConsoleOutput
from essa.cluster.consistency import LEVELS as CONSISTENCY_LEVELS
from essa.cluster.dags import Dag
from essa.cluster.deployments import Deployed, Deployment, FunctionChanges, check_name
from essa.cluster.lines import OutputLines
from essa.cluster.programs import read_module
from essa.cluster.tracing import write_chrome_trace
from essa.errors import ArgumentError, ResultError, RunFailed, SignatureError
from essa.security.tls import TlsFiles
from essa.state.signatures import Param, Signature
from essa.wasm.limits import DirGrant, Grants, Limits

__all__ = [
    "ArgumentError",
    "CONSISTENCY_LEVELS",
    "CallError",
    "CallResult",
    "Connection",
    "ConsoleOutput",
    "Dag",
    "Deployed",
    "Deployment",
    "DirGrant",
    "Function",
    "FunctionChanges",
    "Grants",
    "Limits",
    "LogBounds",
    "LogFollower",
    "LogLine",
    "OutputLines",
    "Param",
    "ResultError",
    "Run",
    "RunFailed",
    "Signature",
    "SignatureError",
    "State",
    "TlsFiles",
    "check_name",
    "connect",
    "read_module",
    "write_chrome_trace",
]
