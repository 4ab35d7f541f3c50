"""The JSON-procedure automation platform's format: ``procedures`` run in order.

Each procedure ``{name, mod, method, params}`` becomes a step that depends on the one
before it. A procedure may also carry chordflow's step options: ``depends_on`` (then it
waits for those steps only, not for the one listed before it: parallel branches),
``foreach`` (once per element: ``@item``, ``@item.key`` and ``@item_index`` in its
params), ``when`` (a condition; false skips it), ``connection`` (a named connection),
``retries``, ``retry_delay``, ``retry_backoff``, ``timeout``, ``queue``, ``priority``,
``continue_on_failure``, ``outputs``, ``stage_in``, ``stage_out`` and ``description``,
with ``@`` references in them as in params. Any other key is an error, so a typo is not
silently dropped.

``mod``/``method`` map onto chordflow's modules (platform_modules.py: every module of
the platform's reference); any other ``mod`` is used as the module name, so a module
registered under that name runs it, a chordflow module or the platform's own class
loaded from ``CHORDFLOW_MODULES_PATH``. ``MultiProcess.parallel_steps`` becomes
parallel branches joined by a step of the procedure's name; ``parallel_data`` a
``foreach`` over chunks of its data, between a split and a join step.

References, converted to chordflow templates::

    @step          -> ${steps.step.outputs}         the whole result
    @step.a.b      -> ${steps.step.outputs.a.b}     nested keys and list indexes
    @var.name      -> ${variables.name}             top-level "variables"
    @sys.key       -> ${secrets.key}                configured secrets
    @item, @item_index (in a foreach procedure) -> ${item}, ${item_index}
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
from dataclasses import dataclass, field
from typing import Any

from chordflow.errors import ValidationFailed, WorkflowError
from chordflow.workflow.dialects import platform_modules as pm

NAME = "procedures"

#: chordflow step options a procedure may carry (references converted like params).
OPTIONS = ("description", "retries", "retry_delay", "retry_backoff", "timeout", "queue",
           "priority", "continue_on_failure", "when", "foreach", "connection", "outputs",
           "stage_in", "stage_out")
_PROCEDURE_FIELDS = {"name", "mod", "method", "params", "depends_on", *OPTIONS}
#: Top-level keys: the platform's own, and its editor's layout (ignored).
_TOP_FIELDS = {"name", "description", "procedures", "tasks", "variables", "max_parallel",
               "_connections", "_positions"}

_REF_RE = re.compile(r"@@|(?<![\w@])@([A-Za-z_][\w-]*)((?:\.[\w-]+)*)")
_VAR_RE = re.compile(r"^@var((?:\.[\w-]+)+)$")


@dataclass
class _Scope:
    """What converting one document's references needs."""

    names: list[Any]
    errors: list[WorkflowError]
    variables: Mapping[str, Any]
    families: dict[str, pm.Family] = field(default_factory=dict)
    #: The steps made so far, in order: what a procedure without depends_on may read.
    seen: list[Any] = field(default_factory=list)


def convert(data: Mapping[str, Any], name_hint: str | None = None) -> dict[str, Any]:
    raw = data.get("procedures", data.get("tasks"))
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed([WorkflowError("must be a non-empty list", field="procedures")])
    errors: list[WorkflowError] = [
        WorkflowError("unknown field", field=key) for key in sorted(set(data) - _TOP_FIELDS)
    ]
    variables = data.get("variables") or {}
    names = [p.get("name") if isinstance(p, Mapping) else None for p in raw]
    # parallel_steps' branches are steps too: later procedures may read them.
    for proc in raw:
        if isinstance(proc, Mapping) and (proc.get("mod"), proc.get("method")) == \
                ("common.MultiProcess", "parallel_steps"):
            branches = (proc.get("params") or {}).get("steps")
            names += [b.get("name") for b in branches or [] if isinstance(b, Mapping)]
    scope = _Scope(names, errors, variables)
    steps: list[dict[str, Any]] = []
    previous: str | None = None
    for i, proc in enumerate(raw):
        if not isinstance(proc, Mapping):
            errors.append(WorkflowError("must be an object", field=f"procedures[{i}]"))
            continue
        made = _procedure(proc, i, previous, scope)
        steps.extend(made)
        scope.seen += [s["name"] for s in made]
        previous = made[-1]["name"] if made else proc.get("name")
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


