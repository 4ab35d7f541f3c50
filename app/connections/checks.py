"""What a workflow's ``connection:`` fields must satisfy, checked when it is compiled.

Whether a named connection exists is the worker's to say (the API and the workers may
know different ones, as they know different modules); its shape, and whether the
step's module takes a connection at all, are known at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chordflow.connections.models import NAME_PATTERN, parse_connection


def connection_problems(value: str | Mapping[str, Any] | None, module: str,
                        types: tuple[str, ...]) -> list[tuple[str, str]]:
    """(field, message) for each problem of a step's ``connection`` value."""
    if value is None:
        return []
    if not types:
        return [("connection", f"module '{module}' takes no connection")]
    if isinstance(value, str):
        if not re.match(NAME_PATTERN, value):
            return [("connection", f"'{value}' is not a connection name (letters, digits, "
                     "'_', '.', '-')")]
        return []
    try:
        conn = parse_connection(dict(value))
    except ValueError as exc:
        return [("connection", f"invalid inline connection: {_one_line(exc)}")]
    if conn.type not in types:
        return [("connection.type", f"module '{module}' needs a connection of type "
                 f"{' or '.join(types)}, not {conn.type}")]
    return []


def _one_line(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
                         for e in errors())
    return str(exc)
