"""XLSX worksheets as records, for the ``file`` module (openpyxl).

A worksheet is read like a CSV file: its first row names the columns, each later row
is a record (empty rows are skipped, a trailing run of empty header cells ignored).
Cells keep their types; dates and times become ISO 8601 text (modules/jsonsafe.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chordflow.errors import StepFailed
from chordflow.modules.jsonsafe import plain


def read_sheet(path: Path, sheet: str | None) -> tuple[list[dict[str, Any]], int]:
    """The records of ``sheet`` (default: the active one), and the file's size."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, KeyError, ValueError) as exc:
        raise StepFailed(f"cannot read {path} as XLSX: {exc}") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise StepFailed(f"params.sheet: {path.name} has no sheet '{sheet}' "
                             f"(sheets: {', '.join(book.sheetnames)})")
        ws = book[sheet] if sheet is not None else book.active
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return [], path.stat().st_size
        names = [str(h) if h is not None else "" for h in header]
        while names and not names[-1]:
            names.pop()
        records = []
        for row in rows:
            values = list(row[:len(names)])
            if all(v is None for v in values):
                continue
            values += [None] * (len(names) - len(values))
            records.append({n or f"column{i + 1}": plain(v)
                            for i, (n, v) in enumerate(zip(names, values, strict=True))})
        return records, path.stat().st_size
    finally:
        book.close()


def write_sheet(path: Path, data: Any, sheet: str | None) -> int:
    """Write records (a list of objects) as one worksheet; the file's size."""
    from openpyxl import Workbook

    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise StepFailed("XLSX data must be a list of objects")
    header: dict[str, None] = {}
    for record in data:
        header.update(dict.fromkeys(str(k) for k in record))
    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet or "Sheet1")
    ws.append(list(header))
    for record in data:
        ws.append([_cell(record.get(name)) for name in header])
    try:
        book.save(path)
    except OSError as exc:
        raise StepFailed(f"cannot write {path}: {exc.strerror}") from None
    return path.stat().st_size


def _cell(value: Any) -> Any:
    """A value a cell holds: numbers, text, booleans and nulls as they are, anything
    else (a list, an object) as its JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, default=str)
