"""Validate a workflow without running it; list the step modules.

Roles (``chordflow.api.security``): both need a viewer key: validating runs nothing, and
whoever may read may check a workflow before an author stores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from chordflow.api.bodies import yaml_request_body
from chordflow.api.schemas import WORKFLOW_REF, ValidateRequest
from chordflow.api.security import AUTH_RESPONSES, Viewer
from chordflow.engine.graph import mermaid
from chordflow.errors import ValidationFailed, WorkflowError
from chordflow.workflow.loader import compile_loaded, load_data
from fastapi import APIRouter, Body, Request
from pydantic import WithJsonSchema

router = APIRouter(tags=["workflows"], responses=AUTH_RESPONSES)


_VALIDATE_BODY = {"anyOf": [{"$ref": "#/components/schemas/ValidateRequest"}, WORKFLOW_REF,
                            {"type": "object", "additionalProperties": True,
                             "description": "A bare workflow in another dialect."}]}
#: The body of ``POST /validate``: ``POST /runs``'s (``{"workflow": ..., "variables":
#: ...}``), or, as before, a bare workflow.
ValidateBody = Annotated[dict[str, Any], WithJsonSchema(_VALIDATE_BODY), Body(
    description="As for POST /runs: {\"workflow\": {...}, \"variables\": {...}}; a "
                "bare workflow (any dialect) is accepted too.")]

#: Keys of a wrapped body; a bare workflow has others (``steps``, ``procedures`` ...).
_WRAPPED_KEYS = frozenset(ValidateRequest.model_fields)


def unwrap(body: Mapping[str, Any]) -> tuple[Any, Any]:
    """(the workflow, the variables) of a ``/validate`` body: wrapped when ``workflow``
    holds an object and nothing but ``workflow`` and ``variables`` is there (no dialect
    has a top-level ``workflow`` object beside its steps), else a bare workflow."""
    if isinstance(body.get("workflow"), Mapping) and set(body) <= _WRAPPED_KEYS:
        return body["workflow"], body.get("variables") or {}
    return body, {}


@router.post("/validate", openapi_extra=yaml_request_body(_VALIDATE_BODY))
def validate(request: Request, body: ValidateBody, _: Viewer) -> dict[str, Any]:
    """The compiled plan, or every error with its step and field (``valid`` false):
    loading's, compiling's and the variables' (unknown ones), in one answer."""
    engine = request.app.state.service.engine
    workflow, variables = unwrap(body)
    try:
        if not isinstance(variables, Mapping):
            raise ValidationFailed([WorkflowError("must be an object", field="variables")])
        plan = compile_loaded(
            lambda: load_data(workflow,
                              environ=request.app.state.settings.dialect_environ()),
            engine.compile)
        plan.effective_variables(variables)
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
