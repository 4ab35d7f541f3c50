"""Stored workflows: every version kept, soft delete, enable/disable (to be completed)."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from app.errors import ChordflowError


class WorkflowMissing(ChordflowError, LookupError):
    """No stored workflow (or version) by that name: 404."""


class WorkflowDisabled(ChordflowError):
    """The stored workflow is disabled and cannot be run: 409."""


class WorkflowLibrary:
    def __init__(self, db: Database[Any]):
        self.collection = db["library"]

    def runnable(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The definition to run: the given version or the latest; enabled only."""
        raise WorkflowMissing(f"no stored workflow '{name}'")
