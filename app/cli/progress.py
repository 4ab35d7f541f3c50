"""The step table every command that follows a run draws (``run``, ``submit --wait``,
``status --watch``, ``logs --follow``), live on a terminal, and its summary line.

It is drawn from a :class:`RunView`, which is built the same way from a local store
(``run``, ``status`` without the API) or from the API's answers and event stream, so
the table looks the same wherever the run is: a retry's wait, a tolerated failure
(``continue_on_failure``) and the time a step spent over all its attempts included.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chordflow.modules.limits import format_bytes
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLES = {
    "pending": "dim",
    "ready": "cyan",
    "queued": "blue",
    "retrying": "yellow",
    "running": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "tolerated": "yellow",
    "upstream_failed": "red",
    "skipped": "dim",
    "cancelled": "magenta",
}
#: Above this many steps the live view shows counts per status instead of every row.
MAX_ROWS = 40
#: Events that end a step's attempt (its time stops counting).
ATTEMPT_ENDS = frozenset({"step_retry", "step_succeeded", "step_failed", "step_cancelled",
                          "step_skipped", "step_upstream_failed"})
FINISHED_RUN = frozenset({"succeeded", "failed", "cancelled"})
_HTML = re.compile(r"<(!doctype|html|head|body)\b", re.IGNORECASE)
_STATUS = re.compile(r"(\d{3}) ([A-Za-z][A-Za-z' -]*?):?\s*$")


@dataclass(frozen=True)
class StepSpec:
    """What the workflow says of a step that its record does not: how many retries it
    has and whether its failure is tolerated."""

    retries: int = 0
    continue_on_failure: bool = False


def specs_of(plan: Any) -> dict[str, StepSpec]:
    """Each step's StepSpec, from a compiled plan."""
    return {name: StepSpec(sp.step.retries, sp.step.continue_on_failure)
            for name, sp in plan.steps.items()}


def specs_of_document(document: Any) -> dict[str, StepSpec] | None:
    """Each step's StepSpec from a workflow document (any dialect); None if it cannot
    be read here (the table then shows no retry total and no tolerated failures)."""
    from chordflow.workflow.loader import load_data

    try:
        workflow = load_data(document)
    except Exception:  # noqa: BLE001 - a document the server accepted may still not load here
        return None
    return {s.name: StepSpec(s.retries, s.continue_on_failure) for s in workflow.steps}


def short_error(error: str | None, whole: bool = False) -> str:
    """An error as a table shows it: its first line (everything with ``whole``), and
    an HTML page a server answered with as ``HTTP 404 Not Found``, never its markup."""
    if not error:
        return ""
    found = _HTML.search(error)
    if found:
        before = error[: found.start()].rstrip()
        status = _STATUS.search(before)
        head = before[: status.start()].rstrip(": ").removesuffix(" answered").strip() \
            if status else before.rstrip(": ")
        reason = f"HTTP {status.group(1)} {status.group(2)}" if status else "an HTML page"
        error = f"{reason} ({head})" if head else reason
    if whole:
        return error.strip()
    lines = error.strip().splitlines()
    return lines[0] if lines else ""


@dataclass
class AttemptClock:
    """Each step's time over its attempts and its pending retry, from the run's events
    (a record only knows its last attempt)."""

    spent: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    #: step -> (when the retry was decided, attempts so far, seconds it waits)
    retry: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    #: step -> what its running attempt last reported (``step_progress``), as shown.
    progress: dict[str, str] = field(default_factory=dict)

    def feed(self, ts: float, kind: str, step: str | None, data: Any) -> None:
        if not step or "[" in step:  # a foreach element's events: the step's own count
            return
        if kind == "step_started":
            self.started[step] = ts
            self.retry.pop(step, None)
            self.progress.pop(step, None)
        elif kind == "step_progress" and isinstance(data, Mapping):
            self.progress[step] = progress_text(data)
        elif kind in ATTEMPT_ENDS:
            self.progress.pop(step, None)
            start = self.started.pop(step, None)
            if start is not None:
                self.spent[step] = self.spent.get(step, 0.0) + max(ts - start, 0.0)
            if kind == "step_retry" and isinstance(data, Mapping):
                self.retry[step] = (ts, int(data.get("attempt") or 0),
                                    float(data.get("delay") or 0.0))

    def seconds(self, step: str, now: float) -> float | None:
        if step not in self.spent and step not in self.started:
            return None
        running = now - self.started[step] if step in self.started else 0.0
        return self.spent.get(step, 0.0) + max(running, 0.0)


