"""Following a run on the API to its end (``submit --wait``, ``status --watch``,
``logs --follow``, ``workflows run --wait``, ``rerun --wait``): its live table on a
terminal, the event lines of ``logs``, and Ctrl-C.

Ctrl-C (or SIGTERM) exits 130 after drawing the run's state; a command that started the
run (``--wait``) cancels it first, one that only watches (``--watch``, ``--follow``)
leaves it running, as ``tail -f`` leaves a file.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import typer
from chordflow.cli.output import (
    EXIT_INTERRUPTED,
    exit_code,
    note,
    out,
    print_json,
    print_report,
    print_summary,
)
from chordflow.cli.progress import (
    MAX_ROWS,
    AttemptClock,
    RunView,
    StepSpec,
    final,
    render,
    specs_of_document,
    view_of_api,
)
from chordflow.client import ApiError, Client, Started
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

#: Seconds between two reads of a big run (more than MAX_ROWS steps) while following.
BIG_RUN_REFRESH = 1.0


def as_report(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as ``GET /runs/{id}`` answers it, in the shape of the CLI's run report
    (``chordflow run --json``, ``status --json``)."""
    return {
        "run_id": run.get("run_id"),
        "workflow": run.get("workflow"),
        "status": run.get("status"),
        "error": run.get("error"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "steps": {
            step.get("name"): {key: step.get(key) for key in
                               ("status", "attempts", "outputs", "error", "started_at",
                                "finished_at")}
            for step in run.get("steps") or [] if isinstance(step, Mapping)
        },
        "outputs": run.get("outputs"),
    }


def specs_for(api: Client, run: Mapping[str, Any]) -> dict[str, StepSpec] | None:
    """The retries and tolerated failures of a stored workflow's run (an inline run's
    document is not kept by the API: None)."""
    try:
        stored = api.get_workflow(str(run.get("workflow")), run.get("version"))
    except ApiError:
        return None
    return specs_of_document(stored.get("document"))


def tolerated(run: Mapping[str, Any], specs: Mapping[str, StepSpec] | None) -> frozenset[str]:
    """The failed steps of ``run`` whose failure the workflow tolerates."""
    return frozenset(str(s.get("name")) for s in run.get("steps") or []
                     if isinstance(s, Mapping) and s.get("status") == "failed"
                     and specs and (spec := specs.get(str(s.get("name")))) is not None
                     and spec.continue_on_failure)


class _Screen:
    """What the live display draws: rebuilt at each refresh, so times and a retry's
    countdown move between events."""

    def __init__(self, run: dict[str, Any], specs: Mapping[str, StepSpec] | None):
        self.run = run
        self.specs = specs
        self.clock = AttemptClock()

    def view(self) -> RunView:
        return view_of_api(self.run, self.clock, self.specs)

    def __rich__(self) -> RenderableType:
        return render(self.view()) if self.run else Text("waiting for the run")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


def follow(api: Client, run_id: str, *, table: bool, cancel_on_interrupt: bool,
           specs: Mapping[str, StepSpec] | None = None,
           on_event: Callable[[Console, Mapping[str, Any]], None] | None = None,
           console: Console = out) -> dict[str, Any]:
    """Follow the run until it ends; the finished run (``GET /runs/{id}``).

    ``table``: draw the live table (a terminal), then the final one with its summary.
    ``on_event(console, event)`` is called for each event (printed above the table).
    """
    screen = _Screen(api.get_run(run_id), specs)
    if specs is None and table:
        screen.specs = specs_for(api, screen.run)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    live = Live(screen, console=console, refresh_per_second=8, transient=True) \
        if table else None
    try:
        if live is not None:
            live.start()
        last_read = time.monotonic()
        for event, data in api.follow(run_id):
            if event == "end":
                screen.run = data
                break
            if not isinstance(data, Mapping):
                continue
            screen.clock.feed(float(data.get("ts") or 0.0), str(data.get("type")),
                              data.get("step"), data.get("data"))
            if on_event is not None:
                on_event(console, data)
            big = len(screen.run.get("steps") or []) > MAX_ROWS
            if live is not None and (not big
                                     or time.monotonic() - last_read > BIG_RUN_REFRESH):
                screen.run, last_read = api.get_run(run_id), time.monotonic()
    except KeyboardInterrupt as exc:
        if live is not None:
            live.stop()
        reason = str(exc) or "interrupted (Ctrl-C)"
        if cancel_on_interrupt:
            _cancel(api, run_id, reason)
        else:
            note(f"{reason}: stopped following run {run_id} (it goes on)")
        try:
            screen.run = api.get_run(run_id)
        except ApiError:
            pass
        if table:
            final(console, screen.view())
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGTERM, previous)
    if table:
        final(console, screen.view())
    return screen.run


def _cancel(api: Client, run_id: str, reason: str) -> None:
    try:
        api.cancel(run_id)
        note(f"{reason}: run {run_id} cancelled")
    except ApiError as exc:  # it finished meanwhile (409), or the key may not cancel
        note(f"{reason}: run {run_id} not cancelled: {exc.message}")


def report_started(api: Client, started: Started, wait: bool, as_json: bool,
                   specs: Mapping[str, StepSpec] | None = None) -> None:
    """Print a started run's id (or its JSON); with ``wait`` follow it (the live table
    on a terminal), print its report and exit with its code."""
    run_id = started.run_id
    if started.replayed:
        note(f"run {run_id} was submitted earlier with this idempotency key")
    if not wait:
        if as_json:
            print_json(started.run)
        else:
            out.print(run_id, highlight=False, soft_wrap=True)
        return
    note(f"run {run_id} of {started.run.get('workflow')}: {started.run.get('status')}, "
         "waiting (Ctrl-C cancels it)")
    run = follow(api, run_id, table=not as_json and out.is_terminal,
                 cancel_on_interrupt=True, specs=specs)
    if as_json:
        print_json(run)
    elif out.is_terminal:
        print_summary(as_report(run))
    else:
        print_report(as_report(run), tolerated(run, specs or specs_for(api, run)))
    raise typer.Exit(exit_code(run.get("status")))
