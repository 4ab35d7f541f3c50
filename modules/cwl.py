"""``cwl``: the steps a CWL document becomes (app/cwl/convert.py, docs/cwl.md).

- ``cwl.tool``: a CommandLineTool, ExpressionTool or Operation run alone;
- ``cwl.step``: one CWL workflow step: its inputs from its sources (``linkMerge``,
  ``pickValue``, ``default``, ``valueFrom``), its ``when``, then its process;
- ``cwl.scatter``: a scattered step's inputs split into its jobs (then ``cwl.step``
  runs once per job, as a ``foreach``);
- ``cwl.inputs`` and ``cwl.gather``: an inlined subworkflow's input object and its
  outputs (its steps are ``cwl.step`` like the others);
- ``cwl.outputs``: the workflow's output object, its files moved into ``outdir``.

Every process runs with cwltool (app/cwl/execute.py) in the step's scratch directory;
its output files stay there (in ``<step dir>/out``), where the next steps read them
(across hosts, ``CHORDFLOW_WORKDIR`` must then be a shared directory), or, with
``CHORDFLOW_CWL_REMOTE``, are pushed to that remote and fetched by the steps reading
them (app/cwl/remote.py).
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from chordflow.cwl.convert import with_defaults
from chordflow.cwl.document import process_of
from chordflow.cwl.execute import derive, run_cwltool
from chordflow.cwl.inputs import (
    StepInputError,
    file_path,
    is_true,
    load_contents,
    merge,
    nest,
    pick,
    value_from,
)
from chordflow.cwl.inputs import (
    scatter as scatter_jobs,
)
from chordflow.cwl.remote import configured, stage_in, stage_out
from chordflow.cwl.secondary import missing_required
from chordflow.cwl.values import decode, encode
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=True: a CWL document is commands and JavaScript the caller wrote.
module = StepModule("cwl", "Steps of a CWL document, run by cwltool.", runs_code=True)


class CwlInputFailed(StepFailed):
    """A step's inputs that do not fit (rendering is deterministic: no retry helps)."""

    final = True


_Method = TypeVar("_Method", bound=Callable[..., dict[str, Any]])


def _recorded(fn: _Method) -> _Method:
    """A method that takes its params as the run records them (integers beyond 8 bytes
    encoded, app/cwl/values.py) and returns its outputs the same way."""

    @functools.wraps(fn)
    def wrapper(ctx: StepContext, **params: Any) -> dict[str, Any]:
        return dict(encode(fn(ctx, **decode(params))))

    return wrapper  # type: ignore[return-value]


def _value(source: Mapping[str, Any]) -> Any:
    if "items" in source:
        items = source["items"] or []
        flat = [(item or {}).get(source["key"]) for item in items]
        return nest(flat, source.get("shape") or [len(flat)])
    value = source.get("value")
    return value.get(source["key"]) if isinstance(value, Mapping) else None


def _inputs(spec: Mapping[str, Mapping[str, Any]], step: str) -> dict[str, Any]:
    job: dict[str, Any] = {}
    for name, declared in spec.items():
        where = f"step '{step}' input '{name}'"
        try:
            value = merge([_value(s) for s in declared.get("sources") or ()],
                          declared.get("linkMerge"), bool(declared.get("is_list")))
            value = pick(value, declared.get("pickValue"), where)
        except StepInputError as exc:
            raise CwlInputFailed(str(exc)) from None
        if value is None and "default" in declared:
            value = declared["default"]
        if declared.get("loadContents"):
            value = load_contents(value)
        job[name] = value
    return job


@module.method
@_recorded
def tool(ctx: StepContext, document: dict[str, Any], process: str, job: dict[str, Any],
         outdir: str | None = None) -> dict[str, Any]:
    """Run one CWL process alone; ``cwl`` is its output object.

    document: the packed CWL document.
    process: the id of the process in it (#main).
    job: the input object.
    outdir: where its output files go (default: the step's scratch directory).
    """
    out = Path(outdir) if outdir else ctx.workdir / "out"
    return {"cwl": _run(ctx, document, process, job, out, push=False)}


def _run(ctx: StepContext, document: dict[str, Any], process: str, job: dict[str, Any],
         outdir: Path, push: bool = True) -> dict[str, Any]:
    """Run the process; with ``CHORDFLOW_CWL_REMOTE``, its input files on the remote
    fetched first and (``push``) its output files pushed there after (app/cwl/remote.py)."""
    remote = configured()
    if remote is None:
        return run_cwltool(ctx, document, process, job, outdir)
    local_job, release = stage_in(ctx, job, remote)
    try:
        result = run_cwltool(ctx, document, process, local_job, outdir)
    finally:
        release()
    return dict(stage_out(ctx, result, remote)) if push else result


