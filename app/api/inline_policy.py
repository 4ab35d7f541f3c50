"""Which inline workflows an operator may submit: only those whose every module is in
``CHORDFLOW_OPERATOR_MODULES``.

Why: an inline workflow is code the caller wrote. A ``bash`` or ``python`` step runs it
on a worker, which holds the secrets the steps reference and reaches what the workers
reach; deciding who may make workers run code is the admin's (see the security model).
Operators run what authors stored; inline, they may use the modules that run none of
the caller's code (by default those whose module declares ``runs_code=False``: echo,
file, filter, http) or whichever the admin lists. Authors and admins may use any module.

Every step of the compiled plan counts, ``foreach`` steps included (a plan has no nested
workflows; a module that ran sub-workflows would not declare ``runs_code=False``).
Stored workflows are not checked here: an author wrote them, and running them is what
operators are for.
"""

from __future__ import annotations

from collections.abc import Iterable

from chordflow.api.security import Principal, Role
from chordflow.engine.plan import Plan
from chordflow.modules.registry import Registry
from fastapi import HTTPException, status

#: Refused steps named in the answer; a workflow of thousands gets a count of the rest.
SHOWN = 5


def operator_modules(setting: Iterable[str] | None, registry: Registry) -> frozenset[str]:
    """The modules operators may submit inline: the setting if given (even empty),
    else the registry's modules that run no code of the caller's."""
    if setting is not None:
        return frozenset(setting)
    return frozenset(registry.safe_modules())


def check_inline(principal: Principal, plan: Plan, allowed: frozenset[str]) -> None:
    """403 naming the key, its role, each refused step and its module, when an
    operator's inline ``plan`` uses a module outside ``allowed``."""
    if principal.role.rank >= Role.AUTHOR.rank:
        return
    refused = [(name, plan.steps[name].module) for name in plan.order
               if plan.steps[name].module not in allowed]
    if not refused:
        return
    steps = ", ".join(f"step '{name}' uses module '{module}'"
                      for name, module in refused[:SHOWN])
    if len(refused) > SHOWN:
        steps += f" (and {len(refused) - SHOWN} more steps)"
    listed = ", ".join(sorted(allowed)) or "none"
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"key '{principal.name}' is {principal.role}: {steps}, which operators may not "
        f"submit (CHORDFLOW_OPERATOR_MODULES: {listed}); an author key can",
    )
