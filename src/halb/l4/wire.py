"""The control socket's messages (PURE): `model.Command` and `model.TableView` to JSON-ready
dicts and back, and the request / reply shapes `l4/control.py` sends one per line.

Every model dataclass is encoded field by field (enums by value, tuples as lists), and decoded
from the field types, so a field added to the model with a default travels without a change
here; an unknown key or a wrong type is a `WireError`, never a half-built command.

Requests:  {"op": "execute", "command": {...}}   {"op": "view", "connections": bool}
           {"op": "ping"}
Replies:   {"ok": true}  {"ok": true, "table": {...}}
           {"ok": false, "errno": N, "message": "..."}
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from halb.l4 import model

T = TypeVar("T")
MAX_LINE = 4 * 1024 * 1024  # one request or reply; a whole table with its connections


class WireError(ValueError):
    """A message that is not what the protocol says."""


def encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [encode(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise WireError(f"cannot encode {type(obj).__name__}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls, vars(model))
    return _HINTS[cls]


def decode(tp: Any, data: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return decode(option, data)
            except WireError as e:
                errors.append(str(e))
        raise WireError("; ".join(errors) or "no type matches")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(data, list):
            raise WireError(f"expected a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in data)
        if len(args) != len(data):
            raise WireError(f"expected {len(args)} items, got {len(data)}")
        return tuple(decode(a, v) for a, v in zip(args, data, strict=True))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError as e:
            raise WireError(str(e)) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data)
    if tp is bool:
        if not isinstance(data, bool):
            raise WireError(f"expected a bool, got {data!r}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise WireError(f"expected an int, got {data!r}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise WireError(f"expected a number, got {data!r}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise WireError(f"expected a string, got {data!r}")
        return data
    raise WireError(f"cannot decode {tp!r}")


def _decode_dataclass(cls: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise WireError(f"expected an object for {cls.__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise WireError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    values = {name: decode(hints[name], value) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise WireError(f"{cls.__name__}: {e}") from None


def command_from(data: Any) -> model.Command:
    return typing.cast(model.Command, decode(model.Command, data))


def table_from(data: Any) -> model.TableView:
    return typing.cast(model.TableView, decode(model.TableView, data))


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def loads(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise WireError("message too long")
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(message, dict):
        raise WireError("a message is a JSON object")
    return message


def execute_request(cmd: model.Command) -> dict[str, Any]:
    return {"op": "execute", "command": encode(cmd)}


def view_request(connections: bool) -> dict[str, Any]:
    return {"op": "view", "connections": connections}
