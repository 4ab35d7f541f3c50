"""``Workflow.submit``: a recorded run of the workflow's document, on Celery workers or
in this process's engine, and the ``Submission`` that waits for its results.

On Celery the run is like any other: recorded in MongoDB (the API, ``chordflow
status``/``logs`` and the metrics see it), each step a task Flower names
``<workflow>.<function>``. Results travel as JSON, or under the step's serializer,
decoded here for ``Submission.result()``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from chordflow.flow import serializers
from chordflow.flow.errors import FlowError, WorkflowCancelled, WorkflowFailed

if TYPE_CHECKING:
    from chordflow.config import Settings
    from chordflow.engine.state import RunStatus
    from chordflow.flow.workflow import Workflow

EXECUTORS = ("celery", "embedded")


class Backend(Protocol):
    def submit(self, workflow: Any, variables: Any = None) -> str: ...
    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus: ...
    def report(self, run_id: str) -> dict[str, Any]: ...
    def cancel(self, run_id: str, reason: str = "cancelled") -> bool: ...
    def close(self) -> None: ...


class _Embedded:
    """The engine in this process (EmbeddedExecutor), recorded in memory."""

    def __init__(self, settings: Settings | None):
        from chordflow.engine.embedded import EmbeddedExecutor

        self.executor = EmbeddedExecutor(settings=settings)

    def submit(self, workflow: Any, variables: Any = None) -> str:
        return self.executor.submit(workflow, variables)

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        return self.executor.wait(run_id, timeout)

    def report(self, run_id: str) -> dict[str, Any]:
        from chordflow.engine.report import run_report

        return run_report(self.executor.store, run_id)

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        return self.executor.cancel(run_id, reason)

    def close(self) -> None:
        self.executor.close()


def submit(workflow: Workflow, entry: dict[int, tuple[Any, ...]], executor: str,
           settings: Settings | None) -> Submission:
    if executor not in EXECUTORS:
        raise FlowError(f"executor '{executor}': one of {', '.join(EXECUTORS)}")
    from chordflow.flow.document import to_document

    document = to_document(workflow, entry)
    backend: Backend
    if executor == "celery":
        from chordflow.service import RunService

        backend = RunService.celery(settings)
    else:
        backend = _Embedded(settings)
    try:
        run_id = backend.submit(document)
    except BaseException:
        backend.close()
        raise
    return Submission(workflow, run_id, backend)


class Submission:
    """A submitted run: ``result()`` waits for it; use as a context manager (or
    ``close()``) to release its connections."""

    def __init__(self, workflow: Workflow, run_id: str, backend: Backend):
        self.workflow = workflow
        self.run_id = run_id
        self.backend = backend

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (or ``timeout`` seconds); its status. Ctrl-C
        cancels the run."""
        return str(self.backend.wait(self.run_id, timeout))

    def report(self) -> dict[str, Any]:
        """The run's report, as ``chordflow status --json`` prints it."""
        return self.backend.report(self.run_id)

    def result(self, timeout: float | None = None) -> list[Any]:
        """The goals' results in order, as ``Workflow.run`` returns them; raises
        WorkflowFailed (with the workers' error texts) if the run failed, TimeoutError
        if it is still running after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.wait(timeout)
        if status in ("pending", "running"):
            left = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
            raise TimeoutError(f"run {self.run_id} still {status} ({left:g}s left)")
        report = self.report()
        steps = report["steps"]
        states = {name: rec["status"] for name, rec in steps.items()}
        errors = {name: rec["error"] for name, rec in steps.items() if rec.get("error")}
        if status != "succeeded":
            first = min(errors, key=lambda n: steps[n].get("finished_at") or "", default=None)
            kind = WorkflowCancelled if status == "cancelled" else WorkflowFailed
            message = f"workflow '{self.workflow.name}' {status} (run {self.run_id})"
            if report.get("error"):
                message += f": {report['error']}"
            raise kind(message, states, errors, errors[first] if first else None)
        outputs = report["outputs"] or {}
        nodes = self.workflow.graph.nodes
        results = []
        for g in self.workflow.graph.goals:
            node = nodes[g]
            value = outputs.get(node.name)
            name = node.options.serializer
            if node.is_map:
                results.append([serializers.decode(item["result"], name)
                                for item in value or []])
            else:
                results.append(serializers.decode(value, name))
        return results

    def cancel(self, reason: str = "cancelled") -> bool:
        return self.backend.cancel(self.run_id, reason)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
