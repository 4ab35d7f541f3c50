"""How a step's result travels between workers: JSON by default, or a serializer the
step names (``@step(serializer="pickle")`` or ``"package.module:object"`` with
``dumps(value) -> bytes`` and ``loads(bytes) -> value``).

A value under a serializer other than JSON is recorded as an envelope,
``{"serializer": name, "data": base64 text}``, which only the steps that depend on it
(told so by the workflow document) open: nothing else ever unpickles a record.
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
from typing import Any, Protocol

JSON = "json"


class Serializer(Protocol):
    def dumps(self, value: Any, /) -> bytes: ...
    def loads(self, data: bytes, /) -> Any: ...


def resolve(name: str) -> Serializer:
    """The serializer called ``name``: "pickle", or an object by its import path."""
    if name == "pickle":
        return pickle
    modname, sep, attr = name.partition(":")
    if not sep or not modname or not attr:
        raise ValueError(f"serializer '{name}' is neither 'json', 'pickle' nor "
                         "'package.module:object'")
    try:
        found: Any = importlib.import_module(modname)
    except ImportError as exc:
        raise ValueError(f"serializer '{name}': cannot import '{modname}': {exc}") from None
    for part in attr.split("."):
        found = getattr(found, part, None)
    if not (callable(getattr(found, "dumps", None)) and callable(getattr(found, "loads", None))):
        raise ValueError(f"serializer '{name}' has no dumps() and loads()")
    return found  # type: ignore[no-any-return]


def check_json(value: Any) -> str:
    """``value`` as JSON text; TypeError/ValueError saying what is not JSON."""
    return json.dumps(value, allow_nan=False)


def encode(value: Any, name: str) -> Any:
    """``value`` as it is recorded: itself (checked to be JSON) or an envelope."""
    if name == JSON:
        check_json(value)
        return value
    data = resolve(name).dumps(value)
    return {"serializer": name, "data": base64.b64encode(data).decode("ascii")}


def decode(recorded: Any, name: str) -> Any:
    """The value ``encode(value, name)`` recorded."""
    if name == JSON:
        return recorded
    if not (isinstance(recorded, dict) and recorded.get("serializer") == name):
        raise ValueError(f"expected a value recorded by serializer '{name}', got "
                         f"{type(recorded).__name__}")
    return resolve(name).loads(base64.b64decode(recorded["data"]))


def roundtrip(value: Any, name: str) -> Any:
    """What a worker would receive of ``value`` (``strict=True`` passes that on)."""
    if name == JSON:
        return json.loads(check_json(value))
    return decode(encode(value, name), name)
