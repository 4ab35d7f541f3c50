"""``Workflow``: goal functions, the plan their ``Depends`` make, and ways to run it.

``await workflow.run(entry_points=...)`` runs it on the running event loop, with
nothing recorded (chordflow.flow.runner); ``run_sync`` outside a loop;
``submit(executor="celery")`` sends it to Celery workers as a workflow document, each
function a ``python`` step (chordflow.flow.remote); ``to_document()`` is that document.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from chordflow.flow.errors import FlowError, NotSerializable, WorkflowCancelled, WorkflowFailed
from chordflow.flow.graph import Graph, Node, build
from chordflow.flow.markers import Mapped
from chordflow.flow.runner import RunState

if TYPE_CHECKING:
    from chordflow.config import Settings
    from chordflow.flow.remote import Submission
    from chordflow.workflow.models import Workflow as Document

#: A function (or a step's name) to the positional arguments it is called with.
EntryPoints = Mapping[Callable[..., Any] | str, Sequence[Any]]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class Workflow:
    """The DAG that ``goals`` reach through their ``Depends`` defaults.

    Built (and checked: cycles, names, signatures) here, once. ``name`` names the
    workflow on Celery (Flower shows ``<name>.<function>``); by default the goals'
    module. ``entry_points`` are default arguments, merged under those a run gives.
    """

    def __init__(self, *goals: Callable[..., Any] | list[Any], name: str | None = None,
                 entry_points: EntryPoints | None = None):
        # A Map is typed as the list it makes; at run time it is a Mapped marker.
        self.graph: Graph = build(cast(list[Callable[..., Any] | Mapped], list(goals)))
        self.name = name or _default_name(self.graph.nodes[self.graph.goals[0]].fn)
        if not _NAME.fullmatch(self.name) or len(self.name) > 200:
            raise FlowError(f"workflow name '{self.name}': use letters, digits, '_', '-', "
                            "'.' (starting with a letter, digit or '_')")
        self.entry_points: dict[int, tuple[Any, ...]] = {}
        self.entry_points = self._entry(entry_points or {})
        self._active: set[RunState] = set()
        self._lock = threading.Lock()

    @property
    def steps(self) -> list[str]:
        """The step names, dependencies first (the order a run starts them in)."""
        return [node.name for node in self.graph.nodes]

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={self.steps!r})"

    # -- in this process ---------------------------------------------------------------

    async def run(self, entry_points: EntryPoints | None = None, *,
                  strict: bool = False) -> list[Any]:
        """Run every step once and return the goals' results, in the goals' order.

        ``entry_points`` maps a function (or its step name) to its positional
        arguments. A step that raises fails; its dependents are ``upstream_failed``,
        independent steps finish, then ``WorkflowFailed`` is raised (from the first
        error). ``strict=True`` passes every argument and result through its step's
        serializer, as the trip to a worker would (``NotSerializable`` if it cannot).
        """
        entry = self.entry(entry_points, strict=strict)
        run = RunState(self.graph, entry, strict)
        with self._lock:
            self._active.add(run)
        try:
            await run.execute()
        finally:
            with self._lock:
                self._active.discard(run)
        failed = run.failed()
        if run.cancelled:
            raise WorkflowCancelled(f"workflow '{self.name}' was cancelled", *self._outcome(run))
        if failed:
            raise WorkflowFailed(self._failure(run, failed), *self._outcome(run)) \
                from run.first_error
        results = run.results
        return [results[g] for g in self.graph.goals]

    def run_sync(self, entry_points: EntryPoints | None = None, *,
                 strict: bool = False) -> list[Any]:
        """``run`` from code with no running event loop (``asyncio.run``). Ctrl-C
        cancels the running steps and raises KeyboardInterrupt."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(entry_points, strict=strict))
        raise RuntimeError("run_sync() was called inside a running event loop: use "
                           "'await workflow.run(...)' there")

    def cancel(self) -> None:
        """Cancel this workflow's runs in progress (from any thread): their ``run``
        raises ``WorkflowCancelled``."""
        with self._lock:
            runs = list(self._active)
        for run in runs:
            try:
                same_loop = asyncio.get_running_loop() is run.loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                run.cancel()
            else:
                run.loop.call_soon_threadsafe(run.cancel)

    # -- as a workflow document, on workers ----------------------------------------------

    def to_document(self, entry_points: EntryPoints | None = None) -> Document:
        """The canonical workflow document (what YAML files load into): one ``python``
        step per function, referenced by import path; ``entry_points`` become the
        defaults of its variables (one per function that takes arguments)."""
        from chordflow.flow.document import to_document

        # Arguments a run gives later (``-e create_person='["Ann"]'``) may be missing.
        return to_document(self, self.entry(entry_points, strict=True, complete=False))

    def submit(self, entry_points: EntryPoints | None = None, *,
               executor: str = "celery", settings: Settings | None = None) -> Submission:
        """Start a recorded run of the workflow document and return at once.

        ``executor="celery"``: on the workers, recorded in MongoDB like any run (API,
        logs, metrics, Flower). ``"embedded"``: this process's engine, recorded in
        memory. ``Submission.result()`` waits and returns the goals' results.
        """
        from chordflow.flow.remote import submit

        return submit(self, self.entry(entry_points, strict=True), executor, settings)

    # -- helpers -----------------------------------------------------------------------

    def entry(self, entry_points: EntryPoints | None, *, strict: bool = False,
              complete: bool = True) -> dict[int, tuple[Any, ...]]:
        """The run's positional arguments by node (defaults merged), checked; with
        ``complete``, every function that needs arguments must have them."""
        entry = dict(self.entry_points)
        if entry_points:
            entry.update(self._entry(entry_points))
        for node in self.graph.nodes if complete else ():
            if node.required and not node.is_map and node.index not in entry:
                raise FlowError(f"step '{node.name}' needs {_arguments(node)}: give "
                                f"entry_points={{{node.name}: [...]}}")
        if strict:  # the arguments as a worker receives them (JSON: a tuple is a list)
            import json

            from chordflow.flow.serializers import check_json

            for i, args in list(entry.items()):
                try:
                    entry[i] = tuple(json.loads(check_json(list(args))))
                except (TypeError, ValueError) as exc:
                    name = self.graph.nodes[i].name
                    raise NotSerializable(f"step '{name}': its entry-point arguments are "
                                          f"not JSON ({exc})") from exc
        return entry

    def _entry(self, entry_points: EntryPoints) -> dict[int, tuple[Any, ...]]:
        entry: dict[int, tuple[Any, ...]] = {}
        for target, args in entry_points.items():
            node = self.graph.find(target)
            shown = target if isinstance(target, str) else getattr(target, "__name__", target)
            if node is None:
                raise FlowError(f"entry_points: '{shown}' is not a step of this workflow "
                                f"(steps: {', '.join(self.steps)})")
            if node.is_map:
                raise FlowError(f"entry_points: step '{node.name}' is a Map: its elements "
                                "come from what it maps over")
            if not isinstance(args, list | tuple):
                raise FlowError(f"entry_points[{node.name}]: a list of positional arguments,"
                                f" not {type(args).__name__}")
            if len(args) < node.required or (
                    len(args) > len(node.positional) and not node.varargs):
                raise FlowError(f"entry_points[{node.name}]: {len(args)} argument(s) given; "
                                f"it takes {_arguments(node)}")
            entry[node.index] = tuple(args)
        return entry

    def _outcome(self, run: RunState) -> tuple[dict[str, str], dict[str, BaseException],
                                               BaseException | None, dict[str, Any]]:
        nodes = self.graph.nodes
        states = {node.name: str(run.states[node.index]) for node in nodes}
        errors = {nodes[i].name: exc for i, exc in run.errors.items()}
        results = {node.name: run.results[node.index] for node in nodes
                   if states[node.name] == "succeeded"}
        return states, errors, run.first_error, results

    def _failure(self, run: RunState, failed: list[Node]) -> str:
        first = next((n for n in failed if n.index in run.errors), None)
        blocked = [n.name for n in failed if str(run.states[n.index]) == "upstream_failed"]
        parts = [f"workflow '{self.name}' failed"]
        if first is not None:
            parts.append(f"step '{first.name}' failed: {run.errors[first.index]!r}")
        if blocked:
            parts.append(f"{len(blocked)} upstream_failed ({', '.join(blocked[:10])})")
        return "; ".join(parts)


def _arguments(node: Node) -> str:
    if node.varargs:
        return f"at least {node.required} positional argument(s)"
    names = ", ".join(node.positional)
    if node.required == len(node.positional):
        return f"{node.required} positional argument(s) ({names})"
    return f"{node.required} to {len(node.positional)} positional arguments ({names})"


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "workflow"
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None and spec.name else "workflow"
    name = module.rpartition(".")[2].strip("_") or "workflow"
    return name if _NAME.fullmatch(name) else "workflow"
