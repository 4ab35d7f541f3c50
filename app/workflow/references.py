"""References: the ``steps.fetch.outputs.json.items[0].id`` inside ``${...}``.

A reference is parsed once, at compile time, into a tuple of path segments (strings
for keys, ints for list indexes). Resolving it walks a plain nested structure; when a
segment is missing, the error names the path walked so far and the keys that exist,
which is what a user needs to fix a typo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chordflow.errors import ReferenceResolutionError

Segment = str | int

# A name segment, then any number of ".name", "[0]", "['key']" or '["key"]'.
_SEGMENT_RE = re.compile(
    r"""\s*(?:
        \.?(?P<name>[^.\[\]\s'"]+)          # .name (or the first name)
      | \[\s*(?P<index>-?\d+)\s*\]          # [0]
      | \[\s*'(?P<sq>[^']*)'\s*\]           # ['key']
      | \[\s*"(?P<dq>[^"]*)"\s*\]           # ["key"]
    )""",
    re.VERBOSE,
)

#: The roots a reference may start with. Which ones are allowed depends on the field.
ROOTS = frozenset(
    {"variables", "steps", "params", "outputs", "item", "item_index", "secrets", "run"}
)
#: What a ``steps.NAME.`` reference may read of another step.
STEP_ATTRIBUTES = frozenset({"outputs", "params", "status", "error", "attempts"})


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference: the source text and its path."""

    text: str
    path: tuple[Segment, ...]

    @property
    def root(self) -> str:
        return str(self.path[0])

    @property
    def step(self) -> str | None:
        """The step this reference reads, if it is a ``steps.NAME...`` reference."""
        if self.root == "steps" and len(self.path) >= 2:
            return str(self.path[1])
        return None

    def __str__(self) -> str:
        return self.text


_SIMPLE_RE = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*")


@lru_cache(maxsize=65536)
def parse_reference(text: str) -> Reference:
    """Parse ``a.b[0]['c d']`` into a Reference; raise ValueError if it is malformed.

    Cached: large workflows repeat the same references thousands of times.
    """
    src = text.strip()
    if _SIMPLE_RE.fullmatch(src):  # the common case: plain dotted names
        return Reference(src, tuple(src.split(".")))
    if not src:
        raise ValueError("empty reference '${}'")
    path: list[Segment] = []
    pos = 0
    while pos < len(src):
        m = _SEGMENT_RE.match(src, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"malformed reference '${{{text}}}' at character {pos + 1}")
        if not path and not m.group("name"):
            raise ValueError(f"reference '${{{text}}}' must start with a name")
        if m.group("name") is not None:
            if path and src[pos:m.end()].lstrip()[:1] != ".":
                raise ValueError(f"malformed reference '${{{text}}}': missing '.'")
            path.append(m.group("name"))
        elif m.group("index") is not None:
            path.append(int(m.group("index")))
        else:
            path.append(m.group("sq") if m.group("sq") is not None else m.group("dq"))
        pos = m.end()
    return Reference(src, tuple(path))


def format_path(path: Sequence[Segment]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


def walk(value: Any, path: Sequence[Segment], start: int = 0, *, text: str = "") -> Any:
    """Follow ``path[start:]`` into ``value``; raise ReferenceResolutionError on a miss."""
    for i in range(start, len(path)):
        seg = path[i]
        if isinstance(value, Mapping):
            if seg in value:
                value = value[seg]
                continue
            if isinstance(seg, int) and str(seg) in value:
                value = value[str(seg)]
                continue
            keys = ", ".join(sorted(map(str, value.keys()))[:20]) or "none"
            raise ReferenceResolutionError(
                f"'${{{text}}}': no key '{seg}' in {format_path(path[:i])} (keys: {keys})"
            )
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            idx = seg if isinstance(seg, int) else _as_index(seg)
            if idx is None:
                raise ReferenceResolutionError(
                    f"'${{{text}}}': {format_path(path[:i])} is a list; "
                    f"'{seg}' is not an index"
                )
            try:
                value = value[idx]
            except IndexError:
                raise ReferenceResolutionError(
                    f"'${{{text}}}': index {idx} is out of range for "
                    f"{format_path(path[:i])} (length {len(value)})"
                ) from None
            continue
        raise ReferenceResolutionError(
            f"'${{{text}}}': {format_path(path[:i])} is {type(value).__name__} "
            f"{_short(value)}, which has no '{seg}'"
        )
    return value


def _as_index(seg: Segment) -> int | None:
    if isinstance(seg, int):
        return seg
    try:
        return int(seg)
    except ValueError:
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
