"""What a search box's text finds among runs: the MongoDB filter of ``find_runs``'s
``search`` (the dashboard's runs list, ``GET /runs?q=``).

A run is found by the start of its id, by a part of its workflow's name or of its
error (any case), and, for ``name=value``, by a variable of that value (the text, or
the number, boolean or null it reads as in JSON). Only operators that MongoDB and
nx-27017 both answer: ``$regex`` with ``$options`` given as text (nx-27017 refuses a
compiled pattern), ``$or``, ``$in`` and dotted paths of plain names (a bracket would be
an array index to nx-27017). The text is escaped: it is never a pattern of its own.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A variable's name as ``name=value`` may give it (no dots, no brackets).
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
#: Characters of a search at most.
MAX_SEARCH = 200


def search_filter(text: str) -> dict[str, Any]:
    """The filter of the runs that ``text`` finds (see the module's docstring)."""
    words = text.strip()[:MAX_SEARCH]
    pattern = re.escape(words)
    found: list[dict[str, Any]] = [
        {"_id": {"$regex": f"^{re.escape(words.lower())}"}},
        {"workflow": {"$regex": pattern, "$options": "i"}},
        {"error": {"$regex": pattern, "$options": "i"}},
    ]
    name, equals, value = words.partition("=")
    if equals and VARIABLE_NAME.fullmatch(name.strip()):
        found.append({f"variables.{name.strip()}": {"$in": variable_values(value.strip())}})
    return {"$or": found}


def variable_values(value: str) -> list[Any]:
    """What a variable may hold for ``value`` to find it: the text itself and, if it
    reads as one in JSON, the number, boolean or null (``n=2`` finds ``2`` and ``"2"``)."""
    values: list[Any] = [value]
    try:
        parsed = json.loads(value)
    except ValueError:
        return values
    if parsed is None or isinstance(parsed, (bool, int, float)):
        values.append(parsed)
    return values