def _procedure(proc: Mapping[str, Any], i: int, previous: str | None,
               scope: _Scope) -> list[dict[str, Any]]:
    """The steps of one procedure (one, or several for MultiProcess)."""
    errors = scope.errors
    name = proc.get("name") or f"procedures[{i}]"
    for key in sorted(set(proc) - _PROCEDURE_FIELDS):
        errors.append(WorkflowError("unknown field", step=name, field=key))
    for key in ("name", "mod"):
        if not proc.get(key):
            errors.append(WorkflowError("is required", step=name, field=key))
    mod, method = proc.get("mod") or "", proc.get("method")
    explicit = "depends_on" in proc
    depends = proc.get("depends_on")
    depends = [depends] if isinstance(depends, str) else list(depends or [])
    if not explicit and previous:
        depends = [previous]
    # What a reference may name: earlier procedures, or any step once the order is the
    # author's (depends_on), where a cycle is the plan's to report.
    earlier = scope.names if explicit else scope.seen
    looping = "foreach" in proc

    def conv(value: Any, fld: str) -> Any:
        return _convert(value, name, fld, earlier, scope, looping)

    raw_params = dict(proc.get("params") or {})
    if mod == "common.MultiProcess" and method in ("parallel_steps", "parallel_data"):
        return _multiprocess(proc, name, method, raw_params, depends, scope, conv)
    target = pm.target(mod, method)
    problems = pm.Problems(name, errors)
    family = scope.families.setdefault(mod, pm.Family()) if target else None
    if target is not None:  # what defines a connection is read from the variables now
        now = frozenset(raw_params) if target.connects else \
            target.load_time(raw_params) if target.load_time else frozenset()
        raw_params = {k: _var_value(v, scope.variables) if k in now else v
                      for k, v in raw_params.items()}
    params = {k: conv(v, f"params.{k}") for k, v in raw_params.items()}
    module, native = mod, method
    step: dict[str, Any] = {"name": proc.get("name"), "fail_on_false_status": True,
                            "depends_on": depends}
    if target is not None:
        module, native = target.module, target.method
        params = {target.renames.get(k, k): v for k, v in params.items()}
        params = {**target.defaults, **params}
        assert family is not None
        if target.connects:
            before = len(errors)
            family.connection = proc.get("connection") or pm.connection_of(
                target.connects, params, family, problems)
            # A connect already reported: the procedures after it need not say so again.
            family.broken = family.connection is None and len(errors) > before
            params = {}
            if family.connection is None:  # a Prometheus with no gateway: nothing to open
                native = "skip"
                step["fail_on_false_status"] = True
        if target.adjust is not None:
            params = target.adjust(params, family, problems)
            if pm.STEP_CONNECTION in params and "connection" not in proc:
                step["connection"] = params.pop(pm.STEP_CONNECTION)
        if (target.connects or target.uses_connection) and "connection" not in proc:
            if family.connection is not None:
                step["connection"] = family.connection
            elif target.uses_connection and not family.broken and not (
                    target.module == "prometheus" and family.carried.get("gateway")):
                problems.add(f"no {mod} connect before it: add a connect procedure, or "
                             "name a connection with 'connection'", "connection")
        if target.disconnects:
            family.connection, family.carried, family.metrics = None, {}, []
            family.broken = False
        # Their modules answered {"status": true, ...} on success; references to
        # @step.status keep working (beside a procedure's own outputs, below).
        step["outputs"] = {**target.outputs, "status": True}
    step["module"] = module
    step["params"] = params
    if native:
        step["method"] = native
    for opt in OPTIONS:
        if opt in proc:
            step[opt] = conv(proc[opt], opt) if opt not in ("description",) else proc[opt]
    if isinstance(proc.get("outputs"), Mapping) and target is not None:
        step["outputs"] = {**target.outputs, "status": True, **step["outputs"]}
    return [step]