@module.method
@_recorded
def step(ctx: StepContext, document: dict[str, Any], process: str, step: str,
         outputs: list[str], inputs: dict[str, Any] | None = None,
         job: dict[str, Any] | None = None, requirements: list[dict[str, Any]] | None = None,
         hints: list[dict[str, Any]] | None = None, when: Any = None) -> dict[str, Any]:
    """One CWL workflow step: its inputs (or, scattered, its job), valueFrom, when, run.

    inputs: each input's sources and options (linkMerge, pickValue, default, valueFrom).
    job: a scattered step's job (cwl.scatter made it); inputs then carry its valueFrom.
    outputs: the step's output names: a step whose when is false has each null.
    """
    reqs = list(requirements or [])
    spec = inputs or {}
    prepared = dict(job) if job is not None else _inputs(spec, step)
    try:
        prepared = value_from(prepared, spec, reqs)
        run_it = is_true(when, prepared, reqs, f"step '{step}'")
    except StepInputError as exc:
        raise CwlInputFailed(str(exc)) from None
    except Exception as exc:  # an expression's own error (JavaScript, a bad reference)
        raise CwlInputFailed(f"step '{step}': {type(exc).__name__}: {exc}") from None
    if not run_it:
        ctx.logger.info("step %s: when is false, skipped (its outputs are null)", step)
        return {name: None for name in outputs}
    tool = process_of(document, process)
    declared = {i["id"].rsplit("/", 1)[-1] for i in tool.get("inputs") or ()}
    tool_job = {k: v for k, v in prepared.items() if k in declared}
    missing = missing_required(list(tool.get("inputs") or ()), tool_job)
    if missing:  # cwltool's own check, had the step run inside its workflow engine
        raise CwlInputFailed(f"step '{step}': {missing}")
    result = _run(ctx, derive(document, process, reqs, hints or []), process, tool_job,
                  ctx.workdir / "out")
    return {name: result.get(name) for name in outputs}


@module.method
@_recorded
def inputs(ctx: StepContext, document: dict[str, Any], process: str, step: str,
           inputs: dict[str, Any], requirements: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """A subworkflow step's input object (its steps are chordflow steps): the step's
    inputs from their sources, valueFrom, then the subworkflow's defaults.

    process: the subworkflow's id in the document.
    inputs: each input's sources and options (linkMerge, pickValue, default, valueFrom).
    """
    reqs = list(requirements or [])
    try:
        prepared = value_from(_inputs(inputs, step), inputs, reqs)
    except StepInputError as exc:
        raise CwlInputFailed(str(exc)) from None
    except Exception as exc:  # an expression's own error (JavaScript, a bad reference)
        raise CwlInputFailed(f"step '{step}': {type(exc).__name__}: {exc}") from None
    workflow = process_of(document, process)
    declared = {i["id"].rsplit("/", 1)[-1] for i in workflow.get("inputs") or ()}
    return with_defaults(workflow, {k: v for k, v in prepared.items() if k in declared})


@module.method
@_recorded
def gather(ctx: StepContext, outputs: dict[str, Any]) -> dict[str, Any]:
    """A subworkflow step's outputs, from its steps' (what the outer steps read)."""
    return _inputs(outputs, "outputs")


@module.method
@_recorded
def scatter(ctx: StepContext, step: str, inputs: dict[str, Any], scatter: list[str],
            method: str | None = None, requirements: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """A scattered step's jobs (``jobs``) and the shape of its outputs (``shape``)."""
    prepared = _inputs(inputs, step)
    try:
        jobs, shape = scatter_jobs(prepared, scatter, method, f"step '{step}'")
    except StepInputError as exc:
        raise CwlInputFailed(str(exc)) from None
    return {"jobs": jobs, "shape": shape}


@module.method
@_recorded
def outputs(ctx: StepContext, outputs: dict[str, Any], outdir: str | None = None
            ) -> dict[str, Any]:
    """The workflow's output object (``cwl``), its files copied into ``outdir``."""
    result = _inputs(outputs, "outputs")
    if outdir:
        target = Path(outdir)
        target.mkdir(parents=True, exist_ok=True)
        remote = configured()
        release: Callable[[], None] = lambda: None  # noqa: E731
        if remote is not None:  # the files on the remote fetched here first
            result, release = stage_in(ctx, result, remote)
        try:
            result = _relocate(result, target, set())
        finally:
            release()
    return {"cwl": result}


def _relocate(value: Any, target: Path, taken: set[str]) -> Any:
    """Files and Directories copied into ``target`` (one name each), locations rewritten."""
    if isinstance(value, list):
        return [_relocate(v, target, taken) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("class") not in ("File", "Directory"):
        return {k: _relocate(v, target, taken) for k, v in value.items()}
    source = file_path(str(value.get("location") or value.get("path") or ""))
    if source is None or not source.exists():
        return value
    name = _free_name(value.get("basename") or source.name, taken)
    dest = target / name
    if source.resolve() != dest.resolve():
        if value["class"] == "File":
            shutil.copy2(source, dest)
        else:
            shutil.copytree(source, dest, dirs_exist_ok=True)
    out = {**value, "location": dest.as_uri(), "path": str(dest)}
    if value["class"] == "Directory" and "listing" in value:
        out["listing"] = [_inside(v, source, dest) for v in value["listing"]]
    if "secondaryFiles" in value:
        out["secondaryFiles"] = [_relocate(v, target, taken) for v in value["secondaryFiles"]]
    return out


def _inside(value: Any, old: Path, new: Path) -> Any:
    if not isinstance(value, dict):
        return value
    path = file_path(str(value.get("location") or ""))
    out = dict(value)
    if path is not None:
        try:
            moved = new / path.relative_to(old)
        except ValueError:
            return value
        out.update(location=moved.as_uri(), path=str(moved))
    if "listing" in value:
        out["listing"] = [_inside(v, old, new) for v in value["listing"]]
    return out


def _free_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
