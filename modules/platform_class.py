"""The replaced platform's own module classes, run as chordflow modules unchanged.

Its modules are classes ``__init__(self, logger)`` whose methods are
``method(self, context, params) -> dict`` (``mod/common/Kt.py`` holding ``class Kt``,
named ``common.Kt`` in its workflows). A file of ``CHORDFLOW_MODULES_PATH`` that holds
such a class is loaded as a module named ``<category>.<Class>``: the category is the
folder the file is in (a subfolder of the path, as the platform's ``mod/common/``, or
the path's own folder for a file directly in it).

Each step makes a new instance with the step's logger (what it logs lands in the step's
log) and calls the method with the step's resolved params and ``context``: the outputs
of the steps listed before it, by name (the platform's "results so far"), plus
``_runtime`` (run id, workflow, step). What a method puts into ``context`` stays in its
step: the next step may run on another host (use chordflow's modules and named
connections for connections). The result must be a dict; values that are not JSON
(a DataFrame) are recorded as text. A class module is assumed to run the caller's code
(``runs_code``), so operators may submit it inline only if the admin allows it.

This module knows nothing of the registry: ``chordflow.modules.registry`` asks it
which classes a file holds and calls them through :func:`call`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chordflow.errors import StepFailed
from chordflow.modules.jsonsafe import plain

#: The param the plan fills with the earlier steps' outputs (MethodSpec.context_param).
CONTEXT_PARAM = "__context__"


@dataclass(frozen=True)
class PlatformClass:
    """A class of the platform's kind found in a module file."""

    name: str  # "<category>.<Class>"
    cls: type
    methods: tuple[str, ...]
    description: str


def _takes_logger(cls: type) -> bool:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                  p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    # (logger), or (logger=None): the platform passes the logger as its one argument.
    return bool(positional) and len(required) <= 1


def _procedure_methods(cls: type) -> tuple[str, ...]:
    """Public methods taking exactly (context, params) after self."""
    found = []
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        params = [p for p in list(inspect.signature(fn).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) == 2:
            found.append(name)
    return tuple(sorted(found))


def find_classes(mod: ModuleType, category: str, stem: str) -> list[PlatformClass]:
    """The platform classes a loaded file defines: the class named as the file (as the
    platform loads them), else every class defined there with a logger constructor and
    at least one ``(context, params)`` method."""
    defined = [obj for obj in vars(mod).values()
               if inspect.isclass(obj) and obj.__module__ == mod.__name__]
    named = [c for c in defined if c.__name__ == stem]
    out = []
    for cls in named or defined:
        methods = _procedure_methods(cls)
        if methods and _takes_logger(cls):
            doc = (inspect.getdoc(cls) or "").strip().split("\n\n")[0].replace("\n", " ")
            out.append(PlatformClass(f"{category}.{cls.__name__}", cls, methods,
                                     doc or f"The platform module {category}.{cls.__name__}."))
    return out


def call(found: PlatformClass, method: str, ctx: Any, params: Mapping[str, Any]
         ) -> dict[str, Any]:
    """Run one method as the platform did; the outputs, JSON-safe."""
    given = dict(params)
    context = dict(given.pop(CONTEXT_PARAM, None) or {})
    context["_runtime"] = {"run_id": ctx.run_id, "workflow": ctx.workflow,
                           "step": ctx.step, "start_time": time.time()}
    instance = found.cls(ctx.logger)
    result = getattr(instance, method)(context, given)
    if not isinstance(result, Mapping):
        raise StepFailed(f"{found.name}.{method} returned {type(result).__name__}, not a "
                         "dict (its modules answer {\"status\": true, ...})")
    return plain(dict(result))  # type: ignore[no-any-return]
