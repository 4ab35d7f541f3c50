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
from pathlib import Path
from typing import Any

from chordflow.api.audit import AuditLog
from chordflow.api.auth_limits import AuthLimits
from chordflow.api.bodies import YamlBodies
from chordflow.api.inline_policy import operator_modules
from chordflow.api.keys import ApiKeys
from chordflow.api.library import WorkflowDisabled, WorkflowLibrary, WorkflowMissing
from chordflow.api.schemas import VALIDATE_REQUEST_SCHEMA, ErrorBody
from chordflow.config import Settings, get_settings
from chordflow.errors import DispatchFailed, RunNotFound, StoreUnavailable, ValidationFailed
from chordflow.schedules import Schedules
from chordflow.service import RunService
from chordflow.workflow.models import workflow_json_schema
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException
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
        app.state.connections = settings.connection_catalog(db)
        _make_indexes(app)
        if not settings.api_auth:
            log.warning("API authentication is OFF (CHORDFLOW_API_AUTH=false): anyone who "
                        "reaches this server is an admin. For local development only.")
        try:
            yield
        finally:
            if own:
                app.state.service.close()

    from chordflow.api.dashboard import mount as mount_dashboard
    from chordflow.api.routes import admin, compat, meta, ops, runs, schedules, workflows
    from chordflow.api.routes import connections as connections_routes
    from chordflow.api.routes import jit as jit_routes
    from chordflow.api.routes import remotes as remotes_routes
    from chordflow.api.routes import transfers as transfers_routes
    from chordflow.api.routes import workers as workers_routes

    docs = settings.api_docs
    app = FastAPI(
        title="chordflow",
        version="0.1.0",
        summary="Submit, watch and control workflow runs on Celery workers.",
        lifespan=lifespan,
        # The documents are served below, from files inside the package (no CDN: an
        # air-gapped cluster's /docs works, and nothing loads from a third party).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        responses={422: {"model": ErrorBody,
                         "description": "The request is invalid: every problem."}},
    )
    app.state.settings = settings
    app.state.auth_limits = AuthLimits(settings.auth_failures_per_minute)
    app.add_middleware(YamlBodies)  # inside BodyLimit: bodies are bounded before
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    _documents(app, docs)
    _error_shape(app)
    app.include_router(ops.router)
    app.include_router(meta.router, prefix=API_PREFIX)
    app.include_router(runs.router, prefix=API_PREFIX)
    from chordflow.api.routes import cwl as cwl_routes

    app.include_router(cwl_routes.router, prefix=API_PREFIX)
    app.include_router(compat.router, prefix=API_PREFIX)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(schedules.router, prefix=API_PREFIX)
    app.include_router(admin.router, prefix=API_PREFIX)
    app.include_router(workers_routes.router, prefix=API_PREFIX)
    app.include_router(connections_routes.router, prefix=API_PREFIX)
    app.include_router(jit_routes.router, prefix=API_PREFIX)
    app.include_router(remotes_routes.router, prefix=API_PREFIX)
    app.include_router(transfers_routes.router, prefix=API_PREFIX)
    from chordflow.api.routes import backup as backup_routes
    from chordflow.api.routes import platform as platform_routes

    # The replaced procedures platform's paths (/flow, /run, /backup), beside ours.
    app.include_router(platform_routes.router)
    app.include_router(backup_routes.router)
    mount_dashboard(app)  # the dashboard at / (its page, files and session)

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
            "detail": str(exc), "code": "validation_failed",
            "errors": [e.to_dict() for e in exc.errors]})

    @app.exception_handler(RunNotFound)
    async def no_run(request: Request, exc: RunNotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(WorkflowMissing)
    async def no_workflow(request: Request, exc: WorkflowMissing) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(WorkflowDisabled)
    async def disabled(request: Request, exc: WorkflowDisabled) -> JSONResponse:
        return error_response(409, str(exc), code="workflow_disabled")

    return app


#: The ``code`` of an error response, by status, unless the error names its own.
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 409: "conflict",
               413: "payload_too_large", 415: "unsupported_media_type",
               422: "validation_failed", 429: "too_many_requests",
               500: "internal_error", 503: "unavailable"}

STATIC = Path(__file__).with_name("static")


def error_response(status: int, detail: Any, *, code: str | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The one shape of every error body: ``detail`` (words, as before), ``code``
    (stable, for programs), and whatever the error adds (``errors``)."""
    body = {"detail": detail, "code": code or ERROR_CODES.get(status, f"http_{status}"),
            **extra}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _error_shape(app: FastAPI) -> None:
    """HTTP errors (the routes' own, the router's 404 and 405) and request validation
    errors in the shared shape. A request error is listed like a workflow error (its
    ``field`` the place in the request, ``body.variables``), so a client reads both
    the same way."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail,
                              headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, str | None]] = [
            {"step": None, "field": ".".join(str(p) for p in e.get("loc", ())) or None,
             "message": str(e.get("msg", "")).removeprefix("Value error, ")}
            for e in exc.errors()]
        detail = "invalid request: " + "; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else str(e["message"])
            for e in errors)
        return error_response(422, detail, errors=errors)


def _errors_as_json(schema: dict[str, Any]) -> None:
    """Error bodies are JSON on every endpoint: FastAPI documents an additional
    response in the endpoint's own media type, text/plain for ``/logs``."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content") or {}
                if not str(status).startswith(("4", "5")) or "application/json" in content:
                    continue
                for media in list(content):
                    if "ErrorBody" in str(content[media].get("schema", "")):
                        content["application/json"] = content.pop(media)


def _documents(app: FastAPI, docs: bool) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the package's own copies of their
    scripts (app/api/static, from the npm packages swagger-ui-dist and redoc), and
    ``/openapi.json`` with the canonical ``Workflow`` schema (``/`` is the dashboard's).
    With ``CHORDFLOW_API_DOCS=false`` none of them exists (404)."""
    if not docs:
        return
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    openapi = app.openapi

    def with_workflow() -> dict[str, Any]:
        schema = openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Workflow" not in components:
            workflow = workflow_json_schema("#/components/schemas/")
            components.update(workflow.pop("$defs", {}))
            components["Workflow"] = workflow
            components["ValidateRequest"] = VALIDATE_REQUEST_SCHEMA
            _errors_as_json(schema)
        return schema

    app.openapi = with_workflow  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="chordflow API",
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url="/static/favicon-32x32.png",
            # No validator badge: Swagger UI would send the schema's URL to
            # validator.swagger.io, a call out of the cluster.
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="chordflow API",
                              redoc_js_url="/static/redoc.standalone.js",
                              redoc_favicon_url="/static/favicon-32x32.png",
                              with_google_fonts=False)


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
                            content={"detail": f"request body over {limit} bytes",
                                     "code": "payload_too_large"})
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Any:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}
