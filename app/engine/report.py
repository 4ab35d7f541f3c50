"""The run report: one JSON document describing a run, as ``--json`` prints it.

The same shape for every executor, so scripts that read it do not care where the run
happened.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chordflow.engine.store import Store


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def event_line(ts: float, kind: str, step: str | None, data: Any) -> str:
    """One event as a line of a run's text log (the API's /logs and ``chordflow logs``)."""
    line = f"{iso(ts)} {kind}"
    if step:
        line += f" {step}"
    if data:
        line += f" {json.dumps(data, default=str)}"
    return line


def run_report(store: Store, run_id: str, order: list[str] | None = None) -> dict[str, Any]:
    run = store.get_run(run_id)
    steps = store.get_steps(run_id, order)  # by id when the order is known (Engine.steps_of)
    names = order or list(steps)
    return {
        "run_id": run.id,
        "workflow": run.workflow,
        "status": str(run.status),
        "error": run.error,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "steps": {
            name: {
                "status": str(steps[name].status),
                "attempts": steps[name].attempts,
                "outputs": steps[name].outputs,
                "error": steps[name].error,
                "started_at": iso(steps[name].started_at),
                "finished_at": iso(steps[name].finished_at),
            }
            for name in names
        },
        "outputs": run.outputs,
    }
