"""Live per-step progress on a terminal, and the final summary table."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from chordflow.engine.plan import Plan
from chordflow.engine.records import StepRecord
from chordflow.engine.state import RunStatus
from chordflow.engine.store import Store
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLES = {
    "pending": "dim",
    "ready": "cyan",
    "queued": "blue",
    "running": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "skipped": "dim",
    "cancelled": "magenta",
}
#: Above this many steps the live view shows counts per status instead of every row.
MAX_ROWS = 40


def step_table(plan: Plan, steps: dict[str, StepRecord], title: str = "") -> Table:
    table = Table(title=title or None, expand=False)
    table.add_column("step")
    table.add_column("module")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold", max_width=60)
    now = time.time()
    for name in plan.order:
        rec = steps[name]
        elapsed = ""
        if rec.started_at:
            elapsed = f"{(rec.finished_at or now) - rec.started_at:.2f}s"
        detail = rec.error or ""
        if rec.items is not None and not rec.status.finished:
            done = sum(1 for item in rec.items if item.status.finished)
            detail = f"{done}/{len(rec.items)} items"
        table.add_row(name, f"{rec.module}.{rec.method}",
                      Text(str(rec.status), style=STYLES.get(str(rec.status), "")),
                      str(rec.attempts), elapsed, detail)
    return table


def counts(steps: dict[str, StepRecord]) -> Text:
    tally = Counter(str(s.status) for s in steps.values())
    text = Text()
    for status, n in sorted(tally.items()):
        text.append(f"{status}: {n}  ", style=STYLES.get(status, ""))
    return text


def view(plan: Plan, steps: dict[str, StepRecord], run_status: str) -> Any:
    header = Text(f"{plan.name}  ", style="bold")
    header.append(run_status, style=STYLES.get(run_status, "bold"))
    if len(steps) > MAX_ROWS:
        return Group(header, counts(steps))
    return Group(header, step_table(plan, steps))


def watch(store: Store, wait: Callable[[str, float], RunStatus], plan: Plan, run_id: str,
          console: Console) -> None:
    """Redraw the run's table until it finishes (Ctrl-C propagates to the caller).

    ``wait(run_id, seconds)`` blocks up to that long and returns the run's status.
    """
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            status = wait(run_id, 0.2)
            live.update(view(plan, store.get_steps(run_id, plan.order), str(status)))
            if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
                return
