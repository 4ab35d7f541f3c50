"""Reading workflow files: JSON or YAML, any supported dialect, into a ``Workflow``.

Pydantic's errors are re-worded to name the step (by name, not list index) and the
field, like every other workflow error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from chordflow.errors import ValidationFailed, WorkflowError
from chordflow.workflow import limits
from chordflow.workflow.dialects import to_canonical
from chordflow.workflow.models import Workflow
from pydantic import ValidationError

#: Levels of a workflow document above a step's params (the document, ``steps``, the
#: step, ``params``, and a dialect's wrapping such as ``workflow_json``).
DOCUMENT_LEVELS = 6


def load_file(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Workflow:
    """Read, convert and validate a workflow file. ``environ``: what a dialect's
    ``${NAME}`` may read (the local CLI passes its own environment)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed([WorkflowError(f"cannot read {p}: {exc.strerror}")]) from None
    return load_text(text, fmt=_format_of(p), name_hint=p.stem, environ=environ)


def load_text(text: str, *, fmt: str = "yaml", name_hint: str | None = None,
              environ: Mapping[str, str] | None = None) -> Workflow:
    """Parse JSON or YAML text (YAML is a superset of JSON) into a Workflow."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationFailed([WorkflowError(f"not valid {fmt.upper()}: {exc}")]) from None
    return load_data(data, name_hint=name_hint, environ=environ)


def load_data(data: Any, *, name_hint: str | None = None,
              environ: Mapping[str, str] | None = None) -> Workflow:
    """Convert a parsed document (any dialect) and validate it into a Workflow.

    ``environ``: the environment variables a dialect's ``${NAME}`` may read; none by
    default (see app/workflow/dialects/dag_engine.py).
    """
    if isinstance(data, Workflow):
        return data
    if not isinstance(data, Mapping):
        raise ValidationFailed([WorkflowError("a workflow must be an object")])
    # Before a dialect walks it (recursively): the document itself within the limits,
    # with room for the levels a workflow's own structure takes (steps, a step, params).
    nesting = limits.current().nesting
    found = limits.value_problem(data, nesting + DOCUMENT_LEVELS, named=nesting)
    if found is not None:
        step, where = _step_of(data, found[0])
        raise ValidationFailed([WorkflowError(found[1], step=step,
                                              field=limits.shorten(where) or None)])
    canonical = to_canonical(data, name_hint, environ)
    if "name" not in canonical and name_hint:
        canonical["name"] = name_hint
    try:
        return Workflow.model_validate(canonical)
    except ValidationError as exc:
        raise ValidationFailed(_located(exc, canonical)) from None


_STEP_PATH = re.compile(r"^(\w+)\[(\d+)\]\.?(.*)$")


def _step_of(data: Mapping[str, Any], where: str) -> tuple[str | None, str]:
    """``steps[3].params.x`` of a raw document (any dialect) as (the step's name, the
    field in it), when the list holds a named step there; else (None, ``where``)."""
    m = _STEP_PATH.match(where)
    if m is None:
        return None, where
    items = data.get(m.group(1))
    index = int(m.group(2))
    item = items[index] if isinstance(items, list) and index < len(items) else None
    name = (item.get("name") or item.get("step_name")) if isinstance(item, Mapping) else None
    return (str(name), m.group(3)) if isinstance(name, str) and name else (None, where)


def _format_of(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def _located(exc: ValidationError, data: Mapping[str, Any]) -> list[WorkflowError]:
    """Turn pydantic's ``('steps', 3, 'retries')`` into step 'fetch', field 'retries'."""
    errors = []
    raw_steps = data.get("steps")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    for e in exc.errors():
        loc = list(e["loc"])
        step: str | None = None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            raw = steps[loc[1]] if loc[1] < len(steps) else None
            name = raw.get("name") if isinstance(raw, Mapping) else None
            step = str(name) if name else f"steps[{loc[1]}]"
            loc = loc[2:]
        fld = ""
        for part in loc:
            if isinstance(part, int):
                fld += f"[{part}]"
            elif part in ("str", "list[any]", "function-after[_one_or_many(), list[str]]"):
                continue  # pydantic's union-branch labels say nothing to a user
            else:
                fld += f".{part}" if fld else str(part)
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            message = "unknown field"
        elif e["type"] == "missing":
            message = "is required"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            message = str(e["ctx"]["error"])  # our own words, without "Value error, "
        errors.append(WorkflowError(message, step=step, field=fld or None))
    return errors
