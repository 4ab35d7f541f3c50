"""A packed CWL document as a chordflow workflow: one chordflow step per CWL step.

- A CommandLineTool, ExpressionTool or Operation alone is one step (``cwl.tool``).
- A Workflow's step ``S`` is a chordflow step ``S`` (``cwl.step``) whose params
  reference its sources' outputs (``${steps.A.outputs.o}``), so chordflow's DAG is
  CWL's: a step starts as soon as the steps it reads finished, on any worker.
- A scattered step is two: ``S__scatter`` (``cwl.scatter``: the inputs, scattered
  into jobs, and the shape of the scatter) and ``S``, a ``foreach`` over those jobs,
  one chordflow task per job, gathered by a Celery chord.
- The workflow's outputs are a last step, ``cwl_outputs`` (``cwl.outputs``), which
  also moves the output files into the caller's output directory.
- A step ``S`` whose ``run`` is a Workflow is inlined: ``S__inputs`` (``cwl.inputs``,
  its input object), the subworkflow's steps as ``S__<step>``, and ``S``
  (``cwl.gather``, its outputs). Scattered or conditional, it is one ``cwl.step``
  that runs the subworkflow with cwltool (once per scatter job).
- A step's ResourceRequirement is recorded in its ``description`` and, by the rules of
  ``CHORDFLOW_CWL_QUEUES``, chooses its ``queue`` (app/cwl/resources.py).

The packed document is the run's variable ``cwl`` and the job object its variable
``inputs`` (with the workflow inputs' defaults), so the run is self-contained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chordflow.cwl.document import (
    CwlInvalid,
    check_supported,
    pack_document,
    process_of,
    read_job,
    with_file_fields,
)
from chordflow.cwl.inputs import load_contents
from chordflow.cwl.resources import QueueRuleError, check_rules, routing
from chordflow.cwl.secondary import with_secondary_files
from chordflow.cwl.values import encode

MAIN = "#main"
OUTPUTS_STEP = "cwl_outputs"
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_\-]")


def short(cwl_id: str) -> str:
    """The last part of a CWL id: ``#main/step1/out`` → ``out``."""
    return cwl_id.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def step_name(cwl_id: str) -> str:
    name = _NOT_A_NAME.sub("_", short(cwl_id))
    return name if re.match(r"^[A-Za-z_]", name) else f"s_{name}"


