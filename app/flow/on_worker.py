"""What a worker runs for a ``chordflow.flow`` step: ``call``, through the ``python``
module (``function: chordflow.flow.on_worker:call``).

The ``python`` module alone would call the function, but a flow step also needs what
a document cannot say with references: a ``Map``'s results unwrapped from the
``foreach`` outputs (``{"items": [{"result": r}, ...]}`` → ``[r, ...]``), values under a
named serializer opened, and the result checked to be JSON (or encoded by the step's
serializer) so that a value that cannot travel fails its step, naming it, instead of
being recorded as its ``str()``.
"""

from __future__ import annotations

import inspect
from typing import Any

from chordflow.errors import StepFailed
from chordflow.flow import serializers
from chordflow.modules.context import StepContext, run_coroutine
from chordflow.modules.python import load_function


class NotJson(StepFailed):
    """A result that JSON cannot carry: retrying gives the same result."""

    final = True


def call(
    target: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    serializer: str = serializers.JSON,
    decode: dict[str, str] | None = None,
    gather: list[str] | None = None,
    ctx: StepContext | None = None,
) -> Any:
    """Call ``target(*args, **kwargs)`` and return its result as it is recorded.

    ``gather``: parameters that receive a Map's outputs (unwrapped to the list of
    results); ``decode``: parameters whose value a serializer other than JSON recorded
    (parameter → serializer name).
    """
    fn = load_function(target)
    values = dict(kwargs or {})
    for param in gather or ():
        values[param] = [item["result"] for item in values[param]]
    for param, name in (decode or {}).items():
        try:
            if param in (gather or ()):
                values[param] = [serializers.decode(v, name) for v in values[param]]
            else:
                values[param] = serializers.decode(values[param], name)
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"parameter '{param}': cannot decode it with serializer "
                             f"'{name}': {exc}") from exc
    if inspect.iscoroutinefunction(fn):
        if ctx is None:
            raise StepFailed("an async function needs the step context")
        result = run_coroutine(fn(*(args or []), **values), ctx)
    else:
        result = fn(*(args or []), **values)
    try:
        return serializers.encode(result, serializer)
    except (TypeError, ValueError) as exc:
        if serializer == serializers.JSON:
            raise NotJson(f"the result of {target} is not JSON ({exc}): return JSON (dict, "
                          "list, str, int, float, bool, None) or give "
                          "@step(serializer=...)") from None
        raise StepFailed(f"the result of {target}: serializer '{serializer}' failed: "
                         f"{exc}") from None
