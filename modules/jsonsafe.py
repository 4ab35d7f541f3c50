"""What databases and servers return, made JSON-safe for a step's outputs.

Outputs are recorded (MongoDB, the API, the next step's params), so each value becomes
JSON: a ``Decimal`` a number (an integer where it is whole, else a float: the column's
exact text is lost beyond float precision; select it as text where that matters),
dates and times ISO 8601 text, ``timedelta`` seconds, an ObjectId its hex text, bytes
UTF-8 text (else base64, marked ``{"$base64": ...}``), sets lists.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with every part JSON-safe (see the module's docstring)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(raw).decode()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)  # ObjectId, Timestamp, anything with a text form
