"""Runs: submit, list, inspect, cancel, re-run, follow (SSE), logs and graph.

Roles (``chordflow.api.security``): reading a run (list, get, events, logs, graph) needs a
viewer key; submitting, cancelling and re-running an operator key. A submission of a
stored workflow runs whatever its modules; an inline one from an operator may use only
the modules of ``CHORDFLOW_OPERATOR_MODULES`` (``chordflow.api.inline_policy``), an author's
any. A re-run repeats a plan someone already submitted, so it is not checked again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.bodies import yaml_request_body
from chordflow.api.inline_policy import check_inline
from chordflow.api.schemas import (
    ErrorBody,
    GraphEdge,
    GraphNode,
    Links,
    RunAction,
    RunCounts,
    RunCreate,
    RunCreated,
    RunGraph,
    RunOut,
    RunPage,
    RunSummary,
    StepOut,
)
from chordflow.api.security import AUTH_RESPONSES, DEVELOPMENT, Operator, Principal, Viewer
from chordflow.engine.dispatch import TaskKey
from chordflow.engine.eventlog import LINGER_SECONDS
from chordflow.engine.graph import mermaid
from chordflow.engine.report import event_line, iso
from chordflow.engine.run_search import MAX_SEARCH
from chordflow.engine.state import RUN_FINISHED, RunStatus
from chordflow.errors import RunNotFound, StoreUnavailable
from chordflow.jobs.key_tokens import record_submitter
from chordflow.service import RunService
from chordflow.workflow.loader import compile_loaded, load_data
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

log = logging.getLogger("chordflow.api.runs")

router = APIRouter(prefix="/runs", tags=["runs"], responses={
    **AUTH_RESPONSES, 404: {"description": "No such run (or stored workflow)."}})

SEARCH_HELP = ("Runs whose id starts with it, whose workflow's name or error contains "
               "it (any case), or, as name=value, with a variable of that value.")
#: Seconds between two reads of a followed run's log.
FOLLOW_POLL_SECONDS = 0.5
#: A stream ends after this long even if the run has not (clients reconnect).
FOLLOW_MAX_SECONDS = 3600.0


def service_of(request: Request) -> RunService:
    return request.app.state.service  # type: ignore[no-any-return]


def links(request: Request, run_id: str) -> Links:
    base = str(request.url_for("get_run", run_id=run_id))
    return Links(self=base, events=f"{base}/events", cancel=f"{base}/cancel",
                 graph=f"{base}/graph")


def submit_run(request: Request, principal: Principal, body: RunCreate,
               idempotency_key: str | None, trigger: str = "api") -> tuple[RunCreated, bool]:
    """Record and start a run; (the run, False if an earlier one with the same key)."""
    service = service_of(request)
    store: Any = service.engine.store
    if body.workflow is not None:
        inline = body.workflow
        plan = compile_loaded(
            lambda: load_data(inline, environ=request.app.state.settings.dialect_environ()),
            service.engine.compile)
    else:
        assert body.name is not None
        plan = service.engine.compile(
            load_data(request.app.state.library.runnable(body.name, body.version)))
    if body.workflow is not None:  # inline: an operator may use only some modules
        check_inline(principal, plan, request.app.state.operator_modules)
    plan.effective_variables(body.variables)  # unknown variables: 422 before anything
    run_id = None
    if idempotency_key:
        from chordflow.engine.engine import new_run_id

        run_id = new_run_id()
        earlier = store.claim_idempotency_key(idempotency_key, run_id)
        if earlier is not None:
            replayed = _replay(service, earlier)
            if replayed is not None:
                return RunCreated(run_id=earlier, status=str(replayed.status),
                                  workflow=replayed.workflow,
                                  links=links(request, earlier)), False
            # The earlier request stopped before its run was recorded: this one makes it.
            run_id = earlier
    run_id = _record_submitter(store, principal, run_id)
    try:
        run_id = service.submit(plan, body.variables, trigger=trigger, run_id=run_id)
    except StoreUnavailable:
        # Keep the key: the run may be half-recorded, and a retry with the same key
        # finishes this submission (see _replay) instead of starting another.
        raise
    except BaseException:
        if idempotency_key:
            store.release_idempotency_key(idempotency_key)
        raise
    audit(request, principal, "run.submit", run_id, workflow=plan.name)
    log.info("run %s of %s submitted by %s", run_id, plan.name, principal.name,
             extra={"run_id": run_id})
    status = service.engine.store.get_run(run_id).status
    return RunCreated(run_id=run_id, status=str(status), workflow=plan.name,
                      links=links(request, run_id)), True


def _replay(service: RunService, run_id: str) -> Any:
    """The run an earlier request with the same Idempotency-Key made, finishing its
    submission if the store went away in the middle of it: a run recorded but not
    started is started now. None if the earlier request recorded no run at all."""
    try:
        run = service.engine.store.get_run(run_id)
    except RunNotFound:
        return None
    if run.status is RunStatus.PENDING:
        service.engine.start(run_id)
        run = service.engine.store.get_run(run_id)
    return run


def _record_submitter(store: Any, principal: Principal, run_id: str | None) -> str | None:
    """Record which key submits the run, before it starts: its job steps may use the
    key's stored token (chordflow.jobs.key_tokens). The run's id, chosen here if need be."""
    db = getattr(store, "db", None)
    if db is None or principal.key_id == DEVELOPMENT.key_id:
        return run_id
    from chordflow.engine.engine import new_run_id

    run_id = run_id or new_run_id()
    record_submitter(db, run_id, principal.key_id)
    return run_id


@router.post("", status_code=201, response_model=RunCreated,
             responses={200: {"model": RunCreated, "description": "Replayed: a run with "
                              "this Idempotency-Key exists."},
                        422: {"model": ErrorBody, "description": "Invalid workflow: "
                              "every error, by step and field."},
                        409: {"model": ErrorBody, "description": "The stored workflow "
                              "is disabled."},
                        503: {"model": ErrorBody, "description": "The store or the "
                              "broker is unavailable; see Retry-After."}},
             openapi_extra=yaml_request_body({"$ref": "#/components/schemas/RunCreate"}))
def create_run(
    request: Request, response: Response, body: RunCreate, principal: Operator,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunCreated:
    """Submit a run of an inline or stored workflow. With an ``Idempotency-Key`` header,
    a repeated request returns the first run instead of starting another."""
    created, new = submit_run(request, principal, body, idempotency_key)
    if not new:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return created


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    ts, _, run_id = cursor.partition("~")
    try:
        return float(ts), run_id
    except ValueError:
        raise HTTPException(400, f"cursor {cursor!r} is not one this API returned") from None


@router.get("", response_model=RunPage)
def list_runs(
    request: Request, _: Viewer,
    workflow: str | None = None,
    status: Annotated[list[RunStatus] | None, Query()] = None,
    created_after: Annotated[float | None, Query(description="UNIX time")] = None,
    created_before: Annotated[float | None, Query(description="UNIX time")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    trigger: Annotated[str | None, Query(max_length=300, description="e.g. 'api', "
                                         "'schedule:<id>'")] = None,
    q: Annotated[str | None, Query(max_length=MAX_SEARCH, description=SEARCH_HELP)] = None,
) -> RunPage:
    """Runs, newest first, filtered by workflow, status, trigger, creation time and a
    search (``q``)."""
    store: Any = service_of(request).engine.store
    runs = store.find_runs(workflow=workflow, status=status, created_after=created_after,
                           created_before=created_before, after=_parse_cursor(cursor),
                           limit=limit, trigger=trigger, search=q)
    next_cursor = f"{runs[-1].created_at!r}~{runs[-1].id}" if len(runs) == limit else None
    return RunPage(runs=[RunSummary.of(r) for r in runs], next_cursor=next_cursor)


@router.get("/counts", response_model=RunCounts)
def count_runs(
    request: Request, _: Viewer,
    workflow: str | None = None,
    created_after: Annotated[float | None, Query(description="UNIX time")] = None,
    created_before: Annotated[float | None, Query(description="UNIX time")] = None,
    trigger: Annotated[str | None, Query(max_length=300)] = None,
    q: Annotated[str | None, Query(max_length=MAX_SEARCH, description=SEARCH_HELP)] = None,
) -> RunCounts:
    """How many runs have each status, filtered as ``GET /runs`` (the dashboard's
    counters). Declared before ``/runs/{run_id}``, which would take ``counts`` for an id."""
    store: Any = service_of(request).engine.store
    counts = store.count_runs(workflow=workflow, created_after=created_after,
                              created_before=created_before, trigger=trigger, search=q)
    return RunCounts(counts=counts, total=sum(counts.values()))


@router.get("/{run_id}", response_model=RunOut, responses={404: {"description": "No run."}})
def get_run(request: Request, run_id: str, _: Viewer) -> RunOut:
    """A run with every step: status, attempts, params, outputs, error, timings, worker."""
    service = service_of(request)
    run = service.engine.store.get_run(run_id)
    steps = service.engine.steps_of(run)
    plan = service.engine.plan_for(run)
    default_queue = request.app.state.settings.default_queue
    return RunOut(**RunSummary.of(run).model_dump(), variables=run.variables,
                  outputs=run.outputs,
                  steps=[StepOut.of(rec, plan.steps[name].step.queue or default_queue)
                         for name, rec in steps.items()])


@router.post("/{run_id}/cancel", response_model=RunAction,
             responses={404: {"description": "No run."},
                        409: {"description": "The run already finished."}})
def cancel_run(request: Request, run_id: str, principal: Operator) -> RunAction:
    """Cancel a pending or running run: nothing more starts, running steps are stopped."""
    service = service_of(request)
    if not service.cancel(run_id, f"cancelled by {principal.name}"):
        status = service.engine.store.get_run(run_id).status
        raise HTTPException(409, f"run {run_id} is {status}; only a pending or running "
                                 "run can be cancelled")
    audit(request, principal, "run.cancel", run_id)
    return RunAction(run_id=run_id, status=str(service.engine.store.get_run(run_id).status))


@router.post("/{run_id}/rerun", response_model=RunAction,
             responses={404: {"description": "No run."},
                        409: {"description": "The run is not failed or cancelled."}})
def rerun_run(request: Request, run_id: str, principal: Operator) -> RunAction:
    """Run a failed or cancelled run again from its failed steps, keeping what succeeded."""
    service = service_of(request)
    if service.engine.store.get_run(run_id).status in (RunStatus.FAILED, RunStatus.CANCELLED):
        # Its job steps act for whoever starts them again (token_from: key), not for
        # the key that first submitted it.
        _record_submitter(service.engine.store, principal, run_id)
    try:
        steps = service.engine.rerun(run_id)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, principal, "run.rerun", run_id, steps=steps)
    return RunAction(run_id=run_id, status=str(service.engine.store.get_run(run_id).status),
                     steps=steps)


@router.get("/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def follow_run(
    request: Request, run_id: str, _: Viewer,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """The run's events as Server-Sent Events, live, until the run ends (then an ``end``
    event with its status). Each event's ``data`` is JSON: type, step, data, ts.

    Events carry ids in time order; a client that reconnects with ``Last-Event-ID``
    (as browsers' EventSource do) receives only the events after it. An event that
    reached the store late (a worker writes its events a fraction of a second after
    they happen) is still sent, without an id of its own, so that the last id never
    goes back. A stream ends after an hour, or within seconds of the server stopping;
    either way the client reconnects where it was.
    """
    store = service_of(request).engine.store
    await run_in_threadpool(store.get_run, run_id)  # 404 before the stream starts
    return StreamingResponse(_events(request, run_id, _event_time(last_event_id)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event_time(event_id: str | None) -> float | None:
    """The time an event id stands for (ids are event times), or None."""
    if not event_id:
        return None
    try:
        return float(event_id)
    except ValueError:
        raise HTTPException(400, f"Last-Event-ID {event_id!r} is not an id this API "
                                 "sent") from None


async def _events(request: Request, run_id: str, after: float | None) -> AsyncIterator[str]:
    """Poll the log. Workers write events up to ``LINGER_SECONDS`` late, so each read
    starts a little before the newest event seen, and what was sent is skipped."""
    store = service_of(request).engine.store
    sent: set[tuple[float, str, str | None]] = set()
    #: The newest event time sent (or the client's Last-Event-ID): the stream's id.
    newest = after if after is not None else -math.inf
    since: float | None = after
    opened = time.monotonic()
    finished_at: float | None = None
    while True:
        if time.monotonic() - opened > FOLLOW_MAX_SECONDS or await request.is_disconnected():
            return  # the client reconnects; a stream does not hold a worker forever
        try:
            run = await run_in_threadpool(store.get_run, run_id)
            events = await run_in_threadpool(store.events, run_id, 0, since)
        except StoreUnavailable:
            yield ": the store is unreachable; waiting for it\n\n"  # a comment: keep-alive
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            continue
        for event in events:
            key = (event.ts, event.type, event.step)
            if key in sent or (after is not None and event.ts <= after):
                continue
            sent.add(key)
            payload = {"type": event.type, "step": event.step, "data": event.data,
                       "ts": event.ts, "time": iso(event.ts)}
            head = ""
            if event.ts > newest:
                newest = event.ts
                head = f"id: {event.ts!r}\n"
            yield f"{head}event: {event.type}\ndata: {json.dumps(payload, default=str)}\n\n"
        if events:
            since = max(e.ts for e in events) - 4 * LINGER_SECONDS - 1.0
            sent = {k for k in sent if k[0] >= since}  # older ones are never read again
        if run.status in RUN_FINISHED:
            # Other workers' last events arrive within their linger: read once more.
            finished_at = finished_at or time.monotonic()
            if time.monotonic() - finished_at > 2 * LINGER_SECONDS:
                yield f"event: end\ndata: {json.dumps({'status': str(run.status)})}\n\n"
                return
        await asyncio.sleep(FOLLOW_POLL_SECONDS if finished_at is None else LINGER_SECONDS)


@router.get("/{run_id}/logs", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}}})
def run_logs(request: Request, run_id: str, _: Viewer, step: str | None = None,
             events: bool = True) -> PlainTextResponse:
    """The run's log as text: its events (unless ``events=false``), then what each step
    printed and logged, attempt by attempt and host by host, and its error."""
    store: Any = service_of(request).engine.store
    run = store.get_run(run_id)
    if run.finished_at is not None:  # other workers' last events arrive within a linger
        time.sleep(max(0.0, run.finished_at + 2 * LINGER_SECONDS - time.time()))
    lines = [event_line(e.ts, e.type, e.step, e.data)
             for e in (store.events(run_id) if events else [])
             if step is None or (e.step and TaskKey.parse(e.step).step == step)]
    output: dict[str, list[Any]] = {}
    for line in store.logs(run_id, step):
        output.setdefault(TaskKey.parse(line.step).step, []).append(line)
    steps = service_of(request).engine.steps_of(run)
    for name, rec in steps.items():
        if step is not None and name != step:
            continue
        heading = None
        for line in output.get(name, []):
            this = f"--- {line.step} {line.stream} (attempt {line.attempt}, {line.worker}) ---"
            if this != heading:
                lines.append(heading := this)
            lines.append(line.text.rstrip("\n"))
        if rec.error:
            lines.append(f"--- {name} error ---")
            lines.append(rec.error)
    return PlainTextResponse("\n".join(lines) + "\n" if lines else "")


@router.get("/{run_id}/graph", response_model=RunGraph)
def run_graph(request: Request, run_id: str, _: Viewer) -> RunGraph:
    """The run's DAG with each step's status, as nodes and edges and as Mermaid text."""
    service = service_of(request)
    run = service.engine.store.get_run(run_id)
    plan = service.engine.plan_for(run)
    steps = service.engine.steps_of(run)
    statuses = {name: str(rec.status) for name, rec in steps.items()}
    return RunGraph(
        nodes=[GraphNode(id=name, module=plan.steps[name].module, status=statuses[name])
               for name in plan.order],
        edges=[GraphEdge(source=parent, target=name)
               for name in plan.order for parent in plan.steps[name].parents],
        mermaid=mermaid(plan, statuses),
    )
