"""Runs already started, wherever they run: ``submit``, ``runs``, ``logs`` (always on the
API), ``status``, ``cancel``, ``rerun`` (on the API when CHORDFLOW_API_URL is set, else
in MongoDB directly), ``resume`` and ``reconcile`` (MongoDB and the broker).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from chordflow.cli.connect import connect
from chordflow.cli.follow import as_report, follow, report_started, specs_for, tolerated
from chordflow.cli.output import (
    EXIT_INTERRUPTED,
    FileArg,
    JsonOpt,
    RunIdArg,
    VarOpt,
    exit_code,
    fail,
    note,
    out,
    print_json,
    print_report,
    print_summary,
    print_table,
    say,
    when,
)
from chordflow.cli.progress import final, specs_of, specs_of_document, store_frames
from rich.markup import escape


class RunStatusName(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="Follow the run to its end (the live table on a terminal), print its "
                   "report, exit 0 if it succeeded, else 1. Ctrl-C cancels the run.")]
IdempotencyOpt = Annotated[str | None, typer.Option(
    "--idempotency-key", help="Submitting again with the same key returns the first run "
                              "instead of starting another.")]


def read_document(file: Path) -> dict[str, Any]:
    """A workflow file (JSON or YAML, any dialect) as a document. As ``chordflow run``
    does, an unnamed canonical or procedures workflow is named after its file."""
    from chordflow.workflow.dialects import CANONICAL, detect, procedures

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    except yaml.YAMLError as exc:
        fail(f"{file} is not valid JSON or YAML: {exc}")
    if not isinstance(data, dict):
        fail(f"{file}: a workflow must be an object")
    if not data.get("name") and detect(data) in (CANONICAL, procedures.NAME):
        data = {**data, "name": file.stem}
    return data


def _over_http() -> bool:
    """True when CHORDFLOW_API_URL is set: status, cancel and rerun use the API."""
    from chordflow.config import get_settings

    return bool(get_settings().api_url)


def _service() -> Any:
    from chordflow.service import RunService

    return RunService.celery()


def submit(
    file: FileArg,
    var: VarOpt = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
    idempotency_key: IdempotencyOpt = None,
) -> None:
    """Submit a workflow file to the API; print the run id, or with --wait follow it.

    Example: chordflow submit etl.yaml -e day=2024-05-01 --wait
    """
    from chordflow.cli.output import parse_vars

    variables = parse_vars(var)
    document = read_document(file)
    with connect() as api:
        report_started(api, api.submit(document, variables, idempotency_key), wait, as_json,
                       specs_of_document(document))


def runs(
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[list[RunStatusName] | None, typer.Option(
        "--status", "-s", help="Only runs in this status (repeat for several).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List runs on the API, newest first.

    Example: chordflow runs --workflow etl -s failed --limit 5
    """
    with connect() as api:
        found = api.list_runs(workflow, [str(s) for s in status or []], limit)
    if as_json:
        print_json(found)
        return
    if not found:
        note("no runs")
        return
    print_table(["run", "workflow", "version", "status", "trigger", "created", "finished"],
                [[str(run.get(key) or "") for key in ("run_id", "workflow", "version",
                                                       "status", "trigger")]
                 + [when(run.get("created_at")), when(run.get("finished_at"))]
                 for run in found])


