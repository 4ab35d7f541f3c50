"""Workflows in Python: functions wired by ``Depends`` defaults into a DAG.

::

    from chordflow.flow import Depends, Workflow

    async def create_person(person_name: str) -> dict:
        return {"name": person_name}

    async def say_hi(p=Depends(create_person)) -> str:
        return "Hi " + p["name"]

    [hi] = Workflow(say_hi).run_sync(entry_points={create_person: ["Joe"]})

Embedded runs are a few microseconds a step and import none of Celery, pymongo,
FastAPI or pydantic; ``Workflow.submit(executor="celery")`` runs the same functions as
chordflow steps on Celery workers; ``Workflow.to_document()`` is the canonical
workflow document. ``chordflow.flow.builders`` builds any workflow document in Python.
"""

from chordflow.flow.errors import (
    CycleError,
    FlowError,
    NotImportable,
    NotSerializable,
    WorkflowCancelled,
    WorkflowFailed,
)
from chordflow.flow.markers import Depends, Map
from chordflow.flow.options import StepOptions, step
from chordflow.flow.workflow import EntryPoints, Workflow

__all__ = [
    "CycleError",
    "Depends",
    "EntryPoints",
    "FlowError",
    "Map",
    "NotImportable",
    "NotSerializable",
    "StepOptions",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "step",
]
