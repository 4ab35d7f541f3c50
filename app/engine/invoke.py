"""Calling a step module's method and shaping what it returns into outputs.

Kept apart from the engine's state transitions: this is the only place that runs user
code, so it is where a module's result is normalised (a dict, anything else as
``{"result": value}``) and where the procedures dialect's ``{"status": false}``
convention becomes a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chordflow.engine.plan import StepPlan
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext, run_coroutine


def call_step(sp: StepPlan, params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Run ``sp``'s method with validated params; return its outputs or raise."""
    ctx.check()
    if sp.method.is_async:
        result = run_coroutine(sp.method.fn(ctx, **params), ctx)
    else:
        result = sp.method.fn(ctx, **params)
    if result is None:
        outputs: dict[str, Any] = {}
    elif isinstance(result, Mapping):
        outputs = dict(result)
    else:
        outputs = {"result": result}
    if sp.step.fail_on_false_status and outputs.get("status") is False:
        detail = outputs.get("error") or outputs.get("stderr") or outputs.get("message")
        raise StepFailed("the module returned status false" + (f": {detail}" if detail else ""))
    return outputs
