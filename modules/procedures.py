"""``procedures``: the steps the procedures dialect adds where the replaced platform kept
state in its run's memory (app/workflow/dialects/procedures.py).

- ``connect`` is what a platform ``connect`` / ``cluster_connect`` procedure becomes: it
  connects through the step's connection (hosts in order, the cluster options) with
  this worker process's pool and answers ``connected_node``. The procedures after it
  name the same connection, so a worker on another host connects there itself.
- ``disconnect`` is its ``disconnect``: nothing to close across hosts (each worker
  process keeps its own pool, closed when it exits), so it only answers
  ``{"status": true}``, as the platform did.
- ``chunk`` and ``merge`` are ``MultiProcess.parallel_data``'s split and join around a
  ``foreach``; ``gather`` is ``parallel_steps``' join of parallel branches.
"""

from __future__ import annotations

from typing import Any

from chordflow.connections.models import CONNECTION_TYPES
from chordflow.connections.use import run_on
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it connects, splits and joins data; nothing the caller wrote runs.
module = StepModule("procedures", "Steps the procedures dialect adds (connect, "
                    "disconnect, chunk, merge, gather).", runs_code=False,
                    connection_types=CONNECTION_TYPES)


@module.method
def connect(ctx: StepContext, timeout: float | None = None) -> dict[str, Any]:
    """Connect through the step's connection; outputs status and connected_node.

    timeout: unused (the connection's own timeout applies); kept so that a platform
        ``connect`` keeps its params.
    """
    from chordflow.connections.use import resolved_connection
    from chordflow.modules.drivers import driver_for

    kind = resolved_connection(ctx, CONNECTION_TYPES).connection.type
    node = run_on(ctx, driver_for(kind), lambda session: session.node)
    return {"status": True, "connected_node": node}


@module.method
def disconnect(ctx: StepContext) -> dict[str, Any]:
    """The end of a platform connection's procedures; outputs status."""
    return {"status": True}


@module.method
def chunk(ctx: StepContext, data: list[Any], processes: int = 4) -> dict[str, Any]:
    """Split ``data`` into ``processes`` chunks of consecutive elements (as
    ``parallel_data`` did); outputs chunks.

    data: the list to split.
    processes: how many chunks (at most one per element).
    """
    if processes < 1:
        raise StepFailed("params.processes: must be 1 or more")
    count = max(1, min(processes, len(data)))
    size, extra = divmod(len(data), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(data[start:end])
        start = end
    return {"status": True, "chunks": chunks if data else []}


@module.method
def merge(ctx: StepContext, items: list[Any], key: str = "data") -> dict[str, Any]:
    """Join a ``foreach``'s results into one flat list (``parallel_data``'s answer);
    outputs status, data and errors.

    items: the foreach step's ``items`` (each element's outputs).
    key: the key of each element's outputs that holds its list.
    """
    merged: list[Any] = []
    for outputs in items:
        value = (outputs or {}).get(key)
        if isinstance(value, list):
            merged.extend(value)
        elif value is not None:
            merged.append(value)
    return {"status": True, "data": merged, "errors": []}


@module.method
def gather(ctx: StepContext, results: dict[str, Any]) -> dict[str, Any]:
    """Join parallel branches (``parallel_steps``' answer); outputs status, results (each
    branch's outputs by name) and errors.

    results: each branch's outputs, by branch name.
    """
    return {"status": True, "results": dict(results), "errors": []}


@module.method
def skip(ctx: StepContext) -> dict[str, Any]:
    """A procedure with nothing to do here (a Prometheus ``connect`` without a gateway,
    which only wrote a textfile); outputs status."""
    return {"status": True}