def progress_text(data: Mapping[str, Any]) -> str:
    """A ``step_progress`` event as the table's detail: ``12 MiB / 100 MiB (12%),
    4.1 MiB/s, ETA 21s``; a module's own ``message`` if it gives one."""
    if data.get("message"):
        return str(data["message"])
    done, total = data.get("bytes"), data.get("total")
    if not isinstance(done, int | float):
        return ""
    text = format_bytes(int(done))
    if isinstance(total, int | float) and total > 0:
        text += f" / {format_bytes(int(total))} ({min(100.0, 100.0 * done / total):.0f}%)"
    rate, eta = data.get("rate"), data.get("eta")
    if isinstance(rate, int | float) and rate > 0:
        text += f", {format_bytes(int(rate))}/s"
    if isinstance(eta, int | float):
        text += f", ETA {duration(eta)}"
    return text


@dataclass(frozen=True)
class StepRow:
    name: str
    module: str
    status: str
    attempts: int
    seconds: float | None = None
    error: str | None = None
    #: "retry 1/2 in 2s" while a retry waits.
    retry: str | None = None
    #: A failure its workflow tolerates (``continue_on_failure``).
    tolerated: bool = False
    items: str | None = None
    #: How far its running attempt is (``step_progress``).
    progress: str | None = None

    @property
    def shown_status(self) -> str:
        if self.retry:
            return "retrying"
        return "tolerated" if self.tolerated else self.status


@dataclass(frozen=True)
class RunView:
    name: str
    run_id: str
    status: str
    rows: list[StepRow]
    #: Seconds from the run's start to its end (or to now).
    wall: float | None = None


def make_row(name: str, module: str, status: str, attempts: int, error: str | None,
             seconds: float | None, spec: StepSpec | None, clock: AttemptClock,
             now: float, items: str | None = None) -> StepRow:
    """One step's row; a queued step with a failed attempt behind it waits for a retry."""
    retry = None
    pending = clock.retry.get(name)
    if status in ("queued", "ready") and pending is not None and attempts >= 1:
        ts, attempt, delay = pending
        left = max(ts + delay - now, 0.0)
        total = f"/{spec.retries}" if spec is not None and spec.retries else ""
        retry = f"retry {attempt}{total} in {left:.0f}s" if left >= 0.5 else \
            f"retry {attempt}{total} now"
    tolerated = status == "failed" and spec is not None and spec.continue_on_failure
    clocked = clock.seconds(name, now)
    progress = clock.progress.get(name) if status == "running" else None
    return StepRow(name, module, status, attempts, clocked if clocked is not None else seconds,
                   error, retry, tolerated, items, progress)


def view_of_store(plan: Any, store: Any, run_id: str, now: float | None = None) -> RunView:
    """The run as a local store (embedded, or MongoDB) has it."""
    now = time.time() if now is None else now
    run = store.get_run(run_id)
    steps = store.get_steps(run_id, plan.order)
    clock = AttemptClock()
    if len(steps) <= MAX_ROWS:
        for event in store.events(run_id):
            clock.feed(event.ts, event.type, event.step, event.data)
    specs = specs_of(plan)
    rows = []
    for name in plan.order:
        rec = steps[name]
        seconds = ((rec.finished_at or now) - rec.started_at) if rec.started_at else None
        items = None
        if rec.items is not None and not rec.status.finished:
            done = sum(1 for item in rec.items if item.status.finished)
            items = f"{done}/{len(rec.items)} items"
        rows.append(make_row(name, f"{rec.module}.{rec.method}", str(rec.status),
                             rec.attempts, rec.error, seconds, specs.get(name), clock, now,
                             items))
    wall = ((run.finished_at or now) - run.started_at) if run.started_at else None
    return RunView(run.workflow, run.id, str(run.status), rows, wall)


