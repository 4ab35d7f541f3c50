"""Workflow files on this machine: ``run`` (embedded, or on Celery workers),
``validate``, ``graph`` and ``modules``."""

from __future__ import annotations

import json
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from chordflow.cli.output import (
    EXIT_INTERRUPTED,
    FileArg,
    JsonOpt,
    VarOpt,
    err,
    exit_code,
    fail,
    out,
    parse_vars,
    print_summary,
    say,
)
from chordflow.errors import ValidationFailed
from rich.table import Table

#: Seconds ``run`` waits for cancelled steps to stop before exiting without them.
CLOSE_TIMEOUT = 10.0


class Executor(StrEnum):
    embedded = "embedded"
    celery = "celery"


def compile_file(file: Path, variables: dict[str, Any] | None = None) -> Any:
    """The file's plan; exit 2 with every error if it is invalid."""
    from chordflow.engine.plan import compile_plan
    from chordflow.modules.registry import default_registry
    from chordflow.workflow.loader import compile_loaded, load_file

    load = lambda: load_file(file, environ=os.environ)  # noqa: E731
    if not file.exists() and _python_reference(str(file)):
        load = lambda: _python_document(str(file))  # noqa: E731
    try:
        # A local file may read this machine's environment (the DAG engine's ${NAME});
        # a misspelled field is reported with every other error (compile_loaded).
        plan = compile_loaded(load, lambda w: compile_plan(w, default_registry()))
        if variables is not None:
            plan.effective_variables(variables)
    except ValidationFailed as exc:
        fail(str(exc))
    return plan


def _cwl_plan(file: Path, job: Path | None) -> Any:
    """A CWL document and its job object as a plan (docs/cwl.md); exit 2 if invalid,
    33 (the CWL runners' code) if it needs what this machine lacks (a container)."""
    from chordflow.cwl.convert import cwl_document
    from chordflow.cwl.document import CwlInvalid, CwlUnsupported
    from chordflow.cwl.runner import EXIT_UNSUPPORTED
    from chordflow.engine.plan import compile_plan
    from chordflow.modules.registry import default_registry
    from chordflow.workflow.loader import load_data

    try:
        doc = cwl_document(file, job, Path.cwd())
    except CwlUnsupported as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNSUPPORTED) from None
    except CwlInvalid as exc:
        fail(str(exc))
    try:
        return compile_plan(load_data(doc), default_registry())
    except ValidationFailed as exc:
        fail(str(exc))


def _python_reference(text: str) -> bool:
    from chordflow.flow.loading import is_reference

    return is_reference(text)


def _python_document(reference: str) -> Any:
    """A chordflow.flow Workflow named ``package.module:attribute``, as its document."""
    from chordflow.flow.errors import FlowError
    from chordflow.flow.loading import load_reference

    try:
        return load_reference(reference).to_document()
    except FlowError as exc:
        fail(str(exc))


def run(
    file: FileArg,
    job: Annotated[Path | None, typer.Argument(
        help="A CWL document's job object (YAML or JSON); output files go to the "
             "current directory, as with cwltool.", show_default=False)] = None,
    var: VarOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Embedded executor threads (default: one per CPU).",
        show_default=False)] = None,
    executor: Annotated[Executor, typer.Option(
        help="embedded (this process) or celery (on workers).")] = Executor.embedded,
) -> None:
    """Run a workflow and report every step (the live table on a terminal).

    Ctrl-C (or SIGTERM) cancels the run, draws its final state and exits 130.

    Example: chordflow run examples/sales-report.yaml -e out=/tmp/out

    Example: chordflow run workflow.cwl job.yml (a CWL document: docs/cwl.md)
    """
    variables = parse_vars(var)
    plan = _cwl_plan(file, job) if file.suffix == ".cwl" or job is not None else \
        compile_file(file, variables)
    signal.signal(signal.SIGTERM, _terminate)
    # With --json, stdout carries the report alone: whatever steps print (a Python step
    # calling print, a module writing to fd 1) goes to stderr while the run lasts.
    report_fd = _divert_stdout() if as_json else None
    if executor is Executor.celery:
        report, clean, interrupted = _run_celery(plan, variables, as_json)
    else:
        report, clean, interrupted = _run_embedded(plan, variables, as_json, threads)
    code = EXIT_INTERRUPTED if interrupted else exit_code(report["status"])
    if report_fd is not None:
        os.write(report_fd, (json.dumps(report, default=str) + "\n").encode())
    else:
        print_summary(report)
    if not clean:
        err.print("[yellow]warning:[/] some steps ignored the cancel; exiting without them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _follow(plan: Any, store: Any, wait: Any, run_id: str, as_json: bool,
            cancel: Any) -> bool:
    """Wait for the run (the live table on a terminal), then draw its final state;
    True if Ctrl-C interrupted it (``cancel(reason)`` was called)."""
    from chordflow.cli.progress import final, live, store_frames, view_of_store

    interrupted = False
    try:
        if not as_json and out.is_terminal:
            live(out, store_frames(plan, store, wait, run_id))
        else:
            wait(run_id, None)
    except KeyboardInterrupt as exc:
        interrupted = True
        cancel(str(exc) or "interrupted (Ctrl-C)")
    if not as_json:
        final(out, view_of_store(plan, store, run_id))
    return interrupted


