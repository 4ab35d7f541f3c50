"""Stored workflows (placeholder router until the library lands)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["workflows"])


def stored_workflow(request: object, name: str) -> dict[str, object]:
    """The stored workflow ``name`` as ``GET /api/v1/workflows/{name}`` returns it."""
    from app.api.library import WorkflowMissing

    raise WorkflowMissing(f"no run or stored workflow '{name}'")
