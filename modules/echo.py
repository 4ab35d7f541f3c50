"""``echo``: returns its params as its outputs. For wiring, tests and benchmarks."""

from __future__ import annotations

from typing import Any

from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it returns its params; nothing the caller wrote runs.
module = StepModule("echo", "Return the params as outputs.", default_method="run", runs_code=False)


@module.method
def run(ctx: StepContext, **params: Any) -> dict[str, Any]:
    """Return every param as an output of the same name."""
    return dict(params)
