"""``table``: records (a list of objects) to columns and back, JSON-safe.

What the replaced platform's DataTransformer did with pandas DataFrames, without them:
a DataFrame cannot be recorded as a step's output, a table of JSON can. A *table* is
``{"columns": [names], "rows": [[values], ...]}`` (the shape of ``pandas.DataFrame.
to_dict(orient="split")`` without the index); *records* are ``[{name: value}, ...]``
(``orient="records"``), what the database modules return and take. Column order is
the order in which names first appear; a record without a column has null there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it reshapes data.
module = StepModule("table", "Records to columns and back (what DataTransformer did).",
                    runs_code=False)


def _columns_of(records: list[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(str(k) for k in record))
    return list(names)


def _check_records(data: Any) -> list[Mapping[str, Any]]:
    if not isinstance(data, list):
        raise StepFailed("params.data: a list of objects (records)")
    for i, record in enumerate(data):
        if not isinstance(record, Mapping):
            raise StepFailed(f"params.data[{i}]: an object, not {type(record).__name__}")
    return data


@module.method
def to_columns(ctx: StepContext, data: list[dict[str, Any]],
               columns: list[str] | None = None) -> dict[str, Any]:
    """Records to a table (the platform's dicts2df); outputs columns, rows, count and
    data ({columns, rows}, the table as one value).

    data: the records, a list of objects.
    columns: the columns to keep, in this order (default: every one, in order of
        first appearance).
    """
    records = _check_records(data)
    names = columns if columns is not None else _columns_of(records)
    rows = [[record.get(name) for name in names] for record in records]
    return {"columns": names, "rows": rows, "count": len(rows),
            "data": {"columns": names, "rows": rows}}


@module.method
def to_records(ctx: StepContext, data: dict[str, Any] | list[Any] | None = None,
               columns: list[str] | None = None,
               rows: list[list[Any]] | None = None) -> dict[str, Any]:
    """A table to records (the platform's df2dicts); outputs data (the records) and count.

    data: a table {columns, rows}, a column mapping {name: [values]}, or records
        (returned as they are).
    columns: the column names, with rows (instead of data).
    rows: the rows, lists in the order of columns.
    """
    if data is None:
        if columns is None or rows is None:
            raise StepFailed("params.data: give a table, or columns and rows")
        data = {"columns": columns, "rows": rows}
    if isinstance(data, list):
        records = [dict(r) for r in _check_records(data)]
        return {"data": records, "count": len(records)}
    if "columns" in data and "rows" in data:
        names, body = data["columns"], data["rows"]
        if not isinstance(names, list) or not isinstance(body, list):
            raise StepFailed("params.data: columns and rows must be lists")
        out = []
        for i, row in enumerate(body):
            if not isinstance(row, list) or len(row) != len(names):
                raise StepFailed(f"params.data.rows[{i}]: a list of {len(names)} values "
                                 "(one per column)")
            out.append(dict(zip(names, row, strict=True)))
        return {"data": out, "count": len(out)}
    lengths = {len(v) for v in data.values() if isinstance(v, list)}
    if len(lengths) != 1 or not all(isinstance(v, list) for v in data.values()):
        raise StepFailed("params.data: a column mapping needs a list of the same length "
                         "per column")
    n = lengths.pop()
    out = [{name: values[i] for name, values in data.items()} for i in range(n)]
    return {"data": out, "count": len(out)}
