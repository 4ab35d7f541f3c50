"""Named connections: list, show, define, delete and check (docs/connections.md).

Roles (``chordflow.api.security``): every endpoint needs an admin key, as Airflow keeps
connections to its admins. A definition holds no credential, only the names of the
secrets that do (``credentials: {"password": "warehouse_pw"}``), so what these
endpoints return is the definition as it was given: no value is ever shown, stored or
backed up in clear. Connections from the settings (``CHORDFLOW_CONNECTIONS``) are
listed with ``source: settings`` and cannot be changed here (409). Every change is
audited (``connection.put``, ``connection.delete``).
"""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.security import AUTH_RESPONSES, Admin
from chordflow.connections.catalog import Catalog, ConnectionConflict, ConnectionMissing
from chordflow.connections.models import NAME_PATTERN, Connection, parse_connection
from chordflow.engine.redaction import redact
from chordflow.errors import StepFailed
from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

router = APIRouter(prefix="/connections", tags=["connections"], responses=AUTH_RESPONSES)

ConnectionName = Annotated[str, Path(description="The connection's name.", max_length=200,
                                     pattern=NAME_PATTERN)]
_MISSING: dict[int | str, dict[str, Any]] = {404: {"description": "No such connection."}}
_FIXED: dict[int | str, dict[str, Any]] = {
    409: {"description": "Defined in the settings (CHORDFLOW_CONNECTIONS): read-only here."}}


class ConnectionOut(Connection):
    source: str = Field(description="settings (CHORDFLOW_CONNECTIONS) or api (stored).")
    updated_at: float | None = None
    updated_by: str | None = None


class ConnectionList(BaseModel):
    connections: list[ConnectionOut]


class CheckResult(BaseModel):
    ok: bool
    connected_node: str | None = None
    error: str | None = Field(default=None, description="Why no host answered (secrets "
                                                        "masked).")


def catalog_of(request: Request) -> Catalog:
    return request.app.state.connections  # type: ignore[no-any-return]


def _get(request: Request, name: str) -> dict[str, Any]:
    try:
        return catalog_of(request).entry(name)
    except ConnectionMissing as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("", response_model=ConnectionList)
def list_connections(request: Request, _: Admin) -> dict[str, Any]:
    """Every connection, with where it is defined (never a credential's value)."""
    return {"connections": catalog_of(request).entries()}


@router.get("/{name}", response_model=ConnectionOut, responses=_MISSING)
def get_connection(request: Request, name: ConnectionName, _: Admin) -> dict[str, Any]:
    """One connection's definition."""
    return _get(request, name)


@router.put("/{name}", response_model=ConnectionOut, status_code=200,
            responses={**_FIXED, 201: {"model": ConnectionOut,
                                       "description": "Created: the name was new."}})
def put_connection(request: Request, name: ConnectionName, body: dict[str, Any],
                   principal: Admin, response: Response) -> dict[str, Any]:
    """Define or replace a connection: ``{type, hosts, login, credentials, options,
    timeout, retry_count, retry_delay, retry_on_error, pool_size}`` (201 when new).
    ``credentials`` maps each credential to the *name* of a secret the workers have."""
    try:
        connection = parse_connection({k: v for k, v in body.items() if k != "name"}, name)
    except ValueError as exc:
        from chordflow.api.app import error_response

        found = getattr(exc, "errors", None)
        errors = [{"step": None, "field": "body." + ".".join(str(x) for x in e["loc"]),
                   "message": str(e["msg"]).removeprefix("Value error, ")}
                  for e in found()] if callable(found) else \
            [{"step": None, "field": "body.hosts", "message": str(exc)}]
        return error_response(  # type: ignore[return-value]
            422, "invalid connection: " + "; ".join(f"{e['field']}: {e['message']}"
                                                     for e in errors),
            code="validation_failed", errors=errors)
    try:
        created = catalog_of(request).put(connection, principal.name)
    except ConnectionConflict as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, principal, "connection.put", name, type=connection.type,
          hosts=connection.hosts)
    if created:
        response.status_code = 201
    return _get(request, name)


@router.delete("/{name}", status_code=204, responses={**_MISSING, **_FIXED})
def delete_connection(request: Request, name: ConnectionName, principal: Admin) -> Response:
    """Delete a stored connection (steps naming it fail, naming it, from then on)."""
    try:
        deleted = catalog_of(request).delete(name)
    except ConnectionConflict as exc:
        raise HTTPException(409, str(exc)) from None
    if not deleted:
        raise HTTPException(404, f"connection '{name}' is not defined")
    audit(request, principal, "connection.delete", name)
    return Response(status_code=204)


@router.post("/{name}/check", response_model=CheckResult, responses=_MISSING)
def check_connection(request: Request, name: ConnectionName, _: Admin) -> dict[str, Any]:
    """Connect from this API process as a step would (hosts in order, the cluster
    options, this process's secrets) and report which host answered."""
    from chordflow.modules.drivers import check

    secrets = request.app.state.settings.load_secrets()
    catalog = catalog_of(request)
    try:
        resolved = catalog.resolve(name, secrets)
    except ConnectionMissing as exc:
        raise HTTPException(404, str(exc)) from None
    except StepFailed as exc:
        return {"ok": False, "error": redact(str(exc), secrets)}
    return redact(check(resolved), secrets)