def _run_embedded(plan: Any, variables: dict[str, Any], as_json: bool,
                  threads: int | None) -> tuple[dict[str, Any], bool, bool]:
    from chordflow.engine.embedded import EmbeddedExecutor
    from chordflow.engine.report import run_report

    executor = EmbeddedExecutor(threads=threads)
    run_id = executor.submit(plan, variables)
    interrupted = _follow(plan, executor.store, executor.wait, run_id, as_json,
                          lambda reason: executor.cancel(run_id, reason))
    # Steps that ignore cancellation (plain Python in a thread) are not waited for long.
    clean = executor.close(timeout=CLOSE_TIMEOUT)
    return run_report(executor.store, run_id, list(plan.order)), clean, interrupted


def _run_celery(plan: Any, variables: dict[str, Any],
                as_json: bool) -> tuple[dict[str, Any], bool, bool]:
    from chordflow.service import RunService

    service = RunService.celery()
    run_id = service.submit(plan, variables)
    interrupted = _follow(plan, service.engine.store, service.wait, run_id, as_json,
                          lambda reason: service.cancel(run_id, reason))
    return service.report(run_id), True, interrupted


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


def _divert_stdout() -> int:
    """Point fd 1 (and sys.stdout) at stderr; return a descriptor for the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return saved


def validate(file: FileArg, var: VarOpt = None, as_json: JsonOpt = False) -> None:
    """Check a workflow without running it (exit 2 with every error if it is invalid).

    Example: chordflow validate etl.yaml -e day=2024-05-01
    """
    plan = compile_file(file, parse_vars(var))
    if as_json:
        sys.stdout.write(json.dumps({"valid": True, "name": plan.name,
                                     "version": plan.workflow.version,
                                     "steps": len(plan.steps)}, default=str) + "\n")
        return
    out.print(f"[green]valid[/]: {plan.name} v{plan.workflow.version}, "
              f"{len(plan.steps)} steps", highlight=False)


def graph(file: FileArg) -> None:
    """Print the workflow's DAG as Mermaid flowchart text.

    Example: chordflow graph etl.yaml > etl.mmd
    """
    from chordflow.engine.graph import mermaid

    sys.stdout.write(mermaid(compile_file(file)))


def modules(as_json: JsonOpt = False) -> None:
    """List step modules, their methods and parameters.

    Example: chordflow modules --json
    """
    from chordflow.modules.registry import default_registry

    listing = default_registry().describe()
    if as_json:
        sys.stdout.write(json.dumps(listing, indent=2, default=str) + "\n")
        return
    if not out.is_terminal:
        for mod in listing:
            for method in mod["methods"]:
                say(f"{mod['name']}.{method['name']}({_params(method)}): "
                    f"{method['description']}")
        return
    table = Table("module.method", "parameters", "description")
    for mod in listing:
        for method in mod["methods"]:
            table.add_row(f"{mod['name']}.{method['name']}", _params(method),
                          method["description"])
    out.print(table)


def _params(method: dict[str, Any]) -> str:
    return ", ".join(p["name"] + ("" if p["required"] else "?") for p in method["params"])


COMMANDS = (run, validate, graph, modules)
