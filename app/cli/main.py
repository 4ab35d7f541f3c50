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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import load_file
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def _compile(file: Path, variables: dict[str, Any] | None = None) -> Any:
    from chordflow.engine.plan import compile_plan
    from chordflow.modules.registry import default_registry

    try:
        # A local file may read this machine's environment (the DAG engine's ${NAME}).
        plan = compile_plan(load_file(file, environ=os.environ), default_registry())
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
    executor: Annotated[
        str, typer.Option(help="embedded (this process) or celery (on workers).")
    ] = "embedded",
) -> None:
    """Run a workflow and report every step."""
    if executor not in ("embedded", "celery"):
        fail_invalid(f"--executor must be embedded or celery, not {executor!r}")
    variables = parse_vars(var)
    plan = _compile(file, variables)
    signal.signal(signal.SIGTERM, _terminate)
    # With --json, stdout carries the report alone: whatever steps print (a Python step
    # calling print, a module writing to fd 1) goes to stderr while the run lasts.
    report_fd = _divert_stdout() if as_json else None
    if executor == "celery":
        report, clean = _run_celery(plan, variables, as_json)
    else:
        report, clean = _run_embedded(plan, variables, as_json, threads)
    code = EXIT_OK if report["status"] == "succeeded" else EXIT_FAILED
    if report_fd is not None:
        os.write(report_fd, (json.dumps(report, default=str) + "\n").encode())
    else:
        _print_summary(report)
    if not clean:
        err.print("[yellow]warning:[/] some steps ignored the cancel; exiting without them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _run_embedded(plan: Any, variables: dict[str, Any], as_json: bool,
                  threads: int | None) -> tuple[dict[str, Any], bool]:
    from chordflow.cli.progress import watch
    from chordflow.engine.embedded import EmbeddedExecutor
    from chordflow.engine.report import run_report

    executor = EmbeddedExecutor(threads=threads)
    run_id = executor.submit(plan, variables)
    try:
        if not as_json and out.is_terminal:
            watch(executor.store, lambda rid, t: executor.wait(rid, t), plan, run_id, out)
        else:
            executor.wait(run_id)
    except KeyboardInterrupt as exc:
        executor.cancel(run_id, str(exc) or "interrupted (Ctrl-C)")
    # Steps that ignore cancellation (plain Python in a thread) are not waited for long.
    clean = executor.close(timeout=CLOSE_TIMEOUT)
    if not out.is_terminal and not as_json:
        from chordflow.cli.progress import step_table

        out.print(step_table(plan, executor.store.get_steps(run_id, plan.order)))
    return run_report(executor.store, run_id, list(plan.order)), clean


def _run_celery(plan: Any, variables: dict[str, Any],
                as_json: bool) -> tuple[dict[str, Any], bool]:
    from chordflow.cli.progress import step_table, watch
    from chordflow.service import RunService

    service = RunService.celery()
    run_id = service.submit(plan, variables)
    try:
        if not as_json and out.is_terminal:
            watch(service.engine.store, lambda rid, t: service.wait(rid, t), plan, run_id, out)
        else:
            service.wait(run_id)
    except KeyboardInterrupt as exc:
        service.cancel(run_id, str(exc) or "interrupted (Ctrl-C)")
    if not out.is_terminal and not as_json:
        out.print(step_table(plan, service.engine.store.get_steps(run_id, plan.order)))
    return service.report(run_id), True


def _print_summary(report: Mapping[str, Any]) -> None:
    out.print(f"run {report['run_id']}: [bold]{escape(str(report['status']))}[/]",
              highlight=False)
    if report["error"]:
        out.print(f"[red]{escape(report['error'])}[/]", highlight=False)
    if report["outputs"]:
        out.print_json(data=report["outputs"], default=str)


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
    from chordflow.engine.graph import mermaid

    sys.stdout.write(mermaid(_compile(file)))


