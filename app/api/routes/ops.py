"""Liveness, readiness and Prometheus metrics: what load balancers and scrapers call."""

from __future__ import annotations

from typing import Any

from chordflow.api.metrics import render_metrics
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/api/v1/health")
def health() -> dict[str, str]:
    """Liveness: the process answers. Needs no key."""
    return {"status": "ok"}


@router.get("/api/v1/ready", responses={503: {"description": "A dependency is down."}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: MongoDB and the broker both answer; else 503 naming which does not.
    Needs no key, as load balancers and Kubernetes probes expect.

    ``unserved_queues`` names the queues on which steps wait that no live worker
    consumes (as the reconciler last found them), with how many steps wait on each: the
    API is ready all the same, but those steps will not run until a worker serves them.
    """
    service: Any = request.app.state.service
    checks: dict[str, str] = {}

    def mongo() -> None:
        service.engine.store.ping()

    def broker() -> None:
        app = service.engine.dispatcher.app
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    for name, check in (("mongodb", mongo), ("broker", broker)):
        try:
            await run_in_threadpool(check)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}: {exc}"
    down = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, Any] = {
        "status": "ready" if not down else f"not ready: {', '.join(down)} unreachable",
        "checks": checks}
    if "mongodb" not in down:
        try:
            state = await run_in_threadpool(service.engine.store.reconcile_state)
            body["unserved_queues"] = state.get("unserved_queues") or {}
        except Exception:
            pass  # gone since the check: the next probe says so
    headers = {"Retry-After": "5"} if down else None
    return JSONResponse(status_code=503 if down else 200, content=body, headers=headers)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format). Needs no key, as scrapers expect."""
    body, content_type = await run_in_threadpool(render_metrics, request.app.state.service)
    return Response(content=body, media_type=content_type)