def logs(
    run_id: RunIdArg,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    follow_run: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print events as they happen (under the live table on a "
                               "terminal) until the run ends; exit with its code.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="With --follow: one JSON event a line, then the run.")] = False,
) -> None:
    """Print a run's log: its events, then each step's output and whole error.

    Example: chordflow logs 3f2a... --follow --step load
    """
    from chordflow.engine.dispatch import TaskKey
    from chordflow.engine.report import event_line

    def show(console: Any, data: Mapping[str, Any]) -> None:
        name = data.get("step")
        if step is not None and not (name and TaskKey.parse(str(name)).step == step):
            return
        if as_json:
            sys.stdout.write(json.dumps(dict(data), default=str) + "\n")
        elif console.is_terminal:
            console.print(escape(event_line(data["ts"], str(data.get("type")), name,
                                            data.get("data"))), highlight=False)
        else:
            sys.stdout.write(event_line(data["ts"], str(data.get("type")), name,
                                        data.get("data")) + "\n")
        sys.stdout.flush()

    with connect() as api:
        if not follow_run:
            if as_json:
                print_json(as_report(api.get_run(run_id)))
            else:
                sys.stdout.write(api.logs(run_id, step))
            return
        run = follow(api, run_id, table=out.is_terminal and not as_json,
                     cancel_on_interrupt=False, on_event=show)
        if as_json:
            sys.stdout.write(json.dumps(run, default=str) + "\n")
        else:
            sys.stdout.write(api.logs(run_id, step, events=False))
    raise typer.Exit(exit_code(run.get("status")))


def status(
    run_id: RunIdArg,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Redraw the live table until the run ends; exit with its "
                              "code. Ctrl-C stops watching (the run goes on).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a run (through the API when CHORDFLOW_API_URL is set, else from MongoDB).

    Example: chordflow status 3f2a... --watch
    """
    if _over_http():
        with connect() as api:
            if watch:
                run = follow(api, run_id, table=out.is_terminal and not as_json,
                             cancel_on_interrupt=False)
            else:
                run = api.get_run(run_id)
            specs = None if as_json else specs_for(api, run)
        report = as_report(run)
        done = tolerated(run, specs)
    else:
        service = _service()
        run_record = service.engine.store.get_run(run_id)  # RunNotFound: exit 2
        if watch:
            _watch_locally(service, service.engine.plan_for(run_record), run_id, as_json)
        report = service.report(run_id)
        done = _tolerated_locally(service, run_record, report)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    elif watch and out.is_terminal:
        print_summary(report)
    else:
        print_report(report, done)
    if watch:
        raise typer.Exit(exit_code(report["status"]))


def _tolerated_locally(service: Any, run: Any, report: Mapping[str, Any]) -> frozenset[str]:
    """The failed steps of the report whose failure the workflow tolerates."""
    try:
        plan = service.engine.plan_for(run)
    except Exception:  # noqa: BLE001 - a plan this machine cannot build: say nothing
        return frozenset()
    return frozenset(name for name, spec in specs_of(plan).items()
                     if spec.continue_on_failure
                     and report["steps"].get(name, {}).get("status") == "failed")


def _watch_locally(service: Any, plan: Any, run_id: str, as_json: bool) -> None:
    """``status --watch`` from MongoDB: the live table (on a terminal) until the run
    ends. Ctrl-C stops watching and exits 130; the run goes on."""
    from chordflow.cli.progress import live, view_of_store

    store = service.engine.store
    try:
        if as_json or not out.is_terminal:
            while str(service.wait(run_id, 1.0)) not in ("succeeded", "failed", "cancelled"):
                pass
            return
        live(out, store_frames(plan, store, service.wait, run_id))
        final(out, view_of_store(plan, store, run_id))
    except KeyboardInterrupt:
        if out.is_terminal and not as_json:
            final(out, view_of_store(plan, store, run_id))
        note(f"interrupted (Ctrl-C): stopped watching run {run_id} (it goes on)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def cancel(run_id: RunIdArg, as_json: JsonOpt = False) -> None:
    """Cancel a running run: nothing more starts, running steps are stopped.

    Example: chordflow cancel 3f2a...
    """
    if _over_http():
        with connect() as api:
            api.cancel(run_id)  # exits 2 with the server's reason if it cannot
    else:
        service = _service()
        if not service.cancel(run_id, "cancelled by user"):
            state = service.engine.store.get_run(run_id).status  # or: no such run
            fail(f"run {run_id} is {state}; only a pending or running run can be cancelled")
    if as_json:
        sys.stdout.write(json.dumps({"run_id": run_id, "status": "cancelled"}) + "\n")
    else:
        say(f"run {run_id}: cancelled")


def resume(run_id: RunIdArg, as_json: JsonOpt = False) -> None:
    """Re-send what a running run waits for (after lost messages or a dead worker).

    Example: chordflow resume 3f2a...
    """
    done = _service().engine.resume(run_id)
    if as_json:
        sys.stdout.write(json.dumps({"run_id": run_id, "resent": done.resent,
                                     "taken_over": done.taken_over,
                                     "released": done.released,
                                     "gathered": done.gathered}, default=str) + "\n")
        return
    say(f"run {run_id}: resent {done.resent}, taken over {done.taken_over}, "
        f"released {done.released}, gathered {done.gathered}")


def rerun(run_id: RunIdArg,
          wait: Annotated[bool, typer.Option(
              help="Follow the run to its end; exit 0 if it succeeded, else 1. "
                   "Ctrl-C cancels it.")] = False,
          as_json: JsonOpt = False) -> None:
    """Run a failed run again from its failed steps, keeping what succeeded.

    Example: chordflow rerun 3f2a... --wait
    """
    if _over_http():
        with connect() as api:
            steps = api.rerun(run_id)  # exits 2 with the server's reason if it cannot
            if not wait:
                _said_rerun(run_id, steps, as_json)
                return
            report = as_report(follow(api, run_id, table=out.is_terminal and not as_json,
                                      cancel_on_interrupt=True))
    else:
        service = _service()
        try:
            steps = service.engine.rerun(run_id)
        except ValueError as exc:
            fail(str(exc))
        if not wait:
            _said_rerun(run_id, steps, as_json)
            return
        try:
            service.wait(run_id)
        except KeyboardInterrupt:
            service.cancel(run_id, "interrupted (Ctrl-C)")
            note(f"interrupted (Ctrl-C): run {run_id} cancelled")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        report = service.report(run_id)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        print_summary(report)
    raise typer.Exit(exit_code(report["status"]))


def _said_rerun(run_id: str, steps: list[str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"run_id": run_id, "steps": steps}) + "\n")
    else:
        say(f"run {run_id}: re-running {', '.join(steps)}")


def reconcile() -> None:
    """Resume every running run once (what the periodic reconciler does); prints JSON.

    Example: chordflow reconcile
    """
    from chordflow.config import get_settings
    from chordflow.tasks.recovery import reconcile as reconcile_all
    from chordflow.workers.celery_app import app as celery_app

    settings = get_settings()
    report = reconcile_all(_service().engine, celery_app, settings.reconcile_grace,
                           settings.default_queue)
    sys.stdout.write(json.dumps(report) + "\n")


COMMANDS = (submit, runs, logs, status, cancel, resume, rerun, reconcile)
