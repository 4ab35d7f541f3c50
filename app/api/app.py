"""The FastAPI application: settings, the run service, keys, audit, routers.

One ``RunService`` (MongoDB records, Celery dispatch) per API process, built in the
lifespan so uvicorn's worker processes each get their own connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from chordflow.api.audit import AuditLog
from chordflow.api.auth_limits import AuthLimits
from chordflow.api.inline_policy import operator_modules
from chordflow.api.keys import ApiKeys
from chordflow.api.library import WorkflowDisabled, WorkflowLibrary, WorkflowMissing
from chordflow.config import Settings, get_settings
from chordflow.errors import DispatchFailed, RunNotFound, StoreUnavailable, ValidationFailed
from chordflow.schedules import Schedules
from chordflow.service import RunService
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chordflow.api")

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, service: RunService | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = service is None
        app.state.service = service or RunService.celery(settings, patience=STORE_PATIENCE)
        db = app.state.service.engine.store.db
        app.state.keys = ApiKeys(db)
        app.state.operator_modules = operator_modules(settings.operator_modules,
                                                      app.state.service.engine.registry)
        app.state.audit = AuditLog(db)
        app.state.library = WorkflowLibrary(db, settings.dialect_environ())
        app.state.schedules = Schedules(db)
        _make_indexes(app)
        if not settings.api_auth:
            log.warning("API authentication is OFF (CHORDFLOW_API_AUTH=false): anyone who "
                        "reaches this server is an admin. For local development only.")
        try:
            yield
        finally:
            if own:
                app.state.service.close()

    from chordflow.api.routes import admin, compat, meta, ops, runs, schedules, workflows

    docs = settings.api_docs
    app = FastAPI(
        title="chordflow",
        version="0.1.0",
        summary="Submit, watch and control workflow runs on Celery workers.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.auth_limits = AuthLimits(settings.auth_failures_per_minute)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.include_router(ops.router)
    app.include_router(meta.router, prefix=API_PREFIX)
    app.include_router(runs.router, prefix=API_PREFIX)
    app.include_router(compat.router, prefix=API_PREFIX)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(schedules.router, prefix=API_PREFIX)
    app.include_router(admin.router, prefix=API_PREFIX)

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(ConnectionFailure)
    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: the store is unreachable: %s", request.method,
                    request.url.path, exc)
        return _unavailable("store_unavailable",
                            "MongoDB, where chordflow records runs, is unreachable; try "
                            "again shortly (a submission retried with the same "
                            "Idempotency-Key starts at most one run)")

    @app.exception_handler(DispatchFailed)
    async def broker_down(request: Request, exc: DispatchFailed) -> JSONResponse:
        return _unavailable("broker_unavailable", str(exc))

    @app.exception_handler(ValidationFailed)
    async def invalid(request: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "detail": str(exc), "errors": [e.to_dict() for e in exc.errors]})

    @app.exception_handler(RunNotFound)
    async def no_run(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(WorkflowMissing)
    async def no_workflow(request: Request, exc: WorkflowMissing) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(WorkflowDisabled)
    async def disabled(request: Request, exc: WorkflowDisabled) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    return app


#: Seconds a request waits for an unreachable MongoDB before its 503 (about one more
#: try after pymongo's own two-second look): the client decides whether to retry.
STORE_PATIENCE = 1.0
#: Seconds a client is told to wait (``Retry-After``) when the store or broker is down.
RETRY_AFTER_SECONDS = 5
#: Seconds between two tries at making the indexes when the store was down at start.
INDEX_RETRY_SECONDS = 5.0


def _unavailable(code: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail, "code": code},
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _make_indexes(app: FastAPI) -> None:
    """The indexes, now or (the store is down: the API starts anyway, answering 503
    until it is back) by a background thread that keeps trying."""

    def make() -> None:
        app.state.service.engine.store.ensure_indexes()
        app.state.library.ensure_indexes()
        app.state.schedules.ensure_indexes()

    def keep_trying() -> None:
        while True:
            time.sleep(INDEX_RETRY_SECONDS)
            try:
                make()
            except (StoreUnavailable, ConnectionFailure):
                continue
            log.warning("MongoDB answers: indexes made")
            return

    try:
        make()
    except (StoreUnavailable, ConnectionFailure) as exc:
        log.warning("MongoDB is unreachable at start (%s); serving anyway, answering 503 "
                    "until it is back", exc)
        threading.Thread(target=keep_trying, daemon=True, name="chordflow-indexes").start()


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised while FastAPI reads the body, which passes HTTP errors on.
                    raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse(status_code=413,
                            content={"detail": f"request body over {limit} bytes"})
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Any:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}
