"""One run of a ``Graph`` on the running event loop: the embedded executor of
``chordflow.flow``.

Each node is one asyncio task, created in topological order; a task awaits its
parents' tasks, decides its fate from their states (``upstream_failed`` after a
failure, ``skipped`` after a skip, its own ``when``), then calls its function: an
``async def`` on the loop, a plain function in a thread (``asyncio.to_thread``). A
node's task raises nothing but its cancellation: what happened is in ``states``,
``results`` and ``errors``.

Nothing is recorded but those three lists (no store, no events): that is what keeps a
step within microseconds of hand-written asyncio. A step with no options takes the
short path: no retry loop, no timeout scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from chordflow.engine.state import StepStatus
from chordflow.flow.errors import NotSerializable
from chordflow.flow.graph import Graph, Node
from chordflow.flow.options import DEFAULT

PENDING = StepStatus.PENDING
RUNNING = StepStatus.RUNNING
SUCCEEDED = StepStatus.SUCCEEDED
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
UPSTREAM_FAILED = StepStatus.UPSTREAM_FAILED
CANCELLED = StepStatus.CANCELLED


class ElementsFailed(Exception):
    """Elements of a ``Map`` failed (after their retries); the first is the cause."""


class RunState:
    """One run's states, results and errors, by node index."""

    __slots__ = ("graph", "entry", "strict", "states", "results", "errors", "first_error",
                 "tasks", "cancelled", "loop")

    def __init__(self, graph: Graph, entry: dict[int, tuple[Any, ...]], strict: bool):
        n = len(graph.nodes)
        self.graph = graph
        self.entry = entry
        self.strict = strict
        self.states: list[StepStatus] = [PENDING] * n
        self.results: list[Any] = [None] * n
        self.errors: dict[int, BaseException] = {}
        self.first_error: BaseException | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.cancelled = False
        self.loop = asyncio.get_running_loop()

    def cancel(self) -> None:
        """Stop the run: every unfinished step is cancelled (an async function at its
        next ``await``; a plain function in a thread runs on, its result ignored)."""
        self.cancelled = True
        for task in self.tasks:
            task.cancel()

    async def execute(self) -> None:
        create = self.loop.create_task
        self.tasks = [create(_run_node(self, node)) for node in self.graph.nodes]
        try:
            for task in self.tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # this run itself is cancelled (Ctrl-C): stop everything
        except asyncio.CancelledError:
            self.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            raise
        finally:
            if self.cancelled:
                states = self.states
                for i, state in enumerate(states):
                    if state is PENDING or state is RUNNING:
                        states[i] = CANCELLED

    def failed(self) -> list[Node]:
        nodes = self.graph.nodes
        return [nodes[i] for i, s in enumerate(self.states)
                if s is UPSTREAM_FAILED
                or (s is FAILED and not nodes[i].options.continue_on_failure)]

    def fail(self, node: Node, exc: BaseException) -> None:
        self.states[node.index] = FAILED
        self.errors[node.index] = exc
        if self.first_error is None:
            self.first_error = exc


async def _run_node(run: RunState, node: Node) -> None:
    i = node.index
    states = run.states
    try:
        tasks = run.tasks
        for p in node.parents:
            await tasks[p]
    except asyncio.CancelledError:
        states[i] = CANCELLED
        raise
    nodes = run.graph.nodes
    results = run.results
    skip = False
    for p in node.parents:
        state = states[p]
        if state is not SUCCEEDED:
            if state is FAILED and nodes[p].options.continue_on_failure:
                continue
            if state is FAILED or state is UPSTREAM_FAILED:
                states[i] = UPSTREAM_FAILED
                return
            if state is CANCELLED:
                states[i] = CANCELLED
                return
            skip = True
    if skip:
        states[i] = SKIPPED
        return
    kwargs = {param: results[d] for param, d in node.deps}
    options = node.options
    try:
        if options.when is not None and not _decide(run, node, kwargs):
            states[i] = SKIPPED
            return
        states[i] = RUNNING
        if node.is_map:
            result: Any = await _map(run, node, kwargs)
        elif options is DEFAULT:
            args = run.entry.get(i, ())
            if node.is_async:
                result = await node.fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(node.fn, *args, **kwargs)
        else:
            result = await _attempts(node, run.entry.get(i, ()), kwargs)
        if run.strict:
            result = strict_value(node, result)
    except asyncio.CancelledError:
        states[i] = CANCELLED
        raise
    except Exception as exc:  # noqa: BLE001 - recorded: the run raises WorkflowFailed
        run.fail(node, exc)
        return
    results[i] = result
    states[i] = SUCCEEDED