@app.command()
def modules(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List step modules, their methods and parameters."""
    from chordflow.modules.registry import default_registry

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


RunIdArg = Annotated[str, typer.Argument(help="A run id.")]


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to serve.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel steps.")] = None,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo.")] = "prefork",
    hostname: Annotated[str | None, typer.Option(help="Node name, e.g. w1@%h.")] = None,
    beat: Annotated[bool, typer.Option(
        help="Also run the beat: the periodic reconciler and the schedules.")] = False,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port (default CHORDFLOW_WORKER_METRICS_PORT)."
    )] = None,
    metrics_host: Annotated[str | None, typer.Option(
        help="The address metrics listen on (default CHORDFLOW_WORKER_METRICS_HOST, "
             "127.0.0.1: this host only; 0.0.0.0 to be scraped from elsewhere)."
    )] = None,
) -> None:
    """Start a Celery worker that runs steps."""
    from chordflow.config import get_settings

    settings = get_settings()
    metrics = None
    port = metrics_port or settings.worker_metrics_port
    if port:  # before Celery (and prometheus_client) load and the pool forks
        from chordflow.workers.metrics import install

        metrics = install(port, settings.worker_metrics_dir,
                          metrics_host or settings.worker_metrics_host)
    from chordflow.workers.celery_app import app as celery_app

    argv = ["worker", "-Q", queues or settings.default_queue, "-P", pool, "-l", loglevel,
            "-E", "--without-mingle", "--without-gossip"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    if beat:
        argv += ["-B", "-s", str(settings.workdir / "celerybeat-schedule")]
        settings.workdir.mkdir(parents=True, exist_ok=True)
    if settings.log_format == "json":
        from chordflow.log_format import json_for_celery

        json_for_celery()
    _say_if_the_store_is_down(settings)
    try:
        celery_app.worker_main(argv)
    finally:
        if metrics is not None:
            from chordflow.workers.metrics import cleanup

            cleanup(metrics, remove=settings.worker_metrics_dir is None)


def _say_if_the_store_is_down(settings: Any) -> None:
    """A worker starts whether MongoDB answers or not (its steps wait for it); if it
    does not, say so once, now, rather than leave the operator guessing."""
    from chordflow.engine.mongo_store import MongoStore
    from chordflow.errors import StoreUnavailable

    store = MongoStore(settings.mongo_url, settings.mongo_db, patience=0)
    try:
        store.ping()
    except StoreUnavailable as exc:
        logging.getLogger("chordflow.worker").warning(
            "%s; starting anyway: steps wait for it (up to %gs each), then go back to the "
            "broker", exc, settings.store_outage_seconds)
    finally:
        store.close()


def _service() -> Any:
    from chordflow.service import RunService

    return RunService.celery()


def _over_http() -> bool:
    """True when CHORDFLOW_API_URL is set: status, cancel and rerun use the API."""
    from chordflow.config import get_settings

    return bool(get_settings().api_url)


@app.command()
def status(run_id: RunIdArg,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show a run (through the API when CHORDFLOW_API_URL is set, else from MongoDB)."""
    if _over_http():
        from chordflow.cli.remote import report_over_http

        report = report_over_http(run_id)
    else:
        report = _service().report(run_id)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        print_report(report)


def print_report(report: Mapping[str, Any]) -> None:
    """The summary, then one line per step (``status``, here or over HTTP)."""
    _print_summary(report)
    for name, step in report["steps"].items():
        out.print(escape(f"  {name}: {step['status']} (attempts {step['attempts']})"
                         + (f" - {step['error']}" if step["error"] else "")),
                  highlight=False)


@app.command()
def cancel(run_id: RunIdArg) -> None:
    """Cancel a running run: nothing more starts, running steps are stopped."""
    if _over_http():
        from chordflow.cli.remote import cancel_over_http

        cancel_over_http(run_id)  # exits 2 with the server's reason if it cannot
    else:
        service = _service()
        if not service.cancel(run_id, "cancelled by user"):
            status = service.engine.store.get_run(run_id).status  # or: no such run
            fail_invalid(f"run {run_id} is {status}; only a pending or running run can be "
                         "cancelled")
    out.print(f"run {run_id}: cancelled")


@app.command()
def resume(run_id: RunIdArg) -> None:
    """Re-send what a running run waits for (after lost messages or a dead worker)."""
    done = _service().engine.resume(run_id)
    out.print(f"run {run_id}: resent {done.resent}, taken over {done.taken_over}, "
              f"released {done.released}, gathered {done.gathered}", highlight=False)


@app.command()
def rerun(run_id: RunIdArg,
          wait: Annotated[bool, typer.Option(help="Wait for the run to finish.")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Run a failed run again from its failed steps, keeping what succeeded."""
    http = _over_http()
    if http:
        from chordflow.cli.remote import rerun_over_http, wait_over_http

        steps = rerun_over_http(run_id)  # exits 2 with the server's reason if it cannot
    else:
        service = _service()
        try:
            steps = service.engine.rerun(run_id)
        except ValueError as exc:
            fail_invalid(str(exc))
    if not wait:
        out.print(f"run {run_id}: re-running {', '.join(steps)}", highlight=False)
        return
    if http:
        report = wait_over_http(run_id)  # Ctrl-C cancels the run and exits 130
    else:
        service.wait(run_id)
        report = service.report(run_id)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        _print_summary(report)
    raise typer.Exit(EXIT_OK if report["status"] == "succeeded" else EXIT_FAILED)


@app.command()
def reconcile() -> None:
    """Resume every running run once (what the periodic reconciler does)."""
    from chordflow.config import get_settings
    from chordflow.tasks.recovery import reconcile as reconcile_all
    from chordflow.workers.celery_app import app as celery_app

    settings = get_settings()
    report = reconcile_all(_service().engine, celery_app, settings.reconcile_grace,
                           settings.default_queue)
    sys.stdout.write(json.dumps(report) + "\n")


def _register_server_commands() -> None:
    from chordflow.cli.server import api, flower, keys_app

    app.command()(api)
    app.command()(flower)
    app.add_typer(keys_app, name="keys")


_register_server_commands()


def _register_remote_commands() -> None:
    from chordflow.cli.remote import logs, runs, schedules_app, submit, workflows_app

    app.command()(submit)
    app.command()(runs)
    app.command()(logs)
    app.add_typer(workflows_app, name="workflows")
    app.add_typer(schedules_app, name="schedules")


_register_remote_commands()


def main() -> None:
    from chordflow.config import get_settings
    from chordflow.log_format import configure

    try:
        log_format = get_settings().log_format
    except ValueError:  # a bad CHORDFLOW_* variable: the command itself reports it
        log_format = "text"
    configure(log_format, logging.WARNING)
    # A store that does not answer is reported once, as the command's error line.
    logging.getLogger("chordflow.store").setLevel(logging.ERROR)
    try:
        app()
    except Exception as exc:
        message = refusal(exc)
        if message is None:
            raise
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        sys.exit(EXIT_INVALID)


def refusal(exc: BaseException) -> str | None:
    """The one line to print for an error that is the world's, not a bug: an unknown
    run, an unreachable store or broker. None for anything else (a traceback, then)."""
    from chordflow.errors import DispatchFailed, RunNotFound, StoreUnavailable

    if isinstance(exc, RunNotFound | StoreUnavailable | DispatchFailed):
        return str(exc)
    # The libraries' own "cannot connect" errors, where a command used them directly;
    # looked up only if loaded (an embedded run never imports them).
    for module, names, what in (
        ("pymongo.errors", ("ConnectionFailure",), "MongoDB"),
        ("kombu.exceptions", ("OperationalError",), "the broker"),
        ("redis.exceptions", ("ConnectionError", "TimeoutError"), "Redis"),
    ):
        loaded = sys.modules.get(module)
        kinds = tuple(getattr(loaded, n) for n in names) if loaded else ()
        if kinds and isinstance(exc, kinds):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{what} is unreachable ({type(exc).__name__}: {first[:300]})"
    return None


if __name__ == "__main__":
    main()
