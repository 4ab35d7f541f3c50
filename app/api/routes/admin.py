"""Admin endpoints: API keys (create, list, change role, store a job service token,
revoke) and the audit log.

Roles (``chordflow.api.security``): every endpoint here needs an admin key.
"""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.schemas import ErrorBody
from chordflow.api.security import AUTH_RESPONSES, Admin, Role
from chordflow.jobs.key_tokens import KeyTokenError
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

router = APIRouter(tags=["admin"], responses=AUTH_RESPONSES)


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key.")
    role: Role = Role.VIEWER


class KeyCreated(BaseModel):
    key_id: str
    name: str
    role: Role
    key: str = Field(description="The key itself: shown this once, never stored in clear.")


class KeyOut(BaseModel):
    key_id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None
    token: str | None = Field(default=None, description="'***' when a job service token "
                              "is stored with the key (never the token), else null.")
    token_set_at: float | None = None


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(request: Request, body: KeyCreate, principal: Admin) -> KeyCreated:
    """Create an API key with a role; the key is in this response only."""
    key_id, token = request.app.state.keys.create(body.name, body.role)
    audit(request, principal, "key.create", key_id, name=body.name, role=str(body.role))
    return KeyCreated(key_id=key_id, name=body.name, role=body.role, key=token)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(request: Request, _: Admin) -> list[dict[str, Any]]:
    """Every key (never its secret or hash)."""
    return request.app.state.keys.list()  # type: ignore[no-any-return]


class KeyRole(BaseModel):
    role: Role = Field(description="The key's new role.")


@router.patch("/keys/{key_id}", response_model=KeyOut,
              responses={404: {"description": "No active key."}})
def change_key_role(request: Request, key_id: str, body: KeyRole,
                    principal: Admin) -> dict[str, Any]:
    """Give a key another role (e.g. ``author`` to an operator key that submits inline
    code): this process at once, every other within seconds."""
    keys = request.app.state.keys
    if not keys.set_role(key_id, body.role):
        raise HTTPException(404, f"no active key {key_id}")
    audit(request, principal, "key.role", key_id, role=str(body.role))
    return keys.get(key_id)  # type: ignore[no-any-return]


@router.delete("/keys/{key_id}", status_code=204, responses={404: {"description": "No "
                                                                   "active key."}})
def revoke_key(request: Request, key_id: str, principal: Admin) -> None:
    """Revoke a key: every API process refuses it within seconds."""
    if not request.app.state.keys.revoke(key_id):
        raise HTTPException(404, f"no active key {key_id}")
    audit(request, principal, "key.revoke", key_id)


class KeyToken(BaseModel):
    token: str = Field(min_length=3, max_length=8192, description="The user's token for "
                       "job services with token_from: key (e.g. a BV-BRC token); stored "
                       "encrypted, never returned.")


@router.put("/keys/{key_id}/token", response_model=KeyOut,
            responses={404: {"description": "No active key."},
                       409: {"model": ErrorBody, "description": "Tokens cannot be stored "
                             "here: the secret that encrypts them is not set."}})
def set_key_token(request: Request, key_id: str, body: KeyToken,
                  principal: Admin) -> dict[str, Any]:
    """Store a job service token with a key (its user's own BV-BRC token, say): the
    jobs of runs this key submits to services with ``token_from: key`` use it. It is
    stored encrypted and never returned (the key shows ``token: "***"``)."""
    keys = request.app.state.keys
    try:
        stored = keys.set_token(key_id, body.token, request.app.state.settings.load_secrets())
    except KeyTokenError as exc:
        raise HTTPException(409, str(exc)) from None
    if not stored:
        raise HTTPException(404, f"no active key {key_id}")
    audit(request, principal, "key.token", key_id)
    return keys.get(key_id)  # type: ignore[no-any-return]


@router.delete("/keys/{key_id}/token", status_code=204,
               responses={404: {"description": "No key."}})
def clear_key_token(request: Request, key_id: str, principal: Admin) -> None:
    """Forget the token stored with a key."""
    if not request.app.state.keys.clear_token(key_id):
        raise HTTPException(404, f"no key {key_id}")
    audit(request, principal, "key.token_clear", key_id)


class AuditEntry(BaseModel):
    ts: float
    key_id: str
    who: str
    role: str
    action: str
    target: str | None = None
    method: str
    path: str
    client: str | None = None
    details: dict[str, Any] | None = None


@router.get("/audit", response_model=list[AuditEntry])
def read_audit(request: Request, _: Admin,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               before: Annotated[float | None, Query(description="UNIX time")] = None,
               ) -> list[dict[str, Any]]:
    """Changes made through the API, newest first: who, what, when, from where."""
    return request.app.state.audit.entries(limit, before)  # type: ignore[no-any-return]
