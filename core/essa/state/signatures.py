"""Function signatures: parameter names and types and a result type, read from JSON Lines or TOML.

A signature says how to turn values into a function's argument bytes and
its result bytes back into a value (docs/signatures.md is the contract)::

    {"name":"count_words","params":[{"name":"text","type":"string"}],"result":"u64"}

Modules carry them in a custom section ``essa.signatures``, one such JSON
object per line (:func:`parse_lines`; :mod:`essa.wasm.signatures` finds the
section); modules built without the SDKs can be given them in a TOML file's
``[functions.NAME]`` tables (:func:`parse_toml`). A function without a
signature keeps the raw-bytes interface.

:class:`Signature` binds arguments (positional, by name, from JSON, from
command-line text) and refuses a wrong one before any call, with
:class:`~essa.errors.ArgumentError` naming the parameter; it decodes results
(:class:`~essa.errors.ResultError` if the bytes are not what it declares).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from essa.errors import ArgumentError, ResultError, SignatureError
from essa.state.types import Mismatch, Type, count_bytes, parse_type, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The custom section of a module that holds its signatures.
SECTION = "essa.signatures"
#: What a function or parameter name may be: a name in any of the SDKs' languages.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
#: Most parameters a signature may have.
MAX_PARAMS = 256


@dataclass(frozen=True)
class Param:
    """A parameter: its name and :class:`~essa.state.types.Type`."""

    name: str
    type: Type

    def __str__(self) -> str:
        return f"{self.name}: {self.type}"


@dataclass(frozen=True)
class Signature:
    """A function's parameters and result type; ``str()`` is ``count_words(text: string) -> u64``."""

    name: str
    params: tuple[Param, ...]
    result: Type

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.params))}) -> {self.result}"

    def as_dict(self) -> dict:
        """The signature as the contract's JSON object."""
        return {"name": self.name, "params": [{"name": p.name, "type": p.type.text} for p in self.params],
                "result": self.result.text}

    def line(self) -> bytes:
        """The signature as one line of an ``essa.signatures`` section (compact JSON and ``\\n``)."""
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "a signature") -> "Signature":
        """The signature a contract JSON object (or TOML table) describes; :class:`SignatureError` if it is not one.

        ``name``, ``params`` (a list of ``{"name", "type"}``) and ``result``
        are required; other keys are ignored (later versions may add some).
        """
        if not isinstance(data, dict):
            raise SignatureError(f"{where}: expected an object with name, params and result, got {shown(data)}")
        name = data.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise SignatureError(f"{where}: 'name' must be a function name (letters, digits, '_'), got {shown(name)}")
        params = data.get("params")
        if not isinstance(params, list) or len(params) > MAX_PARAMS:
            raise SignatureError(f"{where}: 'params' of {name} must be a list of {{\"name\", \"type\"}} objects "
                                 f"(at most {MAX_PARAMS}), got {shown(params)}")
        checked: list[Param] = []
        for index, param in enumerate(params):
            what = f"{where}: parameter {index + 1} of {name}"
            if not isinstance(param, dict):
                raise SignatureError(f"{what}: expected {{\"name\": ..., \"type\": ...}}, got {shown(param)}")
            param_name = param.get("name")
            if not isinstance(param_name, str) or not NAME.fullmatch(param_name):
                raise SignatureError(f"{what}: 'name' must be a parameter name (letters, digits, '_'), "
                                     f"got {shown(param_name)}")
            if any(p.name == param_name for p in checked):
                raise SignatureError(f"{what}: a second parameter named {param_name}")
            checked.append(Param(param_name, _type(param.get("type"), f"{what} ({param_name})")))
        if "result" not in data:
            raise SignatureError(f"{where}: {name} has no 'result' (\"unit\" for none)")
        return cls(name, tuple(checked), _type(data["result"], f"{where}: the result of {name}"))

    # -- arguments -------------------------------------------------------------------

    def encode(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> bytes:
        """The argument bytes of a call with ``args`` (in order) and ``kwargs`` (by name).

        :raises ArgumentError: a value is missing, extra, or does not fit its
            parameter (``count_words: parameter text: expected string, got 3``).
        """
        params = self.params
        if not kwargs:
            if len(args) != len(params):
                raise self._count_error(len(args))
            values: Sequence[Any] = args
        else:
            values = self._bind(args, kwargs)
        index = 0
        try:
            if len(params) == 1:
                return params[0].type.pack(values[0])
            parts = []
            for index, param in enumerate(params):
                parts.append(param.type.pack(values[index]))
            return b"".join(parts)
        except Mismatch as exc:
            param = params[index]
            raise ArgumentError(f"{self.name}: parameter {param.name}{exc.where()}: {exc.reason}") from None

    def encode_json(self, value: Any) -> bytes:
        """The argument bytes of a JSON request: an array (in order) or an object (by name)."""
        if isinstance(value, list):
            return self.encode(value)
        if isinstance(value, dict):
            return self.encode((), value)
        hint = f" (as [{shown(value)}] it would be the argument {self.params[0].name})" if len(self.params) == 1 else ""
        raise ArgumentError(f"{self.name}: expected the arguments as a JSON array or object, got {shown(value)}{hint}")

    def encode_texts(self, texts: Sequence[str | bytes]) -> bytes:
        """The argument bytes of command-line arguments, one per parameter.

        A ``string`` takes the text as it is, a ``bytes`` the bytes (or the
        text's UTF-8), a number or bool its spelling, an ``option`` ``null``
        or its value's spelling; lists, tuples and maps are JSON.
        """
        if len(texts) != len(self.params):
            raise self._count_error(len(texts))
        values = []
        for param, text in zip(self.params, texts):
            try:
                if isinstance(text, bytes):
                    value = text if param.type.text == "bytes" else param.type.from_text(_utf8(text))
                else:
                    value = param.type.from_text(text)
            except Mismatch as exc:
                raise ArgumentError(f"{self.name}: parameter {param.name}{exc.where()}: {exc.reason}") from None
            values.append(value)
        return self.encode(values)

    def check_raw(self, data: bytes) -> None:
        """Refuse argument bytes that are not exactly this signature's parameters, in one line."""
        pos = 0
        for param in self.params:
            try:
                _value, pos = param.type.decode(data, pos)
            except (struct.error, IndexError):
                raise ArgumentError(f"{self.name}: the argument bytes end before parameter {param.name} "
                                    f"({param.type}) does ({count_bytes(len(data))} for {self})") from None
            except Mismatch as exc:
                raise ArgumentError(f"{self.name}: the argument bytes do not hold parameter {param.name}{exc.where()} "
                                    f"({param.type}): {exc.reason}") from None
        if pos != len(data):
            raise ArgumentError(f"{self.name}: {count_bytes(len(data) - pos)} of arguments left over after its "
                                f"parameters ({self})")

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        if len(args) > len(self.params):
            raise self._count_error(len(args) + len(kwargs))
        values = list(args)
        unknown = [k for k in kwargs if not any(p.name == k for p in self.params)]
        if unknown:
            names = ", ".join(p.name for p in self.params) or "none"
            raise ArgumentError(f"{self.name}: no parameter {unknown[0]!r} (parameters: {names})")
        for param in self.params[len(args):]:
            if param.name not in kwargs:
                raise ArgumentError(f"{self.name}: missing argument {param} ({self})")
            values.append(kwargs[param.name])
        twice = [p.name for p in self.params[:len(args)] if p.name in kwargs]
        if twice:
            raise ArgumentError(f"{self.name}: argument {twice[0]} given twice (by position and by name)")
        return values

    def _count_error(self, given: int) -> ArgumentError:
        wanted = len(self.params)
        return ArgumentError(f"{self.name}: takes {wanted} argument{'' if wanted == 1 else 's'} ({self}), "
                             f"got {given}")

    # -- results ---------------------------------------------------------------------

    def decode_result(self, data: bytes) -> Any:
        """The result value of the result bytes; :class:`ResultError` if they are not one of :attr:`result`."""
        kind, name = self.result, self.name
        try:
            value, end = kind.decode(data, 0)
        except (struct.error, IndexError):
            raise ResultError(f"{name}: its result ({count_bytes(len(data))}) ends before a whole {kind}", data) from None
        except Mismatch as exc:
            raise ResultError(f"{name}: its result{exc.where()} is not a {kind}: {exc.reason}", data) from None
        if end != len(data):
            raise ResultError(f"{name}: its result has {count_bytes(len(data) - end)} left over after a {kind}", data)
        return value

    def result_json(self, value: Any) -> Any:
        """A decoded result as JSON can hold it (see :meth:`essa.state.types.Type.to_json`)."""
        return value if self.result.plain else self.result.to_json(value)


def _type(text: Any, where: str) -> Type:
    try:
        return parse_type(text)
    except Mismatch as exc:
        raise SignatureError(f"{where}: {exc.reason}") from None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Mismatch("expected text, got bytes that are not UTF-8") from None


def parse_lines(data: bytes, origin: str = f"the {SECTION} section") -> list[Signature]:
    """The signatures of an ``essa.signatures`` section: UTF-8 JSON Lines, one object per function.

    Blank lines and a missing final line break are accepted; a function
    declared twice alike counts once, twice differently is refused.

    :raises SignatureError: the bytes are not such lines (one line naming the line and why).
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    found: list[Signature] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise SignatureError(f"{origin}, line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        found.append(Signature.from_dict(entry, f"{origin}, line {number}"))
    return merge(found, origin)


def parse_toml(text: str, origin: str = "essa.toml") -> list[Signature]:
    """The signatures of a TOML document's ``[functions.NAME]`` tables (its other tables are not read)::

        [functions.count_words]
        params = [{ name = "text", type = "string" }]
        result = "u64"

    :raises SignatureError: not TOML, or a table that is not a signature.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SignatureError(f"{origin}: not TOML: {exc}") from None
    functions = document.get("functions", {})
    if not isinstance(functions, dict):
        raise SignatureError(f"{origin}: 'functions' must be tables [functions.NAME], got {shown(functions)}")
    found = []
    for name, table in functions.items():
        if not isinstance(table, dict):
            raise SignatureError(f"{origin}: [functions.{name}] must be a table with params and result")
        found.append(Signature.from_dict({**table, "name": name}, f"{origin}, [functions.{name}]"))
    return found


def merge(signatures: Iterable[Signature], origin: str) -> list[Signature]:
    """``signatures`` by name, each once (sorted); :class:`SignatureError` for a name given two different ones."""
    by_name: dict[str, Signature] = {}
    for signature in signatures:
        known = by_name.setdefault(signature.name, signature)
        if known != signature:
            raise SignatureError(f"{origin}: two different signatures of {signature.name}: {known} and {signature}")
    return [by_name[name] for name in sorted(by_name)]


__all__ = ["MAX_PARAMS", "NAME", "SECTION", "Param", "Signature", "merge", "parse_lines", "parse_toml"]
