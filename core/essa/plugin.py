"""The public plugin surface: everything an essa plugin may use from the core, in one place.

A plugin imports ``essa`` (for :data:`essa.hookimpl`) and this module, and
nothing else from the core; it never imports another plugin's modules (a
plugin that offers something to others declares it in its package's
``__init__``, as essa-plugin-lmdb does). The architecture contracts in
``pyproject.toml`` (checked by the test suite) hold plugins to this.

What each kind of plugin finds here:

engines
    :class:`Engine`, :class:`Program`, :class:`ModuleInfo`, :data:`START`,
    :data:`CALLABLE_SIGNATURE`; :class:`Limits` and :class:`Grants`; the one
    invocation context (:class:`Invocation`, :func:`current_invocation`, its
    :class:`GuestFault` family, :func:`fault_guard`) and the guest ABI's host
    functions (:data:`HOST_FUNCTIONS`, :data:`IMPORT_MODULE`,
    :data:`METER_FUNCTIONS`, :data:`FUEL`, :class:`HostFunction`); where a
    guest trapped, said alike by every engine (:func:`trap_location`); the module
    rewriter (:func:`instrument`, :data:`METER_MODULE`) and the Wasm binary
    reader (:mod:`essa.wasm.binary` as :data:`binary`); WASI preview 1 helpers
    (:data:`wasip1`) and the guest's :class:`Stdin`.
stores
    :class:`Store`, :class:`ClusterServices`; lattices and their encoding
    (:func:`encode_lattice`, :func:`decode_lattice`, :func:`merge_encoded`,
    the ``TAG_*`` variant tags); state keys (:func:`encode_key`,
    :func:`record_key`, :class:`KeyList`, ...); sizes (:func:`parse_size`,
    :func:`spell_size`, :func:`format_bytes`).
placements
    :class:`Placement`, :class:`ExecutorState`.
transports
    :class:`Transport`, :class:`Message`, :class:`Subscription`, :func:`last_segment`.
triggers
    :class:`Trigger`, :class:`TriggerConfig`, the public API's
    :class:`Connection` (and its :class:`LogLine`, :class:`OutputLines`,
    :data:`CONSISTENCY_LEVELS`), functions' :class:`Signature` (arguments
    from JSON, results to JSON), and the JSON view of lattices
    (:func:`to_json`, :func:`from_json`).
commands (``essa_register_commands``)
    the CLI's option helpers (:func:`endpoint_options`, :func:`metrics_option`,
    :func:`serve_metrics`, :func:`split_endpoints`, :func:`tls_options`), a
    zenoh session like essa's own (:func:`open_transport`,
    :data:`DEFAULT_ENDPOINT`, :class:`TransportError`), this process's TLS
    files (:func:`tls_files`), :func:`wait_for_signal`, :func:`data_dir`,
    Prometheus buckets (:data:`LATENCY`).
everyone
    essa's errors and :func:`kind_of` (an error's kind, as JSON errors name
    it), :class:`RateLimitedLog` and :func:`describe` for background loops,
    :func:`raise_open_files_limit`, :func:`install_hint` (how to install one
    of essa's plugins: none is on PyPI).
"""

from __future__ import annotations

