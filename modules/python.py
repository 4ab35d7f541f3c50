"""``python``: call a Python function by its import path.

``function`` is ``"package.module:attribute"`` (``"package.module.attribute"`` also
works). An ``async def`` function runs in its own event loop and is cancelled at the
step's deadline or when the run is cancelled. If the function takes a parameter named
``ctx`` it receives the step context. The return value is the ``result`` output.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext, run_coroutine
from chordflow.modules.registry import StepModule

module = StepModule("python", "Call a Python function.", default_method="call")


def load_function(path: str) -> Callable[..., Any]:
    modname, sep, attr = path.partition(":")
    if not sep:
        modname, _, attr = path.rpartition(".")
    if not modname or not attr:
        raise StepFailed(f"function '{path}' must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(modname)
    except ImportError as exc:
        raise StepFailed(f"cannot import '{modname}': {exc}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise StepFailed(f"'{modname}' has no attribute '{attr}'") from None
    if not callable(target):
        raise StepFailed(f"'{path}' is not callable")
    return target  # type: ignore[no-any-return]


@module.method
def call(
    ctx: StepContext,
    function: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Call function(*args, **kwargs); outputs result.

    function: "package.module:function".
    args: positional arguments.
    kwargs: keyword arguments.
    """
    fn = load_function(function)
    kw = dict(kwargs or {})
    try:
        if "ctx" in inspect.signature(fn).parameters:
            kw["ctx"] = ctx
    except (TypeError, ValueError):
        pass
    if inspect.iscoroutinefunction(fn):
        result = run_coroutine(fn(*(args or []), **kw), ctx)
    else:
        result = fn(*(args or []), **kw)
    return {"result": result}
