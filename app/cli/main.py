"""The ``chordflow`` command.

Exit codes: 0 the run succeeded (or the file is valid), 1 the run failed or was
cancelled, 2 the workflow is invalid (the errors go to stderr).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from app.errors import ValidationFailed
from app.workflow.loader import load_file

app = typer.Typer(
    name="chordflow",
    help="Run workflows (DAGs of steps) embedded or on Celery workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

FileArg = Annotated[Path, typer.Argument(help="Workflow file (JSON or YAML, any dialect).")]
VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", "-v", help="Set a variable: K=V (V parsed as JSON if it can be)."),
]


def parse_vars(pairs: list[str] | None) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail_invalid(f"--var expects KEY=VALUE, got {pair!r}")
        try:
            variables[key] = json.loads(raw)
        except ValueError:
            variables[key] = raw
    return variables


def fail_invalid(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def _compile(file: Path, variables: dict[str, Any] | None = None) -> Any:
    from app.engine.plan import compile_plan
    from modules.registry import default_registry

    try:
        plan = compile_plan(load_file(file), default_registry())
        if variables is not None:
            plan.effective_variables(variables)
    except ValidationFailed as exc:
        fail_invalid(str(exc))
    return plan


@app.command()
def run(
    file: FileArg,
    var: VarOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
    threads: Annotated[int | None, typer.Option(help="Embedded executor threads.")] = None,
) -> None:
    """Run a workflow in this process and report every step."""
    from app.cli.progress import step_table, watch
    from app.engine.embedded import EmbeddedExecutor
    from app.engine.report import run_report

    variables = parse_vars(var)
    plan = _compile(file, variables)
    signal.signal(signal.SIGTERM, _terminate)
    # With --json, stdout carries the report alone: whatever steps print (a Python step
    # calling print, a module writing to fd 1) goes to stderr while the run lasts.
    report_fd = _divert_stdout() if as_json else None
    executor = EmbeddedExecutor(threads=threads)
    run_id = executor.submit(plan, variables)
    try:
        if not as_json and out.is_terminal:
            watch(executor, plan, run_id, out)
        else:
            executor.wait(run_id)
    except KeyboardInterrupt as exc:
        executor.cancel(run_id, str(exc) or "interrupted (Ctrl-C)")
    # Steps that ignore cancellation (plain Python in a thread) are not waited for long.
    clean = executor.close(timeout=CLOSE_TIMEOUT)
    report = run_report(executor.store, run_id, list(plan.order))
    code = EXIT_OK if report["status"] == "succeeded" else EXIT_FAILED
    if report_fd is not None:
        os.write(report_fd, (json.dumps(report, default=str) + "\n").encode())
    else:
        if not out.is_terminal:
            out.print(step_table(plan, executor.store.get_steps(run_id)))
        out.print(f"run {run_id}: [bold]{report['status']}[/]", highlight=False)
        if report["error"]:
            out.print(f"[red]{report['error']}[/]", highlight=False)
        if report["outputs"]:
            out.print_json(data=report["outputs"], default=str)
    if not clean:
        err.print("[yellow]warning:[/] some steps ignored the cancel; exiting without them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


#: Seconds ``run`` waits for cancelled steps to stop before exiting without them.
CLOSE_TIMEOUT = 10.0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


def _divert_stdout() -> int:
    """Point fd 1 (and sys.stdout) at stderr; return a descriptor for the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return saved


@app.command()
def validate(file: FileArg, var: VarOpt = None) -> None:
    """Check a workflow without running it."""
    plan = _compile(file, parse_vars(var))
    out.print(f"[green]valid[/]: {plan.name} v{plan.workflow.version}, "
              f"{len(plan.steps)} steps", highlight=False)


@app.command()
def graph(file: FileArg) -> None:
    """Print the workflow's DAG as Mermaid flowchart text."""
    from app.engine.graph import mermaid

    sys.stdout.write(mermaid(_compile(file)))


@app.command()
def modules(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List step modules, their methods and parameters."""
    from modules.registry import default_registry

    listing = default_registry().describe()
    if as_json:
        sys.stdout.write(json.dumps(listing, indent=2, default=str) + "\n")
        return
    table = Table("module.method", "parameters", "description")
    for mod in listing:
        for method in mod["methods"]:
            params = ", ".join(
                p["name"] + ("" if p["required"] else "?") for p in method["params"]
            )
            table.add_row(f"{mod['name']}.{method['name']}", params, method["description"])
    out.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