def _decide(run: RunState, node: Node, kwargs: dict[str, Any]) -> bool:
    """The step's ``when``: a predicate over dependency results, or a condition."""
    when = node.options.when
    if callable(when):
        return bool(when(**{p: kwargs[p] for p in node.when_params}))
    from chordflow.workflow.references import walk

    nodes = run.graph.nodes
    steps = {nodes[p].name: {"outputs": _outputs(nodes[p], run.results[p])}
             for p in node.parents}
    scope = {"steps": steps}
    return bool(node.condition.evaluate(lambda ref: walk(scope, ref.path, text=ref.text)))


def _outputs(node: Node, result: Any) -> dict[str, Any]:
    """A result as the workflow format sees a python step's outputs."""
    if node.is_map:
        return {"items": [{"result": r} for r in result]}
    return {"result": result}


async def _attempts(node: Node, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Call with the step's timeout, retried as its options say."""
    options = node.options
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _call(node, args, kwargs, options.timeout)
        except Exception:
            if attempt > options.retries:
                raise
        delay = options.retry_delay * options.retry_backoff ** (attempt - 1)
        if delay:
            await asyncio.sleep(delay)


async def _call(node: Node, args: Sequence[Any], kwargs: dict[str, Any],
                timeout: float | None) -> Any:
    if node.is_async:
        if timeout is None:
            return await node.fn(*args, **kwargs)
        try:
            async with asyncio.timeout(timeout):
                return await node.fn(*args, **kwargs)
        except TimeoutError as exc:
            raise TimeoutError(f"step '{node.name}' timed out after {timeout:g}s") from exc
    call = asyncio.to_thread(node.fn, *args, **kwargs)
    if timeout is None:
        return await call
    try:
        # The thread cannot be stopped: at the deadline the step fails, and what the
        # function returns later is ignored.
        return await asyncio.wait_for(call, timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"step '{node.name}' timed out after {timeout:g}s (its thread "
                           "runs on: Python cannot stop it)") from exc


async def _map(run: RunState, node: Node, kwargs: dict[str, Any]) -> list[Any]:
    """``node.fn`` once per element, concurrently, each with the step's options."""
    if node.over is not None:
        items = run.results[node.over]
        if not isinstance(items, list | tuple):
            source = run.graph.nodes[node.over].name
            raise TypeError(f"step '{node.name}': Map over '{source}', whose result is "
                            f"{type(items).__name__}, not a list")
    else:
        items = node.literal_over or []
    calls = [_attempts(node, (item,), kwargs) for item in items]
    done = await asyncio.gather(*calls, return_exceptions=True)
    failed = [(k, r) for k, r in enumerate(done) if isinstance(r, BaseException)]
    if failed:
        cancelled = [r for _, r in failed if isinstance(r, asyncio.CancelledError)]
        if cancelled:
            raise cancelled[0]
        k, first = failed[0]
        raise ElementsFailed(f"step '{node.name}': {len(failed)} of {len(items)} elements "
                             f"failed; the first, element {k}: {first!r}") from first
    return done


def strict_value(node: Node, value: Any) -> Any:
    """What a worker would receive of ``value`` (``strict=True`` passes that on)."""
    from chordflow.flow.serializers import roundtrip

    name = node.options.serializer
    try:
        if node.is_map:
            return [roundtrip(v, name) for v in value]
        return roundtrip(value, name)
    except (TypeError, ValueError) as exc:
        hint = "return JSON (dict, list, str, int, float, bool, None) or give " \
            "@step(serializer=...)" if name == "json" else f"serializer '{name}' failed"
        raise NotSerializable(f"step '{node.name}': its result would not reach a worker "
                              f"({type(exc).__name__}: {exc}); {hint}") from exc
