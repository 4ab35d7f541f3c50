"""The JSON-procedure automation platform's format: ``procedures`` run in order.

Each procedure ``{name, mod, method, params}`` becomes a step that depends on the one
before it. A procedure may also carry chordflow's step options (``retries``,
``retry_delay``, ``timeout``, ``queue``, ``priority``, ``continue_on_failure``); any
other key is an error, so a typo is not silently dropped. ``mod`` names map onto
chordflow modules (below; parameter names are translated where they differ); any other
``mod`` is used as the module name, so a module registered under that name runs it.

References, converted to chordflow templates::

    @step          -> ${steps.step.outputs}         the whole result
    @step.a.b      -> ${steps.step.outputs.a.b}     nested keys and list indexes
    @var.name      -> ${variables.name}             top-level "variables"
    @sys.key       -> ${secrets.key}                configured secrets
    @@             -> a literal @

Unlike the original, references are resolved inside nested objects, lists and longer
strings (``"Saved @fetch.count rows"``); an ``@`` right after a letter or digit is
text (``kk@gmail.com``), and an ``@name`` that names no step is an error, never text
left in place: write ``@@name`` for a literal. A result ``{"status": false, ...}``
fails the step (the platform's modules report failure that way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chordflow.errors import ValidationFailed, WorkflowError

NAME = "procedures"

#: mod -> (module, fixed method or None to keep the procedure's, param renames)
MODULES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "common.Bash": ("bash", None, {}),
    "common.Http": ("http", None, {"verify_ssl": "verify"}),
    "common.FileIO": ("file", None, {"file_path": "path"}),
    "common.Filter": ("filter", None, {}),
}
#: (mod, method) pairs that map onto a different method, with default params.
METHODS: dict[tuple[str, str], tuple[str, str, dict[str, str], dict[str, Any]]] = {
    ("common.Notify", "webhook"): ("http", "request", {"body": "json"}, {"method": "POST"}),
}

#: chordflow step options a procedure may carry; they pass through unchanged.
OPTIONS = ("description", "retries", "retry_delay", "timeout", "queue", "priority",
           "continue_on_failure")
_PROCEDURE_FIELDS = {"name", "mod", "method", "params", *OPTIONS}
#: Top-level keys: the platform's own, and its editor's layout (ignored).
_TOP_FIELDS = {"name", "description", "procedures", "tasks", "variables", "max_parallel",
               "_connections", "_positions"}

_REF_RE = re.compile(r"@@|(?<![\w@])@([A-Za-z_][\w-]*)((?:\.[\w-]+)*)")


def convert(data: Mapping[str, Any], name_hint: str | None = None) -> dict[str, Any]:
    raw = data.get("procedures", data.get("tasks"))
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed([WorkflowError("must be a non-empty list", field="procedures")])
    errors: list[WorkflowError] = [
        WorkflowError("unknown field", field=key) for key in sorted(set(data) - _TOP_FIELDS)
    ]
    names = [p.get("name") if isinstance(p, Mapping) else None for p in raw]
    variables = data.get("variables") or {}
    steps: list[dict[str, Any]] = []
    for i, proc in enumerate(raw):
        if not isinstance(proc, Mapping):
            errors.append(WorkflowError("must be an object", field=f"procedures[{i}]"))
            continue
        name = proc.get("name") or f"procedures[{i}]"
        for key in sorted(set(proc) - _PROCEDURE_FIELDS):
            errors.append(WorkflowError("unknown field", step=name, field=key))
        for key in ("name", "mod"):
            if not proc.get(key):
                errors.append(WorkflowError("is required", step=name, field=key))
        mod, method = proc.get("mod") or "", proc.get("method")
        module: str = mod
        renames: dict[str, str] = {}
        defaults: dict[str, Any] = {}
        if (mod, method) in METHODS:
            module, method, renames, defaults = METHODS[mod, method]  # type: ignore[index]
        elif mod in MODULES:
            module, fixed, renames = MODULES[mod]
            method = fixed or method
        params = dict(defaults)
        params.update(
            (renames.get(k, k), _convert(v, name, f"params.{renames.get(k, k)}",
                                         names[:i], names, errors))
            for k, v in (proc.get("params") or {}).items()
        )
        step: dict[str, Any] = {
            "name": proc.get("name"),
            "module": module,
            "params": params,
            "fail_on_false_status": True,
            "depends_on": [names[i - 1]] if i > 0 and names[i - 1] else [],
        }
        if method:
            step["method"] = method
        step.update((opt, proc[opt]) for opt in OPTIONS if opt in proc)
        if mod in MODULES or (mod, proc.get("method")) in METHODS:
            # Their modules answered {"status": true, ...} on success; references to
            # @step.status keep working.
            step["outputs"] = {"status": True}
        steps.append(step)
    if errors:
        raise ValidationFailed(errors)
    canonical: dict[str, Any] = {
        "name": data.get("name") or name_hint or "procedures",
        "description": data.get("description", ""),
        "variables": dict(variables),
        "steps": steps,
    }
    if "max_parallel" in data:
        canonical["max_parallel"] = data["max_parallel"]
    return canonical


def _convert(
    value: Any, step: str, fld: str, earlier: list[Any], names: list[Any],
    errors: list[WorkflowError],
) -> Any:
    if isinstance(value, str):
        return _convert_string(value, step, fld, earlier, names, errors)
    if isinstance(value, Mapping):
        return {k: _convert(v, step, f"{fld}.{k}", earlier, names, errors)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, step, f"{fld}[{i}]", earlier, names, errors)
                for i, v in enumerate(value)]
    return value


def _convert_string(
    text: str, step: str, fld: str, earlier: list[Any], names: list[Any],
    errors: list[WorkflowError],
) -> str:
    # Their text is never a chordflow template: escape any "${" first.
    text = text.replace("${", "$${")
    if "@" not in text:
        return text

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "@@":
            return "@"
        head, rest = m.group(1), m.group(2)
        if head == "var":
            return "${variables" + rest + "}"
        if head == "sys":
            if not rest:
                errors.append(WorkflowError("'@sys' needs a key, as in '@sys.ssh_key'",
                                            step=step, field=fld))
            return "${secrets" + rest + "}"
        if head in earlier:
            return "${steps." + head + ".outputs" + rest + "}"
        where = "runs later" if head in names else "is not a step"
        errors.append(WorkflowError(
            f"'@{head}{rest}': '{head}' {where}; write '@@' for a literal '@'",
            step=step, field=fld,
        ))
        return m.group(0)

    return _REF_RE.sub(replace, text)
