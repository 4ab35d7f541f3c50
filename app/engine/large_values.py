"""Values larger than one MongoDB document: stored compressed, in parts.

A MongoDB document holds at most 16 MB, and a workflow's definition grows with its
steps (100,000 steps of pydantic's full dump is tens of megabytes), so a definition
that is not small is stored as zlib-compressed JSON cut into parts of ``PART_BYTES``,
one document each. Small values stay inline, readable in the database as they are.

The parts are written before the document naming them, so a reader never finds a
document whose parts are missing; writing the same value twice writes the same parts
(their ids derive from the owner's id), so a repeated write is harmless.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

#: A value whose JSON text is at most this long is stored inline.
INLINE_BYTES = 2 * 1024 * 1024
#: Bytes of compressed JSON per part document (far below 16 MB with its fields).
PART_BYTES = 8 * 1024 * 1024
ENCODING = "json+zlib"


def text_of(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def split(owner: str, text: str) -> list[dict[str, Any]]:
    """The part documents of a value's JSON ``text``, ``_id`` = "<owner>/<n>"."""
    blob = zlib.compress(text.encode(), 6)
    return [{"_id": f"{owner}/{n}", "owner": owner, "n": n,
             "data": blob[start:start + PART_BYTES]}
            for n, start in enumerate(range(0, len(blob), PART_BYTES))]


def part_ids(owner: str, count: int) -> list[str]:
    return [f"{owner}/{n}" for n in range(count)]


def join(parts: list[dict[str, Any]], count: int) -> Any:
    """The value back from its part documents (in any order); ValueError if any is
    missing."""
    by_n = {int(p["n"]): bytes(p["data"]) for p in parts}
    if sorted(by_n) != list(range(count)):
        raise ValueError(f"{count - len(by_n)} of {count} parts are missing")
    return json.loads(zlib.decompress(b"".join(by_n[n] for n in range(count))))
