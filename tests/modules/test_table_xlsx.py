"""The table module (records and columns) and XLSX files in the file module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECORDS = [{"id": 1, "name": "ada", "when": "2024-05-01"}, {"id": 2, "name": "bo"}]


def test_records_to_columns_and_back(run_embedded: Any) -> None:
    doc = {"name": "table", "variables": {"rows": RECORDS}, "steps": [
        {"name": "cols", "module": "table", "method": "to_columns",
         "params": {"data": "${variables.rows}"}},
        {"name": "back", "module": "table", "method": "to_records",
         "params": {"data": "${steps.cols.outputs.data}"}},
        {"name": "mapping", "module": "table", "method": "to_records",
         "params": {"data": {"a": [1, 2], "b": ["x", "y"]}}}]}
    report = run_embedded(doc)
    assert report["status"] == "succeeded", report
    cols = report["steps"]["cols"]["outputs"]
    assert cols["columns"] == ["id", "name", "when"]
    assert cols["rows"] == [[1, "ada", "2024-05-01"], [2, "bo", None]]
    assert report["steps"]["back"]["outputs"]["data"] == [
        {"id": 1, "name": "ada", "when": "2024-05-01"}, {"id": 2, "name": "bo", "when": None}]
    assert report["steps"]["mapping"]["outputs"]["data"] == [{"a": 1, "b": "x"},
                                                             {"a": 2, "b": "y"}]


def test_a_ragged_table_names_the_row(run_embedded: Any) -> None:
    doc = {"name": "table-bad", "steps": [
        {"name": "back", "module": "table", "method": "to_records",
         "params": {"columns": ["a", "b"], "rows": [[1, 2], [3]]}}]}
    report = run_embedded(doc)
    assert report["status"] == "failed"
    assert "params.data.rows[1]" in report["steps"]["back"]["error"]


def test_xlsx_round_trip_with_a_sheet(run_embedded: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "people.xlsx"
    doc = {"name": "xlsx", "variables": {"rows": RECORDS}, "steps": [
        {"name": "write", "module": "file", "method": "write",
         "params": {"path": str(target), "data": "${variables.rows}", "sheet": "People"}},
        {"name": "read", "module": "file", "method": "read", "depends_on": ["write"],
         "params": {"path": str(target), "sheet": "People"}},
        {"name": "nosheet", "module": "file", "method": "read", "depends_on": ["write"],
         "params": {"path": str(target), "sheet": "Other"}, "continue_on_failure": True}]}
    report = run_embedded(doc)
    steps = report["steps"]
    assert steps["read"]["outputs"]["data"] == [
        {"id": 1, "name": "ada", "when": "2024-05-01"}, {"id": 2, "name": "bo", "when": None}]
    assert steps["nosheet"]["status"] == "failed"
    assert "has no sheet 'Other' (sheets: People)" in steps["nosheet"]["error"]

    from openpyxl import load_workbook

    book = load_workbook(target)
    assert book.sheetnames == ["People"]
    assert [c.value for c in book["People"][1]] == ["id", "name", "when"]
