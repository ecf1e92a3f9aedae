"""Typed calls: how a call's arguments become bytes, and a deployed function as a Python callable.

A function with a signature (docs/signatures.md) takes values and gives a
value; one without takes bytes and gives bytes. :func:`bind` decides which
a call is, by what it is given:

- one ``bytes`` argument alone (or ``args=b"..."``, as before signatures):
  the call's **raw argument bytes**, passed as they are (checked against the
  signature if there is one, so garbage is refused before the call), and the
  result comes back as bytes;
- values, positional or by parameter name: **encoded by the signature**
  (:class:`~essa.errors.ArgumentError` naming the parameter if one does not
  fit), and the result comes back decoded;
- nothing: no arguments; the result is decoded if the function has a signature.

:class:`Function` is ``es.function("wc", "count_words")``: call it like the
function (``f("the quick fox")``, ``await f.acall(...)``).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Mapping, Sequence

from essa.cluster.deployments import Deployment
from essa.errors import ArgumentError
from essa.state.signatures import Signature
from essa.transport.base import Message

_BYTES = (bytes, bytearray, memoryview)


def raw_arguments(args: Sequence[Any], kwargs: Mapping[str, Any], signature: Signature | None) -> bytes | None:
    """The raw argument bytes a call was given, or ``None`` if it was given values (see the module documentation)."""
    if len(args) == 1 and not kwargs and isinstance(args[0], _BYTES):
        return bytes(args[0])
    if not args and len(kwargs) == 1 and isinstance(kwargs.get("args"), _BYTES):
        if signature is None or all(p.name != "args" for p in signature.params):
            return bytes(kwargs["args"])
    return None


def bind(deployment: Deployment, function: str, args: Sequence[Any],
         kwargs: Mapping[str, Any]) -> tuple[str, bytes, Signature | None]:
    """The export to call, the argument bytes, and the signature to decode the result with (``None``: bytes).

    :raises essa.errors.NotFound: the deployment has no such function.
    :raises ArgumentError: the arguments do not fit the signature, or values
        were given to a function without one.
    """
    export = deployment.check_function(function)
    signature = deployment.signature(function)
    raw = raw_arguments(args, kwargs, signature)
    if raw is not None:
        if signature is not None:
            try:
                signature.check_raw(raw)
            except ArgumentError as exc:
                name = signature.params[0].name if signature.params else "NAME"
                raise ArgumentError(f"{exc}; bytes given alone are the call's raw argument bytes (to pass a value, "
                                    f"give it by name: {name}=...)") from None
        return export, raw, None
    if signature is None:
        if args or kwargs:
            raise ArgumentError(f"{function} (deployment {deployment.spec}) has no signature, so it takes its "
                                "arguments as bytes (essa.encode makes them); or declare its signature "
                                "(docs/signatures.md)")
        return export, b"", None
    return export, signature.encode(args, kwargs), signature


class Function:
    """A function of a deployment, called like a Python function (see :meth:`Connection.function`).

    ``f(*args, **kwargs)`` calls it and returns its result; ``f.call_async``
    returns a :class:`concurrent.futures.Future` of it, ``await f.acall(...)``
    awaits it. Arguments and result follow :func:`bind`: values if the
    function has a :attr:`signature`, bytes if not. Parameter names never
    clash with options here: ``timeout`` and ``output`` are set when the
    function is made.
    """

    def __init__(self, connection: Any, spec: str, name: str, timeout: float | None = None,
                 output: Callable[[Message], None] | None = None) -> None:
        # connection: the essa.api.Connection that made it (not imported: it imports this module)
        connection.deployment(spec).check_function(name)
        self._connection = connection
        #: The deployment (``NAME``: its latest version at each call, or ``NAME@VERSION``).
        self.spec = spec
        #: The function's name, as its author wrote it.
        self.name = name
        self.timeout = timeout
        self.output = output

    @property
    def signature(self) -> Signature | None:
        """The function's signature in the deployment's current version, or ``None`` (bytes in, bytes out)."""
        return self._connection.deployment(self.spec).signature(self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._connection._call(self.spec, self.name, args, kwargs, self.timeout, self.output)

    def call_async(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Start a call; the future's result is the function's result."""
        return self._connection._call_async(self.spec, self.name, args, kwargs, self.output)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The call for asyncio (cancelling the task cancels the call)."""
        return (await self._connection._acall(self.spec, self.name, args, kwargs, self.output)).value

    def __repr__(self) -> str:
        signature = self.signature
        return f"<essa.Function {self.spec} {signature if signature is not None else self.name + ' (bytes)'}>"


__all__ = ["Function", "bind", "raw_arguments"]
