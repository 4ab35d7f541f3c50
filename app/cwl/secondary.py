"""A workflow's input Files with the ``secondaryFiles`` its inputs declare, as cwltool
fills them in before any step runs.

cwltool gives each File of a workflow's input object exactly the secondary files the
*workflow's* input declares (none declared: ``[]``), so a tool that requires one the
workflow did not pass fails, as the specification wants (conformance test
``secondary_files_missing``). chordflow runs each tool alone, where cwltool would
look for the tool's own patterns next to the file: the job object gets them here,
from the workflow's declaration. A pattern that is an expression is left to cwltool
(the File is left without ``secondaryFiles``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chordflow.cwl.inputs import file_path


class _Unknown(Exception):
    """A declaration this module does not follow (an expression, a named type)."""


def with_secondary_files(inputs: list[Mapping[str, Any]], job: dict[str, Any]
                         ) -> dict[str, Any]:
    """``job`` with each File's ``secondaryFiles`` found from its declaration."""
    out = dict(job)
    for declared in inputs:
        name = str(declared["id"]).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
        if out.get(name) is None:
            continue
        try:
            out[name] = _fill(out[name], declared.get("type"), declared.get("secondaryFiles"))
        except _Unknown:
            pass
    return out


def _fill(value: Any, kind: Any, patterns: Any) -> Any:
    if isinstance(kind, list):  # a union: the branch the value is
        for branch in kind:
            if _fits(value, branch):
                return _fill(value, branch, patterns)
        raise _Unknown
    if kind == "File" and isinstance(value, dict) and value.get("class") == "File":
        if "secondaryFiles" in value:
            return value
        return {**value, "secondaryFiles": _discover(value, patterns)}
    if isinstance(kind, Mapping) and kind.get("type") == "array" and isinstance(value, list):
        return [_fill(v, kind.get("items"), patterns) for v in value]
    if isinstance(kind, Mapping) and kind.get("type") == "record" and isinstance(value, dict):
        out = dict(value)
        for field in kind.get("fields") or ():
            key = str(field.get("name")).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
            if out.get(key) is not None:
                out[key] = _fill(out[key], field.get("type"), field.get("secondaryFiles"))
        return out
    if isinstance(kind, str) and kind in ("null", "boolean", "int", "long", "float",
                                          "double", "string", "Directory", "Any"):
        return value
    raise _Unknown


def _fits(value: Any, kind: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "File":
        return isinstance(value, dict) and value.get("class") == "File"
    if isinstance(kind, Mapping):
        return (kind.get("type") == "array" and isinstance(value, list)) or \
            (kind.get("type") == "record" and isinstance(value, dict)
             and "class" not in value)
    return False


def _discover(file: Mapping[str, Any], patterns: Any) -> list[dict[str, Any]]:
    """The declared secondary files that exist next to ``file``."""
    path = file_path(str(file.get("location") or file.get("path") or ""))
    if path is None:
        raise _Unknown
    found = []
    for entry in patterns if isinstance(patterns, list) else [patterns] if patterns else []:
        pattern = entry.get("pattern") if isinstance(entry, Mapping) else entry
        if not isinstance(pattern, str) or "$(" in pattern or "${" in pattern:
            raise _Unknown
        candidate = path.parent / _apply(path.name, pattern)
        if candidate.exists():
            found.append({"class": "Directory" if candidate.is_dir() else "File",
                          "location": Path(candidate).as_uri()})
    return found


def _apply(name: str, pattern: str) -> str:
    """A secondary file's name: each leading ``^`` removes one extension."""
    while pattern.startswith("^"):
        pattern = pattern[1:]
        if "." in name:
            name = name.rsplit(".", 1)[0]
    return name + pattern


def missing_required(inputs: list[Mapping[str, Any]], job: Mapping[str, Any]) -> str | None:
    """A required secondary file of a tool's input that its File does not list, as
    cwltool finds inside a workflow (where a step's tool discovers none by itself);
    only Files that list theirs (``secondaryFiles`` present) are checked."""
    for declared in inputs:
        name = str(declared["id"]).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
        try:
            found = _missing(job.get(name), declared.get("type"), declared.get("secondaryFiles"))
        except _Unknown:
            continue
        if found:
            return f"input '{name}': missing required secondary file '{found}'"
    return None


def _missing(value: Any, kind: Any, patterns: Any) -> str | None:
    if value is None:
        return None
    if isinstance(kind, list):
        for branch in kind:
            if _fits(value, branch):
                return _missing(value, branch, patterns)
        raise _Unknown
    if kind == "File" and isinstance(value, dict) and value.get("class") == "File":
        if "secondaryFiles" not in value or not patterns:
            return None
        listed = {str(f.get("basename") or str(f.get("location", "")).rsplit("/", 1)[-1])
                  for f in value["secondaryFiles"] or () if isinstance(f, Mapping)}
        for entry in patterns if isinstance(patterns, list) else [patterns]:
            pattern = entry.get("pattern") if isinstance(entry, Mapping) else entry
            required = entry.get("required") if isinstance(entry, Mapping) else None
            if not isinstance(pattern, str) or "$(" in pattern or "${" in pattern \
                    or required is False or not isinstance(required, bool | None):
                continue
            wanted = _apply(str(value.get("basename") or ""), pattern)
            if wanted not in listed:
                return wanted
        return None
    if isinstance(kind, Mapping) and kind.get("type") == "array" and isinstance(value, list):
        for v in value:
            found = _missing(v, kind.get("items"), patterns)
            if found:
                return found
        return None
    if isinstance(kind, Mapping) and kind.get("type") == "record" and isinstance(value, dict):
        for field in kind.get("fields") or ():
            key = str(field.get("name")).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
            found = _missing(value.get(key), field.get("type"), field.get("secondaryFiles"))
            if found:
                return found
        return None
    return None
