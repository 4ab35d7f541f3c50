"""The bioinformatics DAG engine's format: ``step_name``, ``app``, ``base_context``.

Conversion, field by field::

    workflow_name        -> name           base_context     -> variables
    workflow_description -> description    workflow_outputs -> outputs ("step.key": ...)
    steps[].step_name    -> name           steps[].app      -> module (method "run")
    steps[].params, outputs, depends_on    -> the same

References: ``${steps.S.outputs.O}``, ``${steps.S.params.P}`` and ``${params.K}`` (in
declared outputs) mean what they meant. ``${NAME}`` reads ``base_context``, then the
``environ`` given to ``convert`` (the value is copied into ``variables``, so the run
records it); a name found in neither is an error, where the original sent the text on.
Only the local CLI (``chordflow run FILE``) gives its own environment: over HTTP a
document must not read the server's (its settings, its secrets), so there ``environ``
holds only the names an admin allows in ``CHORDFLOW_DIALECT_ENV``.
``${steps[1].outputs.x}`` (by position) is accepted too. Unlike the original, a
reference anywhere in a nested value or a longer string is resolved, references make
dependencies, and a value keeps its type when the string is exactly one reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chordflow.errors import ValidationFailed, WorkflowError
from chordflow.workflow.references import Reference, format_path, parse_reference

NAME = "dag-engine"

_REF_RE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
#: Fields the original tracked on each step at run time; accepted and ignored.
_RUNTIME_FIELDS = {"status", "task_id", "submitted_at", "started_at", "completed_at",
                   "elapsed_time", "error_message"}
_STEP_FIELDS = {"step_name", "app", "params", "outputs", "depends_on"}


def convert(data: Mapping[str, Any], environ: Mapping[str, str] | None = None
            ) -> dict[str, Any]:
    if "workflow_json" in data and isinstance(data["workflow_json"], Mapping):
        data = data["workflow_json"]
    errors: list[WorkflowError] = []
    base = data.get("base_context") or {}
    if not isinstance(base, Mapping):
        raise ValidationFailed([WorkflowError("must be an object", field="base_context")])
    variables: dict[str, Any] = dict(base)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise ValidationFailed([WorkflowError("must be a list of steps", field="steps")])
    names = [s.get("step_name") if isinstance(s, Mapping) else None for s in raw_steps]

    env = environ or {}

    def fix(value: Any, step: str | None, fld: str) -> Any:
        if isinstance(value, str):
            return _fix_string(value, step, fld, base, env, variables, names, errors)
        if isinstance(value, Mapping):
            return {k: fix(v, step, f"{fld}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v, step, f"{fld}[{i}]") for i, v in enumerate(value)]
        return value

    steps = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, Mapping):
            errors.append(WorkflowError("must be an object", field=f"steps[{i}]"))
            continue
        name = raw.get("step_name") or f"steps[{i}]"
        for key in sorted(set(raw) - _STEP_FIELDS - _RUNTIME_FIELDS):
            hint = " (ids are assigned by chordflow)" if key == "step_id" else ""
            errors.append(WorkflowError(f"unknown field{hint}", step=name, field=key))
        step: dict[str, Any] = {
            "name": raw.get("step_name"),
            "module": raw.get("app"),
            "method": "run",
            "params": fix(raw.get("params") or {}, name, "params"),
            "depends_on": raw.get("depends_on") or [],
        }
        if raw.get("outputs"):
            step["outputs"] = fix(raw["outputs"], name, "outputs")
        steps.append(step)

    outputs: dict[str, Any] = {}
    for i, entry in enumerate(data.get("workflow_outputs") or []):
        fixed = fix(entry, None, f"workflow_outputs[{i}]")
        outputs[_output_key(fixed, i)] = fixed
    for key in ("workflow_id",):
        if key in data:
            errors.append(WorkflowError("ids are assigned by chordflow", field=key))
    if errors:
        raise ValidationFailed(errors)
    canonical: dict[str, Any] = {
        "name": data.get("workflow_name"),
        "version": data.get("version", "1"),
        "description": data.get("workflow_description", ""),
        "variables": variables,
        "steps": steps,
        "outputs": outputs,
    }
    for key in ("max_parallel",):
        if key in data:
            canonical[key] = data[key]
    return canonical


def _fix_string(
    text: str, step: str | None, fld: str, base: Mapping[str, Any], env: Mapping[str, str],
    variables: dict[str, Any], names: list[Any], errors: list[WorkflowError],
) -> str:
    if "${" not in text:
        return text

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return m.group(0)
        try:
            ref = parse_reference(m.group(1))
        except ValueError:
            return m.group(0)  # the compiler reports malformed references
        return "${" + _fix_ref(ref, step, fld, base, env, variables, names, errors) + "}"

    return _REF_RE.sub(replace, text)


def _fix_ref(
    ref: Reference, step: str | None, fld: str, base: Mapping[str, Any],
    env: Mapping[str, str], variables: dict[str, Any], names: list[Any],
    errors: list[WorkflowError],
) -> str:
    path = ref.path
    if len(path) == 1 and isinstance(path[0], str) and path[0] not in ("item", "item_index"):
        name = path[0]
        if name in base:
            return f"variables.{name}"
        if env.get(name):
            variables[name] = env[name]
            return f"variables.{name}"
        errors.append(WorkflowError(
            f"'${{{name}}}' is not in base_context (nor among the environment variables "
            "this document may read: its own machine's for `chordflow run`, those an "
            "admin allows in CHORDFLOW_DIALECT_ENV for the API)",
            step=step, field=fld,
        ))
        return ref.text
    if path[0] == "steps" and len(path) > 1 and isinstance(path[1], int):
        index = path[1]
        if 0 <= index < len(names) and names[index]:
            return format_path(("steps", names[index], *path[2:]))
        errors.append(WorkflowError(f"'${{{ref.text}}}': there is no step {index}",
                                    step=step, field=fld))
    return ref.text


def _output_key(value: Any, index: int) -> str:
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{\s*steps\.([\w-]+)\.outputs\.(.+?)\s*\}", value)
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return f"output_{index}"
