"""Validate a workflow without running it; list the step modules.

Roles (``chordflow.api.security``): both need a viewer key: validating runs nothing, and
whoever may read may check a workflow before an author stores it.
"""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.api.security import AUTH_RESPONSES, Viewer
from chordflow.engine.graph import mermaid
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import load_data
from fastapi import APIRouter, Body, Request

router = APIRouter(tags=["workflows"], responses=AUTH_RESPONSES)


@router.post("/validate")
def validate(
    request: Request,
    workflow: Annotated[dict[str, Any], Body(description="A workflow in any dialect.")],
    _: Viewer,
) -> dict[str, Any]:
    """The compiled plan, or every error with its step and field (``valid`` false)."""
    engine = request.app.state.service.engine
    try:
        plan = engine.compile(load_data(
            workflow, environ=request.app.state.settings.dialect_environ()))
    except ValidationFailed as exc:
        return {"valid": False, "errors": [e.to_dict() for e in exc.errors]}
    return {
        "valid": True,
        "name": plan.name,
        "version": plan.workflow.version,
        "digest": plan.digest,
        "order": list(plan.order),
        "steps": [{"name": sp.name, "module": sp.module, "method": sp.method_name,
                   "parents": list(sp.parents)} for sp in plan.steps.values()],
        "mermaid": mermaid(plan),
    }


@router.get("/modules")
def modules(request: Request, _: Viewer) -> list[dict[str, Any]]:
    """Every step module with its methods and their parameters."""
    return request.app.state.service.engine.registry.describe()  # type: ignore[no-any-return]
