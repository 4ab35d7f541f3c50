"""Limits on what a workflow may hold, checked before anything is recorded (and on
what a step may leave behind, enforced as it runs: modules/limits.py).

Hostile or mistaken input must get a clear error naming the step, the field and the
limit, never a crash deep inside the engine: a value nested 900 levels deep would blow
Python's stack while templating, a key with a NUL byte cannot be stored in MongoDB, and
a million-element ``foreach`` or a 100,000-step workflow costs every worker memory.
The checks here walk values iteratively (never recursively), so they cannot themselves
run out of stack, and they run where a workflow is validated (``/validate``, every
submission, the CLI), so validation and submission agree.

Every limit is a setting (``CHORDFLOW_MAX_*``, app/config.py) with a default far above
what real workflows need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Defaults, also used where no settings are at hand.
DEFAULT_NESTING = 64
DEFAULT_WHEN_LENGTH = 4096
DEFAULT_STEPS = 50_000
DEFAULT_FOREACH_ITEMS = 200_000
DEFAULT_OUTPUT_BYTES = 4 * 1024 * 1024
DEFAULT_LOG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one process enforces (``Settings.limits()``)."""

    #: Levels of nested objects and lists in params, outputs, variables and ``foreach``
    #: lists, and of parentheses, brackets and ``not`` in a ``when``.
    nesting: int = DEFAULT_NESTING
    #: Characters of a ``when`` expression.
    when_length: int = DEFAULT_WHEN_LENGTH
    #: Steps of one workflow.
    steps: int = DEFAULT_STEPS
    #: Elements of one ``foreach`` (a literal list, or the list a reference gives).
    foreach_items: int = DEFAULT_FOREACH_ITEMS
    #: Bytes of a step's outputs, JSON-encoded (modules/limits.py).
    outputs: int = DEFAULT_OUTPUT_BYTES
    #: Bytes of what one attempt printed and logged that are stored (modules/limits.py).
    logs: int = DEFAULT_LOG_BYTES


def current() -> Limits:
    """This process's limits, from its settings (the environment)."""
    from chordflow.config import get_settings

    return get_settings().limits()


def value_problem(value: Any, limit: int, *, named: int | None = None
                  ) -> tuple[str, str] | None:
    """What is wrong with a JSON-like value, if anything: (where inside it, what).

    Too deep (more than ``limit`` levels of objects and lists), a key that is not
    text, or a key holding a NUL byte (MongoDB cannot store it). Walks iteratively.
    ``named``: the limit the message names, if not ``limit`` (a whole document is
    allowed the levels of its own structure on top of the setting).
    """
    named = limit if named is None else named
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, Mapping):
            if depth >= limit:
                return where, _too_deep(named)
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"key {key!r} is not text (keys must be strings)"
                if "\x00" in key:
                    return where, f"key {key!r} holds a NUL byte, which cannot be stored"
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= limit:
                return where, _too_deep(named)
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _too_deep(limit: int) -> str:
    return f"nested more than {limit} levels deep (the limit, CHORDFLOW_MAX_NESTING)"


def check_value(value: Any, limit: int | None = None) -> Any:
    """For pydantic validators: ``value`` itself, or ValueError saying what is wrong
    and where (pydantic adds the step and the field)."""
    found = value_problem(value, current().nesting if limit is None else limit)
    if found is not None:
        where, what = found
        raise ValueError(f"{what}, at {shorten(where)}" if where else what)
    return value


def shorten(where: str, most: int = 60) -> str:
    """A path inside a value, cut in the middle when long (900 levels of ``.a``)."""
    return where if len(where) <= most else f"{where[:most // 2]}...{where[-most // 2:]}"