def epoch(value: Any) -> float | None:
    """An ISO time (the API's, a report's) as seconds since the epoch."""
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def view_of_api(run: Mapping[str, Any], clock: AttemptClock,
                specs: Mapping[str, StepSpec] | None = None,
                now: float | None = None) -> RunView:
    """The run as ``GET /runs/{id}`` answers it, timed by the events seen so far."""
    now = time.time() if now is None else now
    rows = []
    for step in run.get("steps") or []:
        if not isinstance(step, Mapping):
            continue
        name = str(step.get("name"))
        started, finished = epoch(step.get("started_at")), epoch(step.get("finished_at"))
        seconds = (finished or now) - started if started else None
        items = f"{step['items']} items" if step.get("items") is not None \
            and step.get("status") not in ("succeeded", "failed") else None
        rows.append(make_row(name, f"{step.get('module')}.{step.get('method')}",
                             str(step.get("status")), int(step.get("attempts") or 0),
                             step.get("error"), seconds, (specs or {}).get(name), clock,
                             now, items))
    started, finished = epoch(run.get("started_at")), epoch(run.get("finished_at"))
    wall = (finished or now) - started if started else None
    return RunView(str(run.get("workflow")), str(run.get("run_id")), str(run.get("status")),
                   rows, wall)


def duration(seconds: float | None) -> str:
    """1.23s, 4m05s, 2h03m."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def step_table(view: RunView, title: str = "") -> Table:
    """Every step: status, attempts, time over its attempts, and what it is doing or
    why it failed (the error's first line)."""
    table = Table(title=title or None, expand=False)
    table.add_column("step")
    table.add_column("module")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold", max_width=60)
    for row in view.rows:
        status = {"retrying": "retrying", "tolerated": "failed (tolerated)"}.get(
            row.shown_status, row.status)
        detail = row.retry or row.progress or row.items or short_error(row.error)
        if row.retry and row.error:
            detail = f"{row.retry}: {short_error(row.error)}"
        table.add_row(row.name, row.module,
                      Text(status, style=STYLES.get(row.shown_status, "")),
                      str(row.attempts), duration(row.seconds), Text(detail))
    return table


def summary_line(view: RunView) -> str:
    """``run <id> failed: 3 steps: 1 succeeded, 1 failed, 1 tolerated; wall time 2.31s``."""
    tally = Counter(row.shown_status for row in view.rows)
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in sorted(tally.items())]
    n = len(view.rows)
    wall = f"; wall time {duration(view.wall)}" if view.wall is not None else ""
    return (f"run {view.run_id} {view.status}: {n} step{'s' if n != 1 else ''}: "
            f"{', '.join(parts) or 'none'}{wall}")


def render(view: RunView) -> Group:
    header = Text(f"{view.name}  ", style="bold")
    header.append(view.status, style=STYLES.get(view.status, "bold"))
    summary = Text(summary_line(view), style="dim")
    if len(view.rows) > MAX_ROWS:
        return Group(header, summary)
    return Group(header, step_table(view), summary)


def live(console: Console, frames: Iterable[RunView]) -> RunView | None:
    """Draw each view as it comes, until the iterable ends; the last one. A Ctrl-C
    propagates to the caller, who cancels the run and draws its final state with
    :func:`final`."""
    last = None
    with Live(console=console, refresh_per_second=8, transient=True) as screen:
        for view in frames:
            last = view
            screen.update(render(view))
    return last


def final(console: Console, view: RunView) -> None:
    """The run's final table and summary line (after ``live``, or off a terminal)."""
    if len(view.rows) <= MAX_ROWS:
        console.print(step_table(view))
    console.print(summary_line(view), highlight=False, soft_wrap=True)


def store_frames(plan: Any, store: Any, wait: Callable[[str, float], Any],
                 run_id: str) -> Iterable[RunView]:
    """Views of a run in a local store, every 0.2 s until it finishes.

    ``wait(run_id, seconds)`` blocks up to that long and returns the run's status.
    """
    while True:
        status = str(wait(run_id, 0.2))
        yield view_of_store(plan, store, run_id)
        if status in FINISHED_RUN:
            return