def with_defaults(process: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """The job object with each missing (or null) input's declared default."""
    out = dict(job)
    for declared in process.get("inputs") or ():
        name = short(declared["id"])
        if out.get(name) is None and "default" in declared:
            out[name] = declared["default"]
    out = with_file_fields(out)
    for declared in process.get("inputs") or ():
        binding = declared.get("inputBinding") or {}
        if declared.get("loadContents") or binding.get("loadContents"):
            out[short(declared["id"])] = load_contents(out.get(short(declared["id"])))
    return out


def to_workflow(packed: dict[str, Any], job: Mapping[str, Any], outdir: str,
                name: str = "cwl", queues: Sequence[Mapping[str, Any]] = ()
                ) -> dict[str, Any]:
    """The chordflow workflow document of ``packed`` run with ``job``; ``queues``: the
    rules routing a step by its ResourceRequirement (app/cwl/resources.py)."""
    main = process_of(packed, MAIN)
    # A tool alone gets its defaults from cwltool (relative paths and all); a
    # workflow's are its steps' sources, so they are filled in here.
    inputs = with_secondary_files(main.get("inputs") or [], with_defaults(main, job)) \
        if main.get("class") == "Workflow" else dict(job)
    variables = {"cwl": packed, "inputs": inputs, "outdir": outdir}
    base = {"document": "${variables.cwl}"}
    if main.get("class") != "Workflow":
        steps = [{"name": "tool", "module": "cwl", "method": "tool",
                  **routing(main, [], [], queues),
                  "params": {**base, "process": MAIN, "job": "${variables.inputs}",
                             "outdir": "${variables.outdir}"}}]
        return {"name": name, "variables": variables, "steps": steps,
                "outputs": {"cwl": "${steps.tool.outputs.cwl}"}}
    return _workflow(main, packed, variables, base, name, queues)


def _workflow(main: dict[str, Any], packed: dict[str, Any], variables: dict[str, Any],
              base: dict[str, str], name: str, queues: Sequence[Mapping[str, Any]]
              ) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    scope = _add_steps(main, _Build(packed, base, queues, steps), "", "${variables.inputs}",
                       _resolved(main.get("requirements"), packed),
                       _resolved(main.get("hints"), packed))
    out_spec = {short(o["id"]): _source_spec(o.get("outputSource"), o, scope)
                for o in main.get("outputs") or ()}
    steps.append({"name": OUTPUTS_STEP, "module": "cwl", "method": "outputs",
                  "params": {"outputs": out_spec, "outdir": "${variables.outdir}"}})
    if len({s["name"] for s in steps}) != len(steps):
        raise CwlInvalid("two steps' ids map to the same chordflow step name")
    return {"name": name, "variables": variables, "steps": steps,
            "outputs": {"cwl": f"${{steps.{OUTPUTS_STEP}.outputs.cwl}}"}}


@dataclass
class _Build:
    """What every level of a workflow being converted shares."""

    packed: dict[str, Any]
    base: dict[str, str]
    queues: Sequence[Mapping[str, Any]]
    steps: list[dict[str, Any]]


@dataclass
class _Scope:
    """One workflow's sources as chordflow references: its inputs (``inputs``, a
    reference to its input object) and its steps' chordflow names."""

    workflow_id: str
    inputs: str
    names: dict[str, str]
    scattered: set[str]


def _inlined(step: Mapping[str, Any], process: Mapping[str, Any]) -> bool:
    """Is ``step`` a subworkflow whose steps become chordflow steps? Not when the step
    is scattered or conditional: cwltool then runs the subworkflow in one step."""
    return process.get("class") == "Workflow" and not step.get("scatter") \
        and step.get("when") is None


def _add_steps(workflow: Mapping[str, Any], build: _Build, prefix: str, inputs: str,
               requirements: list[dict[str, Any]], hints: list[dict[str, Any]]) -> _Scope:
    """The chordflow steps of ``workflow``'s steps, named ``<prefix><step>``; a
    subworkflow's steps (_inlined) under ``<prefix><step>__``, between a step computing
    its input object (``<step>__inputs``) and one gathering its outputs (``<step>``)."""
    packed = build.packed
    scope = _Scope(str(workflow["id"]), inputs,
                   {st["id"]: prefix + step_name(st["id"]) for st in workflow.get("steps") or ()},
                   {st["id"] for st in workflow.get("steps") or () if st.get("scatter")})
    for step in workflow.get("steps") or ():
        sname = scope.names[step["id"]]
        run = step["run"] if isinstance(step["run"], str) else step["run"]["id"]
        process = process_of(packed, run)
        step_reqs = requirements + _resolved(step.get("requirements"), packed)
        step_hints = hints + _resolved(step.get("hints"), packed)
        spec = {short(i["id"]): _input_spec(i, scope) for i in step.get("in") or ()}
        outputs = [short(o if isinstance(o, str) else o["id"]) for o in step.get("out") or ()]
        if _inlined(step, process):
            _add_subworkflow(process, build, sname, spec, outputs, step_reqs, step_hints)
            continue
        where = routing(process, step_reqs, step_hints, build.queues)
        common = {**build.base, "process": run, "step": sname, "outputs": outputs,
                  "requirements": literal(step_reqs), "hints": literal(step_hints),
                  "when": literal(step.get("when"))}
        scatter = step.get("scatter")
        if scatter:
            names_ = [short(s) for s in ([scatter] if isinstance(scatter, str) else scatter)]
            build.steps.append({"name": f"{sname}__scatter", "module": "cwl",
                                "method": "scatter",
                                "params": {"step": sname, "inputs": spec, "scatter": names_,
                                           "method": step.get("scatterMethod"),
                                           "requirements": common["requirements"]}})
            build.steps.append({"name": sname, "module": "cwl", "method": "step", **where,
                                "foreach": f"${{steps.{sname}__scatter.outputs.jobs}}",
                                "params": {**common, "job": "${item}",
                                           "inputs": _value_from(spec)}})
        else:
            build.steps.append({"name": sname, "module": "cwl", "method": "step", **where,
                                "params": {**common, "inputs": spec}})
    return scope


def _add_subworkflow(process: dict[str, Any], build: _Build, sname: str,
                     spec: dict[str, Any], outputs: list[str],
                     requirements: list[dict[str, Any]], hints: list[dict[str, Any]]) -> None:
    """A subworkflow step ``sname`` as chordflow steps: ``sname__inputs`` (the step's
    inputs, valueFrom, the subworkflow's defaults), its own steps, and ``sname``
    gathering its outputs (what the outer workflow's steps reference)."""
    reqs = requirements + _resolved(process.get("requirements"), build.packed)
    hints_ = hints + _resolved(process.get("hints"), build.packed)
    build.steps.append({"name": f"{sname}__inputs", "module": "cwl", "method": "inputs",
                        "params": {**build.base, "process": process["id"], "step": sname,
                                   "inputs": spec, "requirements": literal(requirements)}})
    scope = _add_steps(process, build, f"{sname}__", f"${{steps.{sname}__inputs.outputs}}",
                       reqs, hints_)
    declared = {short(o["id"]): o for o in process.get("outputs") or ()}
    gathered = {name: _source_spec(declared[name].get("outputSource"), declared[name], scope)
                for name in outputs if name in declared}
    build.steps.append({"name": sname, "module": "cwl", "method": "gather",
                        "params": {"outputs": gathered}})


def _resolved(entries: Any, packed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Requirements with each ``{"$import": "#id"}`` replaced by the object of that id
    in the packed document (pack leaves imported requirements shared by reference)."""
    out = []
    for entry in entries or ():
        if isinstance(entry, Mapping) and "$import" in entry:
            found = _find(packed, str(entry["$import"]))
            if found is not None:
                out.append(found)
        elif isinstance(entry, Mapping):
            out.append(dict(entry))
    return out


def _find(value: Any, wanted: str) -> dict[str, Any] | None:
    if isinstance(value, Mapping):
        if value.get("id") == wanted and "class" in value:
            return dict(value)
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find(child, wanted)
        if found is not None:
            return found
    return None


def _value_from(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What a scattered step's jobs still need of its inputs: their ``valueFrom``."""
    return {k: {"valueFrom": v.get("valueFrom")} for k, v in spec.items()}


def _input_spec(entry: Mapping[str, Any], scope: _Scope) -> dict[str, Any]:
    spec = _source_spec(entry.get("source"), entry, scope)
    for key in ("default", "valueFrom", "loadContents"):
        if key in entry:
            spec[key] = literal(entry[key])
    return spec


def literal(value: Any) -> Any:
    """CWL text as a chordflow param: each ``${`` (a CWL expression) written ``$${``,
    chordflow's literal ``${``, so that it reaches the step as it was written."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, Mapping):
        return {k: literal(v) for k, v in value.items()}
    return value


def _source_spec(source: str | list[str] | None, entry: Mapping[str, Any], scope: _Scope
                 ) -> dict[str, Any]:
    sources = [] if source is None else [source] if isinstance(source, str) else list(source)
    return {"sources": [_reference(s, scope) for s in sources],
            "is_list": isinstance(source, list),
            "linkMerge": entry.get("linkMerge"), "pickValue": entry.get("pickValue")}


def _reference(source: str, scope: _Scope) -> dict[str, Any]:
    """A source as chordflow references: an input of the workflow, a step's output, or a
    scattered step's outputs (every job's, with the scatter's shape)."""
    parent, _, key = source.rpartition("/")
    if parent == scope.workflow_id:
        return {"value": scope.inputs, "key": key}
    if parent not in scope.names:
        raise CwlInvalid(f"source '{source}': no such input or step")
    sname = scope.names[parent]
    if parent in scope.scattered:
        return {"items": f"${{steps.{sname}.outputs.items}}", "key": key,
                "shape": f"${{steps.{sname}__scatter.outputs.shape}}"}
    return {"value": f"${{steps.{sname}.outputs}}", "key": key}


def cwl_document(tool: str | Path | Mapping[str, Any], job: str | Path | Mapping[str, Any] | None,
                 outdir: str | Path, *, base: str | None = None,
                 queues: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The chordflow workflow document of a CWL document and its job object (CwlInvalid,
    CwlUnsupported). ``base``: where a document or job given as data is relative to;
    ``queues``: the routing rules (default: ``CHORDFLOW_CWL_QUEUES``)."""
    packed = pack_document(tool if isinstance(tool, Mapping) else str(tool), base)
    check_supported(packed)
    inputs = read_job(job, base)
    name = "cwl-" + (Path(str(tool)).stem if not isinstance(tool, Mapping)
                     else str(tool.get("id") or tool.get("label") or "submitted")
                     .rsplit("/", 1)[-1].replace(".cwl", ""))
    from chordflow.config import get_settings

    try:
        rules = check_rules(get_settings().cwl_queues if queues is None else queues)
    except QueueRuleError as exc:
        raise CwlInvalid(str(exc)) from None
    doc = to_workflow(packed, inputs, str(Path(outdir).resolve()), _name(name), rules)
    # Integers beyond 8 bytes encoded, as the run's records can hold them (values.py).
    return dict(encode(doc))


def _name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in text)[:150]
    return cleaned if cleaned[:1].isalnum() or cleaned[:1] == "_" else f"cwl{cleaned}"