from essa import hookimpl
from essa.api import CONSISTENCY_LEVELS, Connection, LogLine, OutputLines
from essa.api.trigger import Trigger, TriggerConfig
from essa.cli.options import (
    endpoint_options,
    metrics_option,
    serve_metrics,
    split_endpoints,
    tls_options,
)
from essa.cluster.metrics import LATENCY
from essa.cluster.processes import open_transport, wait_for_signal
from essa.errors import (
    ArgumentError,
    CallCancelled,
    DecodeError,
    EssaError,
    GuestExit,
    GuestTrap,
    InvalidKey,
    LatticeTypeError,
    LimitExceeded,
    ModuleError,
    NotFound,
    PluginNotFound,
    ResultError,
    SignatureError,
    StoreError,
    kind_of,
)
from essa.placement import ExecutorState, Placement
from essa.plugins import install_hint
from essa.security.settings import tls_files
from essa.state.bincode import (
    TAG_BOOL,
    TAG_LWW,
    TAG_MAP,
    TAG_MAX,
    TAG_MULTI_CAUSAL,
    TAG_ORDERED_SET,
    TAG_SET,
    TAG_SINGLE_CAUSAL,
    decode_lattice,
    encode_lattice,
    merge_encoded,
)
from essa.state.keys import (
    RECORD_KEY_KEPT,
    RECORD_KEY_LIMIT,
    KeyList,
    encode_key,
    encode_text,
    is_shortened,
    is_text,
    quoted,
    record_key,
    shown,
)
from essa.state.lattice import (
    BoolLattice,
    Lattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
    VectorClock,
)
from essa.state.signatures import Signature
from essa.state.store import ClusterServices, Store
from essa.state.views import from_json, to_json
from essa.transport.base import Message, Subscription, Transport, last_segment
from essa.transport.zenoh import DEFAULT_ENDPOINT, TransportError
from essa.util.descriptors import raise_open_files_limit
from essa.util.paths import data_dir
from essa.util.ratelimit import RateLimitedLog, describe
from essa.util.units import (
    format_bytes,
    format_seconds,
    parse_duration,
    parse_size,
    spell_size,
)
from essa.wasm import binary, wasip1
from essa.wasm.abi import IMPORT_MODULE, CallOutcome, EssaResult, GuestMemory
from essa.wasm.engine import CALLABLE_SIGNATURE, START, Engine, ModuleInfo, Program
from essa.wasm.host import FUEL, HOST_FUNCTIONS, METER_FUNCTIONS, HostFunction
from essa.wasm.instrument import METER_MODULE, InstrumentError, instrument
from essa.wasm.invocation import (
    GuestCancelled,
    GuestFault,
    GuestLimit,
    Invocation,
    fault_guard,
    record_fault,
)
from essa.wasm.invocation import current as current_invocation
from essa.wasm.limits import DirGrant, Grants, Limits
from essa.wasm.stdin import CHUNK, Stdin
from essa.wasm.traps import trap_location

__all__ = [
    # plugin machinery
    "hookimpl",
    # engines
    "CALLABLE_SIGNATURE", "CHUNK", "FUEL", "HOST_FUNCTIONS", "IMPORT_MODULE", "METER_FUNCTIONS", "METER_MODULE",
    "START", "CallOutcome", "DirGrant", "Engine", "EssaResult", "Grants", "GuestCancelled", "GuestFault",
    "GuestLimit", "GuestMemory", "HostFunction", "InstrumentError", "Invocation", "Limits", "ModuleInfo", "Program",
    "Stdin", "binary", "current_invocation", "fault_guard", "instrument", "record_fault", "trap_location", "wasip1",
    # stores and state
    "RECORD_KEY_KEPT", "RECORD_KEY_LIMIT", "TAG_BOOL", "TAG_LWW", "TAG_MAP", "TAG_MAX", "TAG_MULTI_CAUSAL",
    "TAG_ORDERED_SET", "TAG_SET", "TAG_SINGLE_CAUSAL", "BoolLattice", "ClusterServices", "KeyList", "Lattice",
    "LwwLattice", "MapLattice", "MaxLattice", "MultiCausalLattice", "OrderedSetLattice", "SetLattice",
    "SingleCausalLattice", "Store", "VectorClock", "decode_lattice", "encode_key", "encode_lattice", "encode_text",
    "is_shortened", "is_text", "merge_encoded", "quoted", "record_key", "shown",
    # placements
    "ExecutorState", "Placement",
    # transports
    "DEFAULT_ENDPOINT", "Message", "Subscription", "Transport", "TransportError", "last_segment",
    # triggers
    "CONSISTENCY_LEVELS", "Connection", "LogLine", "OutputLines", "Signature", "Trigger", "TriggerConfig",
    "from_json", "to_json",
    # commands
    "LATENCY", "data_dir", "endpoint_options", "metrics_option", "open_transport", "serve_metrics",
    "split_endpoints", "tls_files", "tls_options", "wait_for_signal",
    # errors
    "ArgumentError", "CallCancelled", "DecodeError", "EssaError", "GuestExit", "GuestTrap", "InvalidKey",
    "LatticeTypeError", "LimitExceeded", "ModuleError", "NotFound", "PluginNotFound", "ResultError", "SignatureError",
    "StoreError", "kind_of",
    # utilities
    "RateLimitedLog", "describe", "format_bytes", "install_hint", "format_seconds", "parse_duration", "parse_size",
    "raise_open_files_limit", "spell_size",
]
