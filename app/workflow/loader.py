"""Reading workflow files: JSON or YAML, any supported dialect, into a ``Workflow``.

Pydantic's errors are re-worded to name the step (by name, not list index) and the
field, like every other workflow error. An unknown field suggests the known one it
resembles, and does not hide the other errors: ``ValidationFailed.partial`` carries
the workflow without the unknown fields, so that ``compile_loaded`` can report what
compiling it finds in the same pass. A YAML syntax error says where, and how to quote
a ``${...}`` reference (unquoted, it breaks a YAML flow mapping or list).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from chordflow.errors import ValidationFailed, WorkflowError
from chordflow.workflow import limits
from chordflow.workflow.dialects import to_canonical
from chordflow.workflow.models import Step, Workflow
from pydantic import ValidationError

T = TypeVar("T")


class LoadFailed(ValidationFailed):
    """A document that does not validate, with (``partial``) the workflow it makes
    without its unknown fields when they were its only problem, else None."""

    def __init__(self, errors: list[WorkflowError], partial: Workflow | None):
        super().__init__(errors)
        self.partial = partial

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
    return load_data(parse_text(text, fmt=fmt), name_hint=name_hint, environ=environ)


def parse_text(text: str, *, fmt: str = "yaml") -> Any:
    """JSON or YAML text as data; ValidationFailed saying where it does not parse."""
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed([WorkflowError(
            f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        raise ValidationFailed([WorkflowError(yaml_problem(text, exc))]) from None
    except ValueError as exc:
        raise ValidationFailed([WorkflowError(f"not valid {fmt.upper()}: {exc}")]) from None


def yaml_problem(text: str, exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line with where it is (1-based line and column) and, when
    an unquoted ``${...}`` is the cause, how to quote it: inside a flow mapping or list
    (``{a: ${x}}``) YAML reads its ``{`` as the start of another mapping."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"not valid YAML: {problem}"
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    start = line.rfind("${", 0, mark.column + 1)
    if start != -1:
        end = line.find("}", start)
        ref = line[start:end + 1] if end != -1 else line[start:]
        return (f"not valid YAML: line {mark.line + 1}, column {start + 1}: a value "
                f'starting with ${{ must be quoted in YAML: "{ref}"')
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    return f"not valid YAML: line {mark.line + 1}, column {mark.column + 1}: {what}"


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
        raise LoadFailed(_located(exc, canonical),
                         _without_unknown_fields(exc, canonical)) from None


def compile_loaded(load: Callable[[], Workflow], compile: Callable[[Workflow], T]) -> T:
    """``compile(load())``, reporting in one pass the loading errors (an unknown field)
    and the compiling ones (an unknown step in ``depends_on``) when loading failed only
    for fields that compiling can do without: a misspelled ``depend_on`` is then
    reported with every other error instead of hiding them."""
    try:
        workflow = load()
    except LoadFailed as exc:
        partial = exc.partial
        if partial is None:
            raise
        try:
            compile(partial)
        except ValidationFailed as more:
            raise ValidationFailed([*exc.errors, *more.errors]) from None
        raise
    return compile(workflow)


def _without_unknown_fields(exc: ValidationError, data: Mapping[str, Any]) -> Workflow | None:
    """The workflow with its unknown fields left out, if they were its only problem
    (what else compiling finds can then be reported with them); else None."""
    if any(e["type"] != "extra_forbidden" for e in exc.errors()):
        return None
    trimmed = copy.deepcopy(dict(data))
    for e in exc.errors():
        *parents, key = e["loc"]
        holder: Any = trimmed
        for part in parents:
            holder = holder[part]
        if isinstance(holder, dict):
            holder.pop(key, None)
    try:
        return Workflow.model_validate(trimmed)
    except ValidationError:
        return None


def _unknown_field(loc: list[Any], under_step: bool) -> str:
    """"unknown field 'depend_on' (did you mean 'depends_on'?)": the known field of the
    same object it most resembles, if any."""
    name = str(loc[-1]) if loc else ""
    known = Step.model_fields if under_step and len(loc) == 1 else (
        Workflow.model_fields if not under_step and len(loc) == 1 else {})
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field '{name}'{hint}"


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
            message = _unknown_field(loc, step is not None)
        elif e["type"] == "missing":
            message = "is required"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            message = str(e["ctx"]["error"])  # our own words, without "Value error, "
        errors.append(WorkflowError(message, step=step, field=fld or None))
    return errors
