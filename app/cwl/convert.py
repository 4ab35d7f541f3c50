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
- A step whose ``run`` is a Workflow runs that subworkflow with cwltool inside its one
  chordflow step (its own steps are not chordflow steps).

The packed document is the run's variable ``cwl`` and the job object its variable
``inputs`` (with the workflow inputs' defaults), so the run is self-contained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
                name: str = "cwl") -> dict[str, Any]:
    """The chordflow workflow document of ``packed`` run with ``job``."""
    main = process_of(packed, MAIN)
    # A tool alone gets its defaults from cwltool (relative paths and all); a
    # workflow's are its steps' sources, so they are filled in here.
    inputs = with_defaults(main, job) if main.get("class") == "Workflow" else dict(job)
    variables = {"cwl": packed, "inputs": inputs, "outdir": outdir}
    base = {"document": "${variables.cwl}"}
    if main.get("class") != "Workflow":
        steps = [{"name": "tool", "module": "cwl", "method": "tool",
                  "params": {**base, "process": MAIN, "job": "${variables.inputs}",
                             "outdir": "${variables.outdir}"}}]
        return {"name": name, "variables": variables, "steps": steps,
                "outputs": {"cwl": "${steps.tool.outputs.cwl}"}}
    return _workflow(main, packed, variables, base, name)


def _workflow(main: dict[str, Any], packed: dict[str, Any], variables: dict[str, Any],
              base: dict[str, str], name: str) -> dict[str, Any]:
    requirements = _resolved(main.get("requirements"), packed)
    hints = _resolved(main.get("hints"), packed)
    scattered = {step["id"] for step in main.get("steps") or () if step.get("scatter")}
    names = {step["id"]: step_name(step["id"]) for step in main.get("steps") or ()}
    if len(set(names.values())) != len(names):
        raise CwlInvalid("two steps' ids map to the same chordflow step name")
    steps: list[dict[str, Any]] = []
    for step in main.get("steps") or ():
        sname = names[step["id"]]
        run = step["run"] if isinstance(step["run"], str) else step["run"]["id"]
        process_of(packed, run)  # it is in the graph
        spec = {short(i["id"]): _input_spec(i, names, scattered) for i in step.get("in") or ()}
        outputs = [short(o if isinstance(o, str) else o["id"]) for o in step.get("out") or ()]
        common = {**base, "process": run, "step": sname, "outputs": outputs,
                  "requirements": literal(requirements + _resolved(step.get("requirements"),
                                                                   packed)),
                  "hints": literal(hints + _resolved(step.get("hints"), packed)),
                  "when": literal(step.get("when"))}
        scatter = step.get("scatter")
        if scatter:
            names_ = [short(s) for s in ([scatter] if isinstance(scatter, str) else scatter)]
            steps.append({"name": f"{sname}__scatter", "module": "cwl", "method": "scatter",
                          "params": {"step": sname, "inputs": spec, "scatter": names_,
                                     "method": step.get("scatterMethod"),
                                     "requirements": common["requirements"]}})
            steps.append({"name": sname, "module": "cwl", "method": "step",
                          "foreach": f"${{steps.{sname}__scatter.outputs.jobs}}",
                          "params": {**common, "job": "${item}", "inputs": _value_from(spec)}})
        else:
            steps.append({"name": sname, "module": "cwl", "method": "step",
                          "params": {**common, "inputs": spec}})
    out_spec = {short(o["id"]): _source_spec(o.get("outputSource"), o, names, scattered)
                for o in main.get("outputs") or ()}
    steps.append({"name": OUTPUTS_STEP, "module": "cwl", "method": "outputs",
                  "params": {"outputs": out_spec, "outdir": "${variables.outdir}"}})
    return {"name": name, "variables": variables, "steps": steps,
            "outputs": {"cwl": f"${{steps.{OUTPUTS_STEP}.outputs.cwl}}"}}


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


def _input_spec(entry: Mapping[str, Any], names: Mapping[str, str], scattered: set[str]
                ) -> dict[str, Any]:
    spec = _source_spec(entry.get("source"), entry, names, scattered)
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


def _source_spec(source: str | list[str] | None, entry: Mapping[str, Any],
                 names: Mapping[str, str], scattered: set[str]) -> dict[str, Any]:
    sources = [] if source is None else [source] if isinstance(source, str) else list(source)
    return {"sources": [_reference(s, names, scattered) for s in sources],
            "is_list": isinstance(source, list),
            "linkMerge": entry.get("linkMerge"), "pickValue": entry.get("pickValue")}


def _reference(source: str, names: Mapping[str, str], scattered: set[str]) -> dict[str, Any]:
    """A source as chordflow references: a workflow input, a step's output, or a
    scattered step's outputs (every job's, with the scatter's shape)."""
    path = source.rsplit("#", 1)[-1].split("/")
    if len(path) == 2:  # main/x: a workflow input
        return {"value": "${variables.inputs}", "key": path[1]}
    step_id = source.rsplit("/", 1)[0]
    if step_id not in names:
        raise CwlInvalid(f"source '{source}': no such step")
    sname, output = names[step_id], path[-1]
    if step_id in scattered:
        return {"items": f"${{steps.{sname}.outputs.items}}", "key": output,
                "shape": f"${{steps.{sname}__scatter.outputs.shape}}"}
    return {"value": f"${{steps.{sname}.outputs}}", "key": output}


def cwl_document(tool: str | Path | Mapping[str, Any], job: str | Path | Mapping[str, Any] | None,
                 outdir: str | Path, *, base: str | None = None) -> dict[str, Any]:
    """The chordflow workflow document of a CWL document and its job object (CwlInvalid,
    CwlUnsupported). ``base``: where a document or job given as data is relative to."""
    packed = pack_document(tool if isinstance(tool, Mapping) else str(tool), base)
    check_supported(packed)
    inputs = read_job(job, base)
    name = "cwl-" + (Path(str(tool)).stem if not isinstance(tool, Mapping)
                     else str(tool.get("id") or tool.get("label") or "submitted")
                     .rsplit("/", 1)[-1].replace(".cwl", ""))
    return to_workflow(packed, inputs, str(Path(outdir).resolve()), _name(name))


def _name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in text)[:150]
    return cleaned if cleaned[:1].isalnum() or cleaned[:1] == "_" else f"cwl{cleaned}"