def _multiprocess(proc: Mapping[str, Any], name: str, method: str,
                  params: dict[str, Any], depends: list[str], scope: _Scope,
                  conv: Any) -> list[dict[str, Any]]:
    """``parallel_steps``: each branch a step after the procedure's dependencies, then
    a join named as the procedure; ``parallel_data``: split, foreach, join."""
    errors = scope.errors
    options = {opt: conv(proc[opt], opt) for opt in OPTIONS
               if opt in proc and opt not in ("foreach", "description")}
    if method == "parallel_steps":
        branches = params.get("steps")
        if not isinstance(branches, list) or not branches:
            errors.append(WorkflowError("a non-empty list of procedures", step=name,
                                        field="params.steps"))
            return []
        steps: list[dict[str, Any]] = []
        for j, branch in enumerate(branches):
            if not isinstance(branch, Mapping):
                errors.append(WorkflowError("must be an object", step=name,
                                            field=f"params.steps[{j}]"))
                continue
            inner = {**branch, "depends_on": depends}
            steps += _procedure(inner, j, None, scope)
        results = {s["name"]: "${steps." + str(s["name"]) + ".outputs}" for s in steps}
        steps.append({"name": proc.get("name"), "module": "procedures", "method": "gather",
                      "params": {"results": results}, "fail_on_false_status": True,
                      "depends_on": [str(s["name"]) for s in steps], **options})
        return steps
    for key in ("data", "data_key", "mod", "method"):
        if key not in params:
            errors.append(WorkflowError("required parameter is missing", step=name,
                                        field=f"params.{key}"))
    if any(e.step == name for e in errors):
        return []
    base = str(proc.get("name"))
    split, each = f"{base}__chunks", f"{base}__each"
    made = _procedure({"name": each, "mod": params["mod"], "method": params["method"],
                        "params": {**(params.get("params") or {}),
                                   str(params["data_key"]): "@item"},
                        "foreach": "@" + split + ".chunks", "depends_on": [split]},
                       0, None, _Scope([*scope.names, split, each], errors,
                                       scope.variables, scope.families))
    if not made:
        return []
    return [
        {"name": split, "module": "procedures", "method": "chunk", "depends_on": depends,
         "params": {"data": conv(params["data"], "params.data"),
                    "processes": params.get("processes", 4)}},
        *made,
        {"name": base, "module": "procedures", "method": "merge", "depends_on": [each],
         "params": {"items": "${steps." + each + ".outputs.items}"},
         "fail_on_false_status": True, **options},
    ]


def _var_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """A connect's ``@var.x`` read now, from the workflow's variables: a connection is
    defined before anything runs."""
    if isinstance(value, str):
        found = _VAR_RE.match(value)
        if found:
            current: Any = variables
            for part in found.group(1).split(".")[1:]:
                if not isinstance(current, Mapping) or part not in current:
                    return value
                current = current[part]
            return current
        return value
    if isinstance(value, Mapping):
        return {k: _var_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_var_value(v, variables) for v in value]
    return value


def _convert(value: Any, step: str, fld: str, earlier: list[Any], scope: _Scope,
             looping: bool = False) -> Any:
    if isinstance(value, str):
        return _convert_string(value, step, fld, earlier, scope, looping)
    if isinstance(value, Mapping):
        return {k: _convert(v, step, f"{fld}.{k}", earlier, scope, looping)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, step, f"{fld}[{i}]", earlier, scope, looping)
                for i, v in enumerate(value)]
    return value


def _convert_string(text: str, step: str, fld: str, earlier: list[Any], scope: _Scope,
                    looping: bool) -> str:
    # Their text is never a chordflow template: escape any "${" first.
    text = text.replace("${", "$${")
    if "@" not in text:
        return text
    names, errors = scope.names, scope.errors

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
        if looping and head in ("item", "item_index"):
            return "${" + head + rest + "}"
        if head in earlier and head != step:
            return "${steps." + head + ".outputs" + rest + "}"
        where = "runs later" if head in names else "is not a step"
        errors.append(WorkflowError(
            f"'@{head}{rest}': '{head}' {where}; write '@@' for a literal '@'",
            step=step, field=fld,
        ))
        return m.group(0)

    return _REF_RE.sub(replace, text)
