"""``filter``: filter, select, sort, dedup and limit lists of dicts.

Same methods, parameters and outputs (``data``, ``count``) as the procedures system's
``common.Filter``, so its workflows run unchanged. Two deliberate differences: an empty
list is a valid input (an empty result, not a failure), and ``select`` applies
``cols``, then ``rename``, then ``drop`` when several are given instead of only one.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any, Literal

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule
from pydantic import BaseModel, ConfigDict

#: runs_code=False: conditions are data (column, operator, value), not expressions.
module = StepModule(
    "filter", "Filter, select, sort, dedup and limit lists of objects.", runs_code=False
)

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains",
             "not_contains"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    col: str
    op: Op = "eq"
    value: Any = None


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, list | dict):
        return b in a
    return str(b) in str(a)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
}


def _result(rows: list[Any]) -> dict[str, Any]:
    return {"data": rows, "count": len(rows)}


@module.method(name="filter")
def filter_(
    ctx: StepContext, data: list[dict[str, Any]], conditions: list[Condition]
) -> dict[str, Any]:
    """Keep the rows that meet every condition.

    data: a list of objects.
    conditions: a list of {"col", "op", "value"}, all of which must hold; op is eq,
        ne, gt, gte, lt, lte, in, not_in, contains or not_contains.
    """
    kept = []
    for i, row in enumerate(data):
        try:
            if all(_OPS[c.op](row.get(c.col), c.value) for c in conditions):
                kept.append(row)
        except TypeError as exc:
            raise StepFailed(f"row {i}: cannot compare: {exc}") from None
    return _result(kept)


@module.method
def select(
    ctx: StepContext,
    data: list[dict[str, Any]],
    cols: list[str] | None = None,
    rename: dict[str, str] | None = None,
    drop: list[str] | None = None,
) -> dict[str, Any]:
    """Keep, rename or drop columns.

    cols: the columns to keep (missing ones are skipped).
    rename: old name -> new name.
    drop: the columns to remove.
    """
    rows = data
    if cols is not None:
        rows = [{c: row[c] for c in cols if c in row} for row in rows]
    if rename:
        rows = [{rename.get(k, k): v for k, v in row.items()} for row in rows]
    if drop:
        dropped = set(drop)
        rows = [{k: v for k, v in row.items() if k not in dropped} for row in rows]
    return _result(rows)


@module.method
def sort(
    ctx: StepContext,
    data: list[dict[str, Any]],
    by: str | list[str],
    ascending: bool | list[bool] = True,
) -> dict[str, Any]:
    """Sort rows by one or more columns; missing values sort last.

    by: a column or a list of columns.
    ascending: one flag, or one per column.
    """
    keys = [by] if isinstance(by, str) else list(by)
    orders = [ascending] * len(keys) if isinstance(ascending, bool) else list(ascending)
    if len(orders) != len(keys):
        raise StepFailed(f"'ascending' has {len(orders)} flags for {len(keys)} columns")
    rows = list(data)
    # Stable sorts from the last key to the first give a multi-key sort with mixed orders.
    for key, asc in reversed(list(zip(keys, orders, strict=True))):
        present = [r for r in rows if r.get(key) is not None]
        missing = [r for r in rows if r.get(key) is None]
        try:
            present.sort(key=operator.itemgetter(key), reverse=not asc)
        except TypeError as exc:
            raise StepFailed(f"cannot sort by '{key}': {exc}") from None
        rows = present + missing
    return _result(rows)


@module.method
def dedup(
    ctx: StepContext, data: list[dict[str, Any]], cols: list[str] | None = None
) -> dict[str, Any]:
    """Drop repeated rows, keeping the first.

    cols: the columns that make two rows the same; all of them by default.
    """
    seen: set[str] = set()
    rows = []
    for row in data:
        ident = row if cols is None else {c: row.get(c) for c in cols}
        key = json.dumps(ident, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return _result(rows)


@module.method
def limit(
    ctx: StepContext, data: list[Any], count: int = 10, offset: int = 0
) -> dict[str, Any]:
    """Keep ``count`` rows starting at ``offset``.

    count: how many rows.
    offset: rows to skip first.
    """
    if count < 0 or offset < 0:
        raise StepFailed("count and offset must not be negative")
    return _result(list(data[offset:offset + count]))
