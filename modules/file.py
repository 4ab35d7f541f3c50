"""``file``: read and write JSON, YAML, CSV, XLSX and text files.

The format comes from ``format`` or else the extension. Relative paths are relative to
the step's scratch directory, like a ``bash`` step's working directory, and every path
must stay inside the run's scratch directory or an admin's root (``CHORDFLOW_FILE_ROOTS``;
modules/paths.py, symbolic links resolved); the outputs' ``path`` is the resolved one.
CSV reads give
a list of dicts of strings (CSV has no types); CSV writes take a list of dicts and use
the union of their keys, in order of first appearance, as the header. XLSX (openpyxl)
works like CSV on one worksheet (``sheet``: its name; default the first, or the active
one): the first row is the header, cells keep their types (numbers stay numbers, dates
become ISO 8601 text), formulas are read as their last computed values.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.paths import confine
from chordflow.modules.registry import StepModule

#: runs_code=False: it reads and writes data in the step's scratch directory and the
#: admin's roots; nothing the caller wrote runs.
module = StepModule("file", "Read and write JSON, YAML, CSV, XLSX and text files.",
                    runs_code=False)

Format = Literal["json", "yaml", "csv", "xlsx", "text"]
_EXTENSIONS: dict[str, Format] = {
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".xlsx": "xlsx",
    ".txt": "text", ".text": "text", ".log": "text", ".md": "text", ".conf": "text",
    ".ini": "text", ".cfg": "text", ".html": "text", ".xml": "text", ".sh": "text",
}


def _format(path: Path, given: Format | None) -> Format:
    if given is not None:
        return given
    try:
        return _EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise StepFailed(
            f"cannot tell the format of '{path.name}' from its extension; "
            "set 'format' to json, yaml, csv, xlsx or text"
        ) from None


@module.method
def read(
    ctx: StepContext, path: str, format: Format | None = None, encoding: str = "utf-8",
    sheet: str | None = None,
) -> dict[str, Any]:
    """Read a file; outputs data (parsed), path and size.

    path: the file (relative to the step's scratch directory); inside the run's
        scratch directory or CHORDFLOW_FILE_ROOTS.
    format: json, yaml, csv, xlsx or text; defaults to the extension's.
    encoding: text encoding.
    sheet: the XLSX worksheet to read (default: the active one).
    """
    target = confine(ctx, path, "path")
    fmt = _format(target, format)
    if fmt == "xlsx":
        from chordflow.modules.xlsx import read_sheet

        records, size = read_sheet(target, sheet)
        return {"data": records, "path": str(target), "size": size}
    try:
        text = target.read_text(encoding=encoding)
    except OSError as exc:
        raise StepFailed(f"cannot read {target}: {exc.strerror}") from None
    try:
        if fmt == "json":
            data: Any = json.loads(text) if text.strip() else None
        elif fmt == "yaml":
            data = yaml.safe_load(text)
        elif fmt == "csv":
            data = list(csv.DictReader(io.StringIO(text)))
        else:
            data = text
    except (ValueError, yaml.YAMLError) as exc:
        raise StepFailed(f"{target} is not valid {fmt}: {exc}") from None
    return {"data": data, "path": str(target), "size": len(text)}


@module.method
def write(
    ctx: StepContext,
    path: str,
    data: Any,
    format: Format | None = None,
    encoding: str = "utf-8",
    mkdirs: bool = True,
    sheet: str | None = None,
) -> dict[str, Any]:
    """Write data to a file; outputs path and size.

    path: the file (relative to the step's scratch directory); inside the run's
        scratch directory or CHORDFLOW_FILE_ROOTS.
    data: what to write; a list of dicts for CSV and XLSX.
    format: json, yaml, csv, xlsx or text; defaults to the extension's.
    mkdirs: create missing parent directories.
    sheet: the XLSX worksheet's name (default "Sheet1"); an existing file is replaced.
    """
    target = confine(ctx, path, "path")
    fmt = _format(target, format)
    if fmt == "xlsx":
        from chordflow.modules.xlsx import write_sheet

        if mkdirs:
            target.parent.mkdir(parents=True, exist_ok=True)
        return {"path": str(target), "size": write_sheet(target, data, sheet)}
    if fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    elif fmt == "yaml":
        text = yaml.safe_dump(data, default_flow_style=False, allow_unicode=True,
                              sort_keys=False)
    elif fmt == "csv":
        text = _to_csv(data)
    elif isinstance(data, list):
        text = "\n".join(str(item) for item in data)
    else:
        text = "" if data is None else str(data)
    if mkdirs:
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.write_text(text, encoding=encoding)
    except OSError as exc:
        raise StepFailed(f"cannot write {target}: {exc.strerror}") from None
    return {"path": str(target), "size": len(text)}


def _to_csv(data: Any) -> str:
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise StepFailed("CSV data must be a list of objects")
    header: dict[str, None] = {}
    for row in data:
        header.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    return out.getvalue()
